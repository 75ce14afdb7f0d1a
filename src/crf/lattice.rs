//! The permutohedral lattice (Adams, Baek & Davis 2010) as used by Krähenbühl & Koltun's dense
//! CRF: Gaussian filtering of N points with d-dimensional features in O(N·d²) per value
//! channel. Points are lifted onto the (d+1)-dimensional permutohedral lattice, their values
//! splatted onto the enclosing simplex's vertices with barycentric weights, blurred along the
//! d+1 lattice directions with a [1 2 1] kernel, and sliced back with the same weights.
use rustc_hash::FxHashMap;

/// Largest feature dimension: the dense CRF's bilateral kernel has 5 (x, y, r, g, b). Keys are
/// fixed-size arrays so the vertex table hashes them without a heap allocation per lookup
/// (with `Vec<i32>` keys and SipHash, building the table took about a third of a PSA CRF's
/// time).
pub const MAX_DIM: usize = 8;
type Key = [i32; MAX_DIM];

pub struct Lattice {
    d: usize,
    /// Per point, the d+1 vertex indices (into the vertex table) and barycentric weights.
    offsets: Vec<u32>,
    weights: Vec<f32>,
    /// Per direction j and vertex v: the two neighbours along j (u32::MAX when absent).
    neighbours: Vec<[u32; 2]>,
    vertices: usize,
}

const NONE: u32 = u32::MAX;

impl Lattice {
    /// `features`: N points × d values, already divided by the kernel's standard deviations.
    pub fn new(features: &[f32], d: usize) -> Lattice {
        assert!(d > 0 && features.len().is_multiple_of(d));
        assert!(
            d <= MAX_DIM,
            "lattice features of dimension {d} (at most {MAX_DIM})"
        );
        let n = features.len() / d;
        let d1 = d + 1;
        // Lifting scale: the lattice spacing matched to a unit-variance Gaussian.
        let inv_std = (2.0f64 / 3.0).sqrt() * d1 as f64;
        let scale: Vec<f64> = (0..d)
            .map(|i| inv_std / (((i + 1) * (i + 2)) as f64).sqrt())
            .collect();
        // canonical simplex: vertex `r` of the remainder-0 point, coordinate by rank
        let canonical: Vec<i32> = (0..d1)
            .flat_map(|r| {
                (0..d1).map(move |j| {
                    if j <= d - r {
                        r as i32
                    } else {
                        r as i32 - d1 as i32
                    }
                })
            })
            .collect();
        let mut table: FxHashMap<Key, u32> =
            FxHashMap::with_capacity_and_hasher(n * d1 / 4 + 16, Default::default());
        let mut keys: Vec<Key> = Vec::new();
        let mut offsets = vec![0u32; n * d1];
        let mut weights = vec![0f32; n * d1];
        let (mut elevated, mut rem0, mut rank) = (vec![0f64; d1], vec![0i32; d1], vec![0i32; d1]);
        let mut bary = vec![0f64; d + 2];
        let mut key: Key = [0; MAX_DIM];
        for p in 0..n {
            let f = &features[p * d..(p + 1) * d];
            // elevate onto the hyperplane Σx = 0
            let mut sm = 0.0;
            for j in (1..=d).rev() {
                let cf = f[j - 1] as f64 * scale[j - 1];
                elevated[j] = sm - j as f64 * cf;
                sm += cf;
            }
            elevated[0] = sm;
            // nearest remainder-0 lattice point
            let mut sum = 0i32;
            for i in 0..d1 {
                let v = elevated[i] / d1 as f64;
                let up = v.ceil() * d1 as f64;
                let down = v.floor() * d1 as f64;
                rem0[i] = if up - elevated[i] < elevated[i] - down {
                    up as i32
                } else {
                    down as i32
                };
                sum += rem0[i];
            }
            sum /= d1 as i32;
            // rank the differential coordinates
            rank.iter_mut().for_each(|r| *r = 0);
            for i in 0..d {
                for j in i + 1..d1 {
                    if elevated[i] - (rem0[i] as f64) < elevated[j] - (rem0[j] as f64) {
                        rank[i] += 1;
                    } else {
                        rank[j] += 1;
                    }
                }
            }
            // bring the point back onto the hyperplane's remainder-0 set
            if sum > 0 {
                for i in 0..d1 {
                    if rank[i] >= d1 as i32 - sum {
                        rem0[i] -= d1 as i32;
                        rank[i] += sum - d1 as i32;
                    } else {
                        rank[i] += sum;
                    }
                }
            } else if sum < 0 {
                for i in 0..d1 {
                    if rank[i] < -sum {
                        rem0[i] += d1 as i32;
                        rank[i] += d1 as i32 + sum;
                    } else {
                        rank[i] += sum;
                    }
                }
            }
            // barycentric coordinates
            bary.iter_mut().for_each(|b| *b = 0.0);
            for i in 0..d1 {
                let v = (elevated[i] - rem0[i] as f64) / d1 as f64;
                let r = rank[i] as usize;
                bary[d - r] += v;
                bary[d + 1 - r] -= v;
            }
            bary[0] += 1.0 + bary[d + 1];
            for r in 0..d1 {
                for i in 0..d {
                    key[i] = rem0[i] + canonical[r * d1 + rank[i] as usize];
                }
                let next = keys.len() as u32;
                let idx = *table.entry(key).or_insert_with(|| {
                    keys.push(key);
                    next
                });
                offsets[p * d1 + r] = idx;
                weights[p * d1 + r] = bary[r] as f32;
            }
        }
        let m = keys.len();
        let mut neighbours = vec![[NONE, NONE]; d1 * m];
        let (mut n1, mut n2): (Key, Key) = ([0; MAX_DIM], [0; MAX_DIM]);
        for j in 0..d1 {
            for (v, k) in keys.iter().enumerate() {
                for i in 0..d {
                    n1[i] = k[i] - 1;
                    n2[i] = k[i] + 1;
                }
                if j < d {
                    n1[j] = k[j] + d as i32;
                    n2[j] = k[j] - d as i32;
                }
                neighbours[j * m + v] = [
                    table.get(&n1).copied().unwrap_or(NONE),
                    table.get(&n2).copied().unwrap_or(NONE),
                ];
            }
        }
        Lattice {
            d,
            offsets,
            weights,
            neighbours,
            vertices: m,
        }
    }

    pub fn points(&self) -> usize {
        self.offsets.len() / (self.d + 1)
    }

    /// Gaussian-filters `input` (N points × `vs` values) into `out`: out_i ≈ Σ_j k(f_i, f_j)
    /// in_j, self term included.
    pub fn filter(&self, input: &[f32], vs: usize, out: &mut [f32]) {
        let (n, d1, m) = (self.points(), self.d + 1, self.vertices);
        assert_eq!(input.len(), n * vs);
        assert_eq!(out.len(), n * vs);
        // slot 0 of each buffer is an always-zero vertex standing for absent neighbours
        let mut values = vec![0f32; (m + 1) * vs];
        let mut next = vec![0f32; (m + 1) * vs];
        for p in 0..n {
            let x = &input[p * vs..(p + 1) * vs];
            for r in 0..d1 {
                let o = (self.offsets[p * d1 + r] as usize + 1) * vs;
                let w = self.weights[p * d1 + r];
                for (v, &xi) in values[o..o + vs].iter_mut().zip(x) {
                    *v += w * xi;
                }
            }
        }
        let slot = |i: u32| if i == NONE { 0 } else { i as usize + 1 };
        for j in 0..d1 {
            for v in 0..m {
                let [a, b] = self.neighbours[j * m + v];
                let (a, b, o) = (slot(a) * vs, slot(b) * vs, (v + 1) * vs);
                for k in 0..vs {
                    next[o + k] = values[o + k] + 0.5 * (values[a + k] + values[b + k]);
                }
            }
            std::mem::swap(&mut values, &mut next);
        }
        // the blur's gain at the centre, so that a lone point filters to ≈ itself
        let alpha = 1.0 / (1.0 + 2f32.powi(-(self.d as i32)));
        out.iter_mut().for_each(|v| *v = 0.0);
        for p in 0..n {
            let y = &mut out[p * vs..(p + 1) * vs];
            for r in 0..d1 {
                let o = (self.offsets[p * d1 + r] as usize + 1) * vs;
                let w = alpha * self.weights[p * d1 + r];
                for (yi, &v) in y.iter_mut().zip(&values[o..o + vs]) {
                    *yi += w * v;
                }
            }
        }
    }
}

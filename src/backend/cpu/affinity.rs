//! AffinityNet's local affinity and the random walk (DESIGN §8), the reference kernels.
//!
//! Pairs are a position and the neighbours of a half disc ([`half_disc_offsets`]), so every
//! unordered pair within the radius appears once. Forward and backward both loop over output
//! positions and gather (no scatter), in the same order as kernels/affinity.cu.
use crate::backend::AffinityGeom;
use crate::tensor::Float;
use rayon::prelude::*;

/// The half disc of AffinityNet's pairs within `radius` on the grid: (dy, dx) with dy = 0,
/// dx = 1..r−1 and dy = 1..r−1, |dx| < r, dx² + dy² < r² (PSA's `get_indices_of_pairs`;
/// radius 5 gives 34 offsets). The CUDA kernels enumerate the same offsets in this order.
pub fn half_disc_offsets(radius: usize) -> Vec<(isize, isize)> {
    let r = radius as isize;
    let mut v = Vec::new();
    for dy in 0..r {
        for dx in -(r - 1)..r {
            if (dy > 0 || dx > 0) && dx * dx + dy * dy < r * r {
                v.push((dy, dx));
            }
        }
    }
    v
}

/// Whether position (y, x) + (dy, dx) lies on the grid; its flat index if so.
#[inline]
fn neighbour(g: &AffinityGeom, y: usize, x: usize, dy: isize, dx: isize) -> Option<usize> {
    let (ny, nx) = (y as isize + dy, x as isize + dx);
    (ny >= 0 && nx >= 0 && ny < g.h as isize && nx < g.w as isize)
        .then(|| ny as usize * g.w + nx as usize)
}

/// a[b,p,i] = exp(−mean_c |f[b,c,i] − f[b,c,i+o_p]|), 0 where the neighbour is off the grid.
/// f (B,C,H,W) → (B,P,H,W).
pub fn forward<T: Float>(f: &[T], g: &AffinityGeom) -> Vec<T> {
    let off = half_disc_offsets(g.radius);
    let hw = g.h * g.w;
    let inv_c = T::of(1.0 / g.c as f64);
    let mut a = vec![T::zero(); g.b * off.len() * hw];
    a.par_chunks_mut(off.len() * hw)
        .enumerate()
        .for_each(|(b, ab)| {
            let fb = &f[b * g.c * hw..(b + 1) * g.c * hw];
            for (p, &(dy, dx)) in off.iter().enumerate() {
                for y in 0..g.h {
                    for x in 0..g.w {
                        let i = y * g.w + x;
                        if let Some(j) = neighbour(g, y, x, dy, dx) {
                            let mut s = T::zero();
                            for c in 0..g.c {
                                s += (fb[c * hw + i] - fb[c * hw + j]).abs();
                            }
                            ab[p * hw + i] = (-(s * inv_c)).exp();
                        }
                    }
                }
            }
        });
    a
}

fn sign<T: Float>(v: T) -> T {
    if v > T::zero() {
        T::one()
    } else if v < T::zero() {
        -T::one()
    } else {
        T::zero()
    }
}

/// df of the forward given a and da: for each position q, the pairs where q is the source
/// (q, q+o) and where it is the target (q−o, q), gathered.
pub fn backward<T: Float>(f: &[T], a: &[T], da: &[T], g: &AffinityGeom) -> Vec<T> {
    let off = half_disc_offsets(g.radius);
    let (hw, np) = (g.h * g.w, off.len());
    let inv_c = T::of(1.0 / g.c as f64);
    let mut df = vec![T::zero(); g.b * g.c * hw];
    df.par_chunks_mut(g.c * hw)
        .enumerate()
        .for_each(|(b, dfb)| {
            let fb = &f[b * g.c * hw..(b + 1) * g.c * hw];
            let ab = &a[b * np * hw..(b + 1) * np * hw];
            let dab = &da[b * np * hw..(b + 1) * np * hw];
            for y in 0..g.h {
                for x in 0..g.w {
                    let q = y * g.w + x;
                    for (p, &(dy, dx)) in off.iter().enumerate() {
                        // q as the source of pair p: ∂a/∂f_q = −a/C · sign(f_q − f_j)
                        if let Some(j) = neighbour(g, y, x, dy, dx) {
                            let s = dab[p * hw + q] * ab[p * hw + q] * inv_c;
                            for c in 0..g.c {
                                dfb[c * hw + q] -= s * sign(fb[c * hw + q] - fb[c * hw + j]);
                            }
                        }
                        // q as the target of pair p from i = q − o_p: ∂a/∂f_q = a/C · sign(f_i − f_q)
                        if let Some(i) = neighbour(g, y, x, -dy, -dx) {
                            let s = dab[p * hw + i] * ab[p * hw + i] * inv_c;
                            for c in 0..g.c {
                                dfb[c * hw + q] += s * sign(fb[c * hw + i] - fb[c * hw + q]);
                            }
                        }
                    }
                }
            }
        });
    df
}

/// The random walk of maps x (B,K,H,W) over the affinities a (B,P,H,W): W = a^β made
/// symmetric with a self-loop of 1, T = W normalised over the source axis (each column sums
/// to 1), and `steps` applications x ← x·T, i.e. x[k,j] ← Σ_i x[k,i] W[i,j] / Σ_i W[i,j].
pub fn walk<T: Float>(
    x: &[T],
    a: &[T],
    g: &AffinityGeom,
    k: usize,
    beta: f64,
    steps: usize,
) -> Vec<T> {
    let off = half_disc_offsets(g.radius);
    let (hw, np) = (g.h * g.w, off.len());
    let beta = T::of(beta);
    let mut out = x.to_vec();
    out.par_chunks_mut(k * hw).enumerate().for_each(|(b, xb)| {
        let ab = &a[b * np * hw..(b + 1) * np * hw];
        // per target j: (source, weight) with the weights already divided by Σ_i W[i,j]
        let mut nbrs: Vec<Vec<(usize, T)>> = Vec::with_capacity(hw);
        for y in 0..g.h {
            for x in 0..g.w {
                let j = y * g.w + x;
                let mut v = vec![(j, T::one())];
                for (p, &(dy, dx)) in off.iter().enumerate() {
                    if let Some(i) = neighbour(g, y, x, dy, dx) {
                        v.push((i, ab[p * hw + j].powf(beta)));
                    }
                    if let Some(i) = neighbour(g, y, x, -dy, -dx) {
                        v.push((i, ab[p * hw + i].powf(beta)));
                    }
                }
                let d = v.iter().fold(T::zero(), |s, &(_, w)| s + w);
                v.iter_mut().for_each(|e| e.1 = e.1 / d);
                nbrs.push(v);
            }
        }
        let mut next = vec![T::zero(); k * hw];
        for _ in 0..steps {
            for c in 0..k {
                let (src, dst) = (&xb[c * hw..(c + 1) * hw], &mut next[c * hw..(c + 1) * hw]);
                for (j, nb) in nbrs.iter().enumerate() {
                    dst[j] = nb.iter().fold(T::zero(), |s, &(i, w)| s + src[i] * w);
                }
            }
            xb.copy_from_slice(&next);
        }
    });
    out
}

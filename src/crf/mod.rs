//! Fully connected CRF (Krähenbühl & Koltun 2011) over a segmentation network's class
//! probabilities: mean-field inference with a Gaussian (position) and a bilateral (position +
//! colour) kernel, Potts compatibility, symmetric kernel normalisation (pydensecrf's default).
//! The kernels are filtered on a permutohedral lattice, linear in the number of pixels; an
//! exact O(N²) filter is kept as the reference the lattice is tested against.
mod lattice;
pub use lattice::Lattice;

use serde::{Deserialize, Serialize};

/// Kernel widths, weights and iterations.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CrfParams {
    pub gauss_sxy: f32,
    pub gauss_compat: f32,
    pub bi_sxy: f32,
    pub bi_srgb: f32,
    pub bi_compat: f32,
    pub iterations: usize,
}

/// The two published settings (DESIGN §5) or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CrfPreset {
    /// The official MCIS setting: gaussian sxy 3 / compat 1, bilateral sxy 80 srgb 4 compat 3,
    /// one mean-field iteration.
    Mcis,
    /// The PSA / SEAM setting: gaussian 3 / 3, bilateral 80 / 13 / 10, ten iterations.
    Psa,
    Off,
}

impl CrfPreset {
    pub fn params(self) -> Option<CrfParams> {
        match self {
            CrfPreset::Mcis => Some(CrfParams {
                gauss_sxy: 3.0,
                gauss_compat: 1.0,
                bi_sxy: 80.0,
                bi_srgb: 4.0,
                bi_compat: 3.0,
                iterations: 1,
            }),
            CrfPreset::Psa => Some(CrfParams {
                gauss_sxy: 3.0,
                gauss_compat: 3.0,
                bi_sxy: 80.0,
                bi_srgb: 13.0,
                bi_compat: 10.0,
                iterations: 10,
            }),
            CrfPreset::Off => None,
        }
    }
}

/// How the kernels are summed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// Permutohedral lattice, O(N).
    Lattice,
    /// Exact Gaussian sums over all pixel pairs, O(N²): the reference.
    Exact,
}

/// Pixel features of the two kernels: (x/sxy, y/sxy) and (x/sxy, y/sxy, r/s, g/s, b/s).
fn features(rgb: &[u8], h: usize, w: usize, sxy: f32, srgb: Option<f32>) -> (Vec<f32>, usize) {
    let d = if srgb.is_some() { 5 } else { 2 };
    let mut f = Vec::with_capacity(h * w * d);
    for y in 0..h {
        for x in 0..w {
            f.push(x as f32 / sxy);
            f.push(y as f32 / sxy);
            if let Some(s) = srgb {
                let p = &rgb[(y * w + x) * 3..(y * w + x) * 3 + 3];
                f.extend(p.iter().map(|&c| c as f32 / s));
            }
        }
    }
    (f, d)
}

/// Exact Gaussian filtering: out_i = Σ_j exp(−|f_i − f_j|²/2) in_j (self term included).
pub fn exact_filter(features: &[f32], d: usize, input: &[f32], vs: usize, out: &mut [f32]) {
    let n = features.len() / d;
    for i in 0..n {
        let fi = &features[i * d..(i + 1) * d];
        let y = &mut out[i * vs..(i + 1) * vs];
        y.iter_mut().for_each(|v| *v = 0.0);
        for j in 0..n {
            let fj = &features[j * d..(j + 1) * d];
            let d2: f32 = fi.iter().zip(fj).map(|(a, b)| (a - b) * (a - b)).sum();
            let k = (-0.5 * d2).exp();
            for (yi, &x) in y.iter_mut().zip(&input[j * vs..(j + 1) * vs]) {
                *yi += k * x;
            }
        }
    }
}

/// One kernel with its symmetric normalisation 1/√(K·1).
struct Kernel {
    lattice: Option<Lattice>,
    features: Vec<f32>,
    d: usize,
    norm: Vec<f32>,
    compat: f32,
}

impl Kernel {
    fn new(features: Vec<f32>, d: usize, compat: f32, filter: Filter) -> Kernel {
        let n = features.len() / d;
        let lattice = (filter == Filter::Lattice).then(|| Lattice::new(&features, d));
        let mut k = Kernel {
            lattice,
            features,
            d,
            norm: vec![0.0; n],
            compat,
        };
        let ones = vec![1.0; n];
        let mut s = vec![0.0; n];
        k.raw(&ones, 1, &mut s);
        k.norm = s.iter().map(|v| 1.0 / (v + 1e-20).sqrt()).collect();
        k
    }
    fn raw(&self, input: &[f32], vs: usize, out: &mut [f32]) {
        match &self.lattice {
            Some(l) => l.filter(input, vs, out),
            None => exact_filter(&self.features, self.d, input, vs, out),
        }
    }
    /// norm ⊙ K (norm ⊙ q), over `vs` channels per pixel.
    fn apply(&self, q: &[f32], vs: usize, out: &mut [f32]) {
        let mut scaled = q.to_vec();
        for (c, &s) in scaled.chunks_mut(vs).zip(&self.norm) {
            c.iter_mut().for_each(|v| *v *= s);
        }
        self.raw(&scaled, vs, out);
        for (c, &s) in out.chunks_mut(vs).zip(&self.norm) {
            c.iter_mut().for_each(|v| *v *= s);
        }
    }
}

/// Mean-field inference. `probs`: L × H × W class probabilities (planar, as the network
/// writes them); `rgb`: the image, H × W × 3. Returns the marginals Q, L × H × W.
pub fn dense_crf(
    rgb: &[u8],
    h: usize,
    w: usize,
    probs: &[f32],
    labels: usize,
    p: &CrfParams,
    filter: Filter,
) -> Vec<f32> {
    let n = h * w;
    assert_eq!(rgb.len(), n * 3, "image size");
    assert_eq!(probs.len(), labels * n, "probability map size");
    // pixel-major unaries: −log p
    let mut unary = vec![0f32; n * labels];
    for l in 0..labels {
        for i in 0..n {
            unary[i * labels + l] = -probs[l * n + i].max(1e-8).ln();
        }
    }
    let kernels = [
        Kernel::new(
            features(rgb, h, w, p.gauss_sxy, None).0,
            2,
            p.gauss_compat,
            filter,
        ),
        Kernel::new(
            features(rgb, h, w, p.bi_sxy, Some(p.bi_srgb)).0,
            5,
            p.bi_compat,
            filter,
        ),
    ];
    let neg: Vec<f32> = unary.iter().map(|u| -u).collect();
    let mut q = neg.clone();
    softmax_rows(&mut q, labels);
    let mut msg = vec![0f32; n * labels];
    for _ in 0..p.iterations {
        let mut logits = neg.clone();
        for k in &kernels {
            k.apply(&q, labels, &mut msg);
            // Potts: agreeing with similar pixels is rewarded by compat × the filtered marginal
            // (equal, up to a per-pixel constant, to penalising disagreement)
            for (o, m) in logits.iter_mut().zip(&msg) {
                *o += k.compat * m;
            }
        }
        q = logits;
        softmax_rows(&mut q, labels);
    }
    let mut out = vec![0f32; labels * n];
    for i in 0..n {
        for l in 0..labels {
            out[l * n + i] = q[i * labels + l];
        }
    }
    out
}

fn softmax_rows(x: &mut [f32], k: usize) {
    for row in x.chunks_mut(k) {
        let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        let mut s = 0.0;
        for v in row.iter_mut() {
            *v = (*v - m).exp();
            s += *v;
        }
        row.iter_mut().for_each(|v| *v /= s);
    }
}

/// Per-pixel argmax of planar L × N scores.
pub fn argmax_planar(scores: &[f32], labels: usize) -> Vec<u8> {
    let n = scores.len() / labels;
    (0..n)
        .map(|i| {
            let mut best = 0;
            for l in 1..labels {
                if scores[l * n + i] > scores[best * n + i] {
                    best = l;
                }
            }
            best as u8
        })
        .collect()
}

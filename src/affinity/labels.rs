//! AffinityNet's training signal (DESIGN §8, PSA's `infer_cls.py` and `voc12/data.py`): label
//! maps from the localization maps at two background powers, refined by the dense CRF; their
//! labels on the stride-8 grid; and the positive / negative pairs within the radius.
use crate::cam::CamFile;
use crate::crf::{argmax_planar, dense_crf, CrfParams, Filter};
use crate::error::Result;
use crate::eval::IGNORE;
use crate::ops::half_disc_offsets;
use crate::tensor::Tensor;
use crate::Device;

/// Labels of one image at image size (0 background, c + 1 class c, 255 ignore): with
/// bg = (1 − max_c M_c)^α, the CRF-refined argmax at the low α (a strong background) gives the
/// confident foreground, the one at the high α (a weak background) the confident background;
/// the rest is ignored. An image without classes is all background. `rgb` is H × W × 3.
pub fn affinity_labels(
    cam: &CamFile,
    rgb: &[u8],
    alpha_low: f64,
    alpha_high: f64,
    crf: Option<&CrfParams>,
) -> Vec<u8> {
    let (h, w) = (cam.height, cam.width);
    let hw = h * w;
    let n = cam.classes.len();
    let fg_max: Vec<f32> = (0..hw)
        .map(|p| (0..n).map(|j| cam.map(j)[p]).fold(0f32, f32::max))
        .collect();
    let label_at = |alpha: f64| -> Vec<u8> {
        let mut scores = Vec::with_capacity((n + 1) * hw);
        scores.extend(
            fg_max
                .iter()
                .map(|&m| (1.0 - m.clamp(0.0, 1.0)).powf(alpha as f32)),
        );
        scores.extend_from_slice(&cam.maps);
        let idx = match crf {
            Some(p) => argmax_planar(
                &dense_crf(rgb, h, w, &scores, n + 1, p, Filter::Lattice),
                n + 1,
            ),
            None => argmax_planar(&scores, n + 1),
        };
        idx.iter()
            .map(|&i| {
                if i == 0 {
                    0
                } else {
                    cam.classes[i as usize - 1] as u8 + 1
                }
            })
            .collect()
    };
    let (low, high) = (label_at(alpha_low), label_at(alpha_high));
    (0..hw)
        .map(|p| {
            if low[p] != 0 {
                low[p]
            } else if high[p] == 0 {
                0
            } else {
                IGNORE
            }
        })
        .collect()
}

/// Labels on a gh × gw grid: each cell takes the label at its centre pixel (nearest, as PSA's
/// `RescaleNearest(1/8)`).
pub fn grid_labels(labels: &[u8], h: usize, w: usize, gh: usize, gw: usize) -> Vec<u8> {
    let mut g = Vec::with_capacity(gh * gw);
    for gy in 0..gh {
        let y = (((gy as f64 + 0.5) * h as f64 / gh as f64) as usize).min(h - 1);
        for gx in 0..gw {
            let x = (((gx as f64 + 0.5) * w as f64 / gw as f64) as usize).min(w - 1);
            g.push(labels[y * w + x]);
        }
    }
    g
}

/// The pair targets of a batch of grid labels (B, gh, gw) for the half disc of `radius`, as
/// (B, P, gh, gw) 0/1 masks: background pairs (both ends 0), foreground pairs (both ends the
/// same class), negative pairs (two different labels, neither ignored). A pair with an ignored
/// end or off the grid is in none of them.
#[derive(Clone, Debug, PartialEq)]
pub struct PairTargets {
    pub dims: [usize; 4],
    pub bg: Vec<f32>,
    pub fg: Vec<f32>,
    pub neg: Vec<f32>,
}

impl PairTargets {
    pub fn new(grid: &[u8], b: usize, gh: usize, gw: usize, radius: usize) -> PairTargets {
        let off = half_disc_offsets(radius);
        let (hw, np) = (gh * gw, off.len());
        let len = b * np * hw;
        let (mut bg, mut fg, mut neg) = (vec![0f32; len], vec![0f32; len], vec![0f32; len]);
        for bi in 0..b {
            let l = &grid[bi * hw..(bi + 1) * hw];
            for (p, &(dy, dx)) in off.iter().enumerate() {
                for y in 0..gh {
                    for x in 0..gw {
                        let (ny, nx) = (y as isize + dy, x as isize + dx);
                        if ny < 0 || nx < 0 || ny >= gh as isize || nx >= gw as isize {
                            continue;
                        }
                        let (a, c) = (l[y * gw + x], l[ny as usize * gw + nx as usize]);
                        if a == IGNORE || c == IGNORE {
                            continue;
                        }
                        let k = (bi * np + p) * hw + y * gw + x;
                        match (a == c, a == 0) {
                            (true, true) => bg[k] = 1.0,
                            (true, false) => fg[k] = 1.0,
                            (false, _) => neg[k] = 1.0,
                        }
                    }
                }
            }
        }
        PairTargets {
            dims: [b, np, gh, gw],
            bg,
            fg,
            neg,
        }
    }

    /// Pairs of each kind: (background, foreground, negative).
    pub fn counts(&self) -> (usize, usize, usize) {
        let c = |v: &[f32]| v.iter().filter(|&&x| x > 0.0).count();
        (c(&self.bg), c(&self.fg), c(&self.neg))
    }
}

/// PSA's loss on affinities a (B,P,gh,gw): bg_pos/4 + fg_pos/4 + neg/2, each the mean over
/// its own pairs of −log(a + ε) (positives) or −log(1 + ε − a) (negatives). A kind with no
/// pair contributes 0. None when the batch has no pair at all (nothing to learn from).
pub fn affinity_loss(a: &Tensor, t: &PairTargets) -> Result<Option<Tensor>> {
    const EPS: f64 = 1e-5;
    let (nb, nf, nn) = t.counts();
    if nb + nf + nn == 0 {
        return Ok(None);
    }
    let dev: Device = a.device();
    let mask = |v: &[f32]| -> Result<Tensor> {
        Ok(Tensor::from_vec(v.to_vec(), t.dims, dev)?.to_dtype(a.dtype()))
    };
    let mut total: Option<Tensor> = None;
    let pos = a.add_scalar(EPS).log();
    let negl = a.neg().add_scalar(1.0 + EPS).log();
    for (v, n, logp, w) in [
        (&t.bg, nb, &pos, 0.25),
        (&t.fg, nf, &pos, 0.25),
        (&t.neg, nn, &negl, 0.5),
    ] {
        if n == 0 {
            continue;
        }
        let term = logp.mul(&mask(v)?)?.sum_all()?.mul_scalar(-w / n as f64);
        total = Some(match total {
            Some(s) => s.add(&term)?,
            None => term,
        });
    }
    Ok(total)
}

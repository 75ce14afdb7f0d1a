//! Training-mode batch norm over (N, H·W) per channel, with the ReLU that follows it in the
//! backbones fused in (one pass over the activations instead of two, forward and backward).
//! Sums run in independent accumulators of the storage's precision over one plane (so they
//! vectorise) and in f64 across planes; the per-element passes apply per-channel coefficients.
use super::elementwise::relu;
use super::reduce::{lane_sum, LANES};
use crate::backend::BatchNormGeom;
use crate::tensor::Float;
use rayon::prelude::*;

/// Σ f(x, d) over two rows, as [`lane_sum`] with two totals.
#[inline]
fn lane_sum2<T: Float>(xs: &[T], ds: &[T], f: impl Fn(T, T) -> (T, T)) -> (f64, f64) {
    let (mut a, mut b) = ([T::zero(); LANES], [T::zero(); LANES]);
    let (mut cx, mut cd) = (xs.chunks_exact(LANES), ds.chunks_exact(LANES));
    for (x, d) in (&mut cx).zip(&mut cd) {
        for l in 0..LANES {
            let (u, v) = f(x[l], d[l]);
            a[l] += u;
            b[l] += v;
        }
    }
    let (mut ta, mut tb) = (0f64, 0f64);
    for (&x, &d) in cx.remainder().iter().zip(cd.remainder()) {
        let (u, v) = f(x, d);
        ta += u.as_f64();
        tb += v.as_f64();
    }
    let total = |acc: [T; LANES]| acc.iter().map(|v| v.as_f64()).sum::<f64>();
    (total(a) + ta, total(b) + tb)
}

/// y = (x − μ_c)·invstd_c·γ_c + β_c, then max(y, 0) when `relu`. Returns (y, μ, invstd,
/// biased var).
pub fn forward<T: Float>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    g: &BatchNormGeom,
    eps: f64,
    with_relu: bool,
) -> (Vec<T>, Vec<T>, Vec<T>, Vec<T>) {
    let (n, c, hw) = (g.n, g.c, g.hw);
    let cnt = (n * hw) as f64;
    let rows = |ch: usize| (0..n).map(move |i| &x[(i * c + ch) * hw..][..hw]);
    let stats: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let mean = rows(ch).map(|r| lane_sum(r, |v| v)).sum::<f64>() / cnt;
            let m = T::of(mean);
            let var = rows(ch)
                .map(|r| lane_sum(r, |v| (v - m) * (v - m)))
                .sum::<f64>()
                / cnt;
            (mean, var)
        })
        .collect();
    // y = x·scale + shift per channel
    let coef: Vec<(T, T)> = stats
        .iter()
        .enumerate()
        .map(|(ch, &(mean, var))| {
            let s = gamma[ch].as_f64() / (var + eps).sqrt();
            (T::of(s), T::of(beta[ch].as_f64() - mean * s))
        })
        .collect();
    let y = super::written_by_planes(x.len(), hw, |p, out| {
        let (s, b) = coef[p % c];
        let src = &x[p * hw..(p + 1) * hw];
        if with_relu {
            for (o, &v) in out.iter_mut().zip(src) {
                o.write(relu(v * s + b));
            }
        } else {
            for (o, &v) in out.iter_mut().zip(src) {
                o.write(v * s + b);
            }
        }
    });
    let mean = stats.iter().map(|s| T::of(s.0)).collect();
    let invstd = stats
        .iter()
        .map(|s| T::of(1.0 / (s.1 + eps).sqrt()))
        .collect();
    let var = stats.iter().map(|s| T::of(s.1)).collect();
    (y, mean, invstd, var)
}

/// dx = γ·invstd/M·(M·dy − Σdy − x̂·Σ(dy·x̂)); dγ = Σ dy·x̂; dβ = Σ dy; with dy first zeroed
/// where the forward's output `relu_out` is not > 0 when the forward applied a ReLU.
/// Three passes: the (masked) dy into dx's memory, the per-channel sums over it, then dx in
/// place from it.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Float>(
    x: &[T],
    dy: &[T],
    gamma: &[T],
    mean: &[T],
    invstd: &[T],
    relu_out: Option<&[T]>,
    g: &BatchNormGeom,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (n, c, hw) = (g.n, g.c, g.hw);
    let cnt = (n * hw) as f64;
    let mut dx = super::written_by_planes(x.len(), hw, |p, out| {
        let d = &dy[p * hw..(p + 1) * hw];
        match relu_out {
            Some(y) => {
                for ((o, &dv), &yv) in out.iter_mut().zip(d).zip(&y[p * hw..(p + 1) * hw]) {
                    o.write(if yv > T::zero() { dv } else { T::zero() });
                }
            }
            None => {
                for (o, &dv) in out.iter_mut().zip(d) {
                    o.write(dv);
                }
            }
        }
    });
    let dym = &dx;
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (m, inv) = (mean[ch], invstd[ch]);
            let (mut sd, mut sdx) = (0f64, 0f64);
            for i in 0..n {
                let p = i * c + ch;
                let r = p * hw..(p + 1) * hw;
                let (a, b) = lane_sum2(&x[r.clone()], &dym[r], |xv, dv| (dv, dv * (xv - m) * inv));
                sd += a;
                sdx += b;
            }
            (sd, sdx)
        })
        .collect();
    // dx = A·dy + B·x + C per channel
    let coef: Vec<(T, T, T)> = (0..c)
        .map(|ch| {
            let (m, inv, gm) = (mean[ch].as_f64(), invstd[ch].as_f64(), gamma[ch].as_f64());
            let (sd, sdx) = sums[ch];
            let a = gm * inv;
            let b = -gm * inv * inv * sdx / cnt;
            (T::of(a), T::of(b), T::of(-a * sd / cnt - b * m))
        })
        .collect();
    super::for_each_plane(&mut dx, hw, |p, out| {
        let (a, b, k) = coef[p % c];
        for (o, &xv) in out.iter_mut().zip(&x[p * hw..(p + 1) * hw]) {
            *o = a * *o + b * xv + k;
        }
    });
    let dgamma = sums.iter().map(|s| T::of(s.1)).collect();
    let dbeta = sums.iter().map(|s| T::of(s.0)).collect();
    (dx, dgamma, dbeta)
}

impl crate::backend::NormOps for super::CpuStorage {
    fn batch_norm_train(
        &self,
        gamma: &Self,
        beta: &Self,
        g: &BatchNormGeom,
        eps: f64,
        relu: bool,
    ) -> (Self, Self, Self, Self) {
        super::with_dtype!(self.dtype(), {
            let (y, m, i, v) = forward(
                self.slice::<T>(),
                gamma.slice::<T>(),
                beta.slice::<T>(),
                g,
                eps,
                relu,
            );
            (
                Self::from_vec(y),
                Self::from_vec(m),
                Self::from_vec(i),
                Self::from_vec(v),
            )
        })
    }
    fn batch_norm_backward(
        &self,
        dy: &Self,
        gamma: &Self,
        mean: &Self,
        invstd: &Self,
        relu_out: Option<&Self>,
        g: &BatchNormGeom,
    ) -> (Self, Self, Self) {
        super::with_dtype!(self.dtype(), {
            let (dx, dg, db) = super::profile::timed_as(
                || format!("batch_norm_backward {}×{}×{}", g.n, g.c, g.hw),
                || {
                    backward(
                        self.slice::<T>(),
                        dy.slice::<T>(),
                        gamma.slice::<T>(),
                        mean.slice::<T>(),
                        invstd.slice::<T>(),
                        relu_out.map(|y| y.slice::<T>()),
                        g,
                    )
                },
            );
            (Self::from_vec(dx), Self::from_vec(dg), Self::from_vec(db))
        })
    }
}

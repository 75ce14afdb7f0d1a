//! Training-mode batch norm over (N, H·W) per channel, with the ReLU that follows it in the
//! backbones fused in (one pass over the activations instead of two, forward and backward).
//! Sums run in independent accumulators of the storage's precision over one plane (so they
//! vectorise) and in f64 across planes; the per-element passes apply per-channel coefficients.
//! Each channel is one task that reads its planes for the statistics and writes its outputs
//! right after, while they are still in the core's cache.
use super::elementwise::relu;
use super::reduce::{lane_sum, LANES};
use crate::backend::BatchNormGeom;
use crate::tensor::Float;
use rayon::prelude::*;
use std::mem::MaybeUninit;

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

/// The output's base pointer, shared by tasks that write disjoint planes.
struct Planes<T>(*mut MaybeUninit<T>);
// SAFETY: the tasks that share it write disjoint planes (see `per_channel`).
unsafe impl<T: Send> Sync for Planes<T> {}
impl<T> Planes<T> {
    fn base(&self) -> *mut MaybeUninit<T> {
        self.0
    }
}

/// A vector laid out like the activations (N, C, H·W) and one result per channel, from
/// `task(channel, that channel's N output planes)`, the channels in parallel. One task reads
/// and writes one channel's planes while they are in cache: the statistics pass and the
/// element-wise pass over a channel follow each other, instead of two passes over the
/// whole tensor. `task` must write every element of its planes.
fn per_channel<T: Float, R: Send>(
    g: &BatchNormGeom,
    task: impl Fn(usize, Vec<&mut [MaybeUninit<T>]>) -> R + Sync,
) -> (Vec<T>, Vec<R>) {
    let (n, c, hw) = (g.n, g.c, g.hw);
    let len = n * c * hw;
    let mut v: Vec<T> = Vec::with_capacity(len);
    let planes = Planes(v.spare_capacity_mut().as_mut_ptr());
    let results = (0..c)
        .into_par_iter()
        .map(|ch| {
            let outs = (0..n)
                // SAFETY: plane i·C + ch lies inside the capacity, and no other channel's
                // task touches it.
                .map(|i| unsafe {
                    std::slice::from_raw_parts_mut(planes.base().add((i * c + ch) * hw), hw)
                })
                .collect();
            task(ch, outs)
        })
        .collect();
    // SAFETY: the channels' planes cover all `len` elements and every task writes its own.
    unsafe { v.set_len(len) };
    (v, results)
}

/// The forward's y = x·scale + shift per channel, from the statistics as stored (μ and
/// invstd rounded to T): the backward recomputes the ReLU's mask from x with the same bits.
#[inline]
fn coefficients<T: Float>(gamma: T, beta: T, mean: T, invstd: T) -> (T, T) {
    let sc = gamma.as_f64() * invstd.as_f64();
    (T::of(sc), T::of(beta.as_f64() - mean.as_f64() * sc))
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
    let row = |i: usize, ch: usize| &x[(i * c + ch) * hw..][..hw];
    let (y, stats) = per_channel(g, |ch, outs| {
        let mean = (0..n).map(|i| lane_sum(row(i, ch), |v| v)).sum::<f64>() / cnt;
        let m = T::of(mean);
        let var = (0..n)
            .map(|i| lane_sum(row(i, ch), |v| (v - m) * (v - m)))
            .sum::<f64>()
            / cnt;
        let (s, b) = coefficients(gamma[ch], beta[ch], m, T::of(1.0 / (var + eps).sqrt()));
        for (i, out) in outs.into_iter().enumerate() {
            let src = row(i, ch);
            if with_relu {
                for (o, &v) in out.iter_mut().zip(src) {
                    o.write(relu(v * s + b));
                }
            } else {
                for (o, &v) in out.iter_mut().zip(src) {
                    o.write(v * s + b);
                }
            }
        }
        (mean, var)
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
/// where the forward's output was not > 0 when it applied a ReLU (`relu_beta`: its β, from
/// which that output's sign is recomputed).
/// Per channel: its sums, then its dx while its planes are in cache.
#[allow(clippy::too_many_arguments)]
pub fn backward<T: Float>(
    x: &[T],
    dy: &[T],
    gamma: &[T],
    mean: &[T],
    invstd: &[T],
    relu_beta: Option<&[T]>,
    g: &BatchNormGeom,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let (n, c, hw) = (g.n, g.c, g.hw);
    let cnt = (n * hw) as f64;
    let rows = |i: usize, ch: usize| (i * c + ch) * hw..(i * c + ch + 1) * hw;
    let (dx, sums) = per_channel(g, |ch, outs| {
        let (m, inv) = (mean[ch], invstd[ch]);
        // the ReLU's gradient: dy where the forward's output x·s + b was > 0
        let (s, b) = relu_beta.map_or((T::zero(), T::zero()), |beta| {
            coefficients(gamma[ch], beta[ch], m, inv)
        });
        let on = relu_beta.is_some();
        let pass = |d: T, x: T| if x * s + b > T::zero() { d } else { T::zero() };
        let (mut sd, mut sdx) = (0f64, 0f64);
        for i in 0..n {
            let r = rows(i, ch);
            let (a, b) = if on {
                lane_sum2(&x[r.clone()], &dy[r], |xv, dv| {
                    let dv = pass(dv, xv);
                    (dv, dv * (xv - m) * inv)
                })
            } else {
                lane_sum2(&x[r.clone()], &dy[r], |xv, dv| (dv, dv * (xv - m) * inv))
            };
            sd += a;
            sdx += b;
        }
        // dx = A·dy + B·x + C
        let (mf, invf, gm) = (m.as_f64(), inv.as_f64(), gamma[ch].as_f64());
        let a = gm * invf;
        let b = -gm * invf * invf * sdx / cnt;
        let (ta, tb, tk) = (T::of(a), T::of(b), T::of(-a * sd / cnt - b * mf));
        for (i, out) in outs.into_iter().enumerate() {
            let r = rows(i, ch);
            let (xs, ds) = (&x[r.clone()], &dy[r]);
            if on {
                for ((o, &xv), &dv) in out.iter_mut().zip(xs).zip(ds) {
                    o.write(ta * pass(dv, xv) + tb * xv + tk);
                }
            } else {
                for ((o, &xv), &dv) in out.iter_mut().zip(xs).zip(ds) {
                    o.write(ta * dv + tb * xv + tk);
                }
            }
        }
        (sd, sdx)
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
        relu: Option<crate::backend::FusedRelu<'_, Self>>,
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
                        relu.map(|r| r.beta.slice::<T>()),
                        g,
                    )
                },
            );
            (Self::from_vec(dx), Self::from_vec(dg), Self::from_vec(db))
        })
    }
}

//! Training-mode batch norm over (N, H·W) per channel; returns the saved statistics.
use crate::tensor::Float;
use rayon::prelude::*;

/// y = (x − μ_c)·invstd_c·γ_c + β_c. Returns (y, μ, invstd, biased var).
pub fn forward<T: Float>(
    x: &[T],
    gamma: &[T],
    beta: &[T],
    n: usize,
    c: usize,
    hw: usize,
    eps: f64,
) -> (Vec<T>, Vec<T>, Vec<T>, Vec<T>) {
    let cnt = (n * hw) as f64;
    let stats: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let mut s = 0f64;
            for i in 0..n {
                s += x[(i * c + ch) * hw..][..hw]
                    .iter()
                    .map(|v| v.as_f64())
                    .sum::<f64>();
            }
            let mean = s / cnt;
            let mut v = 0f64;
            for i in 0..n {
                v += x[(i * c + ch) * hw..][..hw]
                    .iter()
                    .map(|a| (a.as_f64() - mean).powi(2))
                    .sum::<f64>();
            }
            (mean, v / cnt)
        })
        .collect();
    let mut y = vec![T::zero(); x.len()];
    y.par_chunks_mut(hw).enumerate().for_each(|(p, out)| {
        let ch = p % c;
        let (mean, var) = stats[ch];
        let inv = 1.0 / (var + eps).sqrt();
        let (g, b) = (gamma[ch].as_f64(), beta[ch].as_f64());
        for (o, &v) in out.iter_mut().zip(&x[p * hw..(p + 1) * hw]) {
            *o = T::of((v.as_f64() - mean) * inv * g + b);
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

/// dx = γ·invstd/M·(M·dy − Σdy − x̂·Σ(dy·x̂)); dγ = Σ dy·x̂; dβ = Σ dy.
pub fn backward<T: Float>(
    x: &[T],
    dy: &[T],
    gamma: &[T],
    mean: &[T],
    invstd: &[T],
    n: usize,
    c: usize,
    hw: usize,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let cnt = (n * hw) as f64;
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (m, inv) = (mean[ch].as_f64(), invstd[ch].as_f64());
            let (mut sd, mut sdx) = (0f64, 0f64);
            for i in 0..n {
                let o = (i * c + ch) * hw;
                for k in 0..hw {
                    let g = dy[o + k].as_f64();
                    sd += g;
                    sdx += g * (x[o + k].as_f64() - m) * inv;
                }
            }
            (sd, sdx)
        })
        .collect();
    let mut dx = vec![T::zero(); x.len()];
    dx.par_chunks_mut(hw).enumerate().for_each(|(p, out)| {
        let ch = p % c;
        let (m, inv, g) = (mean[ch].as_f64(), invstd[ch].as_f64(), gamma[ch].as_f64());
        let (sd, sdx) = sums[ch];
        for (k, o) in out.iter_mut().enumerate() {
            let xh = (x[p * hw + k].as_f64() - m) * inv;
            *o = T::of(g * inv / cnt * (cnt * dy[p * hw + k].as_f64() - sd - xh * sdx));
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
        n: usize,
        c: usize,
        hw: usize,
        eps: f64,
    ) -> (Self, Self, Self, Self) {
        super::with_dtype!(self.dtype(), {
            let (y, m, i, v) = forward(
                self.slice::<T>(),
                gamma.slice::<T>(),
                beta.slice::<T>(),
                n,
                c,
                hw,
                eps,
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
        n: usize,
        c: usize,
        hw: usize,
    ) -> (Self, Self, Self) {
        super::with_dtype!(self.dtype(), {
            let (dx, dg, db) = backward(
                self.slice::<T>(),
                dy.slice::<T>(),
                gamma.slice::<T>(),
                mean.slice::<T>(),
                invstd.slice::<T>(),
                n,
                c,
                hw,
            );
            (Self::from_vec(dx), Self::from_vec(dg), Self::from_vec(db))
        })
    }
}

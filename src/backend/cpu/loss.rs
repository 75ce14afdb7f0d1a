//! Loss kernels: multilabel soft margin (mean BCE with logits) and softmax cross-entropy with
//! an ignore label. Forward returns the scalar; backward returns d(loss)/d(logits)·g.
use super::elementwise::sigmoid;
use crate::tensor::Float;
use rayon::prelude::*;

/// −[y·log σ(x) + (1−y)·log σ(−x)] = max(x,0) − x·y + log(1 + e^{−|x|}), stable for any x.
fn bce<T: Float>(x: T, y: T) -> f64 {
    let (x, y) = (x.as_f64(), y.as_f64());
    x.max(0.0) - x * y + (-x.abs()).exp().ln_1p()
}

pub fn bce_logits_mean<T: Float>(x: &[T], y: &[T]) -> T {
    let s: f64 = x.iter().zip(y).map(|(&a, &b)| bce(a, b)).sum();
    T::of(s / x.len() as f64)
}

pub fn bce_logits_mean_backward<T: Float>(x: &[T], y: &[T], g: T) -> Vec<T> {
    let scale = g / T::of(x.len() as f64);
    x.iter()
        .zip(y)
        .map(|(&a, &b)| (sigmoid(a) - b) * scale)
        .collect()
}

/// Returns (Σ −log softmax[label] over counted pixels, count). logits (B,K,HW), labels (B,HW).
/// A label outside 0..K that is not `ignore` is an error (the caller names the tensor).
pub fn cross_entropy<T: Float>(
    x: &[T],
    labels: &[T],
    b: usize,
    k: usize,
    hw: usize,
    ignore: usize,
) -> Result<(f64, usize), f64> {
    let per_image: Vec<Result<(f64, usize), f64>> = (0..b)
        .into_par_iter()
        .map(|i| {
            let (mut s, mut n) = (0f64, 0usize);
            for p in 0..hw {
                let lab = labels[i * hw + p].as_f64();
                if lab as usize == ignore && lab >= 0.0 {
                    continue;
                }
                if lab < 0.0 || lab as usize >= k || lab.fract() != 0.0 {
                    return Err(lab);
                }
                let at = |c: usize| x[(i * k + c) * hw + p].as_f64();
                let mx = (0..k).map(at).fold(f64::NEG_INFINITY, f64::max);
                let lse = (0..k).map(|c| (at(c) - mx).exp()).sum::<f64>().ln() + mx;
                s += lse - at(lab as usize);
                n += 1;
            }
            Ok((s, n))
        })
        .collect();
    let mut tot = (0f64, 0usize);
    for r in per_image {
        let (s, n) = r?;
        tot.0 += s;
        tot.1 += n;
    }
    Ok(tot)
}

/// d/dx of the mean CE: (softmax − onehot)·g/count at counted pixels, 0 at ignored ones.
pub fn cross_entropy_backward<T: Float>(
    x: &[T],
    labels: &[T],
    _b: usize,
    k: usize,
    hw: usize,
    ignore: usize,
    count: usize,
    g: T,
) -> Vec<T> {
    let mut dx = vec![T::zero(); x.len()];
    if count == 0 {
        return dx;
    }
    let scale = g.as_f64() / count as f64;
    dx.par_chunks_mut(k * hw).enumerate().for_each(|(i, d)| {
        // each class's exp once per pixel, kept for the probabilities (not computed twice)
        let mut e = vec![0f64; k];
        for p in 0..hw {
            let lab = labels[i * hw + p].as_f64() as usize;
            if lab == ignore {
                continue;
            }
            let at = |c: usize| x[(i * k + c) * hw + p].as_f64();
            let mx = (0..k).map(at).fold(f64::NEG_INFINITY, f64::max);
            for (c, ec) in e.iter_mut().enumerate() {
                *ec = (at(c) - mx).exp();
            }
            let z: f64 = e.iter().sum();
            for c in 0..k {
                let pr = e[c] / z;
                let t = if c == lab { 1.0 } else { 0.0 };
                d[c * hw + p] = T::of((pr - t) * scale);
            }
        }
    });
    dx
}

impl crate::backend::LossOps for super::CpuStorage {
    fn bce_logits_mean(&self, target: &Self) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(vec![bce_logits_mean(
                self.slice::<T>(),
                target.slice::<T>(),
            )])
        })
    }
    fn bce_logits_mean_backward(&self, target: &Self, g: &Self) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(bce_logits_mean_backward(
                self.slice::<T>(),
                target.slice::<T>(),
                g.slice::<T>()[0],
            ))
        })
    }
    fn cross_entropy(
        &self,
        labels: &Self,
        g: &crate::backend::CrossEntropyGeom,
    ) -> std::result::Result<(f64, usize), f64> {
        super::with_dtype!(self.dtype(), {
            cross_entropy(
                self.slice::<T>(),
                labels.slice::<T>(),
                g.b,
                g.k,
                g.hw,
                g.ignore,
            )
        })
    }
    fn cross_entropy_backward(
        &self,
        labels: &Self,
        g: &crate::backend::CrossEntropyGeom,
        count: usize,
        grad: &Self,
    ) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(cross_entropy_backward(
                self.slice::<T>(),
                labels.slice::<T>(),
                g.b,
                g.k,
                g.hw,
                g.ignore,
                count,
                grad.slice::<T>()[0],
            ))
        })
    }
}

//! Sum over a set of axes (keepdim layout). Each contiguous run is summed in independent
//! accumulators of the storage's precision (vectorised), the runs in f64.
use crate::tensor::{Float, Shape};
use rayon::prelude::*;

/// Independent accumulators per sum: enough to keep the adds vectorised and pipelined.
pub(crate) const LANES: usize = 8;

/// Σ f(x) over a row: `LANES` independent accumulators in the storage's precision (one row is
/// at most an image plane), the row's total in f64.
#[inline]
pub(crate) fn lane_sum<T: Float>(xs: &[T], f: impl Fn(T) -> T) -> f64 {
    let mut acc = [T::zero(); LANES];
    let mut chunks = xs.chunks_exact(LANES);
    for ch in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(ch) {
            *a += f(v);
        }
    }
    let tail: f64 = chunks.remainder().iter().map(|&v| f(v).as_f64()).sum();
    acc.iter().map(|a| a.as_f64()).sum::<f64>() + tail
}

/// Adjacent axes that are both reduced or both kept merge into one (contiguous layout), so
/// e.g. a conv bias gradient, (N,C,H,W) summed over (0,2,3), becomes [N | C | H·W]:
/// reduced-kept-reduced with a contiguous inner run.
fn merged(dims: &[usize], axes: &[usize]) -> Vec<(usize, bool)> {
    let mut out: Vec<(usize, bool)> = Vec::new();
    for (a, &d) in dims.iter().enumerate() {
        if d == 1 {
            continue; // size-1 axes change nothing
        }
        let red = axes.contains(&a);
        match out.last_mut() {
            Some((n, r)) if *r == red => *n *= d,
            _ => out.push((d, red)),
        }
    }
    out
}

pub fn sum_axes<T: Float>(x: &[T], shape: &Shape, axes: &[usize]) -> Vec<T> {
    let groups = merged(shape.dims(), axes);
    // strides of the merged groups (row-major)
    let mut strides = vec![1usize; groups.len()];
    for i in (0..groups.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * groups[i + 1].0;
    }
    let kept: Vec<(usize, usize)> = groups
        .iter()
        .zip(&strides)
        .filter(|((_, r), _)| !*r)
        .map(|((n, _), &s)| (*n, s))
        .collect();
    let red: Vec<(usize, usize)> = groups
        .iter()
        .zip(&strides)
        .filter(|((_, r), _)| *r)
        .map(|((n, _), &s)| (*n, s))
        .collect();
    let n_out: usize = kept.iter().map(|k| k.0).product();
    let red_count: usize = red.iter().map(|r| r.0).product();
    // the innermost reduced group, when contiguous, is summed as a slice
    let (inner, outer): (usize, &[(usize, usize)]) = match red.last() {
        Some(&(n, 1)) => (n, &red[..red.len() - 1]),
        _ => (1, &red[..]),
    };
    let outer_count: usize = outer.iter().map(|r| r.0).product();
    let one = |o: usize| -> T {
        let mut rem = o;
        let mut base = 0;
        for &(n, s) in kept.iter().rev() {
            base += (rem % n) * s;
            rem /= n;
        }
        let mut acc = 0f64;
        for j in 0..outer_count {
            let (mut rem, mut off) = (j, base);
            for &(n, s) in outer.iter().rev() {
                off += (rem % n) * s;
                rem /= n;
            }
            acc += lane_sum(&x[off..off + inner], |v| v);
        }
        T::of(acc)
    };
    if n_out * red_count >= super::elementwise::PAR_MIN {
        (0..n_out).into_par_iter().map(one).collect()
    } else {
        (0..n_out).map(one).collect()
    }
}

impl crate::backend::ReduceOps for super::CpuStorage {
    fn sum_axes(&self, shape: &Shape, axes: &[usize]) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(sum_axes(self.slice::<T>(), shape, axes))
        })
    }
}

//! Softmax along one axis of a tensor viewed as (outer, len, inner), and its backward.
use crate::tensor::Float;
use rayon::prelude::*;

pub fn softmax<T: Float>(x: &[T], outer: usize, len: usize, inner: usize) -> Vec<T> {
    let mut y = x.to_vec();
    let block = len * inner;
    if block == 0 {
        return y;
    }
    let f = |blk: &mut [T]| {
        for i in 0..inner {
            let mut mx = T::neg_infinity();
            for l in 0..len {
                mx = mx.max(blk[l * inner + i]);
            }
            let mut s = T::zero();
            for l in 0..len {
                let e = (blk[l * inner + i] - mx).exp();
                blk[l * inner + i] = e;
                s += e;
            }
            let inv = T::one() / s;
            for l in 0..len {
                blk[l * inner + i] *= inv;
            }
        }
    };
    if outer > 1 && outer * block >= super::elementwise::PAR_MIN {
        y.par_chunks_mut(block).for_each(f);
    } else {
        y.chunks_mut(block).for_each(f);
    }
    y
}

/// dx = y ⊙ (dy − Σ_axis dy⊙y)
pub fn softmax_backward<T: Float>(
    y: &[T],
    dy: &[T],
    outer: usize,
    len: usize,
    inner: usize,
) -> Vec<T> {
    let block = len * inner;
    let mut dx = vec![T::zero(); y.len()];
    if block == 0 {
        return dx;
    }
    let f = |(o, dblk): (usize, &mut [T])| {
        let yb = &y[o * block..(o + 1) * block];
        let gb = &dy[o * block..(o + 1) * block];
        for i in 0..inner {
            let mut dot = T::zero();
            for l in 0..len {
                dot += yb[l * inner + i] * gb[l * inner + i];
            }
            for l in 0..len {
                let k = l * inner + i;
                dblk[k] = yb[k] * (gb[k] - dot);
            }
        }
    };
    if outer > 1 && outer * block >= super::elementwise::PAR_MIN {
        dx.par_chunks_mut(block).enumerate().for_each(f);
    } else {
        dx.chunks_mut(block).enumerate().for_each(f);
    }
    dx
}

impl crate::backend::SoftmaxOps for super::CpuStorage {
    fn softmax(&self, outer: usize, len: usize, inner: usize) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(softmax(self.slice::<T>(), outer, len, inner))
        })
    }
    fn softmax_backward(&self, dy: &Self, outer: usize, len: usize, inner: usize) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(softmax_backward(
                self.slice::<T>(),
                dy.slice::<T>(),
                outer,
                len,
                inner,
            ))
        })
    }
}

//! Copies that move data between layouts: permute, narrow, concat, flip.
use crate::tensor::{Float, Shape};

pub fn permute<T: Float>(x: &[T], shape: &Shape, perm: &[usize]) -> Vec<T> {
    let dims = shape.dims();
    let st = shape.strides();
    let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
    let src_st: Vec<usize> = perm.iter().map(|&p| st[p]).collect();
    let n = shape.numel();
    let mut out = Vec::with_capacity(n);
    let mut idx = vec![0usize; dims.len()];
    let mut off = 0usize;
    for _ in 0..n {
        out.push(x[off]);
        for k in (0..idx.len()).rev() {
            idx[k] += 1;
            off += src_st[k];
            if idx[k] < out_dims[k] {
                break;
            }
            off -= src_st[k] * idx[k];
            idx[k] = 0;
        }
    }
    out
}

/// Elements [start, start+len) along `axis`.
pub fn narrow<T: Float>(x: &[T], shape: &Shape, axis: usize, start: usize, len: usize) -> Vec<T> {
    let (outer, alen, inner) = shape.split_at_axis(axis);
    let mut out = Vec::with_capacity(outer * len * inner);
    for o in 0..outer {
        out.extend_from_slice(&x[(o * alen + start) * inner..(o * alen + start + len) * inner]);
    }
    out
}

/// Join along `axis`; every part has the same dims except on `axis`.
pub fn concat<T: Float>(parts: &[(&[T], &Shape)], axis: usize) -> Vec<T> {
    let (outer, _, inner) = parts[0].1.split_at_axis(axis);
    let total: usize = parts.iter().map(|(d, _)| d.len()).sum();
    let mut out = Vec::with_capacity(total);
    for o in 0..outer {
        for (d, s) in parts {
            let l = s.dim(axis) * inner;
            out.extend_from_slice(&d[o * l..(o + 1) * l]);
        }
    }
    out
}

pub fn flip<T: Float>(x: &[T], shape: &Shape, axis: usize) -> Vec<T> {
    let (outer, alen, inner) = shape.split_at_axis(axis);
    let mut out = Vec::with_capacity(x.len());
    for o in 0..outer {
        for a in (0..alen).rev() {
            out.extend_from_slice(&x[(o * alen + a) * inner..(o * alen + a + 1) * inner]);
        }
    }
    out
}

impl crate::backend::LayoutOps for super::CpuStorage {
    fn permute(&self, shape: &Shape, perm: &[usize]) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(permute(self.slice::<T>(), shape, perm))
        })
    }
    fn narrow(&self, shape: &Shape, axis: usize, start: usize, len: usize) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(narrow(self.slice::<T>(), shape, axis, start, len))
        })
    }
    fn concat(parts: &[(&Self, &Shape)], axis: usize) -> Self {
        super::with_dtype!(parts[0].0.dtype(), {
            let p: Vec<(&[T], &Shape)> =
                parts.iter().map(|(s, sh)| (s.slice::<T>(), *sh)).collect();
            Self::from_vec(concat(&p, axis))
        })
    }
    fn flip(&self, shape: &Shape, axis: usize) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(flip(self.slice::<T>(), shape, axis))
        })
    }
}

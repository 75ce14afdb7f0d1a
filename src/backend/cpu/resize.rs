//! Bilinear resize with align_corners = false (PyTorch's convention), forward and backward.
use crate::tensor::Float;
use rayon::prelude::*;

/// For each output index: (i0, i1, w0, w1) with src = (dst + 0.5)·in/out − 0.5 clamped at 0.
pub(crate) fn taps(out_len: usize, in_len: usize) -> Vec<(usize, usize, f64, f64)> {
    let scale = in_len as f64 / out_len as f64;
    (0..out_len)
        .map(|o| {
            let src = ((o as f64 + 0.5) * scale - 0.5).max(0.0);
            let i0 = (src.floor() as usize).min(in_len - 1);
            let i1 = if i0 < in_len - 1 { i0 + 1 } else { i0 };
            let l1 = src - i0 as f64;
            (i0, i1, 1.0 - l1, l1)
        })
        .collect()
}

pub fn forward<T: Float>(
    x: &[T],
    planes: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
) -> Vec<T> {
    let (ty, tx) = (taps(ho, h), taps(wo, w));
    let mut out = vec![T::zero(); planes * ho * wo];
    let f = |(p, o): (usize, &mut [T])| {
        let xp = &x[p * h * w..(p + 1) * h * w];
        for (oy, &(y0, y1, wy0, wy1)) in ty.iter().enumerate() {
            for (ox, &(x0, x1, wx0, wx1)) in tx.iter().enumerate() {
                let v = wy0 * (wx0 * xp[y0 * w + x0].as_f64() + wx1 * xp[y0 * w + x1].as_f64())
                    + wy1 * (wx0 * xp[y1 * w + x0].as_f64() + wx1 * xp[y1 * w + x1].as_f64());
                o[oy * wo + ox] = T::of(v);
            }
        }
    };
    if out.len() >= super::elementwise::PAR_MIN {
        out.par_chunks_mut(ho * wo).enumerate().for_each(f);
    } else {
        out.chunks_mut(ho * wo).enumerate().for_each(f);
    }
    out
}

pub fn backward<T: Float>(
    dy: &[T],
    planes: usize,
    h: usize,
    w: usize,
    ho: usize,
    wo: usize,
) -> Vec<T> {
    let (ty, tx) = (taps(ho, h), taps(wo, w));
    let mut dx = vec![T::zero(); planes * h * w];
    let f = |(p, d): (usize, &mut [T])| {
        let g = &dy[p * ho * wo..(p + 1) * ho * wo];
        for (oy, &(y0, y1, wy0, wy1)) in ty.iter().enumerate() {
            for (ox, &(x0, x1, wx0, wx1)) in tx.iter().enumerate() {
                let v = g[oy * wo + ox];
                let t = |a: f64, b: f64| T::of(a * b) * v;
                d[y0 * w + x0] += t(wy0, wx0);
                d[y0 * w + x1] += t(wy0, wx1);
                d[y1 * w + x0] += t(wy1, wx0);
                d[y1 * w + x1] += t(wy1, wx1);
            }
        }
    };
    if dx.len() >= super::elementwise::PAR_MIN {
        dx.par_chunks_mut(h * w).enumerate().for_each(f);
    } else {
        dx.chunks_mut(h * w).enumerate().for_each(f);
    }
    dx
}

impl crate::backend::ResizeOps for super::CpuStorage {
    fn resize_bilinear(&self, g: &crate::backend::ResizeGeom) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(forward(self.slice::<T>(), g.planes, g.h, g.w, g.ho, g.wo))
        })
    }
    fn resize_bilinear_backward(&self, g: &crate::backend::ResizeGeom) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(backward(self.slice::<T>(), g.planes, g.h, g.w, g.ho, g.wo))
        })
    }
}

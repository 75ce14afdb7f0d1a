//! conv2d as im2col + GEMM, and its two backward products (col2im for the input gradient).
use super::matmul::{gemm_into, parallelism};
use crate::backend::Conv2dGeom;
use crate::tensor::Float;
use gemm::Parallelism;
use rayon::prelude::*;

/// The output columns [lo, hi) whose input column ox·s − p + kj·d lies inside [0, w).
#[inline]
fn valid_cols(wo: usize, w: usize, s: usize, p: usize, off: usize) -> (usize, usize) {
    // ix = ox·s + off − p ≥ 0  ⇔  ox ≥ ceil((p − off)/s);  ix < w  ⇔  ox < ceil((w + p − off)/s)
    let lo = if p > off { (p - off).div_ceil(s) } else { 0 };
    let hi = if w + p > off {
        (w + p - off).div_ceil(s)
    } else {
        0
    };
    (lo.min(wo), hi.min(wo).max(lo.min(wo)))
}

/// col[(c·kh + ki)·kw + kj][oy·wo + ox] = x[c][oy·sh − ph + ki·dh][ox·sw − pw + kj·dw] (0 outside).
/// Each (tap, output row) is a zero prefix, a copied (or strided) run and a zero suffix.
fn im2col<T: Float>(x: &[T], g: &Conv2dGeom, col: &mut [T]) {
    let (h, w, ho, wo) = (g.h, g.w, g.ho, g.wo);
    let hw_out = ho * wo;
    let row = |(r, dst): (usize, &mut [T])| {
        let c = r / (g.kh * g.kw);
        let ki = (r / g.kw) % g.kh;
        let kj = r % g.kw;
        let plane = &x[c * h * w..(c + 1) * h * w];
        let (lo, hi) = valid_cols(wo, w, g.sw, g.pw, kj * g.dw);
        for oy in 0..ho {
            let iy = (oy * g.sh + ki * g.dh) as isize - g.ph as isize;
            let d = &mut dst[oy * wo..(oy + 1) * wo];
            if iy < 0 || iy >= h as isize || lo >= hi {
                d.fill(T::zero());
                continue;
            }
            let src = &plane[iy as usize * w..(iy as usize + 1) * w];
            d[..lo].fill(T::zero());
            d[hi..].fill(T::zero());
            let start = lo * g.sw + kj * g.dw - g.pw;
            if g.sw == 1 {
                d[lo..hi].copy_from_slice(&src[start..start + (hi - lo)]);
            } else {
                for (k, v) in d[lo..hi].iter_mut().enumerate() {
                    *v = src[start + k * g.sw];
                }
            }
        }
    };
    if col.len() >= super::elementwise::PAR_MIN {
        col.par_chunks_mut(hw_out).enumerate().for_each(row);
    } else {
        col.chunks_mut(hw_out).enumerate().for_each(row);
    }
}

/// Scatter-add of columns back to the image; parallel over input channels (disjoint writes).
fn col2im<T: Float>(col: &[T], g: &Conv2dGeom, dx: &mut [T]) {
    let (h, w, ho, wo) = (g.h, g.w, g.ho, g.wo);
    let kk = g.kh * g.kw;
    let plane = |(c, dst): (usize, &mut [T])| {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let src = &col[((c * kk) + ki * g.kw + kj) * ho * wo..][..ho * wo];
                let (lo, hi) = valid_cols(wo, w, g.sw, g.pw, kj * g.dw);
                if lo >= hi {
                    continue;
                }
                let start = lo * g.sw + kj * g.dw - g.pw;
                for oy in 0..ho {
                    let iy = (oy * g.sh + ki * g.dh) as isize - g.ph as isize;
                    if iy < 0 || iy >= h as isize {
                        continue;
                    }
                    let drow = &mut dst[iy as usize * w..(iy as usize + 1) * w];
                    let s = &src[oy * wo + lo..oy * wo + hi];
                    if g.sw == 1 {
                        drow[start..start + s.len()]
                            .iter_mut()
                            .zip(s)
                            .for_each(|(d, v)| *d += *v);
                    } else {
                        for (k, v) in s.iter().enumerate() {
                            drow[start + k * g.sw] += *v;
                        }
                    }
                }
            }
        }
    };
    if dx.len() * kk >= super::elementwise::PAR_MIN {
        dx.par_chunks_mut(h * w).enumerate().for_each(plane);
    } else {
        dx.chunks_mut(h * w).enumerate().for_each(plane);
    }
}

/// One image per thread (each a single-threaded GEMM) whenever the batch fills the threads,
/// or the per-image problem is small; a parallel GEMM per image only for large problems
/// with fewer images than threads. Splitting one small-channel GEMM over threads costs
/// more than it saves: the tiny preset's iteration went from 284 to 227 ms (2 threads).
fn per_image_parallel(g: &Conv2dGeom) -> bool {
    g.n > 1
        && (g.n >= rayon::current_num_threads()
            || g.cout * g.ho * g.wo * g.cin * g.kh * g.kw < (1 << 22))
}

pub fn forward<T: Float>(x: &[T], wt: &[T], bias: Option<&[T]>, g: &Conv2dGeom) -> Vec<T> {
    let (ckk, hw) = (g.cin * g.kh * g.kw, g.ho * g.wo);
    let mut out = vec![T::zero(); g.n * g.cout * hw];
    let one = |(i, o): (usize, &mut [T]), par: Parallelism| {
        let mut col = vec![T::zero(); ckk * hw];
        im2col(
            &x[i * g.cin * g.h * g.w..(i + 1) * g.cin * g.h * g.w],
            g,
            &mut col,
        );
        if let Some(b) = bias {
            for (co, row) in o.chunks_mut(hw).enumerate() {
                row.fill(b[co]);
            }
        }
        gemm_into(
            o,
            wt,
            &col,
            g.cout,
            ckk,
            hw,
            false,
            false,
            bias.is_some(),
            par,
        );
    };
    if per_image_parallel(g) {
        out.par_chunks_mut(g.cout * hw)
            .enumerate()
            .for_each(|x| one(x, Parallelism::None));
    } else {
        let par = parallelism(g.cout, hw, ckk);
        out.chunks_mut(g.cout * hw)
            .enumerate()
            .for_each(|x| one(x, par));
    }
    out
}

/// dx = col2im(Wᵀ · dy) per image.
pub fn backward_input<T: Float>(dy: &[T], wt: &[T], g: &Conv2dGeom) -> Vec<T> {
    let (ckk, hw, chw) = (g.cin * g.kh * g.kw, g.ho * g.wo, g.cin * g.h * g.w);
    let mut dx = vec![T::zero(); g.n * chw];
    let one = |(i, d): (usize, &mut [T]), par: Parallelism| {
        let mut col = vec![T::zero(); ckk * hw];
        gemm_into(
            &mut col,
            wt,
            &dy[i * g.cout * hw..],
            ckk,
            g.cout,
            hw,
            true,
            false,
            false,
            par,
        );
        col2im(&col, g, d);
    };
    if per_image_parallel(g) {
        dx.par_chunks_mut(chw)
            .enumerate()
            .for_each(|x| one(x, Parallelism::None));
    } else {
        let par = parallelism(ckk, hw, g.cout);
        dx.chunks_mut(chw).enumerate().for_each(|x| one(x, par));
    }
    dx
}

/// dW = Σ_images dy · colᵀ.
pub fn backward_weight<T: Float>(dy: &[T], x: &[T], g: &Conv2dGeom) -> Vec<T> {
    let (ckk, hw, chw) = (g.cin * g.kh * g.kw, g.ho * g.wo, g.cin * g.h * g.w);
    let grad_of = |i: usize, acc: &mut [T], par: Parallelism, first: bool| {
        let mut col = vec![T::zero(); ckk * hw];
        im2col(&x[i * chw..(i + 1) * chw], g, &mut col);
        gemm_into(
            acc,
            &dy[i * g.cout * hw..],
            &col,
            g.cout,
            hw,
            ckk,
            false,
            true,
            !first,
            par,
        );
    };
    if per_image_parallel(g) {
        // Per-image gradients in parallel, summed in image order: the result does not depend
        // on how rayon split the work (resumed runs must match uninterrupted ones bit for bit).
        let parts: Vec<Vec<T>> = (0..g.n)
            .into_par_iter()
            .map(|i| {
                let mut a = vec![T::zero(); g.cout * ckk];
                grad_of(i, &mut a, Parallelism::None, true);
                a
            })
            .collect();
        let mut it = parts.into_iter();
        let mut dw = it.next().unwrap_or_else(|| vec![T::zero(); g.cout * ckk]);
        for p in it {
            dw.iter_mut().zip(&p).for_each(|(x, y)| *x += *y);
        }
        dw
    } else {
        let mut dw = vec![T::zero(); g.cout * ckk];
        let par = parallelism(g.cout, ckk, hw);
        for i in 0..g.n {
            grad_of(i, &mut dw, par, i == 0);
        }
        dw
    }
}

impl crate::backend::ConvOps for super::CpuStorage {
    fn conv2d(&self, w: &Self, bias: Option<&Self>, g: &Conv2dGeom, relu: bool) -> Self {
        super::with_dtype!(self.dtype(), {
            let b = bias.map(|b| b.slice::<T>());
            let mut y = forward(self.slice::<T>(), w.slice::<T>(), b, g);
            if relu {
                // NaN passes through, as the ReLU op and PyTorch's (max would hide it as 0)
                y.iter_mut().for_each(|v| {
                    if *v < T::default() {
                        *v = T::default()
                    }
                });
            }
            Self::from_vec(y)
        })
    }
    fn conv2d_backward_input(&self, w: &Self, g: &Conv2dGeom) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(backward_input(self.slice::<T>(), w.slice::<T>(), g))
        })
    }
    fn conv2d_backward_weight(&self, x: &Self, g: &Conv2dGeom) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(backward_weight(self.slice::<T>(), x.slice::<T>(), g))
        })
    }
}

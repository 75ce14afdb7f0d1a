//! conv2d as im2col + GEMM, and its two backward products (col2im for the input gradient): the
//! path for every convolution the direct kernels of `conv_direct` (f32, 3×3, stride 1, AVX-512)
//! do not take, and their reference in tests.
use super::conv_direct;
use super::matmul::{gemm_into, parallelism};
use super::profile::timed_as;
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

/// col[(c·kh + ki)·kw + kj][i·Ho·Wo + oy·wo + ox] = x_i[c][oy·sh − ph + ki·dh][ox·sw − pw + kj·dw]
/// (0 outside) for the `nc` images of x side by side. Each (tap, image, output row) is a zero
/// prefix, a copied (or strided) run and a zero suffix.
fn im2col<T: Float>(x: &[T], g: &Conv2dGeom, nc: usize, col: &mut [T]) {
    let (h, w, ho, wo) = (g.h, g.w, g.ho, g.wo);
    let (hw_out, chw) = (ho * wo, g.cin * h * w);
    let row = |(r, dst): (usize, &mut [T])| {
        let c = r / (g.kh * g.kw);
        let ki = (r / g.kw) % g.kh;
        let kj = r % g.kw;
        let (lo, hi) = valid_cols(wo, w, g.sw, g.pw, kj * g.dw);
        for (i, dimg) in dst.chunks_mut(hw_out).enumerate() {
            let plane = &x[i * chw + c * h * w..][..h * w];
            for oy in 0..ho {
                let iy = (oy * g.sh + ki * g.dh) as isize - g.ph as isize;
                let d = &mut dimg[oy * wo..(oy + 1) * wo];
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
        }
    };
    if col.len() >= super::elementwise::PAR_MIN {
        col.par_chunks_mut(nc * hw_out).enumerate().for_each(row);
    } else {
        col.chunks_mut(nc * hw_out).enumerate().for_each(row);
    }
}

/// d (cout × nc·Ho·Wo) = the gradients dy (NCHW) of `nc` images side by side.
fn gather<T: Float>(dy: &[T], g: &Conv2dGeom, nc: usize, d: &mut [T]) {
    let hw = g.ho * g.wo;
    for (co, r) in d.chunks_mut(nc * hw).enumerate() {
        for (i, seg) in r.chunks_mut(hw).enumerate() {
            seg.copy_from_slice(&dy[(i * g.cout + co) * hw..][..hw]);
        }
    }
}

/// Scatter-add of columns back to the image; parallel over input channels (disjoint writes).
/// One image's columns are col[r·ld + off..][..Ho·Wo] (ld = Ho·Wo and off = 0 for a column
/// matrix of its own).
fn col2im<T: Float>(col: &[T], g: &Conv2dGeom, ld: usize, off: usize, dx: &mut [T]) {
    let (h, w, ho, wo) = (g.h, g.w, g.ho, g.wo);
    let kk = g.kh * g.kw;
    let plane = |(c, dst): (usize, &mut [T])| {
        for ki in 0..g.kh {
            for kj in 0..g.kw {
                let src = &col[((c * kk) + ki * g.kw + kj) * ld + off..][..ho * wo];
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
    let (ckk, hw, chw) = (g.cin * g.kh * g.kw, g.ho * g.wo, g.cin * g.h * g.w);
    let mut out = vec![T::zero(); g.n * g.cout * hw];
    let one = |(i, o): (usize, &mut [T]), par: Parallelism| {
        super::with_scratch(ckk * hw, |col: &mut [T]| {
            im2col(&x[i * chw..(i + 1) * chw], g, 1, col);
            if let Some(b) = bias {
                for (co, row) in o.chunks_mut(hw).enumerate() {
                    row.fill(b[co]);
                }
            }
            gemm_into(
                o,
                wt,
                col,
                g.cout,
                ckk,
                hw,
                false,
                false,
                bias.is_some(),
                par,
            );
        })
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
        super::with_scratch(ckk * hw, |col: &mut [T]| {
            // written whole by the product (no accumulation)
            let dyi = &dy[i * g.cout * hw..];
            gemm_into(col, wt, dyi, ckk, g.cout, hw, true, false, false, par);
            col2im(col, g, hw, 0, d);
        })
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

/// Images per GEMM of the weight gradient: enough that the product's inner dimension
/// (images·Ho·Wo) reaches 512 on small grids (one 8×8 image gives 64, too short for the GEMM's
/// blocking to pay for its packing), but at most a quarter of the batch so that the groups
/// still spread over the threads. The forward and dx gain nothing measurable from grouping
/// (per image they are GEMMs with N = Ho·Wo and K = Cin·9 or Cout, not K = Ho·Wo). The groups
/// depend on the sizes only, and their partial sums are added in group order.
fn image_group(g: &Conv2dGeom) -> usize {
    (512usize.div_ceil(g.ho * g.wo)).min(g.n.div_ceil(4)).max(1)
}

/// dW = Σ_images dy · colᵀ: one GEMM per group of [`image_group`] images (their columns side
/// by side), the groups in parallel, their partial sums added in group order.
pub fn backward_weight<T: Float>(dy: &[T], x: &[T], g: &Conv2dGeom) -> Vec<T> {
    let (ckk, hw, chw) = (g.cin * g.kh * g.kw, g.ho * g.wo, g.cin * g.h * g.w);
    let nc = image_group(g);
    let groups: Vec<(usize, usize)> = (0..g.n).step_by(nc).map(|i| (i, nc.min(g.n - i))).collect();
    let grad_of = |(i0, k): (usize, usize), acc: &mut [T], par: Parallelism, first: bool| {
        let (lc, ld) = (ckk * k * hw, g.cout * k * hw);
        let xs = &x[i0 * chw..(i0 + k) * chw];
        let dys = &dy[i0 * g.cout * hw..(i0 + k) * g.cout * hw];
        super::with_scratch(lc + if k > 1 { ld } else { 0 }, |buf: &mut [T]| {
            let (col, d) = buf.split_at_mut(lc);
            im2col(xs, g, k, col);
            let d: &[T] = if k > 1 {
                gather(dys, g, k, d);
                d
            } else {
                dys
            };
            gemm_into(acc, d, col, g.cout, k * hw, ckk, false, true, !first, par);
        })
    };
    if groups.len() > 1 && (groups.len() >= rayon::current_num_threads() || per_image_parallel(g)) {
        // partial gradients in parallel, summed in group order: the result does not depend on
        // how rayon split the work (resumed runs must match uninterrupted ones bit for bit)
        let parts: Vec<Vec<T>> = groups
            .par_iter()
            .map(|&grp| {
                let mut a = vec![T::zero(); g.cout * ckk];
                grad_of(grp, &mut a, Parallelism::None, true);
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
        let par = parallelism(g.cout, ckk, nc * hw);
        for (j, &grp) in groups.iter().enumerate() {
            grad_of(grp, &mut dw, par, j == 0);
        }
        dw
    }
}

/// The profile's name of one conv call: the op and its sizes.
fn layer(op: &str, g: &Conv2dGeom) -> String {
    format!(
        "{op} {}→{} {}×{} at {}×{}, {} images",
        g.cin, g.cout, g.kh, g.kw, g.h, g.w, g.n
    )
}

impl crate::backend::ConvOps for super::CpuStorage {
    fn conv2d(&self, w: &Self, bias: Option<&Self>, g: &Conv2dGeom, relu: bool) -> Self {
        let mut y = timed_as(
            || layer("conv2d", g),
            || match (self, w) {
                (Self::F32(x), Self::F32(wt)) if conv_direct::for_product(g) => {
                    let b = bias.map(|b| b.slice::<f32>());
                    Self::from_vec(conv_direct::forward(x, wt, b, g))
                }
                _ => super::with_dtype!(self.dtype(), {
                    let b = bias.map(|b| b.slice::<T>());
                    Self::from_vec(forward(self.slice::<T>(), w.slice::<T>(), b, g))
                }),
            },
        );
        if relu {
            super::with_dtype!(y.dtype(), {
                y.slice_mut::<T>()
                    .iter_mut()
                    .for_each(|v| *v = super::elementwise::relu(*v));
            })
        }
        y
    }
    fn conv2d_backward_input(&self, w: &Self, g: &Conv2dGeom) -> Self {
        timed_as(
            || layer("conv2d_backward_input", g),
            || match (self, w) {
                (Self::F32(dy), Self::F32(wt)) if conv_direct::for_product(g) => {
                    Self::from_vec(conv_direct::backward_input(dy, wt, g))
                }
                _ => super::with_dtype!(self.dtype(), {
                    Self::from_vec(backward_input(self.slice::<T>(), w.slice::<T>(), g))
                }),
            },
        )
    }
    fn conv2d_backward_weight(&self, x: &Self, g: &Conv2dGeom) -> Self {
        timed_as(
            || layer("conv2d_backward_weight", g),
            || match (self, x) {
                (Self::F32(dy), Self::F32(xs)) if conv_direct::for_weight(g) => {
                    Self::from_vec(conv_direct::backward_weight(dy, xs, g))
                }
                _ => super::with_dtype!(self.dtype(), {
                    Self::from_vec(backward_weight(self.slice::<T>(), x.slice::<T>(), g))
                }),
            },
        )
    }
}

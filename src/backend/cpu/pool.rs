//! Max and average pooling (PyTorch semantics: padding, ceil_mode, count_include_pad), and
//! their backward passes. Max-pool backward recomputes the arg-max instead of storing indices,
//! so the op needs no second output on any backend.
use crate::backend::Pool2dGeom;
use crate::tensor::Float;
use rayon::prelude::*;

fn planes<T: Float>(out: &mut [T], plane: usize, f: impl Fn(usize, &mut [T]) + Sync + Send) {
    if out.len() >= super::elementwise::PAR_MIN {
        out.par_chunks_mut(plane)
            .enumerate()
            .for_each(|(p, o)| f(p, o));
    } else {
        out.chunks_mut(plane).enumerate().for_each(|(p, o)| f(p, o));
    }
}

/// Window [start, end) clipped to the input, per output index.
fn window(o: usize, k: usize, s: usize, p: usize, len: usize) -> (usize, usize) {
    let start = (o * s) as isize - p as isize;
    let end = (start + k as isize).min(len as isize);
    (start.max(0) as usize, end.max(0) as usize)
}

/// Clipped input windows of every output row and column, computed once per call.
/// [start, end) of the input window of each output row or column.
type Spans = Vec<(usize, usize)>;

fn windows(g: &Pool2dGeom) -> (Spans, Spans) {
    (
        (0..g.ho)
            .map(|o| window(o, g.kh, g.sh, g.ph, g.h))
            .collect(),
        (0..g.wo)
            .map(|o| window(o, g.kw, g.sw, g.pw, g.w))
            .collect(),
    )
}

/// Index (within the plane) of the first maximum of a window (NaN wins, as in PyTorch);
/// None when the window is empty.
#[inline]
fn argmax<T: Float>(
    x: &[T],
    w: usize,
    (y0, y1): (usize, usize),
    (x0, x1): (usize, usize),
) -> Option<usize> {
    if y0 >= y1 || x0 >= x1 {
        return None;
    }
    let mut best = y0 * w + x0;
    let mut bv = x[best];
    for iy in y0..y1 {
        for (ix, &v) in x[iy * w + x0..iy * w + x1].iter().enumerate() {
            if v > bv || (v.is_nan() && !bv.is_nan()) {
                bv = v;
                best = iy * w + x0 + ix;
            }
        }
    }
    Some(best)
}

pub fn max_forward<T: Float>(x: &[T], g: &Pool2dGeom) -> Vec<T> {
    let (wy, wx) = windows(g);
    let mut out = vec![T::zero(); g.planes * g.ho * g.wo];
    planes(&mut out, g.ho * g.wo, |p, o| {
        let xp = &x[p * g.h * g.w..(p + 1) * g.h * g.w];
        for (oy, &ry) in wy.iter().enumerate() {
            for (ox, &rx) in wx.iter().enumerate() {
                o[oy * g.wo + ox] = argmax(xp, g.w, ry, rx).map_or(T::neg_infinity(), |i| xp[i]);
            }
        }
    });
    out
}

pub fn max_backward<T: Float>(x: &[T], dy: &[T], g: &Pool2dGeom) -> Vec<T> {
    let (wy, wx) = windows(g);
    let mut dx = vec![T::zero(); g.planes * g.h * g.w];
    planes(&mut dx, g.h * g.w, |p, d| {
        let xp = &x[p * g.h * g.w..(p + 1) * g.h * g.w];
        for (oy, &ry) in wy.iter().enumerate() {
            for (ox, &rx) in wx.iter().enumerate() {
                if let Some(i) = argmax(xp, g.w, ry, rx) {
                    d[i] += dy[p * g.ho * g.wo + oy * g.wo + ox];
                }
            }
        }
    });
    dx
}

/// PyTorch's divisor with count_include_pad: the window clipped to the padded input.
fn avg_divisor(g: &Pool2dGeom, oy: usize, ox: usize) -> usize {
    let span = |o: usize, k: usize, s: usize, p: usize, len: usize| {
        let start = (o * s) as isize - p as isize;
        let end = (start + k as isize).min((len + p) as isize);
        (end - start) as usize
    };
    span(oy, g.kh, g.sh, g.ph, g.h) * span(ox, g.kw, g.sw, g.pw, g.w)
}

pub fn avg_forward<T: Float>(x: &[T], g: &Pool2dGeom) -> Vec<T> {
    let mut out = vec![T::zero(); g.planes * g.ho * g.wo];
    planes(&mut out, g.ho * g.wo, |p, o| {
        let xp = &x[p * g.h * g.w..(p + 1) * g.h * g.w];
        for oy in 0..g.ho {
            let (y0, y1) = window(oy, g.kh, g.sh, g.ph, g.h);
            for ox in 0..g.wo {
                let (x0, x1) = window(ox, g.kw, g.sw, g.pw, g.w);
                let mut s = T::zero();
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        s += xp[iy * g.w + ix];
                    }
                }
                o[oy * g.wo + ox] = s / T::of(avg_divisor(g, oy, ox) as f64);
            }
        }
    });
    out
}

pub fn avg_backward<T: Float>(dy: &[T], g: &Pool2dGeom) -> Vec<T> {
    let mut dx = vec![T::zero(); g.planes * g.h * g.w];
    planes(&mut dx, g.h * g.w, |p, d| {
        for oy in 0..g.ho {
            let (y0, y1) = window(oy, g.kh, g.sh, g.ph, g.h);
            for ox in 0..g.wo {
                let (x0, x1) = window(ox, g.kw, g.sw, g.pw, g.w);
                let v = dy[p * g.ho * g.wo + oy * g.wo + ox] / T::of(avg_divisor(g, oy, ox) as f64);
                for iy in y0..y1 {
                    for ix in x0..x1 {
                        d[iy * g.w + ix] += v;
                    }
                }
            }
        }
    });
    dx
}

impl crate::backend::PoolOps for super::CpuStorage {
    fn max_pool2d(&self, g: &Pool2dGeom) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(max_forward(self.slice::<T>(), g))
        })
    }
    fn max_pool2d_backward(&self, dy: &Self, g: &Pool2dGeom) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(max_backward(self.slice::<T>(), dy.slice::<T>(), g))
        })
    }
    fn avg_pool2d(&self, g: &Pool2dGeom) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(avg_forward(self.slice::<T>(), g))
        })
    }
    fn avg_pool2d_backward(&self, g: &Pool2dGeom) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(avg_backward(self.slice::<T>(), g))
        })
    }
}

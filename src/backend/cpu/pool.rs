//! Max and average pooling (PyTorch semantics: padding, ceil_mode, count_include_pad), and
//! their backward passes. Max-pool backward recomputes the arg-max instead of storing indices,
//! so the op needs no second output on any backend.
use crate::backend::Pool2dGeom;
use crate::tensor::Float;

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

/// The maximum of a window (NaN if any value is); −∞ when the window is empty.
#[inline]
fn window_max<T: Float>(
    x: &[T],
    w: usize,
    (y0, y1): (usize, usize),
    (x0, x1): (usize, usize),
) -> T {
    let mut m = T::neg_infinity();
    for iy in y0..y1 {
        for &v in &x[iy * w + x0..iy * w + x1] {
            m = nanmax(v, m);
        }
    }
    m
}

/// Index (within the plane) of the first maximum of a window in row-major order (NaN wins,
/// as in PyTorch): the first value equal to the window's maximum. None when it is empty.
/// One pass: a later value replaces the best only if it is larger, or NaN while the best
/// is not (so the first NaN, or the first of equal maxima, stays).
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
    let mut m = x[best];
    for iy in y0..y1 {
        for ix in x0..x1 {
            let i = iy * w + ix;
            let v = x[i];
            if !m.is_nan() && (v.is_nan() || v > m) {
                best = i;
                m = v;
            }
        }
    }
    Some(best)
}

/// 2×2 windows at stride 2 without padding that tile the plane exactly (the VGG pools): each
/// input pixel is in one window, so the passes need no window lists.
fn tiles_2x2(g: &Pool2dGeom) -> bool {
    (g.kh, g.kw, g.sh, g.sw, g.ph, g.pw) == (2, 2, 2, 2, 0, 0) && g.h == 2 * g.ho && g.w == 2 * g.wo
}

/// The larger of two values, NaN if either is (a select, not a branch).
#[inline]
fn nanmax<T: Float>(a: T, b: T) -> T {
    if a.is_nan() || a > b {
        a
    } else {
        b
    }
}

/// The maximum of a 2×2 window (NaN if any value is).
#[inline]
fn max4<T: Float>(v: [T; 4]) -> T {
    nanmax(nanmax(v[0], v[1]), nanmax(v[2], v[3]))
}

/// The first maximum of a 2×2 window in row-major order (NaN wins), as [`argmax`]: the first
/// value equal to the maximum, found from a bit mask (random activations made the compare
/// chain's branches mispredict).
#[inline]
fn argmax4<T: Float>(v: [T; 4]) -> usize {
    let m = max4(v);
    let hit = |x: T| (if m.is_nan() { x.is_nan() } else { x == m }) as u32;
    (hit(v[0]) | hit(v[1]) << 1 | hit(v[2]) << 2 | hit(v[3]) << 3).trailing_zeros() as usize
}

pub fn max_forward<T: Float>(x: &[T], g: &Pool2dGeom) -> Vec<T> {
    if tiles_2x2(g) {
        let mut out = vec![T::zero(); g.planes * g.ho * g.wo];
        super::for_each_plane(&mut out, g.ho * g.wo, |p, o| {
            let xp = &x[p * g.h * g.w..(p + 1) * g.h * g.w];
            // row pairs of the input against rows of the output, pixel pairs against pixels
            for (rows, orow) in xp.chunks_exact(2 * g.w).zip(o.chunks_exact_mut(g.wo)) {
                let (r0, r1) = rows.split_at(g.w);
                for ((v, a), b) in orow
                    .iter_mut()
                    .zip(r0.chunks_exact(2))
                    .zip(r1.chunks_exact(2))
                {
                    *v = max4([a[0], a[1], b[0], b[1]]);
                }
            }
        });
        return out;
    }
    let (wy, wx) = windows(g);
    let mut out = vec![T::zero(); g.planes * g.ho * g.wo];
    super::for_each_plane(&mut out, g.ho * g.wo, |p, o| {
        let xp = &x[p * g.h * g.w..(p + 1) * g.h * g.w];
        for (oy, &ry) in wy.iter().enumerate() {
            for (ox, &rx) in wx.iter().enumerate() {
                o[oy * g.wo + ox] = window_max(xp, g.w, ry, rx);
            }
        }
    });
    out
}

pub fn max_backward<T: Float>(x: &[T], dy: &[T], g: &Pool2dGeom) -> Vec<T> {
    if tiles_2x2(g) {
        // each input pixel is in one window: its gradient at the arg-max, 0 at the other three
        // (every value written: the planes tile exactly, so no zero-filled buffer first)
        return super::written_by_planes(g.planes * g.h * g.w, g.h * g.w, |p, d| {
            let xp = &x[p * g.h * g.w..(p + 1) * g.h * g.w];
            let dyp = &dy[p * g.ho * g.wo..(p + 1) * g.ho * g.wo];
            for ((rows, drows), grow) in xp
                .chunks_exact(2 * g.w)
                .zip(d.chunks_exact_mut(2 * g.w))
                .zip(dyp.chunks_exact(g.wo))
            {
                let (r0, r1) = rows.split_at(g.w);
                let (d0, d1) = drows.split_at_mut(g.w);
                for ((((a, b), da), db), &gv) in r0
                    .chunks_exact(2)
                    .zip(r1.chunks_exact(2))
                    .zip(d0.chunks_exact_mut(2))
                    .zip(d1.chunks_exact_mut(2))
                    .zip(grow)
                {
                    let k = argmax4([a[0], a[1], b[0], b[1]]);
                    let at = |i: usize| if i == k { gv } else { T::zero() };
                    da[0].write(at(0));
                    da[1].write(at(1));
                    db[0].write(at(2));
                    db[1].write(at(3));
                }
            }
        });
    }
    let (wy, wx) = windows(g);
    let mut dx = vec![T::zero(); g.planes * g.h * g.w];
    super::for_each_plane(&mut dx, g.h * g.w, |p, d| {
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
    super::for_each_plane(&mut out, g.ho * g.wo, |p, o| {
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
    super::for_each_plane(&mut dx, g.h * g.w, |p, d| {
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

/// The profile's name of one pooling call: the op and its window.
fn window_name(op: &str, g: &Pool2dGeom) -> String {
    format!(
        "{op} {}×{}/{} at {}×{}, {} planes",
        g.kh, g.kw, g.sh, g.h, g.w, g.planes
    )
}

impl crate::backend::PoolOps for super::CpuStorage {
    fn max_pool2d(&self, g: &Pool2dGeom) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(super::profile::timed_as(
                || window_name("max_pool2d", g),
                || max_forward(self.slice::<T>(), g),
            ))
        })
    }
    fn max_pool2d_backward(&self, dy: &Self, g: &Pool2dGeom) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(super::profile::timed_as(
                || window_name("max_pool2d_backward", g),
                || max_backward(self.slice::<T>(), dy.slice::<T>(), g),
            ))
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

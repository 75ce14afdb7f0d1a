//! Every op of the backend interface on the GPU (f32), each calling the kernels of
//! `kernels/<family>.cu` or cuBLAS. The CPU backend (`backend/cpu`) is the reference each one
//! is tested against (tests/cuda_parity.rs).
use super::alloc::DeviceBuffer;
use super::gemm::{gemm, gm};
use super::runtime::{arg, rt};
use crate::backend::SgdHyper;
use crate::backend::{BinaryOp, Pool2dGeom, UnaryOp};
use crate::tensor::Shape;
use cudarc::driver::result;

/// A contiguous f32 tensor in device memory.
pub struct CudaStorage {
    pub(crate) buf: DeviceBuffer,
}

impl std::fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaStorage(f32 × {})", self.buf.len)
    }
}

impl Clone for CudaStorage {
    /// A device-to-device copy on the stream.
    fn clone(&self) -> Self {
        let out = CudaStorage::uninit(self.len());
        if !self.is_empty() {
            // SAFETY: both buffers hold len floats.
            unsafe {
                result::memcpy_dtod_async(out.ptr(), self.ptr(), self.len() * 4, rt().stream())
            }
            .unwrap_or_else(|e| panic!("CUDA copy: {e:?}"));
        }
        out
    }
}

impl CudaStorage {
    pub(crate) fn uninit(len: usize) -> Self {
        CudaStorage {
            buf: DeviceBuffer::uninit(len),
        }
    }
    pub fn len(&self) -> usize {
        self.buf.len
    }
    pub fn is_empty(&self) -> bool {
        self.buf.len == 0
    }
    /// Device address of the first value.
    pub(crate) fn ptr(&self) -> u64 {
        self.buf.ptr
    }
    pub(crate) fn zeros(len: usize) -> Self {
        let s = Self::uninit(len);
        if len > 0 {
            // SAFETY: a live buffer of len floats.
            unsafe { result::memset_d8_async(s.ptr(), 0, len * 4, rt().stream()) }
                .unwrap_or_else(|e| panic!("CUDA memset: {e:?}"));
        }
        s
    }
    pub(crate) fn full(len: usize, v: f32) -> Self {
        if v == 0.0 {
            return Self::zeros(len);
        }
        let s = Self::uninit(len);
        let (p, n) = (s.ptr(), len as i64);
        rt().launch_n("elementwise.cu", "fill", len, &[arg(&p), arg(&v), arg(&n)]);
        s
    }
    pub(crate) fn from_host(v: &[f32]) -> Self {
        let s = Self::uninit(v.len());
        if !v.is_empty() {
            // SAFETY: the buffer holds v.len() floats; a pageable source is staged by the
            // driver before the call returns.
            unsafe { result::memcpy_htod_async(s.ptr(), v, rt().stream()) }
                .unwrap_or_else(|e| panic!("CUDA upload: {e:?}"));
        }
        s
    }
    pub(crate) fn to_host(&self) -> Vec<f32> {
        let mut v = vec![0f32; self.len()];
        if !v.is_empty() {
            let r = rt();
            // SAFETY: v holds len floats; the stream is synchronised before v is read.
            unsafe { result::memcpy_dtoh_async(&mut v, self.ptr(), r.stream()) }
                .unwrap_or_else(|e| panic!("CUDA download: {e:?}"));
            r.sync("download");
        }
        v
    }

    // ---------------------------------------------------------------- element-wise
    pub(crate) fn unary(&self, op: UnaryOp) -> Self {
        let out = Self::uninit(self.len());
        let (x, y, n) = (self.ptr(), out.ptr(), self.len() as i64);
        let r = rt();
        let simple = |name| {
            r.launch_n(
                "elementwise.cu",
                name,
                self.len(),
                &[arg(&x), arg(&y), arg(&n)],
            )
        };
        let affine = |mul: f64, add: f64| {
            let (m, a) = (mul as f32, add as f32);
            r.launch_n(
                "elementwise.cu",
                "affine_fwd",
                self.len(),
                &[arg(&x), arg(&y), arg(&m), arg(&a), arg(&n)],
            )
        };
        match op {
            UnaryOp::Neg => affine(-1.0, 0.0),
            UnaryOp::Relu => simple("relu_fwd"),
            UnaryOp::Sigmoid => simple("sigmoid_fwd"),
            UnaryOp::Exp => simple("exp_fwd"),
            UnaryOp::Log => simple("log_fwd"),
            UnaryOp::Sqr => simple("sqr_fwd"),
            UnaryOp::Sqrt => simple("sqrt_fwd"),
            UnaryOp::Recip => simple("recip_fwd"),
            UnaryOp::Abs => simple("abs_fwd"),
            UnaryOp::Affine { mul, add } => affine(mul, add),
            UnaryOp::Powf(p) => {
                let p = p as f32;
                r.launch_n(
                    "elementwise.cu",
                    "powf_fwd",
                    self.len(),
                    &[arg(&x), arg(&y), arg(&p), arg(&n)],
                )
            }
        }
        out
    }

    pub(crate) fn binary(
        &self,
        op: BinaryOp,
        sa: &Shape,
        rhs: &CudaStorage,
        sb: &Shape,
        out: &Shape,
    ) -> Self {
        let name = match op {
            BinaryOp::Add => "add_fwd",
            BinaryOp::Sub => "sub_fwd",
            BinaryOp::Mul => "mul_fwd",
            BinaryOp::Div => "div_fwd",
            BinaryOp::Maximum => "maximum_fwd",
            BinaryOp::Minimum => "minimum_fwd",
            BinaryOp::ReluGrad => "relu_grad",
            BinaryOp::SigmoidGrad => "sigmoid_grad",
        };
        let o = Self::uninit(out.numel());
        let bc = Bcast::new(sa, sb, out);
        let (a, b, y, n) = (self.ptr(), rhs.ptr(), o.ptr(), out.numel() as i64);
        rt().launch_n(
            "elementwise.cu",
            name,
            out.numel(),
            &[arg(&a), arg(&b), arg(&y), arg(&bc), arg(&n)],
        );
        o
    }

    // ---------------------------------------------------------------- reductions
    pub(crate) fn sum_axes(&self, shape: &Shape, axes: &[usize]) -> Self {
        // Reduce one maximal run of adjacent reduced axes at a time, as an (outer, len, inner)
        // view; the dims of a reduced run become 1.
        let mut dims = shape.dims().to_vec();
        let mut red: Vec<bool> = (0..dims.len()).map(|i| axes.contains(&i)).collect();
        let mut cur: Option<CudaStorage> = None;
        while let Some(start) = (0..dims.len()).find(|&i| red[i] && dims[i] > 1) {
            let mut end = start;
            while end + 1 < dims.len() && red[end + 1] {
                end += 1;
            }
            let outer: usize = dims[..start].iter().product();
            let len: usize = dims[start..=end].iter().product();
            let inner: usize = dims[end + 1..].iter().product();
            let src = cur.as_ref().unwrap_or(self);
            cur = Some(sum_middle(src, outer, len, inner));
            for i in start..=end {
                dims[i] = 1;
                red[i] = false;
            }
        }
        cur.unwrap_or_else(|| self.clone())
    }

    // ---------------------------------------------------------------- GEMM
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn matmul(
        &self,
        rhs: &CudaStorage,
        batch: usize,
        m: usize,
        k: usize,
        n: usize,
        ta: bool,
        tb: bool,
        a_bs: usize,
        b_bs: usize,
    ) -> Self {
        let c = Self::uninit(batch * m * n);
        gemm(
            gm(
                batch,
                m,
                n,
                k,
                self.ptr(),
                ta,
                a_bs,
                rhs.ptr(),
                tb,
                b_bs,
                c.ptr(),
            ),
            false,
        );
        c
    }

    // ---------------------------------------------------------------- softmax
    pub(crate) fn softmax(&self, outer: usize, len: usize, inner: usize) -> Self {
        if inner == 1 {
            return softmax_rows(self, None, outer, len);
        }
        let t = swap_last2(self, outer, len, inner);
        let y = softmax_rows(&t, None, outer * inner, len);
        swap_last2(&y, outer, inner, len)
    }
    /// self = y
    pub(crate) fn softmax_backward(
        &self,
        dy: &CudaStorage,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> Self {
        if inner == 1 {
            return softmax_rows(self, Some(dy), outer, len);
        }
        let (y, g) = (
            swap_last2(self, outer, len, inner),
            swap_last2(dy, outer, len, inner),
        );
        let dx = softmax_rows(&y, Some(&g), outer * inner, len);
        swap_last2(&dx, outer, inner, len)
    }

    // ---------------------------------------------------------------- pooling, resize
    pub(crate) fn max_pool2d(&self, g: &Pool2dGeom) -> Self {
        pool(self, None, g, "max_pool_fwd", g.planes * g.ho * g.wo)
    }
    /// self = x
    pub(crate) fn max_pool2d_backward(&self, dy: &CudaStorage, g: &Pool2dGeom) -> Self {
        // the windows' arg-max indices (i32 in a buffer of as many 4-byte values), then the gather
        let idx = pool(self, None, g, "max_pool_argmax", g.planes * g.ho * g.wo);
        pool(&idx, Some(dy), g, "max_pool_bwd", g.planes * g.h * g.w)
    }
    pub(crate) fn avg_pool2d(&self, g: &Pool2dGeom) -> Self {
        pool(self, None, g, "avg_pool_fwd", g.planes * g.ho * g.wo)
    }
    /// self = dy
    pub(crate) fn avg_pool2d_backward(&self, g: &Pool2dGeom) -> Self {
        pool(self, None, g, "avg_pool_bwd", g.planes * g.h * g.w)
    }
    pub(crate) fn resize_bilinear(
        &self,
        planes: usize,
        h: usize,
        w: usize,
        ho: usize,
        wo: usize,
    ) -> Self {
        let y = Self::uninit(planes * ho * wo);
        resize(self, &y, "resize_bilinear_fwd", [planes, h, w, ho, wo]);
        y
    }
    /// self = dy (planes × ho × wo); atomics into a zeroed dx
    pub(crate) fn resize_bilinear_backward(
        &self,
        planes: usize,
        h: usize,
        w: usize,
        ho: usize,
        wo: usize,
    ) -> Self {
        let dx = Self::zeros(planes * h * w);
        resize(self, &dx, "resize_bilinear_bwd", [planes, h, w, ho, wo]);
        dx
    }

    // ---------------------------------------------------------------- layout
    pub(crate) fn permute(&self, shape: &Shape, perm: &[usize]) -> Self {
        let dims = shape.dims();
        let st = shape.strides();
        let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
        let src_st: Vec<i64> = perm.iter().map(|&p| st[p] as i64).collect();
        let dst_st: Vec<i64> = Shape::new(out_dims.clone())
            .strides()
            .iter()
            .map(|&s| s as i64)
            .collect();
        let out = Self::uninit(shape.numel());
        strided_copy(self.ptr(), out.ptr(), &out_dims, &src_st, &dst_st, 0, 0);
        out
    }
    pub(crate) fn narrow(&self, shape: &Shape, axis: usize, start: usize, len: usize) -> Self {
        let (outer, alen, inner) = shape.split_at_axis(axis);
        let out = Self::uninit(outer * len * inner);
        let src = [(alen * inner) as i64, inner as i64, 1];
        let dst = [(len * inner) as i64, inner as i64, 1];
        strided_copy(
            self.ptr(),
            out.ptr(),
            &[outer, len, inner],
            &src,
            &dst,
            (start * inner) as i64,
            0,
        );
        out
    }
    pub(crate) fn concat(parts: &[(&CudaStorage, &Shape)], axis: usize) -> Self {
        let (outer, _, inner) = parts[0].1.split_at_axis(axis);
        let total_axis: usize = parts.iter().map(|(_, s)| s.dim(axis)).sum();
        let out = Self::uninit(outer * total_axis * inner);
        let mut at = 0;
        for (p, s) in parts {
            let l = s.dim(axis);
            let src = [(l * inner) as i64, inner as i64, 1];
            let dst = [(total_axis * inner) as i64, inner as i64, 1];
            strided_copy(
                p.ptr(),
                out.ptr(),
                &[outer, l, inner],
                &src,
                &dst,
                0,
                (at * inner) as i64,
            );
            at += l;
        }
        out
    }
    pub(crate) fn flip(&self, shape: &Shape, axis: usize) -> Self {
        let (outer, alen, inner) = shape.split_at_axis(axis);
        let out = Self::uninit(self.len());
        let src = [(alen * inner) as i64, -(inner as i64), 1];
        let dst = [(alen * inner) as i64, inner as i64, 1];
        let off = (alen.saturating_sub(1) * inner) as i64;
        strided_copy(
            self.ptr(),
            out.ptr(),
            &[outer, alen, inner],
            &src,
            &dst,
            off,
            0,
        );
        out
    }

    // ---------------------------------------------------------------- batch norm
    pub(crate) fn batch_norm_train(
        &self,
        gamma: &CudaStorage,
        beta: &CudaStorage,
        n: usize,
        c: usize,
        hw: usize,
        eps: f64,
    ) -> (Self, Self, Self, Self) {
        let (mean, invstd, var) = (Self::uninit(c), Self::uninit(c), Self::uninit(c));
        let (x, mp, ip, vp) = (self.ptr(), mean.ptr(), invstd.ptr(), var.ptr());
        let (n64, c64, hw64) = (n as i64, c as i64, hw as i64);
        let r = rt();
        r.launch(
            "norm.cu",
            "bn_stats",
            (c as u32, 1, 1),
            256,
            0,
            &[
                arg(&x),
                arg(&mp),
                arg(&ip),
                arg(&vp),
                arg(&n64),
                arg(&c64),
                arg(&hw64),
                arg(&eps),
            ],
        );
        let y = Self::uninit(self.len());
        let (gp, bp, yp, total) = (gamma.ptr(), beta.ptr(), y.ptr(), self.len() as i64);
        r.launch_n(
            "norm.cu",
            "bn_apply",
            self.len(),
            &[
                arg(&x),
                arg(&mp),
                arg(&ip),
                arg(&gp),
                arg(&bp),
                arg(&yp),
                arg(&c64),
                arg(&hw64),
                arg(&total),
            ],
        );
        (y, mean, invstd, var)
    }
    /// self = x; returns (dx, dγ, dβ)
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn batch_norm_backward(
        &self,
        dy: &CudaStorage,
        gamma: &CudaStorage,
        mean: &CudaStorage,
        invstd: &CudaStorage,
        n: usize,
        c: usize,
        hw: usize,
    ) -> (Self, Self, Self) {
        let (dg, db, dx) = (Self::uninit(c), Self::uninit(c), Self::uninit(self.len()));
        let (x, g, m, i) = (self.ptr(), dy.ptr(), mean.ptr(), invstd.ptr());
        let (dgp, dbp, dxp, gam) = (dg.ptr(), db.ptr(), dx.ptr(), gamma.ptr());
        let (n64, c64, hw64, total) = (n as i64, c as i64, hw as i64, self.len() as i64);
        let cnt = (n * hw) as f64;
        let r = rt();
        r.launch(
            "norm.cu",
            "bn_bwd_sums",
            (c as u32, 1, 1),
            256,
            0,
            &[
                arg(&x),
                arg(&g),
                arg(&m),
                arg(&i),
                arg(&dgp),
                arg(&dbp),
                arg(&n64),
                arg(&c64),
                arg(&hw64),
            ],
        );
        r.launch_n(
            "norm.cu",
            "bn_bwd_dx",
            self.len(),
            &[
                arg(&x),
                arg(&g),
                arg(&m),
                arg(&i),
                arg(&gam),
                arg(&dgp),
                arg(&dbp),
                arg(&dxp),
                arg(&c64),
                arg(&hw64),
                arg(&total),
                arg(&cnt),
            ],
        );
        (dx, dg, db)
    }

    // ---------------------------------------------------------------- losses
    pub(crate) fn bce_logits_mean(&self, target: &CudaStorage) -> Self {
        let terms = Self::uninit(self.len());
        let (x, t, o, n) = (self.ptr(), target.ptr(), terms.ptr(), self.len() as i64);
        rt().launch_n(
            "loss.cu",
            "bce_logits_terms",
            self.len(),
            &[arg(&x), arg(&t), arg(&o), arg(&n)],
        );
        let s = sum_rows(&terms, 1, self.len());
        s.unary(UnaryOp::Affine {
            mul: 1.0 / self.len() as f64,
            add: 0.0,
        })
    }
    pub(crate) fn bce_logits_mean_backward(&self, target: &CudaStorage, g: &CudaStorage) -> Self {
        let dx = Self::uninit(self.len());
        let (x, t, d, gp) = (self.ptr(), target.ptr(), dx.ptr(), g.ptr());
        let (inv, n) = (1.0f32 / self.len() as f32, self.len() as i64);
        rt().launch_n(
            "loss.cu",
            "bce_logits_bwd",
            self.len(),
            &[arg(&x), arg(&t), arg(&d), arg(&gp), arg(&inv), arg(&n)],
        );
        dx
    }
    pub(crate) fn cross_entropy(
        &self,
        labels: &CudaStorage,
        b: usize,
        k: usize,
        hw: usize,
        ignore: usize,
    ) -> Result<(f64, usize), f64> {
        let (loss, count, bad) = (
            Self::uninit(b * hw),
            Self::uninit(b * hw),
            Self::full(1, f32::NAN),
        );
        let (x, l, lp, cp, bp) = (self.ptr(), labels.ptr(), loss.ptr(), count.ptr(), bad.ptr());
        let (b32, k32, hw32, ig) = (b as i32, k as i32, hw as i32, ignore as i32);
        rt().launch_n(
            "loss.cu",
            "cross_entropy_terms",
            b * hw,
            &[
                arg(&x),
                arg(&l),
                arg(&lp),
                arg(&cp),
                arg(&bp),
                arg(&b32),
                arg(&k32),
                arg(&hw32),
                arg(&ig),
            ],
        );
        let bad = bad.to_host()[0];
        if !bad.is_nan() {
            return Err(bad as f64);
        }
        let s = sum_rows(&loss, 1, b * hw).to_host()[0] as f64;
        let c = sum_rows(&count, 1, b * hw).to_host()[0];
        Ok((s, c.round() as usize))
    }
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn cross_entropy_backward(
        &self,
        labels: &CudaStorage,
        b: usize,
        k: usize,
        hw: usize,
        ignore: usize,
        count: usize,
        g: &CudaStorage,
    ) -> Self {
        let dx = Self::uninit(self.len());
        let (x, l, d, gp) = (self.ptr(), labels.ptr(), dx.ptr(), g.ptr());
        let (b32, k32, hw32, ig) = (b as i32, k as i32, hw as i32, ignore as i32);
        let inv = if count == 0 {
            0.0f32
        } else {
            1.0 / count as f32
        };
        rt().launch_n(
            "loss.cu",
            "cross_entropy_bwd",
            b * hw,
            &[
                arg(&x),
                arg(&l),
                arg(&d),
                arg(&b32),
                arg(&k32),
                arg(&hw32),
                arg(&ig),
                arg(&gp),
                arg(&inv),
            ],
        );
        dx
    }

    // ---------------------------------------------------------------- optimizer
    pub(crate) fn sgd_step(
        &mut self,
        grad: &CudaStorage,
        buf: &mut CudaStorage,
        h: &SgdHyper,
        first: bool,
    ) {
        let (p, g, b) = (self.ptr(), grad.ptr(), buf.ptr());
        let (lr, mo, da, wd) = (
            h.lr as f32,
            h.momentum as f32,
            h.dampening as f32,
            h.weight_decay as f32,
        );
        let (nest, fst, n) = (h.nesterov as i32, first as i32, self.len() as i64);
        rt().launch_n(
            "sgd.cu",
            "sgd_step",
            self.len(),
            &[
                arg(&p),
                arg(&g),
                arg(&b),
                arg(&lr),
                arg(&mo),
                arg(&da),
                arg(&wd),
                arg(&nest),
                arg(&fst),
                arg(&n),
            ],
        );
    }
}

// -------------------------------------------------------------------- helpers

/// The kernels' broadcast description (elementwise.cu `Bcast`): output dims and the operands'
/// strides over at most 6 axes, after dropping size-1 axes and merging axes that stay
/// contiguous in both operands.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Bcast {
    d: [i64; BCAST_RANK],
    sa: [i64; BCAST_RANK],
    sb: [i64; BCAST_RANK],
    nd: i32,
}
const BCAST_RANK: usize = 6;

impl Bcast {
    fn new(sa: &Shape, sb: &Shape, out: &Shape) -> Bcast {
        let (a_st, b_st) = (sa.broadcast_strides(out), sb.broadcast_strides(out));
        let mut axes: Vec<(i64, i64, i64)> = Vec::new();
        for (i, &d) in out.dims().iter().enumerate() {
            if d == 1 {
                continue;
            }
            let (x, y) = (a_st[i] as i64, b_st[i] as i64);
            if let Some(last) = axes.last_mut() {
                // merge with the previous axis when both operands step through them as one
                if last.1 == x * d as i64 && last.2 == y * d as i64 {
                    *last = (last.0 * d as i64, x, y);
                    continue;
                }
            }
            axes.push((d as i64, x, y));
        }
        assert!(
            axes.len() <= BCAST_RANK,
            "CUDA binary op: broadcast {sa:?} with {sb:?} needs {} axes (at most {BCAST_RANK})",
            axes.len()
        );
        let mut bc = Bcast {
            d: [1; BCAST_RANK],
            sa: [0; BCAST_RANK],
            sb: [0; BCAST_RANK],
            nd: axes.len() as i32,
        };
        let off = BCAST_RANK - axes.len();
        for (j, (d, x, y)) in axes.into_iter().enumerate() {
            bc.d[off + j] = d;
            bc.sa[off + j] = x;
            bc.sb[off + j] = y;
        }
        bc
    }
}

/// layout.cu `Box`
#[repr(C)]
#[derive(Clone, Copy)]
struct LayoutBox {
    dims: [i64; 8],
    src_st: [i64; 8],
    dst_st: [i64; 8],
    rank: i32,
}

/// dst[dst_off + Σ i_k·dst_st_k] = src[src_off + Σ i_k·src_st_k] over the box `dims`
/// (raw device addresses: the layout ops and conv's permutes).
pub(crate) fn strided_copy(
    src: u64,
    dst: u64,
    dims: &[usize],
    src_st: &[i64],
    dst_st: &[i64],
    src_off: i64,
    dst_off: i64,
) {
    assert!(dims.len() <= 8, "CUDA layout op: rank {} > 8", dims.len());
    let mut b = LayoutBox {
        dims: [1; 8],
        src_st: [0; 8],
        dst_st: [0; 8],
        rank: dims.len() as i32,
    };
    for i in 0..dims.len() {
        b.dims[i] = dims[i] as i64;
        b.src_st[i] = src_st[i];
        b.dst_st[i] = dst_st[i];
    }
    let total: usize = dims.iter().product();
    let (s, d, t, acc) = (src, dst, total as i64, 0i32);
    rt().launch_n(
        "layout.cu",
        "strided_copy",
        total,
        &[
            arg(&s),
            arg(&d),
            arg(&b),
            arg(&src_off),
            arg(&dst_off),
            arg(&t),
            arg(&acc),
        ],
    );
}

/// (outer, a, b) → (outer, b, a), tiled through shared memory.
pub(crate) fn swap_last2(x: &CudaStorage, outer: usize, a: usize, b: usize) -> CudaStorage {
    let out = CudaStorage::uninit(x.len());
    if x.is_empty() {
        return out;
    }
    assert!(
        outer < 65_536 && a < (1 << 31) && b < (1 << 31),
        "transpose of {outer}×{a}×{b}"
    );
    let (xp, yp, rows, cols) = (x.ptr(), out.ptr(), a as i32, b as i32);
    let grid = (b.div_ceil(32) as u32, a.div_ceil(32) as u32, outer as u32);
    rt().launch_3d(
        "layout.cu",
        "transpose_tiles",
        grid,
        (32, 8, 1),
        0,
        &[arg(&xp), arg(&yp), arg(&rows), arg(&cols)],
    );
    out
}

fn sum_middle(x: &CudaStorage, outer: usize, len: usize, inner: usize) -> CudaStorage {
    if inner == 1 {
        return sum_rows(x, outer, len);
    }
    let y = CudaStorage::uninit(outer * inner);
    let (xp, yp, o, l, i) = (x.ptr(), y.ptr(), outer as i64, len as i64, inner as i64);
    rt().launch_n(
        "reduce.cu",
        "sum_middle",
        outer * inner,
        &[arg(&xp), arg(&yp), arg(&o), arg(&l), arg(&i)],
    );
    y
}

fn sum_rows(x: &CudaStorage, rows: usize, len: usize) -> CudaStorage {
    // Few long rows (a loss over a whole batch, a bias gradient of a wide layer) would leave
    // the GPU nearly idle with one block per row: sum chunks of each row first.
    const CHUNK: usize = 16_384;
    if rows < 1024 && len > 2 * CHUNK && rows < 65_536 {
        let parts = len.div_ceil(CHUNK);
        let part = CudaStorage::uninit(rows * parts);
        let (xp, pp, l, ch) = (x.ptr(), part.ptr(), len as i64, CHUNK as i64);
        rt().launch(
            "reduce.cu",
            "sum_row_chunks",
            (parts as u32, rows as u32, 1),
            256,
            0,
            &[arg(&xp), arg(&pp), arg(&l), arg(&ch)],
        );
        return sum_rows(&part, rows, parts);
    }
    let y = CudaStorage::uninit(rows);
    let (xp, yp, l) = (x.ptr(), y.ptr(), len as i64);
    // one block per row; rows beyond the grid limit are not expected (sums are over outputs)
    assert!(rows < (1 << 31), "sum_rows: {rows} rows");
    rt().launch(
        "reduce.cu",
        "sum_rows",
        (rows as u32, 1, 1),
        256,
        0,
        &[arg(&xp), arg(&yp), arg(&l)],
    );
    y
}

/// Row softmax (dy = None) or its backward (self = y, dy given) over `rows × cols`.
pub(crate) fn softmax_rows(
    x: &CudaStorage,
    dy: Option<&CudaStorage>,
    rows: usize,
    cols: usize,
) -> CudaStorage {
    let out = CudaStorage::uninit(rows * cols);
    if rows == 0 || cols == 0 {
        return out;
    }
    let threads = cols.next_power_of_two().clamp(32, 1024) as u32;
    let c32 = cols as i32;
    let (xp, op) = (x.ptr(), out.ptr());
    let r = rt();
    let grid = (rows as u32, 1, 1);
    match dy {
        None => r.launch(
            "softmax.cu",
            "softmax_fwd",
            grid,
            threads,
            threads * 4,
            &[arg(&xp), arg(&op), arg(&c32)],
        ),
        Some(g) => {
            let gp = g.ptr();
            r.launch(
                "softmax.cu",
                "softmax_bwd",
                grid,
                threads,
                threads * 4,
                &[arg(&xp), arg(&gp), arg(&op), arg(&c32)],
            )
        }
    }
    out
}

/// pool.cu `PoolGeom`
#[repr(C)]
#[derive(Clone, Copy)]
struct PoolGeomC {
    v: [i32; 11],
}

/// resize.cu's kernels: one thread per output-size pixel (planes·ho·wo) either way.
fn resize(src: &CudaStorage, dst: &CudaStorage, name: &'static str, dims: [usize; 5]) {
    let (sp, dp) = (src.ptr(), dst.ptr());
    let d = dims.map(|v| v as i32);
    rt().launch_n(
        "resize.cu",
        name,
        dims[0] * dims[3] * dims[4],
        &[
            arg(&sp),
            arg(&dp),
            arg(&d[0]),
            arg(&d[1]),
            arg(&d[2]),
            arg(&d[3]),
            arg(&d[4]),
        ],
    );
}

fn pool(
    x: &CudaStorage,
    dy: Option<&CudaStorage>,
    g: &Pool2dGeom,
    name: &'static str,
    out_len: usize,
) -> CudaStorage {
    let geom = PoolGeomC {
        v: [
            g.planes, g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.ho, g.wo,
        ]
        .map(|v| v as i32),
    };
    let out = CudaStorage::uninit(out_len);
    let (xp, op) = (x.ptr(), out.ptr());
    match dy {
        None => rt().launch_n("pool.cu", name, out_len, &[arg(&xp), arg(&op), arg(&geom)]),
        Some(d) => {
            let dp = d.ptr();
            rt().launch_n(
                "pool.cu",
                name,
                out_len,
                &[arg(&xp), arg(&dp), arg(&op), arg(&geom)],
            )
        }
    }
    out
}

//! Every op of the backend interface on the GPU (f32), each calling the kernels of
//! `kernels/<family>.cu` or cuBLAS. The CPU backend (`backend/cpu`) is the reference each one
//! is tested against (tests/cuda_parity.rs).
use super::alloc::DeviceBuffer;
use super::runtime::{arg, rt};
use crate::backend::{BinaryOp, Conv2dGeom, Pool2dGeom, UnaryOp};
use crate::optim::SgdHyper;
use crate::tensor::Shape;
use cudarc::cublas::{result as cublas_result, sys as cublas_sys};
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
    fn clone(&self) -> Self {
        let out = CudaStorage::uninit(self.len());
        copy(&out.buf, 0, &self.buf, 0, self.len());
        out
    }
}

/// dst[d_off..][..n] = src[s_off..][..n] on the stream.
fn copy(dst: &DeviceBuffer, d_off: usize, src: &DeviceBuffer, s_off: usize, n: usize) {
    if n == 0 {
        return;
    }
    let r = rt();
    // SAFETY: both ranges lie inside live buffers.
    unsafe { result::memcpy_dtod_async(dst.at(d_off), src.at(s_off), n * 4, r.stream()) }
        .unwrap_or_else(|e| panic!("CUDA copy: {e:?}"));
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
    fn p(&self) -> u64 {
        self.buf.ptr
    }
    pub(crate) fn zeros(len: usize) -> Self {
        let s = Self::uninit(len);
        if len > 0 {
            // SAFETY: a live buffer of len floats.
            unsafe { result::memset_d8_async(s.p(), 0, len * 4, rt().stream()) }
                .unwrap_or_else(|e| panic!("CUDA memset: {e:?}"));
        }
        s
    }
    pub(crate) fn full(len: usize, v: f32) -> Self {
        if v == 0.0 {
            return Self::zeros(len);
        }
        let s = Self::uninit(len);
        let (p, n) = (s.p(), len as i64);
        rt().launch_n("elementwise.cu", "fill", len, &[arg(&p), arg(&v), arg(&n)]);
        s
    }
    pub(crate) fn from_host(v: &[f32]) -> Self {
        let s = Self::uninit(v.len());
        if !v.is_empty() {
            // SAFETY: the buffer holds v.len() floats; a pageable source is staged by the
            // driver before the call returns.
            unsafe { result::memcpy_htod_async(s.p(), v, rt().stream()) }
                .unwrap_or_else(|e| panic!("CUDA upload: {e:?}"));
        }
        s
    }
    pub(crate) fn to_host(&self) -> Vec<f32> {
        let mut v = vec![0f32; self.len()];
        if !v.is_empty() {
            let r = rt();
            // SAFETY: v holds len floats; the stream is synchronised before v is read.
            unsafe { result::memcpy_dtoh_async(&mut v, self.p(), r.stream()) }
                .unwrap_or_else(|e| panic!("CUDA download: {e:?}"));
            r.sync("download");
        }
        v
    }

    // ---------------------------------------------------------------- element-wise
    pub(crate) fn unary(&self, op: UnaryOp) -> Self {
        let out = Self::uninit(self.len());
        let (x, y, n) = (self.p(), out.p(), self.len() as i64);
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
        let (a, b, y, n) = (self.p(), rhs.p(), o.p(), out.numel() as i64);
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
            Gm {
                batch,
                m,
                n,
                k,
                a: self.p(),
                ta,
                a_bs,
                b: rhs.p(),
                tb,
                b_bs,
                c: c.p(),
                c_bs: m * n,
            },
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

    // ---------------------------------------------------------------- conv (im2col + GEMM)
    // A chunk of images has ONE column matrix, K × (images·HW) (image j's columns at j·HW), so
    // each of the three products is a single large GEMM with the batch folded into its N:
    // cuBLAS runs those far faster than a strided batch of per-image products. The GEMM side
    // of the images is channel-major, (Cout, images, HW): a permute copy moves dy into it and
    // the output out of it. A pointwise (1×1, stride 1, no padding) conv has no column matrix
    // and multiplies the NCHW input directly, one strided batch.
    pub(crate) fn conv2d(
        &self,
        w: &CudaStorage,
        bias: Option<&CudaStorage>,
        g: &Conv2dGeom,
    ) -> Self {
        let (kdim, hw) = (g.cin * g.kh * g.kw, g.ho * g.wo);
        let y = Self::uninit(g.n * g.cout * hw);
        if is_pointwise(g) {
            gemm(
                Gm {
                    batch: g.n,
                    m: g.cout,
                    n: hw,
                    k: kdim,
                    a: w.p(),
                    ta: false,
                    a_bs: 0,
                    b: self.p(),
                    tb: false,
                    b_bs: kdim * hw,
                    c: y.p(),
                    c_bs: g.cout * hw,
                },
                false,
            );
        } else {
            for (i0, cnt) in conv_chunks(g) {
                let col = im2col(self, g, i0, cnt);
                let yc = DeviceBuffer::uninit(g.cout * cnt * hw);
                gemm(
                    Gm {
                        batch: 1,
                        m: g.cout,
                        n: cnt * hw,
                        k: kdim,
                        a: w.p(),
                        ta: false,
                        a_bs: 0,
                        b: col.ptr,
                        tb: false,
                        b_bs: 0,
                        c: yc.ptr,
                        c_bs: 0,
                    },
                    false,
                );
                // (Cout, cnt, HW) → (cnt, Cout, HW) into the chunk's slice of y
                permute_chunk(yc.ptr, g.cout, cnt, hw, y.buf.at(i0 * g.cout * hw));
            }
        }
        if let Some(b) = bias {
            let (yp, bp, co, hw32, n) = (y.p(), b.p(), g.cout as i32, hw as i32, y.len() as i64);
            rt().launch_n(
                "conv.cu",
                "add_bias",
                y.len(),
                &[arg(&yp), arg(&bp), arg(&co), arg(&hw32), arg(&n)],
            );
        }
        y
    }
    /// self = dy
    pub(crate) fn conv2d_backward_input(&self, w: &CudaStorage, g: &Conv2dGeom) -> Self {
        let (kdim, hw, img) = (g.cin * g.kh * g.kw, g.ho * g.wo, g.cin * g.h * g.w);
        let dx = Self::uninit(g.n * img);
        if is_pointwise(g) {
            gemm(
                Gm {
                    batch: g.n,
                    m: kdim,
                    n: hw,
                    k: g.cout,
                    a: w.p(),
                    ta: true,
                    a_bs: 0,
                    b: self.p(),
                    tb: false,
                    b_bs: g.cout * hw,
                    c: dx.p(),
                    c_bs: kdim * hw,
                },
                false,
            );
            return dx;
        }
        for (i0, cnt) in conv_chunks(g) {
            let dyc = DeviceBuffer::uninit(g.cout * cnt * hw);
            permute_chunk(self.buf.at(i0 * g.cout * hw), cnt, g.cout, hw, dyc.ptr);
            // dcol (K × cnt·HW) = Wᵀ · dy
            let dcol = DeviceBuffer::uninit(kdim * cnt * hw);
            gemm(
                Gm {
                    batch: 1,
                    m: kdim,
                    n: cnt * hw,
                    k: g.cout,
                    a: w.p(),
                    ta: true,
                    a_bs: 0,
                    b: dyc.ptr,
                    tb: false,
                    b_bs: 0,
                    c: dcol.ptr,
                    c_bs: 0,
                },
                false,
            );
            let geom = ConvGeomC::new(g);
            let (cp, xp, ld) = (dcol.ptr, dx.buf.at(i0 * img), (cnt * hw) as i64);
            let grid = ((g.h * g.w).div_ceil(256) as u32, cnt as u32, g.cin as u32);
            rt().launch(
                "conv.cu",
                "col2im",
                grid,
                256,
                0,
                &[arg(&cp), arg(&xp), arg(&geom), arg(&ld)],
            );
        }
        dx
    }
    /// self = dy
    pub(crate) fn conv2d_backward_weight(&self, x: &CudaStorage, g: &Conv2dGeom) -> Self {
        let (kdim, hw) = (g.cin * g.kh * g.kw, g.ho * g.wo);
        let dw = Self::zeros(g.cout * kdim);
        if is_pointwise(g) {
            // dW += dy_i (Cout × HW) · x_iᵀ (HW × K), image by image
            for i in 0..g.n {
                gemm(
                    Gm {
                        batch: 1,
                        m: g.cout,
                        n: kdim,
                        k: hw,
                        a: self.buf.at(i * g.cout * hw),
                        ta: false,
                        a_bs: 0,
                        b: x.buf.at(i * kdim * hw),
                        tb: true,
                        b_bs: 0,
                        c: dw.p(),
                        c_bs: 0,
                    },
                    true,
                );
            }
            return dw;
        }
        for (i0, cnt) in conv_chunks(g) {
            let col = im2col(x, g, i0, cnt);
            let dyc = DeviceBuffer::uninit(g.cout * cnt * hw);
            permute_chunk(self.buf.at(i0 * g.cout * hw), cnt, g.cout, hw, dyc.ptr);
            // dW += dy (Cout × cnt·HW) · colᵀ (cnt·HW × K)
            gemm(
                Gm {
                    batch: 1,
                    m: g.cout,
                    n: kdim,
                    k: cnt * hw,
                    a: dyc.ptr,
                    ta: false,
                    a_bs: 0,
                    b: col.ptr,
                    tb: true,
                    b_bs: 0,
                    c: dw.p(),
                    c_bs: 0,
                },
                true,
            );
        }
        dw
    }

    // ---------------------------------------------------------------- pooling, resize
    pub(crate) fn max_pool2d(&self, g: &Pool2dGeom) -> Self {
        pool(self, None, g, "max_pool_fwd", g.planes * g.ho * g.wo)
    }
    /// self = x
    pub(crate) fn max_pool2d_backward(&self, dy: &CudaStorage, g: &Pool2dGeom) -> Self {
        pool(self, Some(dy), g, "max_pool_bwd", g.planes * g.h * g.w)
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
        let (xp, yp) = (self.p(), y.p());
        let d = [planes as i32, h as i32, w as i32, ho as i32, wo as i32];
        rt().launch_n(
            "resize.cu",
            "resize_bilinear_fwd",
            y.len(),
            &[
                arg(&xp),
                arg(&yp),
                arg(&d[0]),
                arg(&d[1]),
                arg(&d[2]),
                arg(&d[3]),
                arg(&d[4]),
            ],
        );
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
        let (gp, dp) = (self.p(), dx.p());
        let d = [planes as i32, h as i32, w as i32, ho as i32, wo as i32];
        rt().launch_n(
            "resize.cu",
            "resize_bilinear_bwd",
            self.len(),
            &[
                arg(&gp),
                arg(&dp),
                arg(&d[0]),
                arg(&d[1]),
                arg(&d[2]),
                arg(&d[3]),
                arg(&d[4]),
            ],
        );
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
        strided_copy(self, &out, &out_dims, &src_st, &dst_st, 0, 0);
        out
    }
    pub(crate) fn narrow(&self, shape: &Shape, axis: usize, start: usize, len: usize) -> Self {
        let (outer, alen, inner) = shape.split_at_axis(axis);
        let out = Self::uninit(outer * len * inner);
        let src = [(alen * inner) as i64, inner as i64, 1];
        let dst = [(len * inner) as i64, inner as i64, 1];
        strided_copy(
            self,
            &out,
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
                p,
                &out,
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
        strided_copy(self, &out, &[outer, alen, inner], &src, &dst, off, 0);
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
        let (x, mp, ip, vp) = (self.p(), mean.p(), invstd.p(), var.p());
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
        let (gp, bp, yp, total) = (gamma.p(), beta.p(), y.p(), self.len() as i64);
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
        let (x, g, m, i) = (self.p(), dy.p(), mean.p(), invstd.p());
        let (dgp, dbp, dxp, gam) = (dg.p(), db.p(), dx.p(), gamma.p());
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
        let (x, t, o, n) = (self.p(), target.p(), terms.p(), self.len() as i64);
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
        let (x, t, d, gp) = (self.p(), target.p(), dx.p(), g.p());
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
        let (x, l, lp, cp, bp) = (self.p(), labels.p(), loss.p(), count.p(), bad.p());
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
        let (x, l, d, gp) = (self.p(), labels.p(), dx.p(), g.p());
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
        let (p, g, b) = (self.p(), grad.p(), buf.p());
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

    pub(crate) fn ptr(&self) -> u64 {
        self.p()
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

fn strided_copy(
    src: &CudaStorage,
    dst: &CudaStorage,
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
    let (s, d, t, acc) = (src.p(), dst.p(), total as i64, 0i32);
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
    let (xp, yp, rows, cols) = (x.p(), out.p(), a as i32, b as i32);
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
    let (xp, yp, o, l, i) = (x.p(), y.p(), outer as i64, len as i64, inner as i64);
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
        let (xp, pp, l, ch) = (x.p(), part.p(), len as i64, CHUNK as i64);
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
    let (xp, yp, l) = (x.p(), y.p(), len as i64);
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
    let (xp, op) = (x.p(), out.p());
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
            let gp = g.p();
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

/// A (batched) row-major GEMM: C[i] = op(A[i]) · op(B[i]) (+ C[i] when accumulating), with
/// op(A) m×k, op(B) k×n, batch strides in elements (0 = shared). Runs as the column-major
/// product Cᵀ = op(B)ᵀ·op(A)ᵀ, so no data is transposed.
pub(crate) struct Gm {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: u64,
    pub ta: bool,
    pub a_bs: usize,
    pub b: u64,
    pub tb: bool,
    pub b_bs: usize,
    pub c: u64,
    pub c_bs: usize,
}

pub(crate) fn gemm(g: Gm, accumulate: bool) {
    if g.batch == 0 || g.m == 0 || g.n == 0 {
        return;
    }
    let r = rt();
    use cublas_sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
    let (op_b, ldb_cm) = if g.tb {
        (CUBLAS_OP_T, g.k)
    } else {
        (CUBLAS_OP_N, g.n)
    };
    let (op_a, lda_cm) = if g.ta {
        (CUBLAS_OP_T, g.m)
    } else {
        (CUBLAS_OP_N, g.k)
    };
    let alpha = 1.0f32;
    let beta = if accumulate { 1.0f32 } else { 0.0 };
    let compute = if r.tf32() {
        cublas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32
    } else {
        cublas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F
    };
    let f32t = cublas_sys::cudaDataType_t::CUDA_R_32F;
    if g.k == 0 {
        if !accumulate {
            // SAFETY: C holds batch·m·n floats at stride m·n (our outputs are contiguous)
            unsafe { result::memset_d8_async(g.c, 0, g.batch * g.m * g.n * 4, r.stream()) }
                .unwrap_or_else(|e| panic!("CUDA memset: {e:?}"));
        }
        return;
    }
    // SAFETY: pointers and strides describe live device buffers of the sizes above.
    unsafe {
        cublas_result::gemm_strided_batched_ex(
            r.cublas(),
            op_b,
            op_a,
            g.n as i32,
            g.m as i32,
            g.k as i32,
            &alpha as *const f32 as *const _,
            g.b as *const _,
            f32t,
            ldb_cm.max(1) as i32,
            g.b_bs as i64,
            g.a as *const _,
            f32t,
            lda_cm.max(1) as i32,
            g.a_bs as i64,
            &beta as *const f32 as *const _,
            g.c as *mut _,
            f32t,
            g.n as i32,
            g.c_bs as i64,
            g.batch as i32,
            compute,
            cublas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
    }
    .unwrap_or_else(|e| {
        panic!(
            "cublasGemmStridedBatchedEx ({}×{}×{} ×{}): {e:?}",
            g.m, g.n, g.k, g.batch
        )
    });
    if std::env::var_os("COATT_CUDA_SYNC").is_some() {
        r.sync("gemm");
    }
}

/// conv.cu `ConvGeom`
#[repr(C)]
#[derive(Clone, Copy)]
struct ConvGeomC {
    v: [i32; 13],
}
impl ConvGeomC {
    fn new(g: &Conv2dGeom) -> Self {
        ConvGeomC {
            v: [
                g.cin, g.h, g.w, g.kh, g.kw, g.sh, g.sw, g.ph, g.pw, g.dh, g.dw, g.ho, g.wo,
            ]
            .map(|x| x as i32),
        }
    }
}

/// pool.cu `PoolGeom`
#[repr(C)]
#[derive(Clone, Copy)]
struct PoolGeomC {
    v: [i32; 11],
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
    let (xp, op) = (x.p(), out.p());
    match dy {
        None => rt().launch_n("pool.cu", name, out_len, &[arg(&xp), arg(&op), arg(&geom)]),
        Some(d) => {
            let dp = d.p();
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

fn is_pointwise(g: &Conv2dGeom) -> bool {
    g.kh == 1 && g.kw == 1 && g.sh == 1 && g.sw == 1 && g.ph == 0 && g.pw == 0
}

/// Image chunks (first image, count) whose column matrix stays under 256 MiB (or the cap).
fn conv_chunks(g: &Conv2dGeom) -> impl Iterator<Item = (usize, usize)> {
    // grid limits of im2col / col2im: rows and channels in z, images of a chunk in y
    assert!(
        g.cin * g.kh * g.kw < 65_536,
        "conv2d: {} column rows (Cin·kh·kw) exceed the grid's 65535",
        g.cin * g.kh * g.kw
    );
    // the kernels index within one image in 32 bits
    assert!(
        g.cin * g.kh * g.kw * g.ho * g.wo < (1 << 31) && g.cin * g.h * g.w < (1 << 31),
        "conv2d: one image's column matrix exceeds 2^31 values"
    );
    let per_image = g.cin * g.kh * g.kw * g.ho * g.wo * 4;
    // COATT_CONV_CHUNK_BYTES lowers the cap (the tests use it to cover several chunks)
    let cap = std::env::var("COATT_CONV_CHUNK_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256usize << 20);
    let per = (cap / per_image.max(1)).clamp(1, g.n.clamp(1, 65_535));
    let n = g.n;
    (0..n).step_by(per).map(move |i0| (i0, per.min(n - i0)))
}

/// The column matrix K × (cnt·HW) of images [i0, i0 + cnt) of x.
fn im2col(x: &CudaStorage, g: &Conv2dGeom, i0: usize, cnt: usize) -> DeviceBuffer {
    let (kdim, hw, img) = (g.cin * g.kh * g.kw, g.ho * g.wo, g.cin * g.h * g.w);
    let col = DeviceBuffer::uninit(kdim * cnt * hw);
    let geom = ConvGeomC::new(g);
    let (xp, cp, ld) = (x.buf.at(i0 * img), col.ptr, (cnt * hw) as i64);
    let grid = (hw.div_ceil(256) as u32, cnt as u32, kdim as u32);
    rt().launch(
        "conv.cu",
        "im2col",
        grid,
        256,
        0,
        &[arg(&xp), arg(&cp), arg(&geom), arg(&ld)],
    );
    col
}

/// (a, b, hw) → (b, a, hw) for raw device buffers (blocks of hw contiguous values).
fn permute_chunk(src: u64, a: usize, b: usize, hw: usize, dst: u64) {
    let total = a * b * hw;
    let mut bx = LayoutBox {
        dims: [1; 8],
        src_st: [0; 8],
        dst_st: [0; 8],
        rank: 3,
    };
    // iterate in destination order (b, a, hw)
    bx.dims[..3].copy_from_slice(&[b as i64, a as i64, hw as i64]);
    bx.src_st[..3].copy_from_slice(&[hw as i64, (b * hw) as i64, 1]);
    bx.dst_st[..3].copy_from_slice(&[(a * hw) as i64, hw as i64, 1]);
    let (t, zero, acc) = (total as i64, 0i64, 0i32);
    rt().launch_n(
        "layout.cu",
        "strided_copy",
        total,
        &[
            arg(&src),
            arg(&dst),
            arg(&bx),
            arg(&zero),
            arg(&zero),
            arg(&t),
            arg(&acc),
        ],
    );
}

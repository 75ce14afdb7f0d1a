//! conv2d on the GPU: im2col + GEMM, col2im for the input gradient (kernels/conv.cu).
use super::alloc::DeviceBuffer;
use super::gemm::{gemm, gm};
use super::ops::{strided_copy, CudaStorage};
use super::runtime::{arg, rt};
use crate::backend::Conv2dGeom;

impl CudaStorage {
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
                gm(
                    g.n,
                    g.cout,
                    hw,
                    kdim,
                    w.ptr(),
                    false,
                    0,
                    self.ptr(),
                    false,
                    kdim * hw,
                    y.ptr(),
                ),
                false,
            );
        } else {
            for (i0, cnt) in conv_chunks(g) {
                let col = im2col(self, g, i0, cnt);
                let yc = DeviceBuffer::uninit(g.cout * cnt * hw);
                gemm(
                    gm(
                        1,
                        g.cout,
                        cnt * hw,
                        kdim,
                        w.ptr(),
                        false,
                        0,
                        col.ptr,
                        false,
                        0,
                        yc.ptr,
                    ),
                    false,
                );
                // (Cout, cnt, HW) → (cnt, Cout, HW) into the chunk's slice of y
                permute_chunk(yc.ptr, g.cout, cnt, hw, y.buf.at(i0 * g.cout * hw));
            }
        }
        if let Some(b) = bias {
            let (yp, bp, co, hw32, n) =
                (y.ptr(), b.ptr(), g.cout as i32, hw as i32, y.len() as i64);
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
                gm(
                    g.n,
                    kdim,
                    hw,
                    g.cout,
                    w.ptr(),
                    true,
                    0,
                    self.ptr(),
                    false,
                    g.cout * hw,
                    dx.ptr(),
                ),
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
                gm(
                    1,
                    kdim,
                    cnt * hw,
                    g.cout,
                    w.ptr(),
                    true,
                    0,
                    dyc.ptr,
                    false,
                    0,
                    dcol.ptr,
                ),
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
                    gm(
                        1,
                        g.cout,
                        kdim,
                        hw,
                        self.buf.at(i * g.cout * hw),
                        false,
                        0,
                        x.buf.at(i * kdim * hw),
                        true,
                        0,
                        dw.ptr(),
                    ),
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
                gm(
                    1,
                    g.cout,
                    kdim,
                    cnt * hw,
                    dyc.ptr,
                    false,
                    0,
                    col.ptr,
                    true,
                    0,
                    dw.ptr(),
                ),
                true,
            );
        }
        dw
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
    // kernels/conv.cu IM2COL_ROWS rows per thread
    let grid = (hw.div_ceil(256) as u32, cnt as u32, kdim.div_ceil(8) as u32);
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
    // iterate in destination order (b, a, hw)
    let src_st = [hw as i64, (b * hw) as i64, 1];
    let dst_st = [(a * hw) as i64, hw as i64, 1];
    strided_copy(src, dst, &[b, a, hw], &src_st, &dst_st, 0, 0);
}

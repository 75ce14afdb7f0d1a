//! conv2d on the GPU (kernels/conv.cu): Winograd F(2×2, 3×3) for 3×3 convs with stride 1 (any
//! dilation: VGG16-D1's and DeepLab's), im2col + GEMM (col2im for the input gradient) for every
//! other shape; a pointwise conv is one GEMM on the NCHW input.
use super::alloc::DeviceBuffer;
use super::gemm::{gemm, gm};
use super::layout::strided_copy;
use super::runtime::{arg, rt};
use super::storage::CudaStorage;
use crate::backend::Conv2dGeom;
use std::sync::atomic::{AtomicU8, Ordering};

/// Which algorithm the GPU's 3×3 stride-1 convs run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvAlgo {
    /// Winograd where it applies (3×3, stride 1, padding ≤ 2·dilation, Cin ≥ 16), else im2col
    Auto,
    Im2col,
    /// Winograd where it applies, im2col elsewhere
    Winograd,
}

static ALGO: AtomicU8 = AtomicU8::new(0);

/// Chooses the conv algorithm for the whole process (`COATT_CONV_ALGO=im2col|winograd|auto` in
/// the environment sets the start value).
pub fn set_conv_algo(a: ConvAlgo) {
    ALGO.store(a as u8 + 1, Ordering::Relaxed);
}
pub fn conv_algo() -> ConvAlgo {
    match ALGO.load(Ordering::Relaxed) {
        1 => ConvAlgo::Auto,
        2 => ConvAlgo::Im2col,
        3 => ConvAlgo::Winograd,
        _ => {
            let a = match std::env::var("COATT_CONV_ALGO").as_deref() {
                Ok("im2col") => ConvAlgo::Im2col,
                Ok("winograd") => ConvAlgo::Winograd,
                _ => ConvAlgo::Auto,
            };
            set_conv_algo(a);
            a
        }
    }
}

/// Whether this conv runs as Winograd F(2×2, 3×3).
fn use_winograd(g: &Conv2dGeom) -> bool {
    // padding up to 2·dilation: the input gradient's conv has padding 2·d − p
    let fits =
        g.kh == 3 && g.kw == 3 && g.sh == 1 && g.sw == 1 && g.ph <= 2 * g.dh && g.pw <= 2 * g.dw;
    match conv_algo() {
        ConvAlgo::Im2col => false,
        ConvAlgo::Winograd => fits,
        // a first layer (Cin = 3) moves fewer bytes as im2col: its transformed output (4× Cout
        // planes) outweighs the tiny column matrix
        ConvAlgo::Auto => fits && g.cin >= 16,
    }
}

impl crate::backend::ConvOps for CudaStorage {
    // ---------------------------------------------------------------- conv (im2col + GEMM)
    // A chunk of images has ONE column matrix, K × (images·HW) (image j's columns at j·HW), so
    // each of the three products is a single large GEMM with the batch folded into its N:
    // cuBLAS runs those far faster than a strided batch of per-image products. The GEMM side
    // of the images is channel-major, (Cout, images, HW): a permute copy moves dy into it and
    // the output out of it. Small column matrices (K < 64: a first layer, 27 rows) are laid
    // out image by image instead: a strided batch of per-image GEMMs writes NCHW directly and
    // reads dy in place, where the permutes would cost more than the small GEMMs save. A
    // pointwise (1×1, stride 1, no padding) conv has no column matrix and multiplies the NCHW
    // input directly, one strided batch.
    /// The conv (+ bias), then a ReLU when `relu` (applied where the output is written).
    fn conv2d(
        &self,
        w: &CudaStorage,
        bias: Option<&CudaStorage>,
        g: &Conv2dGeom,
        relu: bool,
    ) -> Self {
        let (kdim, hw) = (g.cin * g.kh * g.kw, g.ho * g.wo);
        let y = Self::uninit(g.n * g.cout * hw);
        if use_winograd(g) {
            winograd(
                self.ptr(),
                w.ptr(),
                bias.map(|b| b.ptr()),
                relu,
                g,
                false,
                y.ptr(),
            );
            return y;
        }
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
                if per_image_columns(g) {
                    let yi = y.buf.at(i0 * g.cout * hw);
                    let a = w.ptr();
                    gemm(
                        gm(
                            cnt,
                            g.cout,
                            hw,
                            kdim,
                            a,
                            false,
                            0,
                            col.ptr,
                            false,
                            kdim * hw,
                            yi,
                        ),
                        false,
                    );
                    continue;
                }
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
        if bias.is_some() || relu {
            let (yp, bp, co, hw32, n, r) = (
                y.ptr(),
                bias.map_or(0, |b| b.ptr()),
                g.cout as i32,
                hw as i32,
                y.len() as i64,
                relu as i32,
            );
            rt().launch_n(
                "conv.cu",
                "bias_act",
                y.len(),
                &[arg(&yp), arg(&bp), arg(&co), arg(&hw32), arg(&n), arg(&r)],
            );
        }
        y
    }
    /// self = dy
    fn conv2d_backward_input(&self, w: &CudaStorage, g: &Conv2dGeom) -> Self {
        let (kdim, hw, img) = (g.cin * g.kh * g.kw, g.ho * g.wo, g.cin * g.h * g.w);
        let dx = Self::uninit(g.n * img);
        if use_winograd(g) {
            // the same conv of dy with the kernel turned 180°, Cin/Cout swapped, padding 2d − p
            let gt = Conv2dGeom {
                cin: g.cout,
                h: g.ho,
                w: g.wo,
                cout: g.cin,
                ph: 2 * g.dh - g.ph,
                pw: 2 * g.dw - g.pw,
                ho: g.h,
                wo: g.w,
                ..*g
            };
            winograd(self.ptr(), w.ptr(), None, false, &gt, true, dx.ptr());
            return dx;
        }
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
        let per_image = per_image_columns(g);
        for (i0, cnt) in conv_chunks(g) {
            let dcol = DeviceBuffer::uninit(kdim * cnt * hw);
            let dyi = self.buf.at(i0 * g.cout * hw);
            if per_image {
                // dcol_i (K × HW) = Wᵀ · dy_i, image by image in one strided batch
                let b_bs = g.cout * hw;
                gemm(
                    gm(
                        cnt,
                        kdim,
                        hw,
                        g.cout,
                        w.ptr(),
                        true,
                        0,
                        dyi,
                        false,
                        b_bs,
                        dcol.ptr,
                    ),
                    false,
                );
            } else {
                let dyc = DeviceBuffer::uninit(g.cout * cnt * hw);
                permute_chunk(dyi, cnt, g.cout, hw, dyc.ptr);
                // dcol (K × cnt·HW) = Wᵀ · dy
                let n = cnt * hw;
                gemm(
                    gm(
                        1,
                        kdim,
                        n,
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
            }
            let geom = ConvGeomC::from(g);
            let (ld, img_stride) = col_layout(g, cnt);
            let (cp, xp) = (dcol.ptr, dx.buf.at(i0 * img));
            let grid = ((g.h * g.w).div_ceil(256) as u32, cnt as u32, g.cin as u32);
            rt().launch(
                "conv.cu",
                "col2im",
                grid,
                256,
                0,
                &[arg(&cp), arg(&xp), arg(&geom), arg(&ld), arg(&img_stride)],
            );
        }
        dx
    }
    /// self = dy
    fn conv2d_backward_weight(&self, x: &CudaStorage, g: &Conv2dGeom) -> Self {
        let (kdim, hw) = (g.cin * g.kh * g.kw, g.ho * g.wo);
        if use_winograd(g) {
            return Self {
                buf: winograd_weight_grad(self.ptr(), x.ptr(), g),
            };
        }
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
            if per_image_columns(g) {
                // dW += dy_i (Cout × HW) · col_iᵀ (HW × K), image by image
                for j in 0..cnt {
                    let (dyi, ci) = (self.buf.at((i0 + j) * g.cout * hw), col.at(j * kdim * hw));
                    gemm(
                        gm(1, g.cout, kdim, hw, dyi, false, 0, ci, true, 0, dw.ptr()),
                        true,
                    );
                }
                continue;
            }
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

super::mirrored!(
    /// conv.cu `ConvGeom`: one conv's sizes as the im2col/col2im kernels take them.
    ConvGeomC = "conv.cu"::"ConvGeom" { cin, h, w, kh, kw, sh, sw, ph, pw, dh, dw, ho, wo }
    from Conv2dGeom
);

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
    image_chunks(g.n, g.cin * g.kh * g.kw * g.ho * g.wo * 4, 65_535)
}

/// Chunks (first image, count) of `n` images whose buffers (`per_image` bytes each) stay under
/// 256 MiB, at most `max_count` images each. COATT_CONV_CHUNK_BYTES lowers the cap (the tests
/// use it to cover several chunks; read per call for that reason).
fn image_chunks(
    n: usize,
    per_image: usize,
    max_count: usize,
) -> impl Iterator<Item = (usize, usize)> {
    let cap = std::env::var("COATT_CONV_CHUNK_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256usize << 20);
    let per = (cap / per_image.max(1)).clamp(1, max_count.clamp(1, n.max(1)));
    (0..n).step_by(per).map(move |i0| (i0, per.min(n - i0)))
}

/// Column matrices of at most 64 rows are laid out image by image (see `conv2d`).
fn per_image_columns(g: &Conv2dGeom) -> bool {
    g.cin * g.kh * g.kw < 64
}

/// (row stride, image stride) of a chunk's column matrix: K × (cnt·HW) with the images side by
/// side, or cnt blocks of K × HW.
fn col_layout(g: &Conv2dGeom, cnt: usize) -> (i64, i64) {
    let (kdim, hw) = ((g.cin * g.kh * g.kw) as i64, (g.ho * g.wo) as i64);
    if per_image_columns(g) {
        (hw, kdim * hw)
    } else {
        (cnt as i64 * hw, hw)
    }
}

/// The column matrix of images [i0, i0 + cnt) of x, laid out as `col_layout` says.
fn im2col(x: &CudaStorage, g: &Conv2dGeom, i0: usize, cnt: usize) -> DeviceBuffer {
    let (kdim, hw, img) = (g.cin * g.kh * g.kw, g.ho * g.wo, g.cin * g.h * g.w);
    let col = DeviceBuffer::uninit(kdim * cnt * hw);
    let geom = ConvGeomC::from(g);
    let (xp, cp) = (x.buf.at(i0 * img), col.ptr);
    let (ld, img_stride) = col_layout(g, cnt);
    // kernels/conv.cu IM2COL_ROWS rows per thread
    let grid = (hw.div_ceil(256) as u32, cnt as u32, kdim.div_ceil(8) as u32);
    rt().launch(
        "conv.cu",
        "im2col",
        grid,
        256,
        0,
        &[arg(&xp), arg(&cp), arg(&geom), arg(&ld), arg(&img_stride)],
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

// ---------------------------------------------------------------- Winograd F(2×2, 3×3)

super::mirrored!(
    /// conv.cu `WinoGeom` of a conv (its tiles: th × tw per dilation phase, dh·dw phases per
    /// image).
    WinoGeomC = "conv.cu"::"WinoGeom" { cin, h, w, cout, ho, wo, ph, pw, dh, dw, th, tw }
);
impl WinoGeomC {
    fn new(g: &Conv2dGeom) -> Self {
        let i = |v: usize| v as i32;
        WinoGeomC {
            cin: i(g.cin),
            h: i(g.h),
            w: i(g.w),
            cout: i(g.cout),
            ho: i(g.ho),
            wo: i(g.wo),
            ph: i(g.ph),
            pw: i(g.pw),
            dh: i(g.dh),
            dw: i(g.dw),
            th: i(g.ho.div_ceil(g.dh).div_ceil(2)),
            tw: i(g.wo.div_ceil(g.dw).div_ceil(2)),
        }
    }
    fn tiles_per_image(&self) -> usize {
        (self.dh * self.dw * self.th * self.tw) as usize
    }
}

/// Image chunks (first image, count) whose transformed input and output (16·C·tiles floats
/// each) stay under 256 MiB, or COATT_CONV_CHUNK_BYTES.
fn winograd_chunks(g: &Conv2dGeom, tiles: usize) -> impl Iterator<Item = (usize, usize)> {
    assert!(
        16 * g.cin.max(g.cout) * tiles < (1 << 31) && g.cin.max(g.cout) < 65_536,
        "conv2d (Winograd): one image's transform exceeds 2^31 values"
    );
    // the kernels' tile index is 32-bit
    let per_image = 16 * g.cin.max(g.cout) * tiles * 4;
    image_chunks(g.n, per_image, i32::MAX as usize / tiles.max(1))
}

/// U[ξ] = G g Gᵀ of every (rows × cols) kernel pair of w: the forward's (Cout × Cin), or with
/// `flip` the input gradient's (Cin × Cout) of the turned kernels. `w` holds (cout, cin, 3, 3).
fn winograd_weights(w: u64, cout: usize, cin: usize, flip: bool) -> DeviceBuffer {
    let u = DeviceBuffer::uninit(16 * cout * cin);
    let (co, ci, fl, up) = (cout as i32, cin as i32, flip as i32, u.ptr);
    rt().launch_n(
        "conv.cu",
        "wino_weight",
        cout * cin,
        &[arg(&w), arg(&up), arg(&co), arg(&ci), arg(&fl)],
    );
    u
}

/// One transform kernel over (tiles of a chunk) × channels; `output` = wino_output's bias
/// pointer (0 = none) and ReLU flag.
fn winograd_launch(
    name: &'static str,
    src: u64,
    dst: u64,
    output: Option<(u64, bool)>,
    geom: &WinoGeomC,
    tiles: usize,
    channels: usize,
) {
    let t = tiles as i32;
    let grid = (tiles.div_ceil(256) as u32, channels as u32, 1);
    match output {
        Some((b, relu)) => {
            let r = relu as i32;
            let p = [arg(&src), arg(&dst), arg(&b), arg(geom), arg(&t), arg(&r)];
            rt().launch("conv.cu", name, grid, 256, 0, &p)
        }
        None => {
            let p = [arg(&src), arg(&dst), arg(geom), arg(&t)];
            rt().launch("conv.cu", name, grid, 256, 0, &p)
        }
    }
}

/// V (16 × channels × t): the input transform of the t tiles of a chunk starting at `x`.
fn winograd_input(x: u64, geom: &WinoGeomC, t: usize, channels: usize) -> DeviceBuffer {
    let v = DeviceBuffer::uninit(16 * channels * t);
    winograd_launch("wino_input", x, v.ptr, None, geom, t, channels);
    v
}

/// y = conv(x, w) + bias (then ReLU) as Winograd F(2×2, 3×3): per chunk of images, transform
/// the input tiles (V), 16 GEMMs M[ξ] = U[ξ]·V[ξ] in one strided batch, transform back with
/// the bias and the ReLU.
/// `g` is the conv as run (for the input gradient: dy's conv with the turned kernels, `flip`).
fn winograd(x: u64, w: u64, bias: Option<u64>, relu: bool, g: &Conv2dGeom, flip: bool, y: u64) {
    let (cin, cout) = (g.cin, g.cout);
    // the stored kernel is (cout, cin) of the original conv: swapped when flipped
    let u = if flip {
        winograd_weights(w, cin, cout, true)
    } else {
        winograd_weights(w, cout, cin, false)
    };
    let geom = WinoGeomC::new(g);
    let tpi = geom.tiles_per_image();
    let (img_in, img_out) = (cin * g.h * g.w, cout * g.ho * g.wo);
    for (i0, cnt) in winograd_chunks(g, tpi) {
        let t = cnt * tpi;
        let v = winograd_input(x + (i0 * img_in * 4) as u64, &geom, t, cin);
        let m = DeviceBuffer::uninit(16 * cout * t);
        gemm(
            gm(
                16,
                cout,
                t,
                cin,
                u.ptr,
                false,
                cout * cin,
                v.ptr,
                false,
                cin * t,
                m.ptr,
            ),
            false,
        );
        winograd_launch(
            "wino_output",
            m.ptr,
            y + (i0 * img_out * 4) as u64,
            Some((bias.unwrap_or(0), relu)),
            &geom,
            t,
            cout,
        );
    }
}

/// dW (cout × cin × 3 × 3) = Gᵀ[Σ_tiles (A dy Aᵀ) ⊙ (Bᵀ d B)]G, the tile sum as 16 GEMMs
/// accumulated over the chunks.
fn winograd_weight_grad(dy: u64, x: u64, g: &Conv2dGeom) -> DeviceBuffer {
    let (cin, cout) = (g.cin, g.cout);
    let geom = WinoGeomC::new(g);
    let tpi = geom.tiles_per_image();
    let (img_in, img_out) = (cin * g.h * g.w, cout * g.ho * g.wo);
    let du = DeviceBuffer::uninit(16 * cout * cin);
    for (k, (i0, cnt)) in winograd_chunks(g, tpi).enumerate() {
        let t = cnt * tpi;
        let v = winograd_input(x + (i0 * img_in * 4) as u64, &geom, t, cin);
        let dm = DeviceBuffer::uninit(16 * cout * t);
        winograd_launch(
            "wino_grad_output",
            dy + (i0 * img_out * 4) as u64,
            dm.ptr,
            None,
            &geom,
            t,
            cout,
        );
        // dU[ξ] (Cout × Cin) (+)= dM[ξ] (Cout × T) · V[ξ]ᵀ (T × Cin)
        gemm(
            gm(
                16,
                cout,
                cin,
                t,
                dm.ptr,
                false,
                cout * t,
                v.ptr,
                true,
                cin * t,
                du.ptr,
            ),
            k > 0,
        );
    }
    let dw = DeviceBuffer::uninit(cout * cin * 9);
    let (dup, dwp, pairs) = (du.ptr, dw.ptr, (cout * cin) as i32);
    rt().launch_n(
        "conv.cu",
        "wino_weight_grad",
        cout * cin,
        &[arg(&dup), arg(&dwp), arg(&pairs)],
    );
    dw
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_geometry_structs_mirror_the_kernel_structs() {
        for m in [super::ConvGeomC::MIRROR, super::WinoGeomC::MIRROR] {
            super::super::check_mirror(m).unwrap();
        }
    }
}

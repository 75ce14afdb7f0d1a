//! Direct 3×3 convolutions (stride 1, any padding ≤ the kernel's reach, any dilation) in f32
//! with AVX-512 or AVX2 + FMA: no column matrix. The im2col + GEMM path copies every input value
//! nine times before the product; on the small-channel layers of the tiny models (3-16 channels
//! at 64-128 px) that copy and the GEMM's packing cost more than the arithmetic
//! (docs/performance.md).
//!
//! The trick that makes each tap one vector load: every input plane is zero-padded once to
//! the row pitch P = w + pw (pw zeros before each row serve as the left padding of that row
//! and the right padding of the row above), and output (y, x) is the flat index j = y·P + x.
//! Tap (ki, kj) then reads the padded plane at j + ki·dh·P + kj·dw for every j, so a vector of
//! consecutive outputs is one unaligned load per tap, whatever the width. The columns
//! x ≥ wo of each flat row are computed and dropped (pw / P of the work: 11% at 8 px).
//!
//! The input gradient is the same forward product with the kernel flipped and its channel
//! axes swapped; the weight gradient sums dy · shifted x over the flat positions of every
//! image, in a fixed order (per-task sums, no reduction across threads), so it does not
//! depend on the thread count. The two instruction sets run one kernel body (`isa_kernels!`)
//! with their own vector width and register blocking ([`Isa`]); the widest the machine has is
//! used. Other machines, and f64, keep the im2col path.
use crate::backend::Conv2dGeom;
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Flat positions per tile of the weight gradient: the nine shifted input rows of a tile stay
/// in L1 while every output-channel group of the task passes over them.
const TILE: usize = 2048;

/// One instruction set's direct kernels and their register blocking.
pub struct Isa {
    /// What the kernels are built for ("avx512", "avx2").
    pub name: &'static str,
    /// f32 lanes of one vector.
    lanes: usize,
    /// Vectors of outputs per register block of the product.
    nv: usize,
    /// Output channels per register block of the product (nv × cob accumulators).
    cob: usize,
    /// Output channels per register group of the weight gradient (rows × the taps of one pass
    /// in accumulators).
    rows: usize,
    /// The largest cin × cout at which the direct product (forward, dx) beats im2col + GEMM.
    max_product: usize,
    /// The same for the weight gradient.
    max_weight: usize,
    product_block: ProductBlock,
    weight_task: WeightTask,
}

/// One image's block of output channels: (padded planes of the image, packed weights of the
/// block, the block's biases, layout, cin, ho, wo, the block's outputs).
type ProductBlock =
    unsafe fn(&[f32], &[f32], &[f32], &Flat, usize, usize, usize, &mut [MaybeUninit<f32>]);
/// One input channel's nine tap sums with a run of output-channel groups: (padded dy, padded x,
/// layout, geometry, input channel, groups) → rows × groups sums, group-major.
type WeightTask =
    unsafe fn(&[f32], &[f32], &Flat, &Conv2dGeom, usize, Range<usize>) -> Vec<[f32; 9]>;

impl Isa {
    /// Outputs of one register block of the product.
    fn block(&self) -> usize {
        self.nv * self.lanes
    }
}

/// AVX-512: 32 registers of 16 lanes. The product keeps 8 output channels × 3 vectors (24
/// accumulators); the weight gradient 3 channels × all 9 taps in one pass (27), with 3 + 9
/// loads per 27 FMAs (pairs need 2 + 9 per 18, and the unaligned loads are what limits). The
/// limits, on the Intel Xeon development machine: 128 → 128 at 32 px 281 / 235 GFLOP/s direct
/// / GEMM forward, 512 → 512 191 / 293; weight gradient 64 → 64 at 16 px 144 / 111, 128 → 128
/// at 32 px 162 / 184 (`examples/conv_variants`).
#[cfg(target_arch = "x86_64")]
static AVX512: Isa = Isa {
    name: "avx512",
    lanes: avx512::LANES,
    nv: avx512::NV,
    cob: avx512::COB,
    rows: avx512::ROWS,
    max_product: 128 * 128,
    max_weight: 64 * 64,
    product_block: avx512::product_block,
    weight_task: avx512::weight_task,
};

/// AVX2 + FMA: 16 registers of 8 lanes. The product keeps 6 output channels × 2 vectors (12
/// accumulators, 2 input vectors, 1 broadcast weight; 4 channels × 3 vectors measured 70-80%
/// of its speed); the weight gradient 3 channels × 3 taps per pass (9 accumulators, 3 + 3
/// loads per 9 FMAs; 1 channel × 9 taps, 1 + 9 loads, measured 55-75% of its speed). The
/// limits, on a 2-core AMD EPYC (GFLOP/s direct / GEMM, 8 images): forward
/// 128 → 128 at 16 px 160 / 133; weight gradient 64 → 64 at 32 px 132 / 80, 64 → 128 at 16 px
/// 122 / 128 (`examples/conv_variants`).
#[cfg(target_arch = "x86_64")]
static AVX2: Isa = Isa {
    name: "avx2",
    lanes: avx2::LANES,
    nv: avx2::NV,
    cob: avx2::COB,
    rows: avx2::ROWS,
    max_product: 128 * 128,
    max_weight: 64 * 64,
    product_block: avx2::product_block,
    weight_task: avx2::weight_task,
};

/// The instruction sets of the direct kernels this machine runs, the widest first.
pub fn available() -> Vec<&'static Isa> {
    #[allow(unused_mut)]
    let mut v: Vec<&'static Isa> = Vec::new();
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            v.push(&AVX512);
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            v.push(&AVX2);
        }
    }
    v
}

/// The instruction set the direct kernels use here: the widest available.
pub fn detected() -> Option<&'static Isa> {
    static BEST: OnceLock<Option<&'static Isa>> = OnceLock::new();
    *BEST.get_or_init(|| available().first().copied())
}

/// Whether the geometry is one the direct kernels compute.
fn geometry_fits(g: &Conv2dGeom) -> bool {
    g.kh == 3
        && g.kw == 3
        && g.sh == 1
        && g.sw == 1
        && g.ph <= 2 * g.dh
        && g.pw <= 2 * g.dw
        && g.ho > 0
        && g.wo > 0
        // empty tensors take the general path, which handles every zero size
        && g.n * g.cin * g.cout * g.h * g.w > 0
}

/// Whether the direct kernels can run this convolution here (which of them do:
/// [`for_product`], [`for_weight`]).
pub fn applies(g: &Conv2dGeom) -> bool {
    geometry_fits(g) && detected().is_some()
}

/// Whether the direct forward (and input gradient) beats im2col + GEMM here: up to the
/// instruction set's `max_product` channels. Above, the GEMM's blocking reuses each loaded
/// value more than the direct kernels' accumulators can.
pub fn for_product(g: &Conv2dGeom) -> bool {
    geometry_fits(g) && detected().is_some_and(|isa| g.cin * g.cout <= isa.max_product)
}

/// Whether the direct weight gradient beats im2col + GEMM here (`max_weight`).
pub fn for_weight(g: &Conv2dGeom) -> bool {
    geometry_fits(g) && detected().is_some_and(|isa| g.cin * g.cout <= isa.max_weight)
}

fn isa_here(g: &Conv2dGeom) -> &'static Isa {
    assert!(applies(g), "the direct kernels do not apply to {g:?}");
    detected().expect("applies checked an instruction set")
}

/// The flat layout of one convolution's padded planes.
struct Flat {
    /// Row pitch of the padded planes and of the flat outputs.
    pitch: usize,
    /// The flat outputs, ho·pitch.
    used: usize,
    /// Outputs of one register block and lanes of one vector (the instruction set's).
    block: usize,
    lanes: usize,
    /// Register blocks that cover them.
    nblk: usize,
    /// Length of one padded input plane (covers every tap of every block).
    plane: usize,
    /// Offset of tap ki·3 + kj from an output's flat index.
    offs: [usize; 9],
}

impl Flat {
    #[allow(clippy::too_many_arguments)]
    fn new(
        isa: &Isa,
        h: usize,
        w: usize,
        ph: usize,
        pw: usize,
        dh: usize,
        dw: usize,
        ho: usize,
    ) -> Self {
        let pitch = w + pw;
        let block = isa.block();
        let nblk = (ho * pitch).div_ceil(block);
        let mut offs = [0; 9];
        for (t, o) in offs.iter_mut().enumerate() {
            *o = (t / 3) * dh * pitch + (t % 3) * dw;
        }
        let plane = (nblk * block + offs[8]).max((h + 2 * ph) * pitch + pw);
        Flat {
            pitch,
            used: ho * pitch,
            block,
            lanes: isa.lanes,
            nblk,
            plane,
            offs,
        }
    }
    /// The slot of one padded input plane.
    fn input_slot(&self, top: usize, left: usize) -> Slot {
        Slot {
            len: self.plane,
            pitch: self.pitch,
            top,
            left,
        }
    }
    /// The flat outputs rounded up to whole vectors (what the weight gradient sums over).
    fn vectors(&self) -> usize {
        self.used.div_ceil(self.lanes) * self.lanes
    }
    /// Scatters one register block's outputs (`buf[c]`: the block's flat positions
    /// [j0, j0 + block) of channel c) into the valid runs of their rows.
    fn scatter(
        &self,
        buf: &[&[f32]],
        j0: usize,
        ho: usize,
        wo: usize,
        ob: &mut [MaybeUninit<f32>],
    ) {
        let hw = ho * wo;
        let mut y = j0 / self.pitch;
        while y < ho && y * self.pitch < j0 + self.block {
            let lo = (y * self.pitch).max(j0);
            let hi = (y * self.pitch + wo).min(j0 + self.block);
            if lo < hi {
                let x0 = lo - y * self.pitch;
                for (c, row) in buf.iter().enumerate() {
                    let dst = &mut ob[c * hw + y * wo + x0..][..hi - lo];
                    for (d, &v) in dst.iter_mut().zip(&row[lo - j0..hi - j0]) {
                        d.write(v);
                    }
                }
            }
            y += 1;
        }
    }
}

/// Where one padded plane goes: `len` values at row pitch `pitch`, the h×w input at row
/// `top`, column `left`; zeros elsewhere.
struct Slot {
    len: usize,
    pitch: usize,
    top: usize,
    left: usize,
}

/// The h×w planes of x, each written padded into its slot of `out` (a reused scratch buffer:
/// every value is written, the gaps between rows with zeros, not the whole plane). Slot s
/// holds input plane `src(s)`.
fn pad(
    x: &[f32],
    (h, w): (usize, usize),
    slot: &Slot,
    src: impl Fn(usize) -> usize + Sync,
    out: &mut [f32],
) {
    let planes = x.len() / (h * w);
    out[..planes * slot.len]
        .par_chunks_mut(slot.len)
        .enumerate()
        .with_min_len(4)
        .for_each(|(sl, dst)| {
            let plane = &x[src(sl) * h * w..][..h * w];
            let mut at = 0;
            for (r, row) in plane.chunks(w).enumerate() {
                let s = (r + slot.top) * slot.pitch + slot.left;
                dst[at..s].fill(0.0);
                dst[s..s + w].copy_from_slice(row);
                at = s + w;
            }
            dst[at..].fill(0.0);
        });
}

/// y = conv(x, wt) + bias for a stride-1 3×3 convolution ([`applies`] holds).
pub fn forward(x: &[f32], wt: &[f32], bias: Option<&[f32]>, g: &Conv2dGeom) -> Vec<f32> {
    forward_on(isa_here(g), x, wt, bias, g)
}

/// [`forward`] with the kernels of `isa` (one of [`available`]).
pub fn forward_on(
    isa: &Isa,
    x: &[f32],
    wt: &[f32],
    bias: Option<&[f32]>,
    g: &Conv2dGeom,
) -> Vec<f32> {
    assert!(geometry_fits(g), "the direct kernels do not apply to {g:?}");
    let f = Flat::new(isa, g.h, g.w, g.ph, g.pw, g.dh, g.dw, g.ho);
    super::with_scratch(g.n * g.cin * f.plane, |xp: &mut [f32]| {
        pad(x, (g.h, g.w), &f.input_slot(g.ph, g.pw), |p| p, xp);
        product(isa, xp, &f, wt, bias, g.n, g.cin, g.cout, g.ho, g.wo, false)
    })
}

/// dx for a stride-1 3×3 convolution: the forward product of dy with the flipped kernel,
/// its channel axes swapped, at the complementary padding (2·d − p).
pub fn backward_input(dy: &[f32], wt: &[f32], g: &Conv2dGeom) -> Vec<f32> {
    backward_input_on(isa_here(g), dy, wt, g)
}

/// [`backward_input`] with the kernels of `isa`.
pub fn backward_input_on(isa: &Isa, dy: &[f32], wt: &[f32], g: &Conv2dGeom) -> Vec<f32> {
    assert!(geometry_fits(g), "the direct kernels do not apply to {g:?}");
    let (ph, pw) = (2 * g.dh - g.ph, 2 * g.dw - g.pw);
    let f = Flat::new(isa, g.ho, g.wo, ph, pw, g.dh, g.dw, g.h);
    super::with_scratch(g.n * g.cout * f.plane, |dyp: &mut [f32]| {
        pad(dy, (g.ho, g.wo), &f.input_slot(ph, pw), |p| p, dyp);
        product(isa, dyp, &f, wt, None, g.n, g.cout, g.cin, g.h, g.w, true)
    })
}

/// out (n × cout × ho × wo) = Σ_ci Σ_taps w · shifted xp, from padded planes xp
/// (n × cin planes). `flipped`: wt is stored as the forward kernel of the transposed problem
/// (cin_fwd = cout here, cout_fwd = cin here) and is read flipped in both axes.
#[allow(clippy::too_many_arguments)]
fn product(
    isa: &Isa,
    xp: &[f32],
    f: &Flat,
    wt: &[f32],
    bias: Option<&[f32]>,
    n: usize,
    cin: usize,
    cout: usize,
    ho: usize,
    wo: usize,
    flipped: bool,
) -> Vec<f32> {
    let cob = isa.cob;
    let nb = cout.div_ceil(cob);
    // packed[b][ci][tap][c]: the cob weights one input vector meets, side by side
    let mut packed = vec![0f32; nb * cin * 9 * cob];
    for co in 0..cout {
        for ci in 0..cin {
            for t in 0..9 {
                let v = if flipped {
                    wt[(ci * cout + co) * 9 + 8 - t]
                } else {
                    wt[(co * cin + ci) * 9 + t]
                };
                packed[((co / cob * cin + ci) * 9 + t) * cob + co % cob] = v;
            }
        }
    }
    // the biases of every block, zero past cout (built once, not per image and block)
    let biases: Vec<f32> = (0..nb * cob)
        .map(|co| bias.and_then(|b| b.get(co).copied()).unwrap_or(0.0))
        .collect();
    let hw = ho * wo;
    // every output is written by the blocks' scatter, so no zero-fill first
    super::written_by_planes(n * cout * hw, cout * hw, |i, oi| {
        let xi = &xp[i * cin * f.plane..(i + 1) * cin * f.plane];
        oi.par_chunks_mut(cob * hw).enumerate().for_each(|(b, ob)| {
            let bb = &biases[b * cob..(b + 1) * cob];
            let wb = &packed[b * cin * 9 * cob..(b + 1) * cin * 9 * cob];
            // SAFETY: `isa` is one this machine runs (`available`); the padded planes hold
            // nblk·block + offs[8] values each, so every load is in bounds.
            unsafe { (isa.product_block)(xi, wb, bb, f, cin, ho, wo, ob) };
        });
    })
}

/// dW (cout × cin × 3 × 3) = Σ_images Σ_positions dy · shifted x for a stride-1 3×3 convolution.
pub fn backward_weight(dy: &[f32], x: &[f32], g: &Conv2dGeom) -> Vec<f32> {
    backward_weight_on(isa_here(g), dy, x, g)
}

/// [`backward_weight`] with the kernels of `isa`.
pub fn backward_weight_on(isa: &Isa, dy: &[f32], x: &[f32], g: &Conv2dGeom) -> Vec<f32> {
    assert!(geometry_fits(g), "the direct kernels do not apply to {g:?}");
    let f = Flat::new(isa, g.h, g.w, g.ph, g.pw, g.dh, g.dw, g.ho);
    let len = f.vectors();
    super::with_scratch(
        g.n * (g.cin * f.plane + g.cout * len),
        |buf: &mut [f32]| {
            let (xp, dyp) = buf.split_at_mut(g.n * g.cin * f.plane);
            // channel-major slots (channel, image): the sums over the images of one channel
            // read one contiguous run
            let (n, cin, cout) = (g.n, g.cin, g.cout);
            pad(
                x,
                (g.h, g.w),
                &f.input_slot(g.ph, g.pw),
                |s| (s % n) * cin + s / n,
                xp,
            );
            // dy at the flat positions (zero in the dropped columns and past the last row)
            let dslot = Slot {
                len,
                pitch: f.pitch,
                top: 0,
                left: 0,
            };
            pad(dy, (g.ho, g.wo), &dslot, |s| (s % n) * cout + s / n, dyp);
            weight_sums(isa, dyp, xp, &f, g)
        },
    )
}

/// The weight gradient from the padded planes (see [`backward_weight`]).
fn weight_sums(isa: &Isa, dyp: &[f32], xp: &[f32], f: &Flat, g: &Conv2dGeom) -> Vec<f32> {
    // tasks: (input channel, run of output-channel groups); enough of them to share out
    let rows = isa.rows;
    let groups_all = g.cout.div_ceil(rows);
    let want = 8 * rayon::current_num_threads();
    let per = groups_all.div_ceil(want.div_ceil(g.cin).max(1)).max(1);
    let groups = groups_all.div_ceil(per);
    let parts: Vec<Vec<[f32; 9]>> = (0..g.cin * groups)
        .into_par_iter()
        .map(|task| {
            let (ci, grp) = (task / groups, task % groups);
            let pr = grp * per..((grp + 1) * per).min(groups_all);
            // SAFETY: `isa` is one this machine runs; the planes hold every tile's loads.
            unsafe { (isa.weight_task)(dyp, xp, f, g, ci, pr) }
        })
        .collect();
    let mut dw = vec![0f32; g.cout * g.cin * 9];
    for (task, part) in parts.iter().enumerate() {
        let (ci, grp) = (task / groups, task % groups);
        for (r, s) in part.iter().enumerate() {
            let co = rows * grp * per + r;
            if co < g.cout {
                dw[(co * g.cin + ci) * 9..][..9].copy_from_slice(s);
            }
        }
    }
    dw
}

/// The position tiles of the weight gradient as (image, first position, end) segments, in
/// image then position order: part of one large image, or several small ones.
fn weight_tiles(n: usize, len: usize) -> Vec<Vec<(usize, usize, usize)>> {
    let mut tiles: Vec<Vec<(usize, usize, usize)>> = Vec::new();
    if len >= TILE {
        for i in 0..n {
            for t0 in (0..len).step_by(TILE) {
                tiles.push(vec![(i, t0, (t0 + TILE).min(len))]);
            }
        }
    } else {
        let per = TILE / len;
        for i0 in (0..n).step_by(per) {
            tiles.push((i0..(i0 + per).min(n)).map(|i| (i, 0, len)).collect());
        }
    }
    tiles
}

/// One kernel body for each instruction set: `$feature` what the functions are compiled
/// for, the intrinsics by role, and the register blocking.
macro_rules! isa_kernels {
    (
        $module:ident, $feature:literal, lanes $lanes:expr, nv $nv:expr, cob $cob:expr,
        rows $rows:expr, taps $taps:expr, $zero:ident, $set1:ident, $loadu:ident, $storeu:ident, $fmadd:ident,
        $hsum:path
    ) => {
        #[cfg(target_arch = "x86_64")]
        mod $module {
            use super::*;

            pub const LANES: usize = $lanes;
            pub const NV: usize = $nv;
            pub const COB: usize = $cob;
            pub const ROWS: usize = $rows;
            /// Taps per pass of the weight gradient (a divisor of 9).
            const TAPS: usize = $taps;
            const BLOCK: usize = NV * LANES;

            /// One image's COB output channels (or fewer: `ob` holds ob.len() / (ho·wo) of them).
            #[target_feature(enable = $feature)]
            #[allow(clippy::too_many_arguments)]
            pub unsafe fn product_block(
                xi: &[f32],
                wb: &[f32],
                bias: &[f32],
                f: &Flat,
                cin: usize,
                ho: usize,
                wo: usize,
                ob: &mut [MaybeUninit<f32>],
            ) {
                let nco = ob.len() / (ho * wo);
                debug_assert!(xi.len() >= cin * f.plane && wb.len() == cin * 9 * COB);
                debug_assert!(f.block == BLOCK && bias.len() == COB);
                let mut buf = [[0f32; BLOCK]; COB];
                for blk in 0..f.nblk {
                    let j0 = blk * BLOCK;
                    let mut acc = [[$zero(); NV]; COB];
                    for (c, a) in acc.iter_mut().enumerate() {
                        *a = [$set1(bias[c]); NV];
                    }
                    for ci in 0..cin {
                        let base = xi.as_ptr().add(ci * f.plane + j0);
                        let w = wb.as_ptr().add(ci * 9 * COB);
                        for t in 0..9 {
                            let p = base.add(f.offs[t]);
                            let mut v = [$zero(); NV];
                            for (k, vk) in v.iter_mut().enumerate() {
                                *vk = $loadu(p.add(k * LANES));
                            }
                            for (c, a) in acc.iter_mut().enumerate() {
                                let wv = $set1(*w.add(t * COB + c));
                                for (ak, vk) in a.iter_mut().zip(&v) {
                                    *ak = $fmadd(wv, *vk, *ak);
                                }
                            }
                        }
                    }
                    for (c, a) in acc.iter().enumerate().take(nco) {
                        for (k, ak) in a.iter().enumerate() {
                            $storeu(buf[c].as_mut_ptr().add(k * LANES), *ak);
                        }
                    }
                    let rows: [&[f32]; COB] = std::array::from_fn(|c| &buf[c][..]);
                    f.scatter(&rows[..nco], j0, ho, wo, ob);
                }
            }

            /// The nine taps' sums of one input channel with the output-channel groups `pr`,
            /// over every image and position. Each group passes over a tile TAPS taps at a time
            /// with its TAPS × ROWS accumulators in registers (kept in `acc` between passes and
            /// tiles) while the tile's input rows stay in L1.
            #[target_feature(enable = $feature)]
            pub unsafe fn weight_task(
                dyp: &[f32],
                xp: &[f32],
                f: &Flat,
                g: &Conv2dGeom,
                ci: usize,
                pr: Range<usize>,
            ) -> Vec<[f32; 9]> {
                let len = f.vectors();
                let mut acc = vec![[[$zero(); 9]; ROWS]; pr.len()];
                for tile in &weight_tiles(g.n, len) {
                    for (k, a) in acc.iter_mut().enumerate() {
                        // a short last group repeats its last channel (computed, not stored)
                        let co: [usize; ROWS] =
                            std::array::from_fn(|c| (ROWS * (pr.start + k) + c).min(g.cout - 1));
                        for p0 in (0..9).step_by(TAPS) {
                            let offs: [usize; TAPS] = std::array::from_fn(|t| f.offs[p0 + t]);
                            let mut r = [[$zero(); TAPS]; ROWS];
                            for (rc, ac) in r.iter_mut().zip(a.iter()) {
                                rc.copy_from_slice(&ac[p0..p0 + TAPS]);
                            }
                            for &(i, t0, t1) in tile {
                                let xb = xp.as_ptr().add((ci * g.n + i) * f.plane);
                                let mut d = [dyp.as_ptr(); ROWS];
                                for (p, &c) in d.iter_mut().zip(&co) {
                                    *p = p.add((c * g.n + i) * len);
                                }
                                let mut j = t0;
                                while j < t1 {
                                    let mut dv = [$zero(); ROWS];
                                    for (v, p) in dv.iter_mut().zip(&d) {
                                        *v = $loadu(p.add(j));
                                    }
                                    for (t, &off) in offs.iter().enumerate() {
                                        let v = $loadu(xb.add(j + off));
                                        for (rc, dc) in r.iter_mut().zip(&dv) {
                                            rc[t] = $fmadd(*dc, v, rc[t]);
                                        }
                                    }
                                    j += LANES;
                                }
                            }
                            for (rc, ac) in r.iter().zip(a.iter_mut()) {
                                ac[p0..p0 + TAPS].copy_from_slice(rc);
                            }
                        }
                    }
                }
                // explicit loops: a closure here would not inherit the target feature
                let mut sums = Vec::with_capacity(acc.len() * ROWS);
                for r in &acc {
                    for rc in r {
                        let mut s = [0f32; 9];
                        for (v, x) in s.iter_mut().zip(rc) {
                            *v = $hsum(*x);
                        }
                        sums.push(s);
                    }
                }
                sums
            }
        }
    };
}

isa_kernels!(
    avx512, "avx512f", lanes 16, nv 3, cob 8, rows 3, taps 9,
    _mm512_setzero_ps, _mm512_set1_ps,
    _mm512_loadu_ps, _mm512_storeu_ps, _mm512_fmadd_ps, _mm512_reduce_add_ps
);
isa_kernels!(
    avx2, "avx2,fma", lanes 8, nv 2, cob 6, rows 3, taps 3,
    _mm256_setzero_ps, _mm256_set1_ps,
    _mm256_loadu_ps, _mm256_storeu_ps, _mm256_fmadd_ps, hsum256
);

/// The sum of a vector's eight lanes, in a fixed order (pairs of halves, then of quarters).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn hsum256(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::conv;

    fn geom(
        n: usize,
        cin: usize,
        cout: usize,
        h: usize,
        w: usize,
        p: usize,
        d: usize,
    ) -> Conv2dGeom {
        let (ho, wo) = (h + 2 * p - 2 * d, w + 2 * p - 2 * d);
        Conv2dGeom {
            n,
            cin,
            h,
            w,
            cout,
            kh: 3,
            kw: 3,
            sh: 1,
            sw: 1,
            ph: p,
            pw: p,
            dh: d,
            dw: d,
            ho,
            wo,
        }
    }

    /// Deterministic values in [-1, 1) with a NaN-free spread.
    fn values(len: usize, seed: u32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(2654435761).wrapping_add(1);
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s % 20000) as f32 / 10000.0 - 1.0
            })
            .collect()
    }

    fn close(a: &[f32], b: &[f32], what: &str) {
        assert_eq!(a.len(), b.len(), "{what}: lengths");
        let scale = b.iter().fold(1f32, |m, v| m.max(v.abs()));
        for (k, (x, y)) in a.iter().zip(b).enumerate() {
            assert!(
                (x - y).abs() <= 2e-5 * scale,
                "{what}[{k}]: direct {x} im2col {y}"
            );
        }
    }

    /// The direct kernels of every instruction set this machine runs against the im2col +
    /// GEMM path: odd channel counts (a partial block and a short last group), widths below, at
    /// and above a vector, no padding, dilation.
    #[test]
    fn direct_kernels_match_im2col() {
        let isas = available();
        if isas.is_empty() {
            eprintln!("neither AVX-512 nor AVX2 here: the direct kernels are not used, nothing to compare");
            return;
        }
        let cases = [
            geom(2, 3, 8, 9, 7, 1, 1),
            geom(3, 5, 11, 6, 6, 1, 1),
            geom(2, 16, 9, 17, 33, 1, 1),
            geom(1, 4, 3, 10, 12, 0, 1),
            geom(2, 3, 5, 13, 11, 2, 2),
            geom(1, 2, 2, 20, 19, 1, 2),
            geom(4, 8, 16, 1, 1, 1, 1),
        ];
        for isa in isas {
            for (k, g) in cases.iter().enumerate() {
                assert!(applies(g));
                let x = values(g.n * g.cin * g.h * g.w, 1 + k as u32);
                let wt = values(g.cout * g.cin * 9, 100 + k as u32);
                let b = values(g.cout, 200 + k as u32);
                let dy = values(g.n * g.cout * g.ho * g.wo, 300 + k as u32);
                let what = |op: &str| format!("{} case {k} {op}", isa.name);
                close(
                    &forward_on(isa, &x, &wt, Some(&b), g),
                    &conv::forward(&x, &wt, Some(&b), g),
                    &what("forward"),
                );
                close(
                    &backward_input_on(isa, &dy, &wt, g),
                    &conv::backward_input(&dy, &wt, g),
                    &what("dx"),
                );
                close(
                    &backward_weight_on(isa, &dy, &x, g),
                    &conv::backward_weight(&dy, &x, g),
                    &what("dw"),
                );
            }
        }
    }

    /// The weight gradient sums in a fixed order: the same bits on one thread and on many,
    /// with every instruction set.
    #[test]
    fn direct_weight_gradient_does_not_depend_on_threads() {
        let g = geom(3, 6, 10, 12, 12, 1, 1);
        let x = values(g.n * g.cin * g.h * g.w, 7);
        let dy = values(g.n * g.cout * g.ho * g.wo, 8);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        for isa in available() {
            let a = one.install(|| backward_weight_on(isa, &dy, &x, &g));
            let b = backward_weight_on(isa, &dy, &x, &g);
            assert_eq!(a, b, "{}", isa.name);
        }
    }
}

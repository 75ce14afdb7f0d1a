//! Direct 3×3 convolutions (stride 1, any padding ≤ the kernel's reach, any dilation) in f32
//! with AVX-512: no column matrix. The im2col + GEMM path copies every input value nine times
//! before the product; on the small-channel layers of the tiny models (3-16 channels at
//! 64-128 px) that copy and the GEMM's packing cost more than the arithmetic (docs/performance.md).
//!
//! The trick that makes each tap one vector load: every input plane is zero-padded once to
//! the row pitch P = w + pw (pw zeros before each row serve as the left padding of that row
//! and the right padding of the row above), and output (y, x) is the flat index j = y·P + x.
//! Tap (ki, kj) then reads the padded plane at j + ki·dh·P + kj·dw for every j, so 16
//! consecutive outputs are one unaligned load per tap, whatever the width. The columns
//! x ≥ wo of each flat row are computed and dropped (pw / P of the work: 11% at 8 px).
//!
//! The input gradient is the same forward product with the kernel flipped and its channel
//! axes swapped; the weight gradient sums dy · shifted x over the flat positions of every
//! image, in a fixed order (per-task sums, no reduction across threads), so it does not
//! depend on the thread count. Machines without AVX-512, and f64, keep the im2col path.
use crate::backend::Conv2dGeom;
use rayon::prelude::*;
use std::mem::MaybeUninit;

#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// f32 lanes of one AVX-512 register.
const LANES: usize = 16;
/// Outputs of one register block: `NV` vectors.
const BLOCK: usize = NV * LANES;
/// Vectors per register block.
const NV: usize = 3;
/// Output channels of one register block: 8 channels × 3 vectors = 24 accumulators.
const COB: usize = 8;
/// Output channels per register group of the weight gradient: 27 accumulators, and 3 + 9
/// loads per 27 FMAs (pairs need 2 + 9 per 18, and the unaligned loads are what limits).
const ROWS: usize = 3;
/// Flat positions per tile of the weight gradient: the nine shifted input rows of a tile stay
/// in L1 while every output-channel group of the task passes over them.
const TILE: usize = 128 * LANES;

/// Whether the direct kernels can run this convolution (which of them do: [`for_product`],
/// [`for_weight`]).
pub fn applies(g: &Conv2dGeom) -> bool {
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
        && avx512()
}

/// Whether the direct forward (and input gradient) beats im2col + GEMM: up to 128 × 128
/// channels. Above, the GEMM's blocking reuses each loaded value more than 24 accumulators can
/// (`examples/conv_variants`, GFLOP/s direct / GEMM: 128 → 128 at 32 px 281 / 235 forward,
/// 512 → 512 at 32 px 191 / 293).
pub fn for_product(g: &Conv2dGeom) -> bool {
    applies(g) && g.cin * g.cout <= 128 * 128
}

/// Whether the direct weight gradient beats im2col + GEMM: up to 64 × 64 channels (64 → 64 at
/// 16 px 144 / 111 GFLOP/s, 128 → 128 at 32 px 162 / 184).
pub fn for_weight(g: &Conv2dGeom) -> bool {
    applies(g) && g.cin * g.cout <= 64 * 64
}

fn avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// The flat layout of one convolution's padded planes.
struct Flat {
    /// Row pitch of the padded planes and of the flat outputs.
    pitch: usize,
    /// The flat outputs, ho·pitch.
    used: usize,
    /// Register blocks that cover them.
    nblk: usize,
    /// Length of one padded input plane (covers every tap of every block).
    plane: usize,
    /// Offset of tap ki·3 + kj from an output's flat index.
    offs: [usize; 9],
}

impl Flat {
    fn new(h: usize, w: usize, ph: usize, pw: usize, dh: usize, dw: usize, ho: usize) -> Self {
        let pitch = w + pw;
        let nblk = (ho * pitch).div_ceil(BLOCK);
        let mut offs = [0; 9];
        for (t, o) in offs.iter_mut().enumerate() {
            *o = (t / 3) * dh * pitch + (t % 3) * dw;
        }
        let plane = (nblk * BLOCK + offs[8]).max((h + 2 * ph) * pitch + pw);
        Flat {
            pitch,
            used: ho * pitch,
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
        self.used.div_ceil(LANES) * LANES
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
    assert!(applies(g), "the direct kernels do not apply to {g:?}");
    let f = Flat::new(g.h, g.w, g.ph, g.pw, g.dh, g.dw, g.ho);
    super::with_scratch(g.n * g.cin * f.plane, |xp: &mut [f32]| {
        pad(x, (g.h, g.w), &f.input_slot(g.ph, g.pw), |p| p, xp);
        product(xp, &f, wt, bias, g.n, g.cin, g.cout, g.ho, g.wo, false)
    })
}

/// dx for a stride-1 3×3 convolution: the forward product of dy with the flipped kernel,
/// its channel axes swapped, at the complementary padding (2·d − p).
pub fn backward_input(dy: &[f32], wt: &[f32], g: &Conv2dGeom) -> Vec<f32> {
    assert!(applies(g), "the direct kernels do not apply to {g:?}");
    let (ph, pw) = (2 * g.dh - g.ph, 2 * g.dw - g.pw);
    let f = Flat::new(g.ho, g.wo, ph, pw, g.dh, g.dw, g.h);
    super::with_scratch(g.n * g.cout * f.plane, |dyp: &mut [f32]| {
        pad(dy, (g.ho, g.wo), &f.input_slot(ph, pw), |p| p, dyp);
        product(dyp, &f, wt, None, g.n, g.cout, g.cin, g.h, g.w, true)
    })
}

/// out (n × cout × ho × wo) = Σ_ci Σ_taps w · shifted xp, from padded planes xp
/// (n × cin planes). `flipped`: wt is stored as the forward kernel of the transposed problem
/// (cin_fwd = cout here, cout_fwd = cin here) and is read flipped in both axes.
#[allow(clippy::too_many_arguments)]
fn product(
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
    let nb = cout.div_ceil(COB);
    // packed[b][ci][tap][c]: the 8 weights one input vector meets, side by side
    let mut packed = vec![0f32; nb * cin * 9 * COB];
    for co in 0..cout {
        for ci in 0..cin {
            for t in 0..9 {
                let v = if flipped {
                    wt[(ci * cout + co) * 9 + 8 - t]
                } else {
                    wt[(co * cin + ci) * 9 + t]
                };
                packed[((co / COB * cin + ci) * 9 + t) * COB + co % COB] = v;
            }
        }
    }
    let hw = ho * wo;
    // every output is written by the blocks' scatter, so no zero-fill first
    super::written_by_planes(n * cout * hw, cout * hw, |i, oi| {
        let xi = &xp[i * cin * f.plane..(i + 1) * cin * f.plane];
        oi.par_chunks_mut(COB * hw).enumerate().for_each(|(b, ob)| {
            let mut bb = [0f32; COB];
            if let Some(bias) = bias {
                for (c, v) in bb.iter_mut().enumerate() {
                    *v = bias.get(b * COB + c).copied().unwrap_or(0.0);
                }
            }
            let wb = &packed[b * cin * 9 * COB..(b + 1) * cin * 9 * COB];
            // SAFETY: `applies` checked AVX-512; the padded planes hold
            // nblk·BLOCK + offs[8] values each, so every load is in bounds.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                product_block(xi, wb, &bb, f, cin, ho, wo, ob)
            };
        });
    })
}

/// One image's 8 output channels (or fewer: `ob` holds ob.len() / (ho·wo) of them).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn product_block(
    xi: &[f32],
    wb: &[f32],
    bias: &[f32; COB],
    f: &Flat,
    cin: usize,
    ho: usize,
    wo: usize,
    ob: &mut [MaybeUninit<f32>],
) {
    let hw = ho * wo;
    let nco = ob.len() / hw;
    debug_assert!(xi.len() >= cin * f.plane && wb.len() == cin * 9 * COB);
    let mut buf = [[0f32; BLOCK]; COB];
    for blk in 0..f.nblk {
        let j0 = blk * BLOCK;
        let mut acc = [[_mm512_setzero_ps(); NV]; COB];
        for (c, a) in acc.iter_mut().enumerate() {
            *a = [_mm512_set1_ps(bias[c]); NV];
        }
        for ci in 0..cin {
            let base = xi.as_ptr().add(ci * f.plane + j0);
            let w = wb.as_ptr().add(ci * 9 * COB);
            for t in 0..9 {
                let p = base.add(f.offs[t]);
                let mut v = [_mm512_setzero_ps(); NV];
                for (k, vk) in v.iter_mut().enumerate() {
                    *vk = _mm512_loadu_ps(p.add(k * LANES));
                }
                for (c, a) in acc.iter_mut().enumerate() {
                    let wv = _mm512_set1_ps(*w.add(t * COB + c));
                    for (ak, vk) in a.iter_mut().zip(&v) {
                        *ak = _mm512_fmadd_ps(wv, *vk, *ak);
                    }
                }
            }
        }
        for (c, a) in acc.iter().enumerate().take(nco) {
            for (k, ak) in a.iter().enumerate() {
                _mm512_storeu_ps(buf[c].as_mut_ptr().add(k * LANES), *ak);
            }
        }
        // the block's flat positions [j0, j0 + BLOCK) cut into the valid runs of their rows
        let mut y = j0 / f.pitch;
        while y < ho && y * f.pitch < j0 + BLOCK {
            let lo = (y * f.pitch).max(j0);
            let hi = (y * f.pitch + wo).min(j0 + BLOCK);
            if lo < hi {
                let x0 = lo - y * f.pitch;
                for (c, row) in buf.iter().enumerate().take(nco) {
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

/// dW (cout × cin × 3 × 3) = Σ_images Σ_positions dy · shifted x for a stride-1 3×3 convolution.
pub fn backward_weight(dy: &[f32], x: &[f32], g: &Conv2dGeom) -> Vec<f32> {
    assert!(applies(g), "the direct kernels do not apply to {g:?}");
    let f = Flat::new(g.h, g.w, g.ph, g.pw, g.dh, g.dw, g.ho);
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
            weight_sums(dyp, xp, &f, g)
        },
    )
}

/// The weight gradient from the padded planes (see [`backward_weight`]).
fn weight_sums(dyp: &[f32], xp: &[f32], f: &Flat, g: &Conv2dGeom) -> Vec<f32> {
    // tasks: (input channel, run of output-channel groups); enough of them to share out
    let groups_all = g.cout.div_ceil(ROWS);
    let want = 8 * rayon::current_num_threads();
    let per = groups_all.div_ceil(want.div_ceil(g.cin).max(1)).max(1);
    let groups = groups_all.div_ceil(per);
    let parts: Vec<Vec<[[f32; 9]; ROWS]>> = (0..g.cin * groups)
        .into_par_iter()
        .map(|task| {
            let (ci, grp) = (task / groups, task % groups);
            let pr = grp * per..((grp + 1) * per).min(groups_all);
            // SAFETY: `applies` checked AVX-512; the planes hold every tile's loads.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                weight_task(dyp, xp, f, g, ci, pr)
            }
            #[cfg(not(target_arch = "x86_64"))]
            unreachable!("the direct kernels need AVX-512")
        })
        .collect();
    let mut dw = vec![0f32; g.cout * g.cin * 9];
    for (task, part) in parts.iter().enumerate() {
        let (ci, grp) = (task / groups, task % groups);
        for (k, sums) in part.iter().enumerate() {
            for (c, s) in sums.iter().enumerate() {
                let co = ROWS * (grp * per + k) + c;
                if co < g.cout {
                    dw[(co * g.cin + ci) * 9..][..9].copy_from_slice(s);
                }
            }
        }
    }
    dw
}

/// The nine taps' sums of one input channel with the output-channel groups `pr`, over every
/// image and position. The positions go in tiles of about [`TILE`] (part of one large image,
/// or several small ones); each group passes over a tile with its 27 accumulators in registers
/// (kept in `acc` between tiles) while the tile's input rows stay in L1.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn weight_task(
    dyp: &[f32],
    xp: &[f32],
    f: &Flat,
    g: &Conv2dGeom,
    ci: usize,
    pr: std::ops::Range<usize>,
) -> Vec<[[f32; 9]; ROWS]> {
    let len = f.vectors();
    let mut acc = vec![[[_mm512_setzero_ps(); 9]; ROWS]; pr.len()];
    // tiles as (image, first position, end) segments, in image then position order
    let mut tiles: Vec<Vec<(usize, usize, usize)>> = Vec::new();
    if len >= TILE {
        for i in 0..g.n {
            for t0 in (0..len).step_by(TILE) {
                tiles.push(vec![(i, t0, (t0 + TILE).min(len))]);
            }
        }
    } else {
        let per = TILE / len;
        for i0 in (0..g.n).step_by(per) {
            tiles.push((i0..(i0 + per).min(g.n)).map(|i| (i, 0, len)).collect());
        }
    }
    for tile in &tiles {
        for (k, a) in acc.iter_mut().enumerate() {
            // a short last group repeats its last channel (computed, not stored)
            let co: [usize; ROWS] =
                std::array::from_fn(|c| (ROWS * (pr.start + k) + c).min(g.cout - 1));
            let mut r = *a;
            for &(i, t0, t1) in tile {
                let xb = xp.as_ptr().add((ci * g.n + i) * f.plane);
                let mut d = [dyp.as_ptr(); ROWS];
                for (p, &c) in d.iter_mut().zip(&co) {
                    *p = p.add((c * g.n + i) * len);
                }
                let mut j = t0;
                while j < t1 {
                    let mut a = [_mm512_setzero_ps(); ROWS];
                    for (v, p) in a.iter_mut().zip(&d) {
                        *v = _mm512_loadu_ps(p.add(j));
                    }
                    for (t, &off) in f.offs.iter().enumerate() {
                        let v = _mm512_loadu_ps(xb.add(j + off));
                        for (rc, ac) in r.iter_mut().zip(&a) {
                            rc[t] = _mm512_fmadd_ps(*ac, v, rc[t]);
                        }
                    }
                    j += LANES;
                }
            }
            *a = r;
        }
    }
    // explicit loops: a closure here would not inherit the AVX-512 target feature
    let mut sums = vec![[[0f32; 9]; ROWS]; acc.len()];
    for (s, r) in sums.iter_mut().zip(&acc) {
        for (sc, rc) in s.iter_mut().zip(r) {
            for (v, x) in sc.iter_mut().zip(rc) {
                *v = _mm512_reduce_add_ps(*x);
            }
        }
    }
    sums
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

    /// The direct kernels against the im2col + GEMM path: odd channel counts (a partial block
    /// of 8 and a short last group of three), widths below, at and above a vector, no padding, dilation.
    #[test]
    fn direct_kernels_match_im2col() {
        if !applies(&geom(1, 1, 1, 4, 4, 1, 1)) {
            eprintln!("no AVX-512 here: the direct kernels are not used, nothing to compare");
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
        for (k, g) in cases.iter().enumerate() {
            assert!(applies(g));
            let x = values(g.n * g.cin * g.h * g.w, 1 + k as u32);
            let wt = values(g.cout * g.cin * 9, 100 + k as u32);
            let b = values(g.cout, 200 + k as u32);
            let dy = values(g.n * g.cout * g.ho * g.wo, 300 + k as u32);
            close(
                &forward(&x, &wt, Some(&b), g),
                &conv::forward(&x, &wt, Some(&b), g),
                &format!("case {k} forward"),
            );
            close(
                &backward_input(&dy, &wt, g),
                &conv::backward_input(&dy, &wt, g),
                &format!("case {k} dx"),
            );
            close(
                &backward_weight(&dy, &x, g),
                &conv::backward_weight(&dy, &x, g),
                &format!("case {k} dw"),
            );
        }
    }

    /// The weight gradient sums in a fixed order: the same bits on one thread and on many.
    #[test]
    fn direct_weight_gradient_does_not_depend_on_threads() {
        let g = geom(3, 6, 10, 12, 12, 1, 1);
        if !applies(&g) {
            return;
        }
        let x = values(g.n * g.cin * g.h * g.w, 7);
        let dy = values(g.n * g.cout * g.ho * g.wo, 8);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let a = one.install(|| backward_weight(&dy, &x, &g));
        let b = backward_weight(&dy, &x, &g);
        assert_eq!(a, b);
    }
}

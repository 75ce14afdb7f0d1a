//! The co-attention op on the GPU, unfused: cuBLAS GEMMs and the row-softmax kernels, the same
//! math as backend/cpu/coattention.rs (DESIGN §4). Per pair b:
//!   Q = W·Fm (C×N), S = Qᵀ·Fn (N×M), A = softmax over i of S, B = softmax over j of S,
//!   Fn∩ = Fm·A (C×M), Fm∩ = Fn·Bᵀ (C×N).
//! A is kept transposed (Aᵀ = row softmax of Sᵀ, M×N), so both softmaxes run over contiguous
//! rows; Sᵀ is a transpose copy of S (a memory pass, far cheaper than a second product).
//! All pairs of the batch go through strided-batched GEMMs; the N×M matrices of the whole
//! batch live in device memory (kept from the forward for the backward when it is recorded).
//!
//! The fused path (kernels/coattention.cu) never writes an N×M matrix: both directions run
//! flash-style on float32 FMAs. It is slower than cuBLAS's TF32 tensor cores, so `Auto` takes
//! it only when the unfused path's matrices would not fit in half the free device memory.
use super::gemm::{gemm, gm};
use super::layout::swap_last2;
use super::runtime::{arg, rt};
use super::softmax::softmax_rows;
use super::storage::CudaStorage;
use crate::backend::BinaryOp;
use crate::backend::ElementwiseOps;
use crate::tensor::Shape;
use std::sync::atomic::{AtomicU8, Ordering};

/// Which co-attention implementation the GPU runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoattImpl {
    /// unfused unless its N×M matrices would not fit (C a multiple of 32 up to 512 for fused)
    Auto,
    Unfused,
    Fused,
}

static IMPL: AtomicU8 = AtomicU8::new(0);

/// Chooses the implementation for the whole process (`COATT_COATTENTION=fused|unfused|auto`
/// in the environment sets the start value).
pub fn set_coattention_impl(i: CoattImpl) {
    IMPL.store(i as u8 + 1, Ordering::Relaxed);
}
pub fn coattention_impl() -> CoattImpl {
    match IMPL.load(Ordering::Relaxed) {
        1 => CoattImpl::Auto,
        2 => CoattImpl::Unfused,
        3 => CoattImpl::Fused,
        _ => match std::env::var("COATT_COATTENTION").as_deref() {
            Ok("fused") => CoattImpl::Fused,
            Ok("unfused") => CoattImpl::Unfused,
            _ => CoattImpl::Auto,
        },
    }
}

fn fused_fits(c: usize) -> bool {
    c.is_multiple_of(32) && (32..=512).contains(&c)
}

fn use_fused(b: usize, c: usize, n: usize, m: usize) -> bool {
    match coattention_impl() {
        CoattImpl::Unfused => false,
        CoattImpl::Fused => {
            assert!(
                fused_fits(c),
                "fused co-attention needs C a multiple of 32 up to 512, not {c}"
            );
            true
        }
        CoattImpl::Auto => {
            // the unfused backward holds about six B·N·M float matrices at once
            let need = 6 * b * n * m * 4;
            let free = cudarc::driver::result::mem_get_info().map_or(usize::MAX, |(f, _)| f);
            fused_fits(c) && need > free / 2
        }
    }
}

/// What a forward keeps for its backward.
pub enum Fwd {
    /// Q and both softmaxes (2·B·N·M + B·C·N floats)
    Unfused(Unfused),
    /// the row-major inputs, outputs and log-sum-exps (O(B·C·(N+M)) floats)
    Fused(Fused),
}

pub struct Unfused {
    q: CudaStorage,
    /// softmax over j, (B, N, M)
    bm: CudaStorage,
    /// softmax over i, transposed: (B, M, N)
    at: CudaStorage,
}

pub struct Fused {
    /// Qᵀ, Fnᵀ, Fmᵀ per pair: (B, N, C), (B, M, C), (B, N, C)
    qt: CudaStorage,
    fnt: CudaStorage,
    fmt: CudaStorage,
    /// direction outputs as rows: (B, N, C), (B, M, C); their log-sum-exps (B, N), (B, M)
    o1: CudaStorage,
    o2: CudaStorage,
    lse1: CudaStorage,
    lse2: CudaStorage,
}

/// Q = W·Fm for every pair of the batch (B, C, N); both paths start from it.
fn project(w: &CudaStorage, fm: &CudaStorage, b: usize, c: usize, n: usize) -> CudaStorage {
    let q = CudaStorage::uninit(b * c * n);
    gemm(
        gm(
            b,
            c,
            n,
            c,
            w.ptr(),
            false,
            0,
            fm.ptr(),
            false,
            c * n,
            q.ptr(),
        ),
        false,
    );
    q
}

/// The backward of `project`: returns dW = Σ_b dQ_b·Fm_bᵀ and adds Wᵀ·dQ into `dfm`.
fn project_backward(
    w: &CudaStorage,
    fm: &CudaStorage,
    dq: &CudaStorage,
    dfm: &CudaStorage,
    b: usize,
    c: usize,
    n: usize,
) -> CudaStorage {
    let dw = CudaStorage::full(c * c, 0.0);
    for bi in 0..b {
        let (dqb, fmb) = (
            dq.ptr() + 4 * (bi * c * n) as u64,
            fm.ptr() + 4 * (bi * c * n) as u64,
        );
        gemm(gm(1, c, c, n, dqb, false, 0, fmb, true, 0, dw.ptr()), true);
    }
    gemm(
        gm(
            b,
            c,
            n,
            c,
            w.ptr(),
            true,
            0,
            dq.ptr(),
            false,
            c * n,
            dfm.ptr(),
        ),
        true,
    );
    dw
}

fn attention(
    fm: &CudaStorage,
    fnn: &CudaStorage,
    w: &CudaStorage,
    b: usize,
    c: usize,
    n: usize,
    m: usize,
) -> Unfused {
    let q = project(w, fm, b, c, n);
    let s = CudaStorage::uninit(b * n * m);
    gemm(
        gm(
            b,
            n,
            m,
            c,
            q.ptr(),
            true,
            c * n,
            fnn.ptr(),
            false,
            c * m,
            s.ptr(),
        ),
        false,
    );
    let bm = softmax_rows(&s, None, b * n, m);
    let st = swap_last2(&s, b, n, m);
    drop(s);
    let at = softmax_rows(&st, None, b * m, n);
    Unfused { q, bm, at }
}

/// Returns (Fm∩ (B,C,N), Fn∩ (B,C,M)) and, with `keep`, Q and the softmaxes for the backward.
#[allow(clippy::too_many_arguments)]
fn forward(
    fm: &CudaStorage,
    fnn: &CudaStorage,
    w: &CudaStorage,
    b: usize,
    c: usize,
    n: usize,
    m: usize,
    keep: bool,
) -> (CudaStorage, CudaStorage, Option<Fwd>) {
    if use_fused(b, c, n, m) {
        let f = fused_forward(fm, fnn, w, b, c, n, m);
        let fm_att = swap_last2(&f.o1, b, n, c);
        let fn_att = swap_last2(&f.o2, b, m, c);
        return (fm_att, fn_att, keep.then_some(Fwd::Fused(f)));
    }
    let f = attention(fm, fnn, w, b, c, n, m);
    let fn_att = CudaStorage::uninit(b * c * m);
    // Fn∩ = Fm·A = Fm·(Aᵀ)ᵀ
    gemm(
        gm(
            b,
            c,
            m,
            n,
            fm.ptr(),
            false,
            c * n,
            f.at.ptr(),
            true,
            m * n,
            fn_att.ptr(),
        ),
        false,
    );
    let fm_att = CudaStorage::uninit(b * c * n);
    // Fm∩ = Fn·Bᵀ
    gemm(
        gm(
            b,
            c,
            n,
            m,
            fnn.ptr(),
            false,
            c * m,
            f.bm.ptr(),
            true,
            n * m,
            fm_att.ptr(),
        ),
        false,
    );
    (fm_att, fn_att, keep.then_some(Fwd::Unfused(f)))
}

/// Returns (dFm, dFn, dW) from the upstream gradients (g1 of Fm∩, g2 of Fn∩).
#[allow(clippy::too_many_arguments)]
fn backward(
    fm: &CudaStorage,
    fnn: &CudaStorage,
    w: &CudaStorage,
    g1: &CudaStorage,
    g2: &CudaStorage,
    b: usize,
    c: usize,
    n: usize,
    m: usize,
    kept: Option<&Fwd>,
) -> (CudaStorage, CudaStorage, CudaStorage) {
    let recomputed;
    let f = match kept {
        Some(Fwd::Unfused(f)) => f,
        Some(Fwd::Fused(f)) => return fused_backward(f, fm, w, g1, g2, b, c, n, m),
        None if use_fused(b, c, n, m) => {
            let f = fused_forward(fm, fnn, w, b, c, n, m);
            return fused_backward(&f, fm, w, g1, g2, b, c, n, m);
        }
        None => {
            recomputed = attention(fm, fnn, w, b, c, n, m);
            &recomputed
        }
    };
    // Fm∩ = Fn·Bᵀ: dFn = g1·B, dB = g1ᵀ·Fn
    let dfn = CudaStorage::uninit(b * c * m);
    gemm(
        gm(
            b,
            c,
            m,
            n,
            g1.ptr(),
            false,
            c * n,
            f.bm.ptr(),
            false,
            n * m,
            dfn.ptr(),
        ),
        false,
    );
    let dbm = CudaStorage::uninit(b * n * m);
    gemm(
        gm(
            b,
            n,
            m,
            c,
            g1.ptr(),
            true,
            c * n,
            fnn.ptr(),
            false,
            c * m,
            dbm.ptr(),
        ),
        false,
    );
    let ds1 = softmax_rows(&f.bm, Some(&dbm), b * n, m);
    drop(dbm);
    // Fn∩ = Fm·A: dFm = g2·Aᵀ, dAᵀ = g2ᵀ·Fm
    let dfm = CudaStorage::uninit(b * c * n);
    gemm(
        gm(
            b,
            c,
            n,
            m,
            g2.ptr(),
            false,
            c * m,
            f.at.ptr(),
            false,
            m * n,
            dfm.ptr(),
        ),
        false,
    );
    let dat = CudaStorage::uninit(b * m * n);
    gemm(
        gm(
            b,
            m,
            n,
            c,
            g2.ptr(),
            true,
            c * m,
            fm.ptr(),
            false,
            c * n,
            dat.ptr(),
        ),
        false,
    );
    let ds2t = softmax_rows(&f.at, Some(&dat), b * m, n);
    drop(dat);
    // both directions share S: dS = dS1 + (dS2ᵀ)ᵀ
    let sh = Shape::new(vec![b * n * m]);
    let ds = ds1.binary(BinaryOp::Add, &sh, &swap_last2(&ds2t, b, m, n), &sh, &sh);
    drop((ds1, ds2t));
    // S = Qᵀ·Fn: dQ = Fn·dSᵀ, dFn += Q·dS
    let dq = CudaStorage::uninit(b * c * n);
    gemm(
        gm(
            b,
            c,
            n,
            m,
            fnn.ptr(),
            false,
            c * m,
            ds.ptr(),
            true,
            n * m,
            dq.ptr(),
        ),
        false,
    );
    gemm(
        gm(
            b,
            c,
            m,
            n,
            f.q.ptr(),
            false,
            c * n,
            ds.ptr(),
            false,
            n * m,
            dfn.ptr(),
        ),
        true,
    );
    let dw = project_backward(w, fm, &dq, &dfm, b, c, n);
    (dfm, dfn, dw)
}

// ------------------------------------------------------------------------------ fused path

const ROWS_PER_BLOCK: usize = 16; // kernels/coattention.cu WARPS · RW
const THREADS: u32 = 256; // WARPS · 32
const TILE: usize = 16; // rows per streamed tile

fn grid(rows: usize, b: usize) -> (u32, u32, u32) {
    (rows.div_ceil(ROWS_PER_BLOCK) as u32, b as u32, 1)
}

/// One attention direction: o = softmax(q·kᵀ)·v per row, and the rows' log-sum-exps.
#[allow(clippy::too_many_arguments)]
fn attn_fwd(
    q: &CudaStorage,
    k: &CudaStorage,
    v: &CudaStorage,
    b: usize,
    nq: usize,
    nk: usize,
    c: usize,
) -> (CudaStorage, CudaStorage) {
    let (o, lse) = (CudaStorage::uninit(b * nq * c), CudaStorage::uninit(b * nq));
    let same = (k.ptr() == v.ptr()) as i32;
    let tiles = if same == 1 { 1 } else { 2 };
    let shared = (tiles * TILE * c * 4) as u32;
    let (qp, kp, vp, op, lp) = (q.ptr(), k.ptr(), v.ptr(), o.ptr(), lse.ptr());
    let (nq32, nk32, c32) = (nq as i32, nk as i32, c as i32);
    let r = rt();
    r.allow_shared("coattention.cu", "attn_fwd", shared);
    r.launch(
        "coattention.cu",
        "attn_fwd",
        grid(nq, b),
        THREADS,
        shared,
        &[
            arg(&qp),
            arg(&kp),
            arg(&vp),
            arg(&op),
            arg(&lp),
            arg(&nq32),
            arg(&nk32),
            arg(&c32),
            arg(&same),
        ],
    );
    (o, lse)
}

#[allow(clippy::too_many_arguments)]
fn fused_forward(
    fm: &CudaStorage,
    fnn: &CudaStorage,
    w: &CudaStorage,
    b: usize,
    c: usize,
    n: usize,
    m: usize,
) -> Fused {
    let q = project(w, fm, b, c, n);
    let qt = swap_last2(&q, b, c, n);
    drop(q);
    let fnt = swap_last2(fnn, b, c, m);
    let fmt = swap_last2(fm, b, c, n);
    let (o1, lse1) = attn_fwd(&qt, &fnt, &fnt, b, n, m, c);
    let (o2, lse2) = attn_fwd(&fnt, &qt, &fmt, b, m, n, c);
    Fused {
        qt,
        fnt,
        fmt,
        o1,
        o2,
        lse1,
        lse2,
    }
}

/// Gradients of one direction: (dq, dk, dv), all as rows.
#[allow(clippy::too_many_arguments)]
fn attn_bwd(
    q: &CudaStorage,
    k: &CudaStorage,
    v: &CudaStorage,
    o: &CudaStorage,
    lse: &CudaStorage,
    dout: &CudaStorage,
    b: usize,
    nq: usize,
    nk: usize,
    c: usize,
) -> (CudaStorage, CudaStorage, CudaStorage) {
    let r = rt();
    let d = CudaStorage::uninit(b * nq);
    let (gp, op, dp, rows, c32) = (dout.ptr(), o.ptr(), d.ptr(), (b * nq) as i64, c as i32);
    r.launch(
        "coattention.cu",
        "attn_rowdot",
        ((b * nq).div_ceil(8) as u32, 1, 1),
        256,
        0,
        &[arg(&gp), arg(&op), arg(&dp), arg(&rows), arg(&c32)],
    );
    let same = (k.ptr() == v.ptr()) as i32;
    let (qp, kp, vp, lp) = (q.ptr(), k.ptr(), v.ptr(), lse.ptr());
    let (nq32, nk32) = (nq as i32, nk as i32);
    let dq = CudaStorage::uninit(b * nq * c);
    let dqp = dq.ptr();
    let tiles = if same == 1 { 1 } else { 2 };
    let shared = (tiles * TILE * c * 4) as u32;
    r.allow_shared("coattention.cu", "attn_bwd_dq", shared);
    r.launch(
        "coattention.cu",
        "attn_bwd_dq",
        grid(nq, b),
        THREADS,
        shared,
        &[
            arg(&qp),
            arg(&kp),
            arg(&vp),
            arg(&gp),
            arg(&lp),
            arg(&dp),
            arg(&dqp),
            arg(&nq32),
            arg(&nk32),
            arg(&c32),
            arg(&same),
        ],
    );
    let (dk, dv) = (
        CudaStorage::uninit(b * nk * c),
        CudaStorage::uninit(b * nk * c),
    );
    let (dkp, dvp) = (dk.ptr(), dv.ptr());
    let shared = ((2 * TILE * c + 2 * TILE) * 4) as u32;
    r.allow_shared("coattention.cu", "attn_bwd_dkv", shared);
    r.launch(
        "coattention.cu",
        "attn_bwd_dkv",
        grid(nk, b),
        THREADS,
        shared,
        &[
            arg(&qp),
            arg(&kp),
            arg(&vp),
            arg(&gp),
            arg(&lp),
            arg(&dp),
            arg(&dkp),
            arg(&dvp),
            arg(&nq32),
            arg(&nk32),
            arg(&c32),
        ],
    );
    (dq, dk, dv)
}

fn add(a: &CudaStorage, b: &CudaStorage) -> CudaStorage {
    let sh = Shape::new(vec![a.len()]);
    a.binary(BinaryOp::Add, &sh, b, &sh, &sh)
}

#[allow(clippy::too_many_arguments)]
fn fused_backward(
    f: &Fused,
    fm: &CudaStorage,
    w: &CudaStorage,
    g1: &CudaStorage,
    g2: &CudaStorage,
    b: usize,
    c: usize,
    n: usize,
    m: usize,
) -> (CudaStorage, CudaStorage, CudaStorage) {
    let do1 = swap_last2(g1, b, c, n);
    let do2 = swap_last2(g2, b, c, m);
    // direction 1: queries Qᵀ, keys = values = Fnᵀ; direction 2: queries Fnᵀ, keys Qᵀ, values Fmᵀ
    let (dq1, dk1, dv1) = attn_bwd(&f.qt, &f.fnt, &f.fnt, &f.o1, &f.lse1, &do1, b, n, m, c);
    let (dq2, dk2, dv2) = attn_bwd(&f.fnt, &f.qt, &f.fmt, &f.o2, &f.lse2, &do2, b, m, n, c);
    let dqt = add(&dq1, &dk2);
    let dfnt = add(&add(&dk1, &dv1), &dq2);
    let dq = swap_last2(&dqt, b, n, c);
    let dfn = swap_last2(&dfnt, b, m, c);
    let dfm = swap_last2(&dv2, b, n, c);
    let dw = project_backward(w, fm, &dq, &dfm, b, c, n);
    (dfm, dfn, dw)
}

impl crate::backend::CoattentionOps for CudaStorage {
    fn coattention(
        &self,
        fnn: &Self,
        w: &Self,
        g: &crate::backend::CoattGeom,
        keep: bool,
    ) -> (Self, Self, Option<crate::backend::CoattSaved>) {
        let (a, b, kept) = forward(self, fnn, w, g.b, g.c, g.n, g.m, keep);
        (a, b, kept.map(crate::backend::CoattSaved::new))
    }
    fn coattention_backward(
        &self,
        fnn: &Self,
        w: &Self,
        g_fm: &Self,
        g_fn: &Self,
        g: &crate::backend::CoattGeom,
        saved: Option<&crate::backend::CoattSaved>,
    ) -> (Self, Self, Self) {
        let kept = saved.and_then(|s| s.downcast_ref::<Fwd>());
        backward(self, fnn, w, g_fm, g_fn, g.b, g.c, g.n, g.m, kept)
    }
}

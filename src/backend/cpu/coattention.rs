//! The co-attention op of DESIGN §4, per pair b (batch index dropped):
//!   Q = W·Fm (C×N), S = Qᵀ·Fn (N×M), A = softmax_i(S), B = softmax_j(S),
//!   Fn∩ = Fm·A (C×M), Fm∩ = Fn·Bᵀ (C×N).
//! The N×M matrices live only inside one pair's step; the backward recomputes them.
use super::matmul::{gemm_into, parallelism};
use super::softmax::{softmax, softmax_backward};
use crate::tensor::Float;

struct Pair<T> {
    q: Vec<T>,
    a: Vec<T>, // softmax over i (axis 0 of N×M)
    b: Vec<T>, // softmax over j (axis 1 of N×M)
}

fn pair_forward<T: Float>(fm: &[T], fnn: &[T], w: &[T], c: usize, n: usize, m: usize) -> Pair<T> {
    let mut q = vec![T::zero(); c * n];
    gemm_into(
        &mut q,
        w,
        fm,
        c,
        c,
        n,
        false,
        false,
        false,
        parallelism(c, n, c),
    );
    let mut s = vec![T::zero(); n * m];
    gemm_into(
        &mut s,
        &q,
        fnn,
        n,
        c,
        m,
        true,
        false,
        false,
        parallelism(n, m, c),
    );
    let a = softmax(&s, 1, n, m);
    let b = softmax(&s, n, m, 1);
    Pair { q, a, b }
}

/// Returns (Fm∩ (B,C,N), Fn∩ (B,C,M)).
pub fn forward<T: Float>(
    fm: &[T],
    fnn: &[T],
    w: &[T],
    bsz: usize,
    c: usize,
    n: usize,
    m: usize,
) -> (Vec<T>, Vec<T>) {
    let mut fm_att = vec![T::zero(); bsz * c * n];
    let mut fn_att = vec![T::zero(); bsz * c * m];
    for bi in 0..bsz {
        let (fmb, fnb) = (&fm[bi * c * n..][..c * n], &fnn[bi * c * m..][..c * m]);
        let p = pair_forward(fmb, fnb, w, c, n, m);
        gemm_into(
            &mut fn_att[bi * c * m..],
            fmb,
            &p.a,
            c,
            n,
            m,
            false,
            false,
            false,
            parallelism(c, m, n),
        );
        gemm_into(
            &mut fm_att[bi * c * n..],
            fnb,
            &p.b,
            c,
            m,
            n,
            false,
            true,
            false,
            parallelism(c, n, m),
        );
    }
    (fm_att, fn_att)
}

/// Returns (dFm, dFn, dW) given the upstream gradients of (Fm∩, Fn∩).
pub fn backward<T: Float>(
    fm: &[T],
    fnn: &[T],
    w: &[T],
    g_fm_att: &[T],
    g_fn_att: &[T],
    bsz: usize,
    c: usize,
    n: usize,
    m: usize,
) -> (Vec<T>, Vec<T>, Vec<T>) {
    let mut dfm = vec![T::zero(); bsz * c * n];
    let mut dfn = vec![T::zero(); bsz * c * m];
    let mut dw = vec![T::zero(); c * c];
    let (pcm, pcn, pnm) = (
        parallelism(c, m, n),
        parallelism(c, n, m),
        parallelism(n, m, c),
    );
    for bi in 0..bsz {
        let (fmb, fnb) = (&fm[bi * c * n..][..c * n], &fnn[bi * c * m..][..c * m]);
        let (g1, g2) = (
            &g_fm_att[bi * c * n..][..c * n],
            &g_fn_att[bi * c * m..][..c * m],
        );
        let (dfmb, dfnb) = (
            &mut dfm[bi * c * n..][..c * n],
            &mut dfn[bi * c * m..][..c * m],
        );
        let p = pair_forward(fmb, fnb, w, c, n, m);
        // Fm∩ = Fn·Bᵀ: values Fn, weights B (softmax over j).
        gemm_into(dfnb, g1, &p.b, c, n, m, false, false, false, pcm);
        let mut d_b = vec![T::zero(); n * m];
        gemm_into(&mut d_b, g1, fnb, n, c, m, true, false, false, pnm);
        let mut ds = softmax_backward(&p.b, &d_b, n, m, 1);
        // Fn∩ = Fm·A: values Fm, weights A (softmax over i).
        gemm_into(dfmb, g2, &p.a, c, m, n, false, true, false, pcn);
        let mut d_a = vec![T::zero(); n * m];
        gemm_into(&mut d_a, fmb, g2, n, c, m, true, false, false, pnm);
        let ds2 = softmax_backward(&p.a, &d_a, 1, n, m);
        // Both directions share S: their dS add.
        ds.iter_mut().zip(&ds2).for_each(|(a, b)| *a += *b);
        // S = Qᵀ·Fn
        let mut dq = vec![T::zero(); c * n];
        gemm_into(&mut dq, fnb, &ds, c, m, n, false, true, false, pcn);
        gemm_into(dfnb, &p.q, &ds, c, n, m, false, false, true, pcm);
        // Q = W·Fm
        gemm_into(
            &mut dw,
            &dq,
            fmb,
            c,
            n,
            c,
            false,
            true,
            true,
            parallelism(c, c, n),
        );
        gemm_into(dfmb, w, &dq, c, c, n, true, false, true, pcn);
    }
    (dfm, dfn, dw)
}

impl crate::backend::CoattentionOps for super::CpuStorage {
    fn coattention(
        &self,
        fnn: &Self,
        w: &Self,
        g: &crate::backend::CoattGeom,
        _keep: bool,
    ) -> (Self, Self, Option<crate::backend::CoattSaved>) {
        super::with_dtype!(self.dtype(), {
            let (a, b) = forward(
                self.slice::<T>(),
                fnn.slice::<T>(),
                w.slice::<T>(),
                g.b,
                g.c,
                g.n,
                g.m,
            );
            (Self::from_vec(a), Self::from_vec(b), None)
        })
    }
    fn coattention_backward(
        &self,
        fnn: &Self,
        w: &Self,
        g_fm: &Self,
        g_fn: &Self,
        g: &crate::backend::CoattGeom,
        _saved: Option<&crate::backend::CoattSaved>,
    ) -> (Self, Self, Self) {
        super::with_dtype!(self.dtype(), {
            let (a, b, c) = backward(
                self.slice::<T>(),
                fnn.slice::<T>(),
                w.slice::<T>(),
                g_fm.slice::<T>(),
                g_fn.slice::<T>(),
                g.b,
                g.c,
                g.n,
                g.m,
            );
            (Self::from_vec(a), Self::from_vec(b), Self::from_vec(c))
        })
    }
}

//! The co-attention op (DESIGN §4) as one op with its own backward.
use super::plain;
use crate::autograd::{record, should_track};
use crate::backend::{check_same, CoattGeom};
use crate::error::{shape_err, Result};
use crate::tensor::Tensor;

/// Fm (B,C,N), Fn (B,C,M), W (C,C) → (Fm∩ (B,C,N), Fn∩ (B,C,M)) with
/// Q = W·Fm, S = Qᵀ·Fn, Fm∩ = Fn·softmax_j(S)ᵀ, Fn∩ = Fm·softmax_i(S). N ≠ M is fine.
pub fn coattention(fm: &Tensor, fnn: &Tensor, w: &Tensor) -> Result<(Tensor, Tensor)> {
    if fm.rank() != 3 || fnn.rank() != 3 || w.rank() != 2 {
        shape_err!(
            "coattention",
            "Fm {:?}, Fn {:?}, W {:?}: expected (B,C,N), (B,C,M), (C,C)",
            fm.shape(),
            fnn.shape(),
            w.shape()
        );
    }
    let (b, c, n) = (fm.dims()[0], fm.dims()[1], fm.dims()[2]);
    let m = fnn.dims()[2];
    if fnn.dims()[..2] != [b, c] || w.dims() != [c, c] {
        shape_err!(
            "coattention",
            "Fm {:?}, Fn {:?}, W {:?}: batch and channels must agree",
            fm.shape(),
            fnn.shape(),
            w.shape()
        );
    }
    check_same(
        "coattention",
        &[&fm.storage(), &fnn.storage(), &w.storage()],
    )?;
    let track = should_track(&[fm, fnn, w]);
    let geom = CoattGeom { b, c, n, m };
    let (a, bb, saved) = fm
        .storage()
        .coattention(&fnn.storage(), &w.storage(), &geom, track)?;
    let fm_att = Tensor::from_storage(a, [b, c, n], track);
    let fn_att = Tensor::from_storage(bb, [b, c, m], track);
    if track {
        let (xm, xn, wp) = (fm.clone(), fnn.clone(), w.clone());
        record(
            &[&fm_att, &fn_att],
            &[fm, fnn, w],
            Box::new(move |g, _| {
                let g1 = g[0]
                    .clone()
                    .unwrap_or_else(|| Tensor::zeros([b, c, n], xm.dtype(), xm.device()));
                let g2 = g[1]
                    .clone()
                    .unwrap_or_else(|| Tensor::zeros([b, c, m], xm.dtype(), xm.device()));
                let (dfm, dfn, dw) = xm.storage().coattention_backward(
                    &xn.storage(),
                    &wp.storage(),
                    &g1.storage(),
                    &g2.storage(),
                    &geom,
                    saved.as_ref(),
                )?;
                Ok(vec![
                    Some(plain(dfm, [b, c, n])),
                    Some(plain(dfn, [b, c, m])),
                    Some(plain(dw, [c, c])),
                ])
            }),
        );
    }
    Ok((fm_att, fn_att))
}

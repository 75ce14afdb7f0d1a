//! AffinityNet's ops (DESIGN §8): the local affinity of a feature map to its neighbours on a
//! half disc, with its hand-written backward, and the random walk over those affinities
//! (inference only: no backward).
use super::{finish, plain};
use crate::backend::AffinityGeom;
use crate::error::{shape_err, Result};
use crate::tensor::Tensor;

pub use crate::backend::cpu::affinity::half_disc_offsets;

fn geom(op: &'static str, dims: &[usize], radius: usize) -> Result<AffinityGeom> {
    if dims.len() != 4 || dims.contains(&0) || radius < 2 {
        shape_err!(
            op,
            "features {dims:?} must be (B,C,H,W), non-empty, radius {radius} ≥ 2"
        );
    }
    Ok(AffinityGeom {
        b: dims[0],
        c: dims[1],
        h: dims[2],
        w: dims[3],
        radius,
    })
}

impl Tensor {
    /// a[b,p,y,x] = exp(−mean_c |f[b,c,y,x] − f[b,c,(y,x) + o_p]|) for the offsets o_p of
    /// [`half_disc_offsets`]`(radius)`; 0 where the neighbour is off the grid. (B,C,H,W) →
    /// (B,P,H,W). The mean (not the sum) over channels keeps a away from 0 for wide features.
    pub fn local_affinity(&self, radius: usize) -> Result<Tensor> {
        let g = geom("local_affinity", self.dims(), radius)?;
        let p = half_disc_offsets(radius).len();
        let s = self.storage().local_affinity(&g);
        let f = self.clone();
        Ok(finish(
            s,
            [g.b, p, g.h, g.w].into(),
            &[self],
            move |da, a, _| {
                Ok(vec![Some(plain(
                    f.storage()
                        .local_affinity_backward(&a.storage(), &da.storage(), &g),
                    f.shape().clone(),
                ))])
            },
        ))
    }

    /// The random walk of maps (B,K,H,W) over affinities (B,P,H,W) from
    /// [`Tensor::local_affinity`] with the same radius: W = a^β, symmetric, with a self-loop of
    /// 1; T = W normalised over the source axis (every column sums to 1); `steps` applications
    /// x ← x·T (PSA applies T^(2^logt) by repeated squaring: the same with steps = 2^logt).
    /// Each step averages a position's neighbours, so mass stays within regions of high
    /// affinity and the maps keep their range. Not differentiable.
    pub fn random_walk(
        &self,
        aff: &Tensor,
        radius: usize,
        beta: f64,
        steps: usize,
    ) -> Result<Tensor> {
        let d = self.dims().to_vec();
        let g = geom("random_walk", &d, radius)?;
        let p = half_disc_offsets(radius).len();
        if aff.dims() != [g.b, p, g.h, g.w] {
            shape_err!(
                "random_walk",
                "affinities {:?} do not fit maps {d:?} at radius {radius} (want {:?})",
                aff.shape(),
                [g.b, p, g.h, g.w]
            );
        }
        if !(beta.is_finite() && beta > 0.0) {
            shape_err!("random_walk", "beta must be finite and > 0, got {beta}");
        }
        if aff.dtype() != self.dtype() || aff.device() != self.device() {
            shape_err!(
                "random_walk",
                "maps and affinities must share dtype and device"
            );
        }
        let s = self
            .storage()
            .random_walk(&aff.storage(), &g, d[1], beta, steps);
        Ok(plain(s, d))
    }
}

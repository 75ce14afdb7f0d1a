//! Batch norm in training mode, forward and backward (kernels/norm.cu).
use super::runtime::{arg, rt};
use super::storage::CudaStorage;
use crate::backend::{BatchNormGeom, BinaryOp, ElementwiseOps, UnaryOp};

impl crate::backend::NormOps for CudaStorage {
    fn batch_norm_train(
        &self,
        gamma: &CudaStorage,
        beta: &CudaStorage,
        g: &BatchNormGeom,
        eps: f64,
        relu: bool,
    ) -> (Self, Self, Self, Self) {
        let BatchNormGeom { n, c, hw } = *g;
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
        // the ReLU as its own kernel after the normalisation (the CPU fuses the two)
        let y = if relu { y.unary(UnaryOp::Relu) } else { y };
        (y, mean, invstd, var)
    }
    /// self = x; returns (dx, dγ, dβ)
    fn batch_norm_backward(
        &self,
        dy: &CudaStorage,
        gamma: &CudaStorage,
        mean: &CudaStorage,
        invstd: &CudaStorage,
        relu_out: Option<&CudaStorage>,
        g: &BatchNormGeom,
    ) -> (Self, Self, Self) {
        let BatchNormGeom { n, c, hw } = *g;
        // the ReLU's gradient as its own kernel first (the CPU fuses the two)
        let masked;
        let dy = match relu_out {
            Some(y) => {
                let sh = crate::tensor::Shape::from(vec![self.len()]);
                masked = dy.binary(BinaryOp::ReluGrad, &sh, y, &sh, &sh);
                &masked
            }
            None => dy,
        };
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
}

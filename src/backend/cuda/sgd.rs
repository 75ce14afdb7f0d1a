//! The fused SGD update (kernels/sgd.cu).
use super::runtime::{arg, rt};
use super::storage::CudaStorage;
use crate::backend::SgdHyper;

impl crate::backend::SgdOps for CudaStorage {
    fn sgd_step(&mut self, grad: &CudaStorage, buf: &mut CudaStorage, h: &SgdHyper, first: bool) {
        let (p, g, b) = (self.ptr(), grad.ptr(), buf.ptr());
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
}

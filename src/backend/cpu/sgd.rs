//! In-place SGD update with PyTorch's semantics (momentum buffer starts as the first gradient).
use crate::backend::SgdHyper;
use crate::tensor::Float;
use rayon::prelude::*;

pub fn step<T: Float>(p: &mut [T], g: &[T], buf: &mut [T], h: &SgdHyper, first: bool) {
    let (lr, mu, wd) = (T::of(h.lr), T::of(h.momentum), T::of(h.weight_decay));
    let damp = T::of(1.0 - h.dampening);
    let f = |((p, g), b): ((&mut T, &T), &mut T)| {
        let mut d = *g + wd * *p;
        if h.momentum != 0.0 {
            *b = if first { d } else { mu * *b + damp * d };
            d = if h.nesterov { d + mu * *b } else { *b };
        }
        *p -= lr * d;
    };
    if p.len() >= super::elementwise::PAR_MIN {
        p.par_iter_mut()
            .zip(g.par_iter())
            .zip(buf.par_iter_mut())
            .for_each(f);
    } else {
        p.iter_mut().zip(g.iter()).zip(buf.iter_mut()).for_each(f);
    }
}

impl crate::backend::SgdOps for super::CpuStorage {
    fn sgd_step(&mut self, grad: &Self, buf: &mut Self, h: &SgdHyper, first: bool) {
        super::with_dtype!(self.dtype(), {
            step(
                self.slice_mut::<T>(),
                grad.slice::<T>(),
                buf.slice_mut::<T>(),
                h,
                first,
            )
        })
    }
}

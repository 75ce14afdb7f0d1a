//! Multilabel soft margin and cross-entropy with an ignore label (kernels/loss.cu).
use super::reduce::sum_rows;
use super::runtime::{arg, rt};
use super::storage::CudaStorage;
use crate::backend::ElementwiseOps;
use crate::backend::{CrossEntropyGeom, UnaryOp};

impl crate::backend::LossOps for CudaStorage {
    fn bce_logits_mean(&self, target: &CudaStorage) -> Self {
        let terms = Self::uninit(self.len());
        let (x, t, o, n) = (self.ptr(), target.ptr(), terms.ptr(), self.len() as i64);
        rt().launch_n(
            "loss.cu",
            "bce_logits_terms",
            self.len(),
            &[arg(&x), arg(&t), arg(&o), arg(&n)],
        );
        let s = sum_rows(&terms, 1, self.len());
        s.unary(UnaryOp::Affine {
            mul: 1.0 / self.len() as f64,
            add: 0.0,
        })
    }
    fn bce_logits_mean_backward(&self, target: &CudaStorage, g: &CudaStorage) -> Self {
        let dx = Self::uninit(self.len());
        let (x, t, d, gp) = (self.ptr(), target.ptr(), dx.ptr(), g.ptr());
        let (inv, n) = (1.0f32 / self.len() as f32, self.len() as i64);
        rt().launch_n(
            "loss.cu",
            "bce_logits_bwd",
            self.len(),
            &[arg(&x), arg(&t), arg(&d), arg(&gp), arg(&inv), arg(&n)],
        );
        dx
    }
    fn cross_entropy(
        &self,
        labels: &CudaStorage,
        g: &CrossEntropyGeom,
    ) -> Result<(f64, usize), f64> {
        let CrossEntropyGeom { b, k, hw, ignore } = *g;
        let (loss, count, bad) = (
            Self::uninit(b * hw),
            Self::uninit(b * hw),
            Self::full(1, f32::NAN),
        );
        let (x, l, lp, cp, bp) = (self.ptr(), labels.ptr(), loss.ptr(), count.ptr(), bad.ptr());
        let (b32, k32, hw32, ig) = (b as i32, k as i32, hw as i32, ignore as i32);
        rt().launch_n(
            "loss.cu",
            "cross_entropy_terms",
            b * hw,
            &[
                arg(&x),
                arg(&l),
                arg(&lp),
                arg(&cp),
                arg(&bp),
                arg(&b32),
                arg(&k32),
                arg(&hw32),
                arg(&ig),
            ],
        );
        let bad = bad.to_host()[0];
        if !bad.is_nan() {
            return Err(bad as f64);
        }
        let s = sum_rows(&loss, 1, b * hw).to_host()[0] as f64;
        let c = sum_rows(&count, 1, b * hw).to_host()[0];
        Ok((s, c.round() as usize))
    }
    fn cross_entropy_backward(
        &self,
        labels: &CudaStorage,
        g: &CrossEntropyGeom,
        count: usize,
        grad: &CudaStorage,
    ) -> Self {
        let CrossEntropyGeom { b, k, hw, ignore } = *g;
        let dx = Self::uninit(self.len());
        let (x, l, d, gp) = (self.ptr(), labels.ptr(), dx.ptr(), grad.ptr());
        let (b32, k32, hw32, ig) = (b as i32, k as i32, hw as i32, ignore as i32);
        let inv = if count == 0 {
            0.0f32
        } else {
            1.0 / count as f32
        };
        rt().launch_n(
            "loss.cu",
            "cross_entropy_bwd",
            b * hw,
            &[
                arg(&x),
                arg(&l),
                arg(&d),
                arg(&b32),
                arg(&k32),
                arg(&hw32),
                arg(&ig),
                arg(&gp),
                arg(&inv),
            ],
        );
        dx
    }
}

//! Matrix products: 2-D, batched 3-D, and 3-D × 2-D (the 2-D operand shared by the batch),
//! each operand optionally transposed.
use super::finish;
use crate::backend::{check_same, MatmulGeom};
use crate::error::{shape_err, Result};
use crate::tensor::Tensor;

impl Tensor {
    pub fn matmul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.matmul_t(rhs, false, false)
    }

    /// op(self) · op(rhs), where op transposes the last two axes when its flag is set.
    pub fn matmul_t(&self, rhs: &Tensor, ta: bool, tb: bool) -> Result<Tensor> {
        check_same("matmul", &[&self.storage(), &rhs.storage()])?;
        let (ra, rb) = (self.rank(), rhs.rank());
        if !(2..=3).contains(&ra) || !(2..=3).contains(&rb) || (ra == 2 && rb == 3) {
            shape_err!(
                "matmul",
                "unsupported ranks {:?} · {:?}",
                self.shape(),
                rhs.shape()
            );
        }
        if ra == 3 && rb == 2 {
            if ta {
                shape_err!(
                    "matmul",
                    "a transposed batch times a shared matrix is not supported"
                );
            }
            // Fold the batch into the rows: (b·m)×k times k×n.
            let (b, m, k) = (self.dims()[0], self.dims()[1], self.dims()[2]);
            let out = self.reshape(&[b * m, k])?.matmul_t(rhs, false, tb)?;
            let n = out.dims()[1];
            return out.reshape(&[b, m, n]);
        }
        let d = |t: &Tensor, i: usize| t.dims()[t.rank() - 2 + i];
        let (m, k) = if ta {
            (d(self, 1), d(self, 0))
        } else {
            (d(self, 0), d(self, 1))
        };
        let (k2, n) = if tb {
            (d(rhs, 1), d(rhs, 0))
        } else {
            (d(rhs, 0), d(rhs, 1))
        };
        if k != k2 {
            shape_err!(
                "matmul",
                "{:?}{} · {:?}{}: inner sizes {k} and {k2}",
                self.shape(),
                if ta { "ᵀ" } else { "" },
                rhs.shape(),
                if tb { "ᵀ" } else { "" }
            );
        }
        let batch = if ra == 3 { self.dims()[0] } else { 1 };
        if ra == 3 && rhs.dims()[0] != batch {
            shape_err!("matmul", "batch sizes {batch} and {}", rhs.dims()[0]);
        }
        let s = self.storage().matmul(
            &rhs.storage(),
            &MatmulGeom {
                batch,
                m,
                k,
                n,
                ta,
                tb,
                a_batch_stride: m * k,
                b_batch_stride: k * n,
            },
        )?;
        let shape = if ra == 3 {
            vec![batch, m, n]
        } else {
            vec![m, n]
        };
        let (a, b) = (self.clone(), rhs.clone());
        Ok(finish(s, shape.into(), &[self, rhs], move |g, _, needs| {
            let ga = match (needs[0], ta) {
                (false, _) => None,
                (true, false) => Some(g.matmul_t(&b, false, !tb)?),
                (true, true) => Some(b.matmul_t(g, tb, true)?),
            };
            let gb = match (needs[1], tb) {
                (false, _) => None,
                (true, false) => Some(a.matmul_t(g, !ta, false)?),
                (true, true) => Some(g.matmul_t(&a, true, ta)?),
            };
            Ok(vec![ga, gb])
        }))
    }
}

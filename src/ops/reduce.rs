//! Sum and mean over chosen axes.
use super::finish;
use crate::error::{shape_err, Result};
use crate::tensor::{Shape, Tensor};

impl Tensor {
    /// Sum over `axes`; with `keepdim` the reduced axes stay as size 1.
    pub fn sum_axes(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        let mut axes = axes.to_vec();
        axes.sort_unstable();
        axes.dedup();
        if let Some(&a) = axes.iter().find(|&&a| a >= self.rank()) {
            shape_err!("sum_axes", "axis {a} out of range for {:?}", self.shape());
        }
        let mut kdims = self.dims().to_vec();
        for &a in &axes {
            kdims[a] = 1;
        }
        let out_dims: Vec<usize> = if keepdim {
            kdims.clone()
        } else {
            self.dims()
                .iter()
                .enumerate()
                .filter(|(i, _)| !axes.contains(i))
                .map(|(_, &d)| d)
                .collect()
        };
        let s = self.storage().sum_axes(self.shape(), &axes)?;
        let in_shape = self.shape().clone();
        Ok(finish(s, Shape::new(out_dims), &[self], move |g, _, _| {
            // Broadcast the (keepdim-shaped) gradient back over the reduced axes.
            let g = g.reshape(&kdims)?;
            Ok(vec![Some(g.broadcast_as(&in_shape)?)])
        }))
    }
    pub fn mean_axes(&self, axes: &[usize], keepdim: bool) -> Result<Tensor> {
        let count: usize = axes
            .iter()
            .map(|&a| self.dims().get(a).copied().unwrap_or(1))
            .product();
        Ok(self.sum_axes(axes, keepdim)?.mul_scalar(1.0 / count as f64))
    }
    /// Sum of every element, shape [1].
    pub fn sum_all(&self) -> Result<Tensor> {
        let axes: Vec<usize> = (0..self.rank()).collect();
        self.sum_axes(&axes, false)?.reshape(&[1])
    }
    pub fn mean_all(&self) -> Result<Tensor> {
        Ok(self.sum_all()?.mul_scalar(1.0 / self.numel() as f64))
    }
    /// Copies this tensor broadcast up to `shape` (untracked helper for backward passes).
    pub(crate) fn broadcast_as(&self, shape: &Shape) -> Result<Tensor> {
        Tensor::zeros(shape.clone(), self.dtype(), self.device())
            .binary_raw(crate::backend::BinaryOp::Add, self)
    }
}

use super::{finish, plain};
use crate::error::{shape_err, Result};
use crate::tensor::Tensor;

impl Tensor {
    /// Softmax along `axis` (numerically stable: the maximum is subtracted first).
    pub fn softmax(&self, axis: usize) -> Result<Tensor> {
        if axis >= self.rank() {
            shape_err!("softmax", "axis {axis} out of range for {:?}", self.shape());
        }
        let (outer, len, inner) = self.shape().split_at_axis(axis);
        let s = self.storage().softmax(outer, len, inner)?;
        let shape = self.shape().clone();
        Ok(finish(s, shape.clone(), &[self], move |g, y, _| {
            Ok(vec![Some(plain(
                y.storage()
                    .softmax_backward(&g.storage(), outer, len, inner)?,
                shape,
            ))])
        }))
    }
}

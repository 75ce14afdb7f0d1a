use super::{finish, plain};
use crate::error::{shape_err, Result};
use crate::tensor::Tensor;

impl Tensor {
    /// Bilinear resize of an NCHW tensor to (ho, wo), align_corners = false (PyTorch's
    /// convention), for up- and down-sampling.
    pub fn resize_bilinear(&self, ho: usize, wo: usize) -> Result<Tensor> {
        if self.rank() != 4 || ho == 0 || wo == 0 || self.dims()[2] == 0 || self.dims()[3] == 0 {
            shape_err!("resize_bilinear", "input {:?} to {ho}×{wo}", self.shape());
        }
        let d = self.dims();
        let (planes, h, w) = (d[0] * d[1], d[2], d[3]);
        let s = self.storage().resize_bilinear(planes, h, w, ho, wo);
        let in_shape = self.shape().clone();
        Ok(finish(
            s,
            [d[0], d[1], ho, wo].into(),
            &[self],
            move |g, _, _| {
                Ok(vec![Some(plain(
                    g.storage().resize_bilinear_backward(planes, h, w, ho, wo),
                    in_shape,
                ))])
            },
        ))
    }
}

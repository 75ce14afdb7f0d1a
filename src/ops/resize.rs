use super::{finish, plain};
use crate::backend::ResizeGeom;
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
        let g = ResizeGeom {
            planes: d[0] * d[1],
            h: d[2],
            w: d[3],
            ho,
            wo,
        };
        let s = self.storage().resize_bilinear(&g)?;
        let in_shape = self.shape().clone();
        Ok(finish(
            s,
            [d[0], d[1], ho, wo].into(),
            &[self],
            move |dy, _, _| {
                Ok(vec![Some(plain(
                    dy.storage().resize_bilinear_backward(&g)?,
                    in_shape,
                ))])
            },
        ))
    }
}

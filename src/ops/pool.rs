//! Max / average pooling and global average pooling.
use super::{finish, plain};
use crate::backend::Pool2dGeom;
use crate::error::{shape_err, Result};
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dParams {
    pub kernel: (usize, usize),
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub ceil_mode: bool,
}

impl Pool2dParams {
    /// k×k window, stride s, padding p, floor mode.
    pub fn new(k: usize, s: usize, p: usize) -> Self {
        Pool2dParams {
            kernel: (k, k),
            stride: (s, s),
            padding: (p, p),
            ceil_mode: false,
        }
    }
    pub fn geom(&self, x: &[usize]) -> Result<Pool2dGeom> {
        if x.len() != 4 {
            shape_err!("pool2d", "input {x:?} must be 4-D");
        }
        let (k, s, p) = (self.kernel, self.stride, self.padding);
        if s.0 == 0 || s.1 == 0 || k.0 == 0 || k.1 == 0 || 2 * p.0 > k.0 || 2 * p.1 > k.1 {
            shape_err!("pool2d", "kernel {k:?}, stride {s:?}, padding {p:?}: padding must be at most half the kernel");
        }
        // PyTorch's output size, including the ceil-mode rule that the last window must start
        // inside the input or its left padding.
        let out = |len: usize, k: usize, s: usize, p: usize| -> Option<usize> {
            if len + 2 * p < k {
                return None;
            }
            let num = len + 2 * p - k;
            let mut o = if self.ceil_mode {
                num.div_ceil(s) + 1
            } else {
                num / s + 1
            };
            if self.ceil_mode && (o - 1) * s >= len + p {
                o -= 1;
            }
            Some(o)
        };
        let (Some(ho), Some(wo)) = (out(x[2], k.0, s.0, p.0), out(x[3], k.1, s.1, p.1)) else {
            shape_err!("pool2d", "window {k:?} larger than padded input {x:?}");
        };
        Ok(Pool2dGeom {
            planes: x[0] * x[1],
            h: x[2],
            w: x[3],
            kh: k.0,
            kw: k.1,
            sh: s.0,
            sw: s.1,
            ph: p.0,
            pw: p.1,
            ho,
            wo,
        })
    }
}

impl Tensor {
    pub fn max_pool2d(&self, p: Pool2dParams) -> Result<Tensor> {
        let g = p.geom(self.dims())?;
        let s = self.storage().max_pool2d(&g)?;
        let x = self.clone();
        let shape = [self.dims()[0], self.dims()[1], g.ho, g.wo];
        Ok(finish(s, shape.into(), &[self], move |dy, _, _| {
            Ok(vec![Some(plain(
                x.storage().max_pool2d_backward(&dy.storage(), &g)?,
                x.shape().clone(),
            ))])
        }))
    }
    /// Average pooling, PyTorch defaults (count_include_pad = true).
    pub fn avg_pool2d(&self, p: Pool2dParams) -> Result<Tensor> {
        let g = p.geom(self.dims())?;
        let s = self.storage().avg_pool2d(&g)?;
        let in_shape = self.shape().clone();
        let shape = [self.dims()[0], self.dims()[1], g.ho, g.wo];
        Ok(finish(s, shape.into(), &[self], move |dy, _, _| {
            Ok(vec![Some(plain(
                dy.storage().avg_pool2d_backward(&g)?,
                in_shape,
            ))])
        }))
    }
    /// (N,C,H,W) → (N,C): the mean over each plane.
    pub fn global_avg_pool(&self) -> Result<Tensor> {
        if self.rank() != 4 {
            shape_err!("global_avg_pool", "input {:?} must be 4-D", self.shape());
        }
        self.mean_axes(&[2, 3], false)
    }
}

//! 2-D convolution (cross-correlation, PyTorch layout): NCHW input, OIHW weight, optional bias.
use super::{finish, plain};
use crate::backend::{check_same, Conv2dGeom};
use crate::error::{shape_err, Result};
use crate::tensor::Tensor;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dParams {
    pub stride: (usize, usize),
    pub padding: (usize, usize),
    pub dilation: (usize, usize),
}

impl Default for Conv2dParams {
    fn default() -> Self {
        Conv2dParams {
            stride: (1, 1),
            padding: (0, 0),
            dilation: (1, 1),
        }
    }
}

impl Conv2dParams {
    /// Stride 1, the given padding and dilation (the common "same"-size 3×3 case).
    pub fn same(pad: usize, dil: usize) -> Self {
        Conv2dParams {
            stride: (1, 1),
            padding: (pad, pad),
            dilation: (dil, dil),
        }
    }
    pub fn geom(&self, x: &[usize], w: &[usize]) -> Result<Conv2dGeom> {
        if x.len() != 4 || w.len() != 4 {
            shape_err!("conv2d", "input {x:?} and weight {w:?} must both be 4-D");
        }
        if x[1] != w[1] {
            shape_err!(
                "conv2d",
                "input has {} channels, weight expects {}",
                x[1],
                w[1]
            );
        }
        let (s, p, d) = (self.stride, self.padding, self.dilation);
        if s.0 == 0 || s.1 == 0 || d.0 == 0 || d.1 == 0 {
            shape_err!("conv2d", "stride and dilation must be ≥ 1");
        }
        let span = |len: usize, pad: usize, k: usize, dil: usize, st: usize| -> Option<usize> {
            let eff = dil * (k - 1) + 1;
            (len + 2 * pad >= eff).then(|| (len + 2 * pad - eff) / st + 1)
        };
        let (Some(ho), Some(wo)) = (
            span(x[2], p.0, w[2], d.0, s.0),
            span(x[3], p.1, w[3], d.1, s.1),
        ) else {
            shape_err!(
                "conv2d",
                "kernel {:?} (dilation {d:?}) larger than padded input {x:?}",
                &w[2..]
            );
        };
        Ok(Conv2dGeom {
            n: x[0],
            cin: x[1],
            h: x[2],
            w: x[3],
            cout: w[0],
            kh: w[2],
            kw: w[3],
            sh: s.0,
            sw: s.1,
            ph: p.0,
            pw: p.1,
            dh: d.0,
            dw: d.1,
            ho,
            wo,
        })
    }
}

impl Tensor {
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        p: Conv2dParams,
    ) -> Result<Tensor> {
        self.conv2d_act(weight, bias, p, false)
    }

    /// `conv2d(..).relu()` as one op: the GPU applies the ReLU where it writes the output (one
    /// pass over the activation less each way); the backward masks dy by y > 0 (y > 0 exactly
    /// where the pre-activation is).
    pub fn conv2d_relu(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        p: Conv2dParams,
    ) -> Result<Tensor> {
        self.conv2d_act(weight, bias, p, true)
    }

    fn conv2d_act(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        p: Conv2dParams,
        relu: bool,
    ) -> Result<Tensor> {
        let g = p.geom(self.dims(), weight.dims())?;
        if let Some(b) = bias {
            if b.dims() != [g.cout] {
                shape_err!(
                    "conv2d",
                    "bias {:?} for {} output channels",
                    b.shape(),
                    g.cout
                );
            }
            check_same(
                "conv2d",
                &[&self.storage(), &weight.storage(), &b.storage()],
            )?;
        } else {
            check_same("conv2d", &[&self.storage(), &weight.storage()])?;
        }
        let s = self.storage().conv2d(
            &weight.storage(),
            bias.map(|b| b.storage()).as_deref(),
            &g,
            relu,
        )?;
        let (x, w) = (self.clone(), weight.clone());
        let mut inputs = vec![self, weight];
        inputs.extend(bias);
        Ok(finish(
            s,
            [g.n, g.cout, g.ho, g.wo].into(),
            &inputs,
            move |dy, y, needs| {
                let masked;
                let dy = if relu {
                    masked = dy.binary_raw(crate::backend::BinaryOp::ReluGrad, y)?;
                    &masked
                } else {
                    dy
                };
                let dys = dy.storage();
                let dx = needs[0]
                    .then(|| dys.conv2d_backward_input(&w.storage(), &g))
                    .transpose()?
                    .map(|s| plain(s, x.shape().clone()));
                let dw = needs[1]
                    .then(|| dys.conv2d_backward_weight(&x.storage(), &g))
                    .transpose()?
                    .map(|s| plain(s, w.shape().clone()));
                let mut out = vec![dx, dw];
                if needs.len() == 3 {
                    out.push(if needs[2] {
                        Some(dy.sum_axes(&[0, 2, 3], false)?)
                    } else {
                        None
                    });
                }
                Ok(out)
            },
        ))
    }
}

//! Batch norm (training mode with running statistics, and frozen) and dropout.
use super::{finish, plain};
use crate::backend::{check_same, BatchNormGeom};
use crate::error::{shape_err, Result};
use crate::tensor::Tensor;
use rand::Rng;

impl Tensor {
    /// Training-mode batch norm over (N, H, W) per channel of an NCHW (or NC) tensor. Updates
    /// `running_mean`/`running_var` in place like PyTorch (unbiased variance, `momentum` weight
    /// on the new batch).
    pub fn batch_norm_train(
        &self,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        momentum: f64,
        eps: f64,
    ) -> Result<Tensor> {
        self.batch_norm_train_act(gamma, beta, running_mean, running_var, momentum, eps, false)
    }

    /// [`Tensor::batch_norm_train`] followed by a ReLU when `relu`, as one op (one pass over
    /// the activations each way on the CPU; the backbones' conv → BN → ReLU).
    #[allow(clippy::too_many_arguments)]
    pub fn batch_norm_train_act(
        &self,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        momentum: f64,
        eps: f64,
        relu: bool,
    ) -> Result<Tensor> {
        let (n, c, hw) = bn_dims(self, gamma, beta)?;
        let geom = BatchNormGeom { n, c, hw };
        if running_mean.dims() != [c] || running_var.dims() != [c] {
            shape_err!(
                "batch_norm",
                "running stats {:?}/{:?} for {c} channels",
                running_mean.shape(),
                running_var.shape()
            );
        }
        check_same(
            "batch_norm",
            &[&self.storage(), &gamma.storage(), &beta.storage()],
        )?;
        let (y, mean, invstd, var) =
            self.storage()
                .batch_norm_train(&gamma.storage(), &beta.storage(), &geom, eps, relu)?;
        let (mean, invstd, var) = (plain(mean, [c]), plain(invstd, [c]), plain(var, [c]));
        let cnt = (n * hw) as f64;
        let unbiased = var.mul_scalar(if cnt > 1.0 { cnt / (cnt - 1.0) } else { 1.0 });
        crate::autograd::no_grad(|| -> Result<()> {
            running_mean.assign(
                &running_mean
                    .mul_scalar(1.0 - momentum)
                    .add(&mean.mul_scalar(momentum))?,
            )?;
            running_var.assign(
                &running_var
                    .mul_scalar(1.0 - momentum)
                    .add(&unbiased.mul_scalar(momentum))?,
            )
        })?;
        let (x, g) = (self.clone(), gamma.clone());
        Ok(finish(
            y,
            self.shape().clone(),
            &[self, gamma, beta],
            move |dy, y, needs| {
                let y = relu.then(|| y.storage());
                let (dx, dg, db) = x.storage().batch_norm_backward(
                    &dy.storage(),
                    &g.storage(),
                    &mean.storage(),
                    &invstd.storage(),
                    y.as_deref(),
                    &geom,
                )?;
                Ok(vec![
                    needs[0].then(|| plain(dx, x.shape().clone())),
                    needs[1].then(|| plain(dg, [c])),
                    needs[2].then(|| plain(db, [c])),
                ])
            },
        ))
    }

    /// Frozen batch norm: the per-channel affine map of the running statistics,
    /// y = (x − μ)/√(σ² + eps)·γ + β. Differentiable in x, γ and β.
    pub fn batch_norm_frozen(
        &self,
        gamma: &Tensor,
        beta: &Tensor,
        running_mean: &Tensor,
        running_var: &Tensor,
        eps: f64,
    ) -> Result<Tensor> {
        let (_, c, _) = bn_dims(self, gamma, beta)?;
        let mut bshape = vec![1; self.rank()];
        bshape[1] = c;
        let scale = gamma.mul(&running_var.add_scalar(eps).sqrt().recip())?;
        let shift = beta.sub(&running_mean.mul(&scale)?)?;
        self.mul(&scale.reshape(&bshape)?)?
            .add(&shift.reshape(&bshape)?)
    }

    /// Inverted dropout: zeroes each element with probability p and scales the rest by
    /// 1/(1−p). The mask comes from the caller's seeded RNG, so runs are reproducible.
    pub fn dropout(&self, p: f64, rng: &mut impl Rng) -> Result<Tensor> {
        if !(0.0..1.0).contains(&p) {
            shape_err!("dropout", "probability {p} outside [0, 1)");
        }
        let keep = 1.0 / (1.0 - p);
        let mask: Vec<f64> = (0..self.numel())
            .map(|_| if rng.gen::<f64>() < p { 0.0 } else { keep })
            .collect();
        let mask = Tensor::from_f64(&mask, self.shape().clone(), self.dtype(), self.device())?;
        self.mul(&mask)
    }
}

fn bn_dims(x: &Tensor, gamma: &Tensor, beta: &Tensor) -> Result<(usize, usize, usize)> {
    if x.rank() < 2 {
        shape_err!("batch_norm", "input {:?} needs a channel axis", x.shape());
    }
    let (n, c) = (x.dims()[0], x.dims()[1]);
    if gamma.dims() != [c] || beta.dims() != [c] {
        shape_err!(
            "batch_norm",
            "gamma {:?} / beta {:?} for {c} channels",
            gamma.shape(),
            beta.shape()
        );
    }
    Ok((n, c, x.dims()[2..].iter().product()))
}

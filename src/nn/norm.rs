//! Batch norm of a conv's output: affine parameters and running statistics, shared by every
//! backbone (the VGGs with BN, ResNet).
use crate::error::Result;
use crate::tensor::{DType, Tensor};
use crate::Device;

/// PyTorch's defaults.
const MOMENTUM: f64 = 0.1;
const EPS: f64 = 1e-5;

#[derive(Clone, Debug)]
pub struct BatchNorm {
    pub gamma: Tensor,
    pub beta: Tensor,
    pub mean: Tensor,
    pub var: Tensor,
}

impl BatchNorm {
    /// γ = 1, β = 0 (trained parameters when `trainable`), running mean 0 and variance 1.
    pub fn new(c: usize, trainable: bool, dtype: DType, device: Device) -> Self {
        let p = |t: Tensor| if trainable { t.into_param() } else { t };
        BatchNorm {
            gamma: p(Tensor::ones([c], dtype, device)),
            beta: p(Tensor::zeros([c], dtype, device)),
            mean: Tensor::zeros([c], dtype, device),
            var: Tensor::ones([c], dtype, device),
        }
    }

    /// `batch_stats`: normalise by the batch's statistics and update the running ones
    /// (training); otherwise by the running statistics.
    pub fn forward(&self, x: &Tensor, batch_stats: bool) -> Result<Tensor> {
        self.forward_act(x, batch_stats, false)
    }

    /// [`BatchNorm::forward`] then a ReLU when `relu` (fused into one op in training mode).
    pub fn forward_act(&self, x: &Tensor, batch_stats: bool, relu: bool) -> Result<Tensor> {
        if batch_stats {
            x.batch_norm_train_act(
                &self.gamma,
                &self.beta,
                &self.mean,
                &self.var,
                MOMENTUM,
                EPS,
                relu,
            )
        } else {
            let y = x.batch_norm_frozen(&self.gamma, &self.beta, &self.mean, &self.var, EPS)?;
            Ok(if relu { y.relu() } else { y })
        }
    }

    /// torchvision's names under `prefix`: weight, bias, running_mean, running_var.
    pub fn tensors(&self, prefix: &str) -> Vec<(String, Tensor)> {
        vec![
            (format!("{prefix}.weight"), self.gamma.clone()),
            (format!("{prefix}.bias"), self.beta.clone()),
            (format!("{prefix}.running_mean"), self.mean.clone()),
            (format!("{prefix}.running_var"), self.var.clone()),
        ]
    }
}

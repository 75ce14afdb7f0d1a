//! Layers and models: conv layer, VGG16-D1 backbone, the MCIS co-attention head.
pub mod attention_stats;
pub mod backbone;
pub mod coatt_head;
pub mod norm;
pub mod resnet;
pub mod vgg;

pub use attention_stats::AttentionStats;
pub use backbone::Backbone;
pub use coatt_head::{Affinity, CoattHead, PairLogits, Scorer, Temperature, WpInit};
pub use norm::BatchNorm;
pub use resnet::{ResNet, ResNetConfig};
pub use vgg::{Vgg, VggConfig, VggLayout};

use crate::error::Result;
use crate::tensor::{DType, Tensor};
use crate::{Conv2dParams, Device};
use rand::Rng;

/// How a new layer's weights start.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Init {
    /// PyTorch's default for conv/linear: U(±1/√fan_in) for weight and bias (what the
    /// official code keeps for its new layers).
    TorchDefault,
    /// He/Kaiming normal, fan_out, bias 0 (torchvision's VGG init): for a backbone trained
    /// from scratch, where the default would shrink the signal through 13 ReLU layers.
    KaimingNormal,
}

/// A 2-D convolution layer (OIHW weight, optional bias).
#[derive(Clone, Debug)]
pub struct Conv {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub params: Conv2dParams,
}

impl Conv {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cin: usize,
        cout: usize,
        k: usize,
        params: Conv2dParams,
        bias: bool,
        init: Init,
        dtype: DType,
        device: Device,
        rng: &mut impl Rng,
    ) -> Conv {
        let fan_in = (cin * k * k) as f64;
        let (weight, b) = match init {
            Init::TorchDefault => {
                let bound = 1.0 / fan_in.sqrt();
                (
                    Tensor::rand_uniform([cout, cin, k, k], -bound, bound, dtype, device, rng),
                    bias.then(|| Tensor::rand_uniform([cout], -bound, bound, dtype, device, rng)),
                )
            }
            Init::KaimingNormal => {
                let std = (2.0 / (cout * k * k) as f64).sqrt();
                (
                    Tensor::randn([cout, cin, k, k], std, dtype, device, rng),
                    bias.then(|| Tensor::zeros([cout], dtype, device)),
                )
            }
        };
        Conv {
            weight: weight.into_param(),
            bias: b.map(Tensor::into_param),
            params,
        }
    }
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d(&self.weight, self.bias.as_ref(), self.params)
    }
    /// `forward(x)?.relu()` as one op (`Tensor::conv2d_relu`).
    pub fn forward_relu(&self, x: &Tensor) -> Result<Tensor> {
        x.conv2d_relu(&self.weight, self.bias.as_ref(), self.params)
    }
    pub fn named_params(&self, prefix: &str) -> Vec<(String, Tensor)> {
        let mut v = vec![(format!("{prefix}.weight"), self.weight.clone())];
        if let Some(b) = &self.bias {
            v.push((format!("{prefix}.bias"), b.clone()));
        }
        v
    }
}

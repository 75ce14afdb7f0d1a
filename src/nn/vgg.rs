//! VGG16 at output stride 8, in the two layouts the project uses: "D1" of the official MCIS
//! code (the classifier and AffinityNet: pool1-3 2×2/2, pool4 3×3 stride 1 pad 1, no pool5,
//! conv5_x dilation 2, then three 3×3 extra convs with bias + ReLU) and DeepLab v1's (the
//! segmentation network: pool1-3 3×3/2 pad 1, pool4 and pool5 3×3/1, conv5_x dilation 2, no
//! extra convs). Optional batch norm after each conv (torchvision's vgg16_bn layout).
//! Parameter names follow torchvision (`features.<i>`) so ImageNet weights load by name; the
//! extra convs are `extra_convs.<i>`.
use super::{BatchNorm, Conv, Init};
use crate::error::Result;
use crate::tensor::{DType, Tensor};
use crate::{Conv2dParams, Device, Pool2dParams};
use rand::Rng;

/// torchvision indices of the 13 convs inside `features`.
pub const FEATURE_INDICES: [usize; 13] = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28];

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VggConfig {
    /// Output channels of the 13 VGG convs (full: 64,64,128,128,256×3,512×6).
    pub widths: Vec<usize>,
    /// Channels of the three extra convs (full: 512) = the feature size C of the head.
    pub extra: usize,
    /// Batch norm after each VGG conv (torchvision's vgg16_bn layout). Off in the official
    /// setting (ImageNet-initialised plain VGG); on for presets trained from scratch, where a
    /// plain 16-layer ReLU stack stays on the class-prior plateau for too long.
    #[serde(default)]
    pub batch_norm: bool,
    /// Where the pools sit (and whether the three extra convs follow): D1 for the classifier.
    /// Not written when D1, so configs and records made before the field existed still match.
    #[serde(default, skip_serializing_if = "VggLayout::is_d1")]
    pub layout: VggLayout,
}

impl VggLayout {
    fn is_d1(&self) -> bool {
        *self == VggLayout::D1
    }
}

/// The two VGG16 layouts at output stride 8.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VggLayout {
    /// The official MCIS classifier's: pool1-3 2×2/2, pool4 3×3/1, no pool5, three extra convs.
    #[default]
    D1,
    /// DeepLab v1's: pool1-3 3×3/2 pad 1, pool4 and pool5 3×3/1, no extra convs.
    Deeplab,
}

impl VggConfig {
    pub fn full() -> Self {
        VggConfig {
            widths: vec![
                64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512,
            ],
            extra: 512,
            batch_norm: false,
            layout: VggLayout::D1,
        }
    }
    /// Same structure, every width divided by `div`, with batch norm (for training from scratch).
    pub fn narrow(div: usize) -> Self {
        let f = Self::full();
        VggConfig {
            widths: f.widths.iter().map(|w| (w / div).max(4)).collect(),
            extra: (f.extra / div).max(4),
            batch_norm: true,
            layout: VggLayout::D1,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Vgg {
    pub config: VggConfig,
    pub features: Vec<Conv>,
    pub bn: Vec<BatchNorm>,
    pub extra: Vec<Conv>,
}

impl Vgg {
    pub fn new(
        config: VggConfig,
        init: Init,
        head_init: Init,
        dtype: DType,
        device: Device,
        rng: &mut impl Rng,
    ) -> Vgg {
        let mut cin = 3;
        let mut features = Vec::new();
        let mut bn = Vec::new();
        for (i, &w) in config.widths.iter().enumerate() {
            let p = if i >= 10 {
                Conv2dParams::same(2, 2)
            } else {
                Conv2dParams::same(1, 1)
            };
            features.push(Conv::new(cin, w, 3, p, true, init, dtype, device, rng));
            if config.batch_norm {
                bn.push(BatchNorm::new(w, true, dtype, device));
            }
            cin = w;
        }
        let n_extra = match config.layout {
            VggLayout::D1 => 3,
            VggLayout::Deeplab => 0,
        };
        let extra = (0..n_extra)
            .map(|_| {
                let c = Conv::new(
                    cin,
                    config.extra,
                    3,
                    Conv2dParams::same(1, 1),
                    true,
                    head_init,
                    dtype,
                    device,
                    rng,
                );
                cin = config.extra;
                c
            })
            .collect();
        Vgg {
            config,
            features,
            bn,
            extra,
        }
    }

    /// Image batch (B,3,H,W) → features (B,C,H/8,W/8). `train` selects batch statistics
    /// (and updates the running ones) over the running statistics; it matters only with BN.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self
            .forward_levels(x, train)?
            .pop()
            .expect("forward_levels returns four levels"))
    }

    /// The features of four depths: conv3_3 (stride 4, before pool3), after pool4 (the conv4
    /// block, stride 8), conv5_3 and the extra convs (the classifier's features; both stride
    /// 8). AffinityNet reads several of them (DESIGN §8).
    pub fn forward_levels(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let mut levels = Vec::with_capacity(4);
        let mut h = x.clone();
        for (i, conv) in self.features.iter().enumerate() {
            h = match self.bn.get(i) {
                // conv, BN, ReLU
                Some(b) => b.forward_act(&conv.forward(&h)?, train, true)?,
                None => conv.forward_relu(&h)?,
            };
            if i == 6 {
                levels.push(h.clone());
            }
            h = match (self.config.layout, i) {
                (VggLayout::D1, 1 | 3 | 6) => h.max_pool2d(Pool2dParams::new(2, 2, 0))?,
                (VggLayout::D1, 9) => h.max_pool2d(Pool2dParams::new(3, 1, 1))?,
                (VggLayout::Deeplab, 1 | 3 | 6) => h.max_pool2d(Pool2dParams::new(3, 2, 1))?,
                (VggLayout::Deeplab, 9 | 12) => h.max_pool2d(Pool2dParams::new(3, 1, 1))?,
                _ => h,
            };
            if matches!(i, 9 | 12) {
                levels.push(h.clone());
            }
        }
        for conv in &self.extra {
            h = conv.forward_relu(&h)?;
        }
        levels.push(h);
        Ok(levels)
    }

    /// Channels of the output of [`Self::forward`].
    pub fn out_channels(&self) -> usize {
        match self.config.layout {
            VggLayout::D1 => self.config.extra,
            VggLayout::Deeplab => self.config.widths[12],
        }
    }

    /// Channels of the four levels of [`Self::forward_levels`].
    pub fn level_channels(&self) -> [usize; 4] {
        let w = &self.config.widths;
        [w[6], w[9], w[12], self.config.extra]
    }

    /// Running statistics (not trained, but saved and restored with the weights).
    pub fn named_buffers(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (b, idx) in self.bn.iter().zip(FEATURE_INDICES) {
            v.push((format!("features.{idx}.bn.running_mean"), b.mean.clone()));
            v.push((format!("features.{idx}.bn.running_var"), b.var.clone()));
        }
        v
    }

    /// Every trainable parameter, by name.
    pub fn named_params(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (i, (conv, idx)) in self.features.iter().zip(FEATURE_INDICES).enumerate() {
            v.extend(conv.named_params(&format!("features.{idx}")));
            if let Some(b) = self.bn.get(i) {
                v.push((format!("features.{idx}.bn.weight"), b.gamma.clone()));
                v.push((format!("features.{idx}.bn.bias"), b.beta.clone()));
            }
        }
        for (i, conv) in self.extra.iter().enumerate() {
            v.extend(conv.named_params(&format!("extra_convs.{}", 2 * i)));
        }
        v
    }
}

impl super::Backbone for Vgg {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Vgg::forward(self, x, train)
    }
    fn forward_levels(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        Vgg::forward_levels(self, x, train)
    }
    fn out_channels(&self) -> usize {
        Vgg::out_channels(self)
    }
    fn level_channels(&self) -> [usize; 4] {
        Vgg::level_channels(self)
    }
    fn named_tensors(&self) -> Vec<(String, Tensor, bool)> {
        let mut v: Vec<_> = Vgg::named_params(self)
            .into_iter()
            .map(|(n, t)| (n, t, true))
            .collect();
        v.extend(self.named_buffers().into_iter().map(|(n, t)| (n, t, false)));
        v
    }
    /// The 13 convs' weights and biases (`features.<i>.weight|bias`); each must be present with
    /// the model's shape (so a full-width model only, unless the file matches a narrow one).
    /// Batch norm (γ, β and the running statistics) is loaded too when the file carries it (a
    /// checkpoint of one of our runs, e.g. a pre-training on other data): the convs were trained
    /// to feed those normalisations. torchvision's plain VGG16 has none, and a backbone without
    /// BN reads none; then BN, if any, starts afresh.
    fn load_pretrained(&self, path: &std::path::Path) -> Result<usize> {
        let (mut bn, mut tensors): (Vec<_>, Vec<_>) = Vgg::named_params(self)
            .into_iter()
            .filter(|(n, _)| n.starts_with("features."))
            .partition(|(n, _)| n.contains(".bn."));
        bn.extend(self.named_buffers());
        // all of them or none: a file with only some would leave a mixed normalisation
        if let Some((first, _)) = bn.first() {
            if crate::io::weights::holds_tensor(path, first)? {
                tensors.extend(bn);
            }
        }
        crate::io::weights::load_named_into(path, &tensors)
    }
}

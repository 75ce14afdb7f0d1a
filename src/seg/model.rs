//! DeepLab-LargeFOV on two backbones. ResNet-101: output stride 8 (see `nn::resnet`), head
//! 3×3 dilation 12 → 1024 (no bias), ReLU, 1×1 1024, ReLU, 1×1 K+1 with bias. VGG16 (DeepLab
//! v1): pool1-3 3×3/2, pool4 and pool5 3×3/1, conv5 dilation 2, fc6 3×3 dilation 12 → 1024,
//! fc7 1×1, both with ReLU + dropout, fc8 1×1 → K+1.
use super::config::{SegBackbone, SegConfig};
use crate::error::Result;
use crate::io::Checkpoint;
use crate::nn::{Backbone, Conv, Init, ResNet, Vgg, VggConfig, VggLayout};
use crate::optim::ParamGroup;
use crate::tensor::{DType, Tensor};
use crate::{Conv2dParams, Device};
use rand::Rng;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct SegNet {
    pub config: SegConfig,
    body: Arc<dyn Backbone>,
    head: [Conv; 3],
    pub num_labels: usize,
}

impl SegNet {
    /// `num_labels` = K + 1 (background included).
    pub fn new(cfg: &SegConfig, num_labels: usize, device: Device, rng: &mut impl Rng) -> SegNet {
        let body: Arc<dyn Backbone> = match cfg.backbone {
            SegBackbone::Resnet101 => Arc::new(ResNet::new(cfg.resnet.clone(), device, rng)),
            SegBackbone::Vgg16 => {
                let config = VggConfig {
                    widths: cfg.vgg_widths.clone(),
                    extra: 0,
                    batch_norm: cfg.vgg_batch_norm,
                    layout: VggLayout::Deeplab,
                };
                let vgg = Vgg::new(
                    config,
                    Init::KaimingNormal,
                    Init::KaimingNormal,
                    DType::F32,
                    device,
                    rng,
                );
                Arc::new(vgg)
            }
        };
        let cout = body.out_channels();
        let hc = cfg.head_channels;
        let resnet = cfg.backbone == SegBackbone::Resnet101;
        let conv = |cin, cout, k, p, bias, init, rng: &mut _| {
            Conv::new(cin, cout, k, p, bias, init, DType::F32, device, rng)
        };
        let d = cfg.head_dilation;
        let head = [
            conv(
                cout,
                hc,
                3,
                Conv2dParams::same(d, d),
                !resnet,
                Init::KaimingNormal,
                rng,
            ),
            conv(
                hc,
                hc,
                1,
                Conv2dParams::default(),
                !resnet,
                Init::KaimingNormal,
                rng,
            ),
            conv(
                hc,
                num_labels,
                1,
                Conv2dParams::default(),
                true,
                Init::TorchDefault,
                rng,
            ),
        ];
        SegNet {
            config: cfg.clone(),
            body,
            head,
            num_labels,
        }
    }

    /// Logits (B, K+1, ⌈H/8⌉, ⌈W/8⌉). `train`: BN batch statistics (where trained) and
    /// dropout from `rng`.
    pub fn forward(&self, x: &Tensor, train: bool, rng: &mut impl Rng) -> Result<Tensor> {
        let mut h = self.body.forward(x, train)?;
        for (i, c) in self.head.iter().enumerate() {
            if i < 2 {
                h = c.forward_relu(&h)?;
                if train && self.config.dropout > 0.0 {
                    h = h.dropout(self.config.dropout, rng)?;
                }
            } else {
                h = c.forward(&h)?;
            }
        }
        Ok(h)
    }

    /// (name, tensor, trainable, in the head) for every tensor a checkpoint holds. Backbone
    /// names follow torchvision so ImageNet weights load by name.
    fn tensors(&self) -> Vec<(String, Tensor, bool, bool)> {
        let mut v: Vec<(String, Tensor, bool, bool)> = Vec::new();
        v.extend(
            self.body
                .named_tensors()
                .into_iter()
                .map(|(n, t, tr)| (n, t, tr, false)),
        );
        for (i, c) in self.head.iter().enumerate() {
            v.extend(
                c.named_params(&format!("head.{i}"))
                    .into_iter()
                    .map(|(n, t)| (n, t, true, true)),
            );
        }
        v
    }

    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        self.tensors()
            .into_iter()
            .map(|(n, t, ..)| (n, t))
            .collect()
    }

    /// Backbone ×1 and head ×`head_lr_mult`, weight decay on both.
    pub fn param_groups(&self) -> Vec<ParamGroup> {
        let c = &self.config;
        let mut g = [("backbone", 1.0), ("head", c.head_lr_mult)].map(|(n, m)| ParamGroup {
            name: n.to_string(),
            params: Vec::new(),
            lr: c.lr * m,
            weight_decay: c.weight_decay,
        });
        for (_, t, trainable, head) in self.tensors() {
            if trainable {
                g[head as usize].params.push(t);
            }
        }
        g.to_vec()
    }

    /// Loads every tensor from a checkpoint (names and shapes must match).
    pub fn load(&self, ck: &Checkpoint) -> Result<()> {
        ck.load_into(&self.state_tensors())
    }

    /// ImageNet weights into the backbone by torchvision name (ResNet: convs and BN with
    /// running statistics; VGG: the 13 convs). Returns how many tensors were loaded.
    pub fn load_backbone(&self, path: &std::path::Path) -> Result<usize> {
        self.body.load_pretrained(path)
    }
}

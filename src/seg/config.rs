//! Segmentation training configuration (DeepLab-LargeFOV recipe), written to RUN/config.toml.
use crate::error::{Error, Result};
use crate::nn::ResNetConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SegBackbone {
    /// ResNet-101 LargeFOV (the official MCIS segmentation network).
    Resnet101,
    /// VGG16 LargeFOV (DeepLab v1).
    Vgg16,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SegConfig {
    pub preset: String,
    pub backbone: SegBackbone,
    /// ResNet stages (blocks, width, BN mode); unused for VGG.
    pub resnet: ResNetConfig,
    /// VGG conv widths (13) and BN; unused for ResNet.
    pub vgg_widths: Vec<usize>,
    pub vgg_batch_norm: bool,
    /// Head: 3×3 conv with this dilation → `head_channels`, ReLU, 1×1 → `head_channels`,
    /// ReLU, 1×1 → K+1 (VGG: fc6 / fc7 / fc8 with dropout).
    pub head_dilation: usize,
    pub head_channels: usize,
    pub dropout: f64,
    pub crop: usize,
    pub scale_min: f64,
    pub scale_max: f64,
    pub batch: usize,
    pub iterations: usize,
    pub lr: f64,
    /// Head lr multiplier (official ×10).
    pub head_lr_mult: f64,
    pub poly_power: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    pub seed: u64,
    pub workers: usize,
    /// Checkpoint every N iterations (and at the end).
    pub checkpoint_every: usize,
    /// ImageNet weights (torchvision .pth or safetensors) for the backbone.
    pub pretrained: Option<String>,
}

impl SegConfig {
    /// `resnet101` / `vgg16`: the official settings (ImageNet init via `pretrained`). `tiny`:
    /// a narrow ResNet (1 bottleneck per stage, width 8, BN with batch statistics since it
    /// trains from scratch) on 96-px crops, for the CPU demo; `tiny-vgg`: the same for VGG.
    pub fn preset(name: &str) -> Result<SegConfig> {
        let official = SegConfig {
            preset: name.to_string(),
            backbone: SegBackbone::Resnet101,
            resnet: ResNetConfig::resnet101(),
            vgg_widths: vec![
                64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512,
            ],
            vgg_batch_norm: false,
            head_dilation: 12,
            head_channels: 1024,
            dropout: 0.0,
            crop: 321,
            scale_min: 0.7,
            scale_max: 1.3,
            batch: 10,
            iterations: 16000,
            lr: 1e-3,
            head_lr_mult: 10.0,
            poly_power: 0.9,
            momentum: 0.9,
            weight_decay: 5e-4,
            seed: 1,
            workers: 2,
            checkpoint_every: 1000,
            pretrained: None,
        };
        // From scratch on the CPU: BN trained with batch statistics, one lr for all layers,
        // a dilation that fits a 96-px crop's 12×12 output. On the 128-px synthetic set, 2000
        // iterations on the ground truth reach ~70% val mIoU in ~2 minutes (docs/history.md).
        let scratch = SegConfig {
            crop: 96,
            batch: 8,
            iterations: 2000,
            lr: 1e-2,
            head_lr_mult: 1.0,
            head_dilation: 2,
            head_channels: 64,
            checkpoint_every: 200,
            ..official.clone()
        };
        match name {
            "resnet101" => Ok(official),
            "vgg16" => Ok(SegConfig {
                backbone: SegBackbone::Vgg16,
                dropout: 0.5,
                ..official
            }),
            "tiny" => Ok(SegConfig {
                resnet: ResNetConfig {
                    blocks: [1, 1, 1, 1],
                    base: 8,
                    train_bn: true,
                },
                ..scratch
            }),
            "tiny-vgg" => Ok(SegConfig {
                backbone: SegBackbone::Vgg16,
                vgg_widths: vec![8, 8, 16, 16, 32, 32, 32, 64, 64, 64, 64, 64, 64],
                vgg_batch_norm: true,
                ..scratch
            }),
            "micro" => Ok(SegConfig {
                resnet: ResNetConfig {
                    blocks: [1, 1, 1, 1],
                    base: 4,
                    train_bn: true,
                },
                crop: 32,
                batch: 2,
                iterations: 4,
                head_dilation: 1,
                head_channels: 16,
                workers: 1,
                checkpoint_every: 2,
                ..scratch
            }),
            other => Err(Error::Msg(format!(
                "unknown segmentation preset '{other}' (resnet101, vgg16, tiny, tiny-vgg, micro)"
            ))),
        }
    }

    /// Checks every number a user can set before anything is allocated or trained.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: String| Err(Error::Msg(format!("segmentation config: {what}")));
        if !(16..=4096).contains(&self.crop) {
            return bad(format!("crop must be in 16..=4096, got {}", self.crop));
        }
        if self.batch == 0 || self.batch > 1024 || self.iterations == 0 {
            return bad(format!(
                "batch must be in 1..=1024 and iterations ≥ 1, got {} and {}",
                self.batch, self.iterations
            ));
        }
        for (n, v) in [
            ("lr", self.lr),
            ("head_lr_mult", self.head_lr_mult),
            ("scale_min", self.scale_min),
            ("scale_max", self.scale_max),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(format!("{n} must be finite and > 0, got {v}"));
            }
        }
        if self.scale_min > self.scale_max || self.scale_max > 8.0 {
            return bad(format!(
                "scales must satisfy scale_min ≤ scale_max ≤ 8, got {} and {}",
                self.scale_min, self.scale_max
            ));
        }
        if !(0.0..1.0).contains(&self.momentum) || !(0.0..1.0).contains(&self.dropout) {
            return bad("momentum and dropout must be in [0, 1)".into());
        }
        let finite_non_negative = |v: f64| v.is_finite() && v >= 0.0;
        if !finite_non_negative(self.weight_decay) || !finite_non_negative(self.poly_power) {
            return bad("weight_decay and poly_power must be finite and ≥ 0".into());
        }
        Ok(())
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        crate::io::save_toml(path, self)
    }
    pub fn load(path: &Path) -> Result<SegConfig> {
        crate::io::load_toml(path)
    }
}

//! AffinityNet (DESIGN §8): a backbone's features at several depths, each reduced by a 1×1
//! conv + ELU, concatenated and fused by a 1×1 conv + ELU; the affinity of two positions is
//! exp(−mean |f_i − f_j|) of the fused features ([`Tensor::local_affinity`]).
use super::config::{AffBackbone, AffConfig};
use crate::error::{Error, Result};
use crate::io::Checkpoint;
use crate::nn::{Backbone, Conv, Init, ResNet, Vgg};
use crate::optim::ParamGroup;
use crate::tensor::{DType, Tensor};
use crate::{Conv2dParams, Device};
use rand::Rng;
use std::sync::Arc;

#[derive(Clone, Debug)]
pub struct AffinityNet {
    pub config: AffConfig,
    pub backbone: Arc<dyn Backbone>,
    pub reduce: Vec<Conv>,
    pub fuse: Conv,
}

/// ELU (α = 1): x for x > 0, e^x − 1 otherwise (PSA's activation of the new layers).
fn elu(x: &Tensor) -> Result<Tensor> {
    let zero = Tensor::zeros([1], x.dtype(), x.device());
    x.relu().add(&x.minimum(&zero)?.exp().add_scalar(-1.0))
}

impl AffinityNet {
    pub fn new(cfg: &AffConfig, device: Device, rng: &mut impl Rng) -> AffinityNet {
        let backbone: Arc<dyn Backbone> = match &cfg.backbone {
            AffBackbone::Vgg(v) => Arc::new(Vgg::new(
                v.clone(),
                Init::KaimingNormal,
                Init::KaimingNormal,
                DType::F32,
                device,
                rng,
            )),
            AffBackbone::Resnet(r) => Arc::new(ResNet::new(r.clone(), device, rng)),
        };
        let ch = backbone.level_channels();
        let reduce: Vec<Conv> = cfg
            .levels
            .iter()
            .zip(&cfg.reduce)
            .map(|(&l, &c)| {
                Conv::new(
                    ch[l],
                    c,
                    1,
                    Conv2dParams::default(),
                    false,
                    Init::KaimingNormal,
                    DType::F32,
                    device,
                    rng,
                )
            })
            .collect();
        let d: usize = cfg.reduce.iter().sum();
        let fuse = Conv::new(
            d,
            d,
            1,
            Conv2dParams::default(),
            false,
            Init::KaimingNormal,
            DType::F32,
            device,
            rng,
        );
        AffinityNet {
            config: cfg.clone(),
            backbone,
            reduce,
            fuse,
        }
    }

    /// The fused features (B, D, H/s, W/s) of an image batch, s = `config.stride()`; deeper
    /// levels are upsampled bilinearly to the finest one. The backbone's BN uses its running
    /// statistics (the classifier's or ImageNet's), as PSA keeps BN frozen.
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        let levels = self.backbone.forward_levels(x, false)?;
        let (gh, gw) = self
            .config
            .levels
            .iter()
            .map(|&l| (levels[l].dims()[2], levels[l].dims()[3]))
            .max()
            .expect("validated: at least one level");
        let parts: Vec<Tensor> = self
            .config
            .levels
            .iter()
            .zip(&self.reduce)
            .map(|(&l, conv)| {
                let y = elu(&conv.forward(&levels[l])?)?;
                if y.dims()[2..] == [gh, gw] {
                    Ok(y)
                } else {
                    y.resize_bilinear(gh, gw)
                }
            })
            .collect::<Result<_>>()?;
        elu(&self
            .fuse
            .forward(&Tensor::concat(&parts.iter().collect::<Vec<_>>(), 1)?)?)
    }

    /// Affinities (B, P, H/s, W/s) of an image batch over the half disc of the config's radius.
    pub fn affinity(&self, x: &Tensor) -> Result<Tensor> {
        self.features(x)?.local_affinity(self.config.radius)
    }

    fn backbone_params(&self) -> Vec<(String, Tensor)> {
        self.backbone.named_params()
    }

    fn new_params(&self) -> Vec<(String, Tensor)> {
        let mut v = Vec::new();
        for (i, c) in self.reduce.iter().enumerate() {
            v.extend(c.named_params(&format!("aff.reduce.{i}")));
        }
        v.extend(self.fuse.named_params("aff.fuse"));
        v
    }

    pub fn named_params(&self) -> Vec<(String, Tensor)> {
        let mut v = self.backbone_params();
        v.extend(self.new_params());
        v
    }

    /// Parameters and buffers (BN running statistics): what a checkpoint holds.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut s: Vec<(String, Tensor)> = self
            .backbone
            .named_tensors()
            .into_iter()
            .map(|(n, t, _)| (n, t))
            .collect();
        s.extend(self.new_params());
        s
    }

    /// Backbone ×1 and new layers ×`new_lr_mult`, both with weight decay.
    pub fn param_groups(&self) -> Vec<ParamGroup> {
        let c = &self.config;
        vec![
            ParamGroup {
                name: "backbone".into(),
                params: self.backbone_params().into_iter().map(|p| p.1).collect(),
                lr: c.lr,
                weight_decay: c.weight_decay,
            },
            ParamGroup {
                name: "new".into(),
                params: self.new_params().into_iter().map(|p| p.1).collect(),
                lr: c.lr * c.new_lr_mult,
                weight_decay: c.weight_decay,
            },
        ]
    }

    pub fn load(&self, ck: &Checkpoint) -> Result<()> {
        ck.load_into(&self.state_tensors())
    }

    /// Starts the backbone from `config.init_from`: a classifier run folder or checkpoint
    /// (VGG: the tensors named `features.*` / `extra_convs.*`, BN statistics included), or
    /// torchvision ImageNet weights (ResNet). Returns the number of tensors loaded.
    pub fn load_init(&self, path: &std::path::Path) -> Result<usize> {
        match &self.config.backbone {
            AffBackbone::Vgg(_) => {
                let file = if path.is_dir() {
                    path.join(crate::cls::train::LAST)
                } else {
                    path.to_path_buf()
                };
                let ck = Checkpoint::open(&file)?;
                let want: Vec<(String, Tensor)> = self
                    .backbone
                    .named_tensors()
                    .into_iter()
                    .map(|(n, t, _)| (n, t))
                    .collect();
                ck.load_into(&want).map_err(|e| {
                    Error::file(
                        &file,
                        format!("cannot start AffinityNet's VGG from this classifier ({e}); the presets' widths must match"),
                    )
                })?;
                Ok(want.len())
            }
            AffBackbone::Resnet(_) => self.backbone.load_pretrained(path),
        }
    }
}

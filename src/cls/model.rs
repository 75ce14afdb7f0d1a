//! The co-attention classifier: VGG16-D1 backbone + MCIS head, its parameter groups, and
//! the loss of one official training iteration (four pair forwards).
use super::config::{ClsConfig, Variant};
use crate::data::loader::WpRun;
use crate::error::Result;
use crate::io::Checkpoint;
use crate::nn::{CoattHead, Vgg};
use crate::optim::ParamGroup;
use crate::tensor::{DType, Tensor};
use crate::Device;
use rand::Rng;
use std::path::Path;

#[derive(Clone, Debug)]
pub struct Classifier {
    pub backbone: Vgg,
    pub head: CoattHead,
}

/// The loss terms of one iteration (each a [1] tensor) and their sum.
pub struct IterationLoss {
    pub basic: Tensor,
    pub coatt: Option<Tensor>,
    pub contrastive: Option<Tensor>,
    pub total: Tensor,
}

impl Classifier {
    pub fn new(
        cfg: &ClsConfig,
        num_classes: usize,
        device: Device,
        rng: &mut impl Rng,
    ) -> Classifier {
        let backbone = Vgg::new(
            cfg.backbone.clone(),
            cfg.backbone_init,
            cfg.head_init,
            DType::F32,
            device,
            rng,
        );
        let mut head = CoattHead::new(
            cfg.feature_channels(),
            num_classes,
            cfg.head_init,
            DType::F32,
            device,
            rng,
        );
        head.affinity = cfg.affinity;
        head.scorer = cfg.scorer;
        if cfg.domain_wp() {
            head.add_domain_wp(cfg.head_init, rng);
        }
        head.set_temperature(cfg.temperature, cfg.learn_temperature);
        if cfg.wp_init == crate::nn::WpInit::Identity {
            head.set_wp_identity()
                .expect("the identity has W_P's shape, dtype and device");
        }
        Classifier { backbone, head }
    }

    pub fn named_params(&self) -> Vec<(String, Tensor)> {
        let mut v = self.backbone.named_params();
        v.extend(self.head.named_params());
        v
    }

    /// The four official lr groups: VGG weights ×1, VGG biases ×2, new weights ×10, new biases
    /// ×20 (the multipliers come from the config).
    pub fn param_groups(&self, cfg: &ClsConfig) -> Vec<ParamGroup> {
        let (b, n) = (cfg.bias_lr_mult, cfg.new_lr_mult);
        let mut g: Vec<ParamGroup> = [
            ("backbone_weights", 1.0),
            ("backbone_biases", b),
            ("new_weights", n),
            ("new_biases", n * b),
        ]
        .iter()
        .map(|(n, m)| ParamGroup {
            name: n.to_string(),
            params: Vec::new(),
            lr: cfg.lr * m,
            weight_decay: cfg.weight_decay,
        })
        .collect();
        for (name, t) in self.named_params() {
            if let crate::nn::Temperature::Learned(p) = &self.head.temperature {
                if p.id() == t.id() {
                    continue;
                }
            }
            let bias = name.ends_with("bias") || name.ends_with("last_b");
            let idx = if name.starts_with("features.") {
                bias as usize
            } else {
                2 + bias as usize
            };
            // BN affine parameters train with the backbone (γ as a weight, β as a bias)
            g[idx].params.push(t);
        }
        if cfg.wp_lr_mult != 1.0 {
            // W_P (all of them) in a group of its own; absent by default, so the groups and
            // the checkpoint names of the official recipe do not change
            let (wp, rest): (Vec<Tensor>, Vec<Tensor>) = std::mem::take(&mut g[2].params)
                .into_iter()
                .partition(|t| self.head.is_wp(t));
            g[2].params = rest;
            g.push(ParamGroup {
                name: "coattention_wp".into(),
                params: wp,
                lr: cfg.lr * n * cfg.wp_lr_mult,
                weight_decay: cfg.weight_decay,
            });
        }
        if let crate::nn::Temperature::Learned(p) = &self.head.temperature {
            // τ outside weight decay: decay would pull log(1/τ) to 0, i.e. τ to 1
            g.push(ParamGroup {
                name: "temperature".into(),
                params: vec![p.clone()],
                lr: cfg.lr * n,
                weight_decay: 0.0,
            });
        }
        g
    }

    /// Parameters and buffers (BN running statistics): everything a checkpoint holds.
    pub fn state_tensors(&self) -> Vec<(String, Tensor)> {
        let mut v = self.named_params();
        v.extend(self.backbone.named_buffers());
        v
    }

    /// Loads every parameter and buffer from a checkpoint (names and shapes must match).
    pub fn load(&self, ck: &Checkpoint) -> Result<()> {
        ck.load_into(&self.state_tensors())
    }

    /// Features of an image batch, in training mode (BN uses batch statistics).
    pub fn features(&self, x: &Tensor) -> Result<Tensor> {
        self.backbone.forward(x, true)
    }

    /// Features for inference (BN uses its running statistics).
    pub fn features_eval(&self, x: &Tensor) -> Result<Tensor> {
        self.backbone.forward(x, false)
    }

    /// One official iteration: pairs (x1,x2), (x1,flip x1), (x1, x1 small), (x1, x1 large).
    /// Single-image loss on both sides of every pair (image 1's appears in all four pairs, so
    /// its term counts four times, as in the official code); co-attention loss with target
    /// l1∧l2 on pair 1 and l1 on the self pairs from `coattention_from` on; contrastive loss
    /// (targets l − common) on pair 1 from `contrastive_from` on. Every term is multilabel soft margin, weight 1.
    pub fn iteration_loss(
        &self,
        cfg: &ClsConfig,
        x1: &Tensor,
        x2: &Tensor,
        l1: &Tensor,
        l2: &Tensor,
        epoch: usize,
    ) -> Result<IterationLoss> {
        let whole = [WpRun::whole(x1.dims()[0])];
        self.iteration_loss_grouped(cfg, x1, x2, l1, l2, epoch, &whole)
    }

    /// [`Self::iteration_loss`] on a batch made of runs of pairs that share their W_P
    /// (`PairBatch::wp_runs`). The backbone and the single-image terms see the whole batch;
    /// the co-attention and contrastive terms are computed per run with that run's W_P and
    /// weighted by its share of the batch, so they equal the whole-batch means.
    #[allow(clippy::too_many_arguments)]
    pub fn iteration_loss_grouped(
        &self,
        cfg: &ClsConfig,
        x1: &Tensor,
        x2: &Tensor,
        l1: &Tensor,
        l2: &Tensor,
        epoch: usize,
        runs: &[WpRun],
    ) -> Result<IterationLoss> {
        let b = x1.dims()[0];
        let s = cfg.input_size;
        let scaled = |f: f64| ((s as f64 * f).round() as usize).max(8);
        let xf = x1.flip(3)?;
        // one backbone pass over the three same-size batches, then the two rescaled views
        let f = self.features(&Tensor::concat(&[x1, x2, &xf], 0)?)?;
        let (f1, f2, ff) = (
            f.narrow(0, 0, b)?,
            f.narrow(0, b, b)?,
            f.narrow(0, 2 * b, b)?,
        );
        let fs =
            self.features(&x1.resize_bilinear(scaled(cfg.small_scale), scaled(cfg.small_scale))?)?;
        let fl =
            self.features(&x1.resize_bilinear(scaled(cfg.large_scale), scaled(cfg.large_scale))?)?;
        let mlsm = |x: &Tensor, t: &Tensor| x.multilabel_soft_margin(t);
        let s1 = self.head.single(&f1)?;
        let mut basic = mlsm(&s1, l1)?
            .mul_scalar(4.0)
            .add(&mlsm(&self.head.single(&f2)?, l2)?)?;
        for v in [&ff, &fs, &fl] {
            basic = basic.add(&mlsm(&self.head.single(v)?, l1)?)?;
        }
        let mut total = basic.clone();
        let (mut coatt, mut contrastive) = (None, None);
        if cfg.variant != Variant::Basic && epoch >= cfg.coattention_from {
            let with_contrast = cfg.variant == Variant::Full && epoch >= cfg.contrastive_from;
            let (mut c_all, mut x_all): (Option<Tensor>, Option<Tensor>) = (None, None);
            let add = |acc: &mut Option<Tensor>, t: Tensor| -> Result<()> {
                *acc = Some(match acc.take() {
                    Some(a) => a.add(&t)?,
                    None => t,
                });
                Ok(())
            };
            for &WpRun {
                start,
                len,
                pair_wp,
                self_wp,
            } in runs
            {
                let whole = runs.len() == 1;
                let part = |t: &Tensor| -> Result<Tensor> {
                    if whole {
                        Ok(t.clone())
                    } else {
                        t.narrow(0, start, len)
                    }
                };
                let (f1, f2, ff, fs, fl) =
                    (part(&f1)?, part(&f2)?, part(&ff)?, part(&fs)?, part(&fl)?);
                let (l1, l2) = (part(l1)?, part(l2)?);
                let common = l1.mul(&l2)?;
                let (co, cx) = self.head.pair_with(&f1, &f2, with_contrast, pair_wp)?;
                let mut c = mlsm(&co[0], &common)?.add(&mlsm(&co[1], &common)?)?;
                for v in [&ff, &fs, &fl] {
                    let (co, _) = self.head.pair_with(&f1, v, false, self_wp)?;
                    c = c.add(&mlsm(&co[0], &l1)?)?.add(&mlsm(&co[1], &l1)?)?;
                }
                let share = len as f64 / b as f64;
                let weigh = |t: Tensor| if whole { t } else { t.mul_scalar(share) };
                add(&mut c_all, weigh(c))?;
                if let Some(cx) = cx {
                    let x =
                        mlsm(&cx[0], &l1.sub(&common)?)?.add(&mlsm(&cx[1], &l2.sub(&common)?)?)?;
                    add(&mut x_all, weigh(x))?;
                }
            }
            if let Some(c) = &c_all {
                total = total.add(c)?;
            }
            if let Some(x) = &x_all {
                total = total.add(x)?;
            }
            coatt = c_all;
            contrastive = x_all;
        }
        Ok(IterationLoss {
            basic,
            coatt,
            contrastive,
            total,
        })
    }
}

/// A trained classifier from a run folder: its config.toml and a checkpoint.
pub fn load_classifier(
    run: &Path,
    checkpoint: Option<&Path>,
    num_classes: usize,
    device: Device,
) -> Result<(Classifier, ClsConfig)> {
    let cfg = ClsConfig::load(&run.join("config.toml"))?;
    let ck_path = checkpoint
        .map(Path::to_path_buf)
        .unwrap_or_else(|| run.join(super::train::LAST));
    let ck = Checkpoint::open(&ck_path)?;
    let model = Classifier::new(&cfg, num_classes, device, &mut crate::seed::rng(cfg.seed));
    model.load(&ck)?;
    Ok((model, cfg))
}

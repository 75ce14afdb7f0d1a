//! ResNet (bottleneck blocks) as DeepLab uses it: output stride 8, res4 (layer3) dilation 2,
//! res5 (layer4) dilation 4, strides moved out of the dilated stages. Parameter names follow
//! torchvision (`conv1`, `bn1`, `layer<i>.<j>.conv1`, `.downsample.0/1`), so
//! `resnet101-*.pth` loads by name.
use super::{BatchNorm, Conv, Init};
use crate::error::Result;
use crate::tensor::{DType, Tensor};
use crate::{Conv2dParams, Device, Pool2dParams};
use rand::Rng;

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResNetConfig {
    /// Bottleneck blocks per stage (ResNet-101: 3, 4, 23, 3).
    pub blocks: [usize; 4],
    /// Stem width (64); stage i's bottleneck width is base·2^i, its output 4× that.
    pub base: usize,
    /// BN with batch statistics while training (from scratch) instead of frozen running
    /// statistics (the official setting, with ImageNet statistics).
    pub train_bn: bool,
}

impl ResNetConfig {
    pub fn resnet101() -> Self {
        ResNetConfig {
            blocks: [3, 4, 23, 3],
            base: 64,
            train_bn: false,
        }
    }
    pub fn out_channels(&self) -> usize {
        self.base * 8 * 4
    }
}

#[derive(Clone, Debug)]
struct Bottleneck {
    convs: [Conv; 3],
    bns: [BatchNorm; 3],
    downsample: Option<(Conv, BatchNorm)>,
}

#[derive(Clone, Debug)]
pub struct ResNet {
    pub config: ResNetConfig,
    stem: (Conv, BatchNorm),
    stages: Vec<Vec<Bottleneck>>,
}

impl ResNet {
    pub fn new(config: ResNetConfig, device: Device, rng: &mut impl Rng) -> ResNet {
        let train_bn = config.train_bn;
        let conv = |cin, cout, k, p: Conv2dParams, rng: &mut _| {
            Conv::new(
                cin,
                cout,
                k,
                p,
                false,
                Init::KaimingNormal,
                DType::F32,
                device,
                rng,
            )
        };
        let bn = |c| BatchNorm::new(c, train_bn, DType::F32, device);
        let stem = (
            conv(
                3,
                config.base,
                7,
                Conv2dParams {
                    stride: (2, 2),
                    padding: (3, 3),
                    dilation: (1, 1),
                },
                rng,
            ),
            bn(config.base),
        );
        let mut cin = config.base;
        let mut stages = Vec::new();
        // (stride, dilation) per stage: output stride 8
        for (s, &(stride, dil)) in [(1, 1), (2, 1), (1, 2), (1, 4)].iter().enumerate() {
            let width = config.base << s;
            let cout = width * 4;
            let mut blocks = Vec::new();
            for b in 0..config.blocks[s] {
                let st = if b == 0 { stride } else { 1 };
                let down = (b == 0).then(|| {
                    (
                        conv(
                            cin,
                            cout,
                            1,
                            Conv2dParams {
                                stride: (st, st),
                                ..Default::default()
                            },
                            rng,
                        ),
                        bn(cout),
                    )
                });
                blocks.push(Bottleneck {
                    convs: [
                        conv(cin, width, 1, Conv2dParams::default(), rng),
                        conv(
                            width,
                            width,
                            3,
                            Conv2dParams {
                                stride: (st, st),
                                padding: (dil, dil),
                                dilation: (dil, dil),
                            },
                            rng,
                        ),
                        conv(width, cout, 1, Conv2dParams::default(), rng),
                    ],
                    bns: [bn(width), bn(width), bn(cout)],
                    downsample: down,
                });
                cin = cout;
            }
            stages.push(blocks);
        }
        ResNet {
            config,
            stem,
            stages,
        }
    }

    /// (B,3,H,W) → (B, 32·base, H/8, W/8). `train` uses batch statistics when the config
    /// trains BN; frozen BN always uses the running statistics.
    pub fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        Ok(self
            .forward_levels(x, train)?
            .pop()
            .expect("forward_levels returns one level per stage"))
    }

    /// The outputs of the four stages (layer1 at stride 4, layer2-4 at stride 8), for the
    /// models that read several depths (AffinityNet, DESIGN §8).
    pub fn forward_levels(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        let bs = train && self.config.train_bn;
        let mut h = self
            .stem
            .1
            .forward_act(&self.stem.0.forward(x)?, bs, true)?;
        h = h.max_pool2d(Pool2dParams::new(3, 2, 1))?;
        let mut levels = Vec::with_capacity(self.stages.len());
        for blocks in &self.stages {
            for b in blocks {
                let mut y = h.clone();
                for (i, (c, n)) in b.convs.iter().zip(&b.bns).enumerate() {
                    // conv, BN and (but for the last of the block) ReLU
                    y = n.forward_act(&c.forward(&y)?, bs, i < 2)?;
                }
                let skip = match &b.downsample {
                    Some((c, n)) => n.forward(&c.forward(&h)?, bs)?,
                    None => h,
                };
                h = y.add(&skip)?.relu();
            }
            levels.push(h.clone());
        }
        Ok(levels)
    }

    /// Channels of the four levels of [`Self::forward_levels`].
    pub fn level_channels(&self) -> [usize; 4] {
        let b = self.config.base * 4;
        [b, 2 * b, 4 * b, 8 * b]
    }

    /// Every tensor with its torchvision name: (name, tensor, trainable).
    pub fn named_tensors(&self) -> Vec<(String, Tensor, bool)> {
        let mut v = Vec::new();
        let push_bn = |v: &mut Vec<_>, bn: &BatchNorm, p: &str| {
            for (i, (n, t)) in bn.tensors(p).into_iter().enumerate() {
                v.push((n, t, i < 2 && self.config.train_bn));
            }
        };
        v.push(("conv1.weight".to_string(), self.stem.0.weight.clone(), true));
        push_bn(&mut v, &self.stem.1, "bn1");
        for (s, blocks) in self.stages.iter().enumerate() {
            for (j, b) in blocks.iter().enumerate() {
                let p = format!("layer{}.{j}", s + 1);
                for (i, (c, n)) in b.convs.iter().zip(&b.bns).enumerate() {
                    v.push((format!("{p}.conv{}.weight", i + 1), c.weight.clone(), true));
                    push_bn(&mut v, n, &format!("{p}.bn{}", i + 1));
                }
                if let Some((c, n)) = &b.downsample {
                    v.push((format!("{p}.downsample.0.weight"), c.weight.clone(), true));
                    push_bn(&mut v, n, &format!("{p}.downsample.1"));
                }
            }
        }
        v
    }
}

impl super::Backbone for ResNet {
    fn forward(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        ResNet::forward(self, x, train)
    }
    fn forward_levels(&self, x: &Tensor, train: bool) -> Result<Vec<Tensor>> {
        ResNet::forward_levels(self, x, train)
    }
    fn out_channels(&self) -> usize {
        self.config.out_channels()
    }
    fn level_channels(&self) -> [usize; 4] {
        ResNet::level_channels(self)
    }
    fn named_tensors(&self) -> Vec<(String, Tensor, bool)> {
        ResNet::named_tensors(self)
    }
    /// Every tensor by torchvision name: convs and BN with its running statistics.
    fn load_pretrained(&self, path: &std::path::Path) -> Result<usize> {
        let params: Vec<(String, Tensor)> = ResNet::named_tensors(self)
            .into_iter()
            .map(|(n, t, _)| (n, t))
            .collect();
        crate::io::weights::load_named_into(path, &params)
    }
}

//! AffinityNet training configuration (DESIGN §8), written whole to RUN/config.toml.
use crate::crf::CrfPreset;
use crate::data::augment::Jitter;
use crate::error::{Error, Result};
use crate::nn::{ResNetConfig, VggConfig};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The backbone whose multi-level features AffinityNet compares.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AffBackbone {
    /// The classifier's VGG16-D1 (narrow for the CPU demo), starting from the classifier's
    /// trained weights: its features already separate the classes.
    Vgg(VggConfig),
    /// ResNet at output stride 8 (full width for GPUs), starting from ImageNet weights
    /// (`pretrained`), as PSA's ResNet-38.
    Resnet(ResNetConfig),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AffConfig {
    pub preset: String,
    pub backbone: AffBackbone,
    /// Which backbone levels are compared (indices into its `forward_levels`: level 0 is at
    /// stride 4, the others at stride 8) and the channels each is reduced to by a 1×1 conv
    /// (PSA: 64, 128, 256 of ResNet-38's last three stages, then a 1×1 fusion conv over their
    /// concatenation). With level 0 the affinities live on the stride-4 grid, the deeper
    /// levels upsampled to it.
    pub levels: Vec<usize>,
    pub reduce: Vec<usize>,
    /// Pairs within this radius on the affinity grid (PSA: 5).
    pub radius: usize,
    /// Images are warped to this square side for training (multiple of 8).
    pub input_size: usize,
    pub batch: usize,
    pub epochs: usize,
    /// Backbone lr; new layers ×`new_lr_mult`; poly decay with `poly_power`.
    pub lr: f64,
    pub new_lr_mult: f64,
    pub poly_power: f64,
    pub momentum: f64,
    pub weight_decay: f64,
    /// Background powers of the two label maps: bg = (1 − max_c M_c)^α (PSA: 4 and 32).
    pub alpha_low: f64,
    pub alpha_high: f64,
    /// When set, the two powers come from the maps instead: the label maps' background beats
    /// a class where the class map falls below these multiples of the maps' Otsu threshold t
    /// (`cam::threshold::alpha_at`). PSA's α = 4 / 32 put those points at 2× / 0.57× of where
    /// its inference power α = 16 puts them; VOC-trained α's do not fit maps of another
    /// calibration (the blobby maps of small networks).
    #[serde(default)]
    pub label_points: Option<[f64; 2]>,
    /// CRF that refines the two label maps (PSA: its own preset, 10 iterations).
    pub crf: CrfPreset,
    pub jitter: Option<Jitter>,
    pub seed: u64,
    /// Checkpoint every N iterations (and at each epoch end).
    pub checkpoint_every: usize,
    /// Where the backbone starts: a classifier run folder (or checkpoint) for `vgg`, ImageNet
    /// weights (torchvision .pth or safetensors) for `resnet`; None: from scratch.
    pub init_from: Option<String>,
}

impl AffConfig {
    /// `tiny`: the CPU demo, the classifier's narrow VGG at 128 px; `resnet101`: full-width
    /// ResNet-101 at PSA's crop 448, for GPUs.
    pub fn preset(name: &str) -> Result<AffConfig> {
        let psa = AffConfig {
            preset: name.to_string(),
            backbone: AffBackbone::Resnet(ResNetConfig::resnet101()),
            levels: vec![1, 2, 3],
            reduce: vec![64, 128, 256],
            radius: 5,
            input_size: 448,
            batch: 8,
            epochs: 8,
            lr: 0.1,
            new_lr_mult: 10.0,
            poly_power: 0.9,
            momentum: 0.9,
            weight_decay: 5e-4,
            alpha_low: 4.0,
            alpha_high: 32.0,
            label_points: None,
            crf: CrfPreset::Psa,
            jitter: Some(Jitter::default()),
            seed: 1,
            checkpoint_every: 0,
            init_from: None,
        };
        match name {
            "resnet101" => Ok(psa),
            // From the classifier's backbone (it is trained on these very images; PSA starts
            // from ImageNet weights, which the CPU demo does not have), so a lower lr than PSA's
            // 0.1, which is for ImageNet-initialised ResNet-38 with frozen BN. The levels are
            // conv3_3 (stride 4), pool4 and the extra convs (the classifier's features),
            // reduced to 1/8 of PSA's widths like the rest of the narrow model; with the stride-4
            // level the walk runs on a 32×32 grid for 128-px images (16×16 at stride 8 left
            // object boundaries at cell size). The label powers come from the maps' Otsu
            // threshold t (confident foreground above t, confident background below t/2):
            // PSA's 4 / 32 made 32% of the pixels "confident foreground" at 26% precision on
            // the blobby maps of the tiny classifier. Measured in docs/quality.md.
            "tiny" => Ok(AffConfig {
                backbone: AffBackbone::Vgg(VggConfig::narrow(8)),
                levels: vec![0, 1, 3],
                reduce: vec![8, 16, 32],
                input_size: 128,
                epochs: 3,
                lr: 0.01,
                label_points: Some([1.0, 0.5]),
                jitter: Some(Jitter {
                    brightness: 0.1,
                    contrast: 0.1,
                    saturation: 0.1,
                    hue: 0.0,
                }),
                ..psa
            }),
            "micro" => Ok(AffConfig {
                backbone: AffBackbone::Vgg(VggConfig::narrow(16)),
                levels: vec![0, 1, 3],
                reduce: vec![4, 4, 8],
                radius: 3,
                input_size: 32,
                batch: 2,
                epochs: 1,
                lr: 0.01,
                crf: CrfPreset::Mcis,
                jitter: None,
                ..psa
            }),
            other => Err(Error::Msg(format!(
                "unknown affinity preset '{other}' (tiny, micro, resnet101)"
            ))),
        }
    }

    /// Checks the numbers a user can set.
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Msg(format!("affinity config: {what}")));
        if self.levels.is_empty() || self.levels.len() != self.reduce.len() {
            return bad("levels and reduce must be non-empty and of equal length");
        }
        if self.levels.iter().any(|&l| l > 3) || self.reduce.contains(&0) {
            return bad("levels are 0..=3 and every reduce width ≥ 1");
        }
        if self.radius < 2 || self.radius > 16 {
            return bad("radius must be in 2..=16");
        }
        if self.input_size < 16 || self.input_size > 4096 || !self.input_size.is_multiple_of(8) {
            return bad("input_size must be a multiple of 8 in 16..=4096");
        }
        if self.batch == 0 || self.epochs == 0 {
            return bad("batch and epochs must be ≥ 1");
        }
        for (n, v) in [
            ("lr", self.lr),
            ("new_lr_mult", self.new_lr_mult),
            ("alpha_low", self.alpha_low),
            ("alpha_high", self.alpha_high),
        ] {
            if !(v.is_finite() && v > 0.0) {
                return bad(&format!("{n} must be finite and > 0, got {v}"));
            }
        }
        for (n, v) in [
            ("momentum", self.momentum),
            ("weight_decay", self.weight_decay),
            ("poly_power", self.poly_power),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(&format!("{n} must be finite and ≥ 0, got {v}"));
            }
        }
        Ok(())
    }

    /// The stride of the affinity grid: 4 with level 0 (the stride-4 level), else 8.
    pub fn stride(&self) -> usize {
        if self.levels.contains(&0) {
            4
        } else {
            8
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        crate::io::save_toml(path, self)
    }
    pub fn load(path: &Path) -> Result<AffConfig> {
        crate::io::load_toml(path)
    }
}

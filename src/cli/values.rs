//! The command line's names for the library's option enums (clap stays in `cli`: the lower
//! layers know nothing of argument parsing).
use crate::cam::infer::Probe;
use crate::cam::CamMode;
use crate::cls::Variant;
use crate::crf::CrfPreset;
use crate::nn::Affinity;
use crate::seg::SegBackbone;
use clap::builder::PossibleValue;
use clap::ValueEnum;

/// `impl ValueEnum` from (variant, name, help) rows.
macro_rules! value_enum {
    ($t:ty, [$(($v:expr, $name:literal, $help:literal)),+ $(,)?]) => {
        impl ValueEnum for $t {
            fn value_variants<'a>() -> &'a [Self] {
                &[$($v),+]
            }
            fn to_possible_value(&self) -> Option<PossibleValue> {
                let rows = [$(($v, $name, $help)),+];
                rows.iter()
                    .find(|r| r.0 == *self)
                    .map(|r| PossibleValue::new(r.1).help(r.2))
            }
        }
    };
}

value_enum!(
    Affinity,
    [
        (
            Affinity::Dot,
            "dot",
            "S_ij = (W_P·f_i)·f_j on the raw features: the paper's"
        ),
        (
            Affinity::Cosine,
            "cosine",
            "the same on unit-length features (not in the paper; docs/quality.md)"
        ),
    ]
);
value_enum!(
    Variant,
    [
        (
            Variant::Basic,
            "basic",
            "Eq. 1 only: the single-image classifier"
        ),
        (
            Variant::Coatt,
            "coatt",
            "Eq. 1 + Eq. 5: with the co-attention loss"
        ),
        (
            Variant::Full,
            "full",
            "Eq. 10: co-attention and contrastive co-attention"
        ),
    ]
);
value_enum!(
    CrfPreset,
    [
        (
            CrfPreset::Mcis,
            "mcis",
            "the official MCIS setting: gaussian 3/1, bilateral 80/4/3, 1 iteration"
        ),
        (
            CrfPreset::Psa,
            "psa",
            "the PSA / SEAM setting: gaussian 3/3, bilateral 80/13/10, 10 iterations"
        ),
        (CrfPreset::Off, "off", "no CRF"),
    ]
);
value_enum!(
    SegBackbone,
    [
        (
            SegBackbone::Resnet101,
            "resnet101",
            "ResNet-101 LargeFOV (the official MCIS network)"
        ),
        (SegBackbone::Vgg16, "vgg16", "VGG16 LargeFOV (DeepLab v1)"),
    ]
);
value_enum!(
    CamMode,
    [
        (
            CamMode::Single,
            "single",
            "the single-image head's CAM (single-round feed-forward)"
        ),
        (
            CamMode::Coatt,
            "coatt",
            "co-attentive inference with related images (the paper's)"
        ),
    ]
);
value_enum!(
    Probe,
    [
        (
            Probe::IdentityWp,
            "identity-wp",
            "W_P := I: the attention follows feature similarity alone"
        ),
        (
            Probe::SingleScorer,
            "single-scorer",
            "φ := the single-image classifier: attended features scored like a CAM"
        ),
    ]
);

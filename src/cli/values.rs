//! The command line's names for the library's option enums (clap stays in `cli`: the lower
//! layers know nothing of argument parsing).
use crate::cam::infer::{Attention, Probe};
use crate::cam::CamMode;
use crate::cls::Variant;
use crate::crf::CrfPreset;
use crate::nn::{Affinity, Scorer};
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
        (
            Affinity::Centered,
            "centered",
            "cosine on features centred per image (not in the paper; docs/quality.md)"
        ),
    ]
);
value_enum!(
    Attention,
    [
        (
            Attention::Trained,
            "trained",
            "the classifier's affinity, τ and W_P: the paper's"
        ),
        (
            Attention::Similarity,
            "similarity",
            "W_P = I, centred cosine, τ 0.03 (not in the paper; docs/quality.md)"
        ),
    ]
);
value_enum!(
    Scorer,
    [
        (
            Scorer::Separate,
            "separate",
            "a 1×1 layer φ of its own: the official code"
        ),
        (
            Scorer::Shared,
            "shared",
            "the single-image classifier: the paper's text (Eq. 1 and 5 both write ϕ)"
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

/// A fraction in [0, 1] (NaN refused), checked when the command line is parsed.
pub fn fraction(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("expected a number in [0, 1], got '{s}'")),
    }
}

/// `auto`, or a background threshold in [0, 1].
pub fn bg_threshold(s: &str) -> Result<String, String> {
    if s == "auto" {
        return Ok(s.into());
    }
    fraction(s)
        .map(|_| s.into())
        .map_err(|_| format!("expected `auto` or a number in [0, 1], got '{s}'"))
}

/// A threshold that can be switched off (clap reads a bare `Option` as "may be absent").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OrOff(pub Option<f32>);

/// `off` or a finite number > 0 (the boundary prior's threshold).
pub fn positive_or_off(s: &str) -> Result<OrOff, String> {
    if s == "off" {
        return Ok(OrOff(None));
    }
    positive(s)
        .map(|v| OrOff(Some(v as f32)))
        .map_err(|_| format!("expected `off` or a finite number > 0, got '{s}'"))
}

/// A finite, positive number (learning rates, temperatures).
pub fn positive(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!("expected a finite number > 0, got '{s}'")),
    }
}

/// [`fraction`] for the options held as f64, parsed as f64 (not through f32: `0.7` must be the
/// f64 0.7 that the library's defaults use, or a default given explicitly would draw and record
/// another value).
pub fn fraction64(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("expected a number in [0, 1], got '{s}'")),
    }
}

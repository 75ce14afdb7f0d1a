//! `train-affinity` and `refine`: thin wrappers over `crate::affinity`.
use super::{select_device, DeviceArg};
use crate::affinity::{run_refine, train_affinity, AffConfig, RefineOptions, TrainAffOptions};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct TrainAffinityArgs {
    /// Localization maps of the train split (`coatt-train cams`).
    #[arg(long)]
    pub cams: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    /// Run folder: config.toml, labels/, metrics.jsonl, loss.png, last.safetensors.
    #[arg(long)]
    pub out: PathBuf,
    /// tiny (CPU demo: the classifier's narrow VGG), micro (tests), resnet101 (GPUs).
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Where the backbone starts: the classifier run (VGG presets; default: the run that made
    /// --cams, from CAMS/cams.json) or ImageNet weights (resnet101).
    #[arg(long)]
    pub init_from: Option<PathBuf>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long, value_parser = super::values::positive)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// A TOML file with any subset of the config fields, laid over the preset.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Continue the run in --out from its last checkpoint (its config.toml is used).
    #[arg(long)]
    pub resume: bool,
}

/// The classifier run that made a folder of maps (its cams.json), if recorded.
pub fn classifier_of(cams: &std::path::Path) -> Option<PathBuf> {
    let s = std::fs::read_to_string(cams.join("cams.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&s).ok()?;
    v.get("run")?.as_str().map(PathBuf::from)
}

pub fn build_aff_config(a: &TrainAffinityArgs) -> Result<AffConfig> {
    let mut c = AffConfig::preset(&a.preset)?;
    if let Some(p) = &a.config {
        c = crate::io::overlay_toml(&c, p)?;
    }
    if let Some(v) = a.epochs {
        c.epochs = v;
    }
    if let Some(v) = a.lr {
        c.lr = v;
    }
    if let Some(v) = a.seed {
        c.seed = v;
    }
    let init = a.init_from.clone().or_else(|| match c.backbone {
        crate::affinity::AffBackbone::Vgg(_) => classifier_of(&a.cams),
        _ => None,
    });
    if let Some(p) = init {
        let abs =
            std::fs::canonicalize(&p).map_err(|e| Error::file(&p, format!("--init-from: {e}")))?;
        c.init_from = Some(abs.display().to_string());
    }
    c.validate()?;
    Ok(c)
}

pub fn train_affinity_cmd(a: &TrainAffinityArgs) -> Result<()> {
    let config = build_aff_config(a)?;
    if config.init_from.is_none() && !a.resume {
        eprintln!("train-affinity: no --init-from and no classifier recorded with the maps: the backbone starts from scratch");
    }
    let s = train_affinity(&TrainAffOptions {
        cams: a.cams.clone(),
        data: a.data.clone(),
        out: a.out.clone(),
        config,
        device: select_device(a.device)?,
        resume: a.resume,
        stop_after: None,
        quiet: false,
    })?;
    println!(
        "trained AffinityNet: {} iterations ({} skipped without pairs) in {:.0} s ({:.1} images/s); labels: {:.1}% foreground, {:.1}% background, {:.1}% ignored, {} of {} images without a confident region; {}",
        s.iterations,
        s.skipped_steps,
        s.train_secs,
        s.images_per_sec,
        100.0 * s.labels.foreground,
        100.0 * s.labels.background,
        100.0 * s.labels.ignored,
        s.labels.empty,
        s.labels.images,
        s.checkpoint.display()
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct RefineArgs {
    /// A train-affinity run folder (the random walk); without it, only the CRF is applied.
    #[arg(long)]
    pub run: Option<PathBuf>,
    /// The maps to refine (`coatt-train cams`).
    #[arg(long)]
    pub cams: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Output folder of refined maps (with a background channel) and overlays.
    #[arg(long)]
    pub out: PathBuf,
    /// Affinity power β of the transition matrix.
    #[arg(long, default_value_t = 8.0, value_parser = super::values::positive)]
    pub beta: f64,
    /// 2^logt random-walk steps.
    #[arg(long, default_value_t = 8)]
    pub logt: u32,
    /// Power α of the background channel (1 − max)^α, or `auto`: from the maps' Otsu
    /// threshold t, (1 − t)^α = t (PSA: 16, for VOC-trained CAMs).
    #[arg(long, default_value = "auto")]
    pub alpha: String,
    /// Dense CRF over [background, classes] after the walk: psa (10 iterations), mcis or off
    /// (PSA's refinement has none).
    #[arg(long, value_enum, default_value_t = crate::crf::CrfPreset::Off)]
    pub crf: crate::crf::CrfPreset,
    #[arg(long)]
    pub no_overlays: bool,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
}

pub fn refine_cmd(a: &RefineArgs) -> Result<()> {
    let mut o = RefineOptions::new(Path::new(""), &a.cams, &a.data, &a.out);
    o.run = a.run.clone();
    o.crf = a.crf.params();
    o.split = a.split.clone();
    o.beta = a.beta;
    o.logt = a.logt;
    o.alpha =
        match a.alpha.as_str() {
            "auto" => None,
            v => Some(v.parse::<f64>().map_err(|_| {
                Error::Msg(format!("--alpha must be a number or `auto`, got '{v}'"))
            })?),
        };
    o.overlays = !a.no_overlays;
    o.device = select_device(a.device)?;
    let s = run_refine(&o)?;
    println!(
        "refined the maps of {} images into {} in {:.1} s ({} already there; background power α = {:.2})",
        s.written,
        a.out.display(),
        s.secs,
        s.existing,
        s.alpha
    );
    Ok(())
}

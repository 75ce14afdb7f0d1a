//! `train-seg`, `infer` and `pipeline`: thin wrappers over `crate::seg` and `crate::pipeline`.
use super::{select_device, DeviceArg};
use crate::cls::ClsConfig;
use crate::crf::CrfPreset;
use crate::data::VocDataset;
use crate::error::{Error, Result};
use crate::pipeline::{run_pipeline, LabelsFrom, PipelineOptions, PipelinePreset, Refinement};
use crate::seg::{
    load_segnet, run_infer, train_seg, InferOptions, LabelSource, SegBackbone, SegConfig,
    TrainSegOptions,
};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct TrainSegArgs {
    /// Folder of label PNGs (<id>.png, from `pseudo`), or `gt` for the dataset's own masks
    /// (the fully supervised bound).
    #[arg(long)]
    pub labels: String,
    #[arg(long)]
    pub data: PathBuf,
    /// Run folder: config.toml, metrics.jsonl, last.safetensors, loss.png.
    #[arg(long)]
    pub out: PathBuf,
    /// resnet101 / vgg16 (official sizes), tiny (narrow ResNet), tiny-vgg, micro.
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// Overrides the preset's backbone (keeping its other numbers).
    #[arg(long, value_enum)]
    pub backbone: Option<SegBackbone>,
    #[arg(long)]
    pub iterations: Option<usize>,
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long)]
    pub crop: Option<usize>,
    #[arg(long, value_parser = super::values::positive)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// ImageNet weights for the backbone (torchvision resnet101-*.pth / vgg16-*.pth or
    /// safetensors with the same names).
    #[arg(long)]
    pub pretrained: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Continue the run in --out from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
}

pub fn train_seg_cmd(a: &TrainSegArgs) -> Result<()> {
    let mut c = SegConfig::preset(&a.preset)?;
    if let Some(b) = a.backbone {
        c.backbone = b;
    }
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f { c.$f = v; } )* };
    }
    if a.resume
        && (a.iterations.is_some()
            || a.batch.is_some()
            || a.crop.is_some()
            || a.lr.is_some()
            || a.seed.is_some()
            || a.backbone.is_some())
    {
        return Err(crate::Error::Msg(
            "--resume continues the run with its own config.toml; the other training flags would be ignored".into(),
        ));
    }
    set!(iterations, batch, crop, lr, seed);
    if let Some(p) = &a.pretrained {
        c.pretrained = Some(p.display().to_string());
    }
    c.validate()?;
    let labels = if a.labels == "gt" {
        LabelSource::GroundTruth
    } else {
        LabelSource::Folder(PathBuf::from(&a.labels))
    };
    let s = train_seg(&TrainSegOptions {
        data: a.data.clone(),
        labels,
        out: a.out.clone(),
        config: c,
        device: select_device(a.device)?,
        resume: a.resume,
        stop_after: None,
        quiet: false,
    })?;
    println!(
        "trained {} iterations in {:.0} s of training steps, {:.1} images/s",
        s.iterations, s.train_secs, s.images_per_sec
    );
    if let Some(m) = s.val_miou {
        println!("val mIoU (single scale, no CRF): {:.2}%", 100.0 * m);
    }
    println!("checkpoint: {}", s.checkpoint.display());
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct InferArgs {
    /// A segmentation run folder.
    #[arg(long)]
    pub run: PathBuf,
    /// A folder of images (every .jpg/.jpeg/.png in it).
    #[arg(long, conflicts_with = "data")]
    pub images: Option<PathBuf>,
    /// A dataset and --split.
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, default_value = "val")]
    pub split: String,
    #[arg(long)]
    pub out: PathBuf,
    /// Scales to average (official: 0.5,0.75,1,1.25,1.5).
    #[arg(long, value_delimiter = ',', default_value = "1", value_parser = super::values::positive)]
    pub scales: Vec<f64>,
    #[arg(long)]
    pub flip: bool,
    /// The dense CRF on each prediction: on by default (MCIS's setting); `off` for the
    /// network's own labels (the pipeline reports both).
    #[arg(long, value_enum, default_value_t = CrfPreset::Mcis)]
    pub crf: CrfPreset,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
}

fn image_list(a: &InferArgs) -> Result<Vec<(String, PathBuf)>> {
    if let Some(d) = &a.data {
        return Ok(VocDataset::open(d, &a.split)?
            .items
            .into_iter()
            .map(|it| (it.id, it.image))
            .collect());
    }
    let Some(dir) = &a.images else {
        return Err(Error::Msg("give --images DIR or --data DIR".into()));
    };
    let mut v = Vec::new();
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = e.map_err(|e| Error::io(dir, e))?.path();
        let ext = p
            .extension()
            .and_then(|x| x.to_str())
            .unwrap_or("")
            .to_lowercase();
        if ["jpg", "jpeg", "png"].contains(&ext.as_str()) {
            let id = p.file_stem().unwrap().to_string_lossy().to_string();
            v.push((id, p));
        }
    }
    v.sort();
    if v.is_empty() {
        return Err(Error::file(dir, "no .jpg/.jpeg/.png images in this folder"));
    }
    Ok(v)
}

pub fn infer_cmd(a: &InferArgs) -> Result<()> {
    let device = select_device(a.device)?;
    let model = load_segnet(&a.run, device)?;
    let images = image_list(a)?;
    let opts = InferOptions {
        scales: a.scales.clone(),
        flip: a.flip,
        crf: a.crf.params(),
        run: Some(a.run.clone()),
    };
    let s = run_infer(&model, &images, &a.out, &opts, device, false)?;
    println!(
        "wrote {} predictions to {} in {:.1} s ({} already there, {} unreadable); CRF: {}",
        s.written,
        a.out.display(),
        s.secs,
        s.existing,
        s.failed.len(),
        match a.crf {
            CrfPreset::Off => "off".to_string(),
            c => format!("{c:?} (--crf off for the network's own labels)"),
        }
    );
    for (p, e) in &s.failed {
        println!("  skipped {}: {e}", p.display());
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct PipelineArgs {
    /// A VOC-layout dataset (default: synthesise one into OUT/data).
    #[arg(long)]
    pub data: Option<PathBuf>,
    #[arg(long, default_value = "coatt-pipeline")]
    pub out: PathBuf,
    /// tiny (the CPU demo), micro (seconds; a smoke test).
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// The synthetic set drawn when no --data is given: scenes (class-typical bodies and
    /// context, the default) or target (heads only).
    #[arg(long, value_enum)]
    pub kind: Option<crate::cli::SynthKind>,
    /// Also train the basic classifier and report its CAMs beside the method's maps (on by
    /// default; --baseline false to skip it and save its time).
    #[arg(long, action = clap::ArgAction::Set)]
    pub baseline: Option<bool>,
    /// Refinement of the maps before they become pseudo labels: crf (the dense CRF, PSA's
    /// preset; the default), affinity (AffinityNet trained on the method's maps, a random
    /// walk of 2^6 steps, then the CRF) or none (raw maps at Otsu's background threshold).
    #[arg(long, value_enum)]
    pub refine: Option<Refine>,
    /// Which maps become the pseudo labels: single (the co-attention classifier's
    /// single-round maps, the default), coattention (its co-attentive maps, the paper's
    /// favoured inference: better on scenes, far worse on target; docs/quality.md) or
    /// baseline (the basic classifier's CAMs; needs the baseline).
    #[arg(long, value_enum)]
    pub labels_from: Option<LabelsFromArg>,
    /// Refined maps label background only where the raw maps are below their Otsu threshold,
    /// the rest of the refinement's background 255 (off by default: it helps the segmentation
    /// only with the CRF at inference, and not on the target set; docs/quality.md).
    #[arg(long, action = clap::ArgAction::Set)]
    pub confident_background: Option<bool>,
    /// The boundary prior on the pseudo labels: class regions that touch the image border
    /// along much of their size become 255 (on by default; docs/quality.md measures it).
    #[arg(long, action = clap::ArgAction::Set)]
    pub border_prior: Option<bool>,
    /// How the co-attentive maps attend: similarity (W_P = I, the centred cosine at τ 0.03; the
    /// default, docs/quality.md) or trained (the classifier's own affinity, τ and W_P: the
    /// paper's).
    #[arg(long, value_enum)]
    pub coatt_attention: Option<crate::cam::infer::Attention>,
    /// The classifiers' preset (`train-cls --preset`), for the method's classifier and the
    /// baseline alike: the `tiny` pipeline's is tiny-wide; `--cls-preset tiny` (half the
    /// widths) is about 5 minutes faster and measured 7 points less segmentation
    /// (docs/quality.md, "Twice the width").
    #[arg(long, value_name = "NAME")]
    pub cls_preset: Option<String>,
    /// A TOML file with any subset of the classifier's config fields (as in a `train-cls` run's
    /// config.toml), laid over the classifiers' preset: both the method's and the baseline's
    /// (which stays variant basic). E.g. `affinity = "dot"` for the paper's affinity, `scorer =
    /// "shared"` for the paper's shared ϕ. --seed overrides its seed.
    #[arg(long)]
    pub cls_config: Option<PathBuf>,
    /// Seed of the data, the classifiers and AffinityNet.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Redo stages recorded with other options, and every stage after the first of them.
    #[arg(long)]
    pub force: bool,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Refine {
    Crf,
    Affinity,
    None,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum LabelsFromArg {
    Single,
    Coattention,
    Baseline,
}

/// The pipeline's settings from its command line: the preset, then --cls-config, then the
/// flags.
pub fn build_pipeline_preset(a: &PipelineArgs) -> Result<PipelinePreset> {
    let mut preset = PipelinePreset::named(&a.preset)?;
    match a.kind {
        Some(crate::cli::SynthKind::Target) => preset.kind = crate::data::synth::SetKind::Target,
        Some(crate::cli::SynthKind::Scenes) => preset.kind = crate::data::synth::SetKind::Scenes,
        Some(k) => {
            return Err(crate::Error::Msg(format!(
                "--kind {k:?} makes extra training data, not a segmentation set (scenes, target)"
            )))
        }
        None => {}
    }
    if let Some(b) = a.baseline {
        preset.baseline = b;
    }
    match a.refine {
        Some(Refine::None) => preset.refine = Refinement::None,
        Some(Refine::Crf) => preset.refine = Refinement::Crf(crate::crf::CrfPreset::Psa),
        Some(Refine::Affinity) => {
            preset.refine = Refinement::Affinity {
                config: Box::new(crate::affinity::AffConfig::preset(
                    if preset.name == "micro" {
                        "micro"
                    } else {
                        "tiny"
                    },
                )?),
                beta: 8.0,
                logt: 6,
                crf: crate::crf::CrfPreset::Psa,
            }
        }
        None => {}
    }
    match a.labels_from {
        Some(LabelsFromArg::Single) => preset.labels_from = LabelsFrom::Single,
        Some(LabelsFromArg::Coattention) => preset.labels_from = LabelsFrom::Coattention,
        Some(LabelsFromArg::Baseline) => preset.labels_from = LabelsFrom::Baseline,
        None => {}
    }
    if let Some(c) = a.confident_background {
        preset.confident_background = c;
    }
    if let Some(b) = a.border_prior {
        preset.border_prior = b;
    }
    if let Some(x) = a.coatt_attention {
        preset.coatt_attention = x;
    }
    if let Some(name) = &a.cls_preset {
        preset.cls = ClsConfig::preset(name)?;
    }
    if let Some(path) = &a.cls_config {
        preset.cls = crate::io::overlay_toml(&preset.cls, path)?;
        preset
            .cls
            .validate()
            .map_err(|e| crate::Error::file(path, e.to_string()))?;
    }
    if let Some(s) = a.seed {
        preset.cls.seed = s;
    }
    Ok(preset)
}

pub fn pipeline_cmd(a: &PipelineArgs) -> Result<()> {
    let preset = build_pipeline_preset(a)?;
    let r = run_pipeline(&PipelineOptions {
        data: a.data.clone(),
        out: a.out.clone(),
        preset,
        device: select_device(a.device)?,
        quiet: false,
        force: a.force,
    })?;
    print!("{}", r.table());
    let total: f64 = r.secs.iter().map(|(_, s)| s).sum();
    println!(
        "stages run now: {}; already complete: {}; total stage time {:.0} s",
        if r.ran.is_empty() {
            "none".into()
        } else {
            r.ran.join(", ")
        },
        if r.skipped.is_empty() {
            "none".into()
        } else {
            r.skipped.join(", ")
        },
        total
    );
    println!("report: {}", r.report.display());
    Ok(())
}

//! `train-seg`, `infer` and `pipeline`: thin wrappers over `crate::seg` and `crate::pipeline`.
use super::{select_device, DeviceArg};
use crate::crf::CrfPreset;
use crate::data::VocDataset;
use crate::error::{Error, Result};
use crate::pipeline::{run_pipeline, PipelineOptions, PipelinePreset};
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
    #[arg(long)]
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
    set!(iterations, batch, crop, lr, seed);
    if let Some(p) = &a.pretrained {
        c.pretrained = Some(p.display().to_string());
    }
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
    #[arg(long, value_delimiter = ',', default_value = "1")]
    pub scales: Vec<f64>,
    #[arg(long)]
    pub flip: bool,
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
    };
    let s = run_infer(&model, &images, &a.out, &opts, device, false)?;
    println!(
        "wrote {} predictions to {} in {:.1} s ({} already there, {} unreadable)",
        s.written,
        a.out.display(),
        s.secs,
        s.existing,
        s.failed.len()
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
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
}

pub fn pipeline_cmd(a: &PipelineArgs) -> Result<()> {
    let r = run_pipeline(&PipelineOptions {
        data: a.data.clone(),
        out: a.out.clone(),
        preset: PipelinePreset::named(&a.preset)?,
        device: select_device(a.device)?,
        quiet: false,
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

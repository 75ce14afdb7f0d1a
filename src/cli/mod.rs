//! Argument types and thin command bodies for `coatt-train` (the binary only dispatches).
use crate::cls::{train_cls, ClsConfig, TrainClsOptions, Variant};
use crate::data::check::check;
use crate::data::synth::{generate, SynthConfig};
use crate::error::{Error, Result};
use crate::Device;
use std::path::PathBuf;

/// `--device auto|cpu|cuda`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceArg {
    Auto,
    Cpu,
    Cuda,
}

/// Picks the device once: `cuda` starts the CUDA runtime or is a one-line error saying why
/// not; `auto` uses the GPU when the runtime starts and otherwise says why it uses the CPU.
pub fn select_device(d: DeviceArg) -> Result<Device> {
    match d {
        DeviceArg::Cpu => Ok(Device::Cpu),
        DeviceArg::Auto => match crate::backend::cuda::init() {
            Ok(()) => {
                eprintln!(
                    "device: cuda ({})",
                    crate::backend::cuda::device_name().unwrap_or_default()
                );
                Ok(Device::Cuda)
            }
            Err(why) => {
                eprintln!("device: cpu ({why})");
                Ok(Device::Cpu)
            }
        },
        DeviceArg::Cuda => match crate::backend::cuda::init() {
            Ok(()) => Ok(Device::Cuda),
            Err(why) => Err(Error::Msg(format!(
                "--device cuda: {why}; use --device cpu or auto"
            ))),
        },
    }
}

#[derive(clap::Args, Debug)]
pub struct SynthArgs {
    /// Output folder (VOC layout).
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 2000)]
    pub train: usize,
    #[arg(long, default_value_t = 400)]
    pub val: usize,
    /// Image side in pixels.
    #[arg(long, default_value_t = 128)]
    pub size: usize,
    #[arg(long, default_value_t = 6)]
    pub classes: usize,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// target: a segmentation set (masks, train and val) where only a small head is class
    /// evidence. scenes: a segmentation set on the paper's premise (class-typical bodies,
    /// limbs and background context; README). single: extra single-label images
    /// of another domain (studio style). web: extra "web" images with wrong labels at
    /// --label-noise, mixed sizes, some greyscale and some broken files. Extra sets have
    /// --train images, no val split and no masks; give them another --seed than the target.
    #[arg(long, value_enum, default_value_t = SynthKind::Target)]
    pub kind: SynthKind,
    /// Share of web images whose label is wrong (--kind web).
    #[arg(long, default_value_t = 0.3, value_parser = values::fraction64)]
    pub label_noise: f64,
    /// Share of scenes images whose ground is the typical context of one of their classes
    /// (--kind scenes); 0 makes the ground say nothing of the classes.
    #[arg(long, default_value_t = crate::data::synth::DEFAULT_CONTEXT_SHARE, value_parser = values::fraction64)]
    pub context_share: f64,
    /// Write into a folder that holds other files (they may be overwritten).
    #[arg(long)]
    pub force: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SynthKind {
    Target,
    Scenes,
    Single,
    Web,
}

/// Refuses a non-empty output folder unless it is a previous synth output of the same options
/// (OUT/synth.json), or --force: a data set's split lists and labels are not overwritten by
/// accident.
fn check_synth_folder(a: &SynthArgs) -> Result<serde_json::Value> {
    let mut record = serde_json::json!({
        "kind": format!("{:?}", a.kind), "train": a.train, "val": a.val, "size": a.size,
        "classes": a.classes, "seed": a.seed, "label_noise": a.label_noise,
    });
    // recorded only where it changes the images, so that folders made before the option
    // existed still match a rerun with the same command
    if a.kind == SynthKind::Scenes && a.context_share != crate::data::synth::DEFAULT_CONTEXT_SHARE {
        record["context_share"] = a.context_share.into();
    }
    let others: Vec<String> = std::fs::read_dir(&a.out)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n != crate::io::lock::LOCK_FILE && n != "synth.json")
                .collect()
        })
        .unwrap_or_default();
    if others.is_empty() || a.force {
        return Ok(record);
    }
    let old = std::fs::read_to_string(a.out.join("synth.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
    match old {
        Some(o) if o == record => Ok(record),
        Some(o) => Err(Error::file(
            &a.out,
            format!(
                "holds a synthetic set made with other options ({}); use another --out, or --force to overwrite it",
                crate::io::record::differences(&o, &record).join("; ")
            ),
        )),
        None => Err(Error::file(
            &a.out,
            format!(
                "is not empty ({} and more) and was not made by synth; use another --out, or --force to write into it",
                others.iter().take(3).cloned().collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

pub fn synth(a: &SynthArgs) -> Result<()> {
    let record = check_synth_folder(a)?;
    let cfg = SynthConfig {
        out: a.out.clone(),
        train: a.train,
        val: a.val,
        size: a.size,
        classes: a.classes,
        seed: a.seed,
        kind: match a.kind {
            SynthKind::Scenes => crate::data::synth::SetKind::Scenes,
            _ => crate::data::synth::SetKind::Target,
        },
        context_share: a.context_share,
    };
    let extra = match a.kind {
        SynthKind::Target | SynthKind::Scenes => None,
        SynthKind::Single => Some(crate::data::synth::ExtraSynth::Single),
        SynthKind::Web => Some(crate::data::synth::ExtraSynth::Web {
            label_noise: a.label_noise,
        }),
    };
    if let Some(kind) = extra {
        let st = crate::data::synth::generate_extra(&cfg, kind)?;
        println!(
            "wrote {} extra {:?} images to {} (images per label: {:?}; wrong labels {}, greyscale {}, undecodable {})",
            st.per_class.iter().sum::<usize>(),
            a.kind,
            a.out.display(),
            st.per_class,
            st.wrong_labels,
            st.greyscale,
            st.broken
        );
        return write_synth_record(a, &record);
    }
    let hist = generate(&cfg)?;
    println!(
        "wrote {} train + {} val images ({}×{}, {} classes) to {}",
        a.train,
        a.val,
        a.size,
        a.size,
        a.classes,
        a.out.display()
    );
    println!("train images per class: {hist:?}");
    write_synth_record(a, &record)
}

fn write_synth_record(a: &SynthArgs, record: &serde_json::Value) -> Result<()> {
    let s = serde_json::to_string_pretty(record).map_err(|e| Error::Msg(e.to_string()))?;
    crate::io::write_atomic(&a.out.join("synth.json"), s.as_bytes())
}

#[derive(clap::Args, Debug)]
pub struct CheckDataArgs {
    /// Dataset folder (VOC layout, or a VOCdevkit).
    pub dir: PathBuf,
    /// Splits to check; the first is the one to train on.
    #[arg(long, value_delimiter = ',', default_value = "train,val")]
    pub splits: Vec<String>,
}

/// Prints the report; Ok(false) when the set cannot be trained on.
pub fn check_data(a: &CheckDataArgs) -> Result<bool> {
    let splits: Vec<&str> = a.splits.iter().map(String::as_str).collect();
    let rep = check(&a.dir, &splits)?;
    print!("{}", rep.render());
    Ok(rep.trainable())
}

#[derive(clap::Args, Debug)]
pub struct TrainClsArgs {
    #[arg(long)]
    pub data: PathBuf,
    /// Run folder: config.toml, metrics.jsonl, checkpoints, loss.png.
    #[arg(long)]
    pub out: PathBuf,
    /// vgg16 (official), small, tiny, tiny-wide (`tiny` at twice the widths: the pipeline's), micro.
    #[arg(long, default_value = "tiny")]
    pub preset: String,
    /// basic | coatt | full (default: the preset's, full).
    #[arg(long, value_enum)]
    pub variant: Option<Variant>,
    #[arg(long)]
    pub epochs: Option<usize>,
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long, value_parser = values::positive)]
    pub lr: Option<f64>,
    #[arg(long)]
    pub input_size: Option<usize>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also checkpoint every N iterations.
    #[arg(long)]
    pub checkpoint_every: Option<usize>,
    /// Cap on iterations per epoch (quick runs).
    #[arg(long)]
    pub max_iters_per_epoch: Option<usize>,
    /// Backbone weights to start from: ImageNet VGG16 (torchvision .pth or safetensors), or a
    /// checkpoint of another run of the same backbone (its batch norm is loaded too).
    #[arg(long)]
    pub pretrained: Option<PathBuf>,
    /// Co-attention affinity: dot (the paper's), cosine (unit-length features: the `tiny`
    /// preset's) or centered (cosine on features centred per image; docs/quality.md).
    #[arg(long, value_enum)]
    pub affinity: Option<crate::nn::Affinity>,
    /// Which layer scores the co-attentive features: `separate` (a φ of its own, the official
    /// code; the default) or `shared` (the single-image classifier, as the paper's Eq. 1 and
    /// Eq. 5 write it; docs/quality.md measures both).
    #[arg(long, value_enum)]
    pub scorer: Option<crate::nn::Scorer>,
    /// Extra training data, repeatable: DIR or LIST, with `:single` (single-label images of
    /// another domain: three W_P, paper §3.2) or `:web` (noisy web images, the default: paired
    /// like target images). A VOC-layout folder or a list of `path class [class ...]` lines.
    #[arg(long, value_name = "DIR[:single|:web]")]
    pub extra: Vec<crate::data::ExtraSpec>,
    /// A TOML file with any subset of the config fields (as in a run's config.toml), laid over
    /// the preset; the flags above override both.
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
    /// Continue the run in --out from its last checkpoint (its config.toml is used).
    #[arg(long)]
    pub resume: bool,
    /// Take the first epochs from the classifier run RUN instead of training them again: the
    /// epochs before the co-attention terms join (`coattention_from`), which are the same
    /// training when RUN's config differs from this one only in the variant and in settings
    /// the co-attention terms alone use (affinity, a fixed temperature, scorer,
    /// contrastive_from, coattention_lr_factor). How docs/quality.md's full classifiers
    /// continue from a basic run's epoch 3, and what the pipeline's baseline does.
    #[arg(long, value_name = "RUN", conflicts_with = "resume")]
    pub start_from: Option<PathBuf>,
}

pub fn build_cls_config(a: &TrainClsArgs) -> Result<ClsConfig> {
    let mut c = ClsConfig::preset(&a.preset)?;
    if let Some(p) = &a.config {
        c = crate::io::overlay_toml(&c, p)?;
    }
    // only the flags given override the preset or the --config file
    macro_rules! set {
        ($($f:ident),*) => { $( if let Some(v) = a.$f { c.$f = v; } )* };
    }
    set!(
        variant,
        epochs,
        batch,
        lr,
        input_size,
        seed,
        checkpoint_every,
        max_iters_per_epoch,
        affinity,
        scorer
    );
    if let Some(p) = &a.pretrained {
        c.pretrained = Some(p.display().to_string());
    }
    if !a.extra.is_empty() {
        // absolute paths, so that config.toml (and --resume) does not depend on the cwd
        c.extra = a
            .extra
            .iter()
            .map(|e| {
                let path = std::fs::canonicalize(&e.path)
                    .map_err(|err| Error::file(&e.path, format!("extra data: {err}")))?;
                Ok(crate::data::ExtraSpec { path, kind: e.kind })
            })
            .collect::<Result<_>>()?;
    }
    c.validate()?;
    Ok(c)
}

pub fn train_cls_cmd(a: &TrainClsArgs) -> Result<()> {
    if a.resume {
        let given: Vec<&str> = [
            ("--variant", a.variant.is_some()),
            ("--epochs", a.epochs.is_some()),
            ("--batch", a.batch.is_some()),
            ("--lr", a.lr.is_some()),
            ("--input-size", a.input_size.is_some()),
            ("--seed", a.seed.is_some()),
            ("--affinity", a.affinity.is_some()),
            ("--scorer", a.scorer.is_some()),
            ("--config", a.config.is_some()),
            ("--extra", !a.extra.is_empty()),
            ("--pretrained", a.pretrained.is_some()),
        ]
        .into_iter()
        .filter_map(|(n, g)| g.then_some(n))
        .collect();
        if !given.is_empty() {
            return Err(Error::Msg(format!(
                "--resume continues the run with its own config.toml; {} would be ignored (start a new run, or edit the run's config.toml)",
                given.join(", ")
            )));
        }
    }
    let config = build_cls_config(a)?;
    let device = select_device(a.device)?;
    let s = train_cls(&TrainClsOptions {
        data: a.data.clone(),
        out: a.out.clone(),
        config,
        device,
        resume: a.resume,
        start_from: a.start_from.clone(),
        stop_after: None,
        quiet: false,
    })?;
    println!(
        "trained {} epochs ({} iterations, {} of them in this run) in {:.0} s of training steps, {:.1} images/s",
        s.epochs_done, s.iterations, s.iterations_here, s.train_secs, s.images_per_sec
    );
    if let Some(m) = s.val_map.last() {
        println!(
            "val mAP per epoch: {}",
            s.val_map
                .iter()
                .map(|m| format!("{m:.3}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        println!("final val mAP: {m:.4}");
    }
    println!("checkpoint: {}", s.final_checkpoint.display());
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Folder of predicted label PNGs named <id>.png.
    #[arg(long)]
    pub pred: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = "val")]
    pub split: String,
    /// Where to write eval.json and eval.md (default: the prediction folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Predictions may hold 255 (pseudo labels): those pixels are left out and the coverage
    /// (share of labelled pixels) is reported.
    #[arg(long)]
    pub partial: bool,
}

pub fn eval_cmd(a: &EvalArgs) -> Result<()> {
    let (conf, names) = crate::eval::evaluate_folder(&a.pred, &a.data, &a.split, a.partial)?;
    let md = conf.markdown(&names);
    let out = a.out.clone().unwrap_or_else(|| a.pred.clone());
    let json = serde_json::json!({"split": a.split, "miou": conf.miou(), "coverage": conf.coverage(), "classes": conf.scores(), "names": names, "confusion": conf.counts});
    crate::io::write_atomic(
        &out.join("eval.json"),
        serde_json::to_string_pretty(&json)
            .map_err(|e| Error::Msg(e.to_string()))?
            .as_bytes(),
    )?;
    let what = if a.partial {
        "the pseudo labels"
    } else {
        "the predictions"
    };
    conf.write_report(&out, &names, what)?;
    print!("{md}");
    if a.partial {
        println!(
            "coverage: {:.1}% of labelled pixels",
            100.0 * conf.coverage()
        );
    }
    Ok(())
}

mod cam;
pub use cam::{cams_cmd, eval_cam_cmd, pseudo_cmd, CamsArgs, EvalCamArgs, PseudoArgs};
mod seg;
pub use seg::{
    build_pipeline_preset, infer_cmd, pipeline_cmd, train_seg_cmd, InferArgs, PipelineArgs,
    TrainSegArgs,
};
mod affinity;
pub mod bench;
mod report;
pub use report::{report_cmd, show_cmd, ReportArgs, ShowArgs};
mod values;
pub use affinity::{refine_cmd, train_affinity_cmd, RefineArgs, TrainAffinityArgs};

//! `cams`, `pseudo` and `eval-cam`: thin wrappers over `crate::cam`.
use super::{select_device, DeviceArg};
use crate::cam::{self, CamMode, CamOptions, PseudoRule};
use crate::error::Result;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct CamsArgs {
    /// A classifier run folder (config.toml + checkpoints).
    #[arg(long)]
    pub run: PathBuf,
    /// A checkpoint of the run (default RUN/last.safetensors).
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = "train")]
    pub split: String,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, value_enum, default_value_t = CamMode::Coatt)]
    pub mode: CamMode,
    /// Related images per positive class (coatt mode; 0 = self pairs only).
    #[arg(long, default_value_t = 3)]
    pub related: usize,
    /// Input scales to average, relative to the training size, e.g. 0.5,1,1.5.
    #[arg(long, value_delimiter = ',', default_value = "1", value_parser = super::values::positive)]
    pub scales: Vec<f64>,
    /// Also average the horizontally flipped image.
    #[arg(long)]
    pub flip: bool,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Co-attention affinity: dot (the paper's), cosine (unit-length features) or centered
    /// (cosine on features centred per image; see docs/quality.md). Default: the one the
    /// classifier was trained with.
    #[arg(long, value_enum)]
    pub affinity: Option<cam::Affinity>,
    /// τ of the co-attention at inference (S/τ): overrides the one the classifier has.
    #[arg(long, value_parser = super::values::positive)]
    pub temperature: Option<f64>,
    /// How the co-attentive inference attends: `trained` (the classifier's affinity, τ and
    /// W_P: the paper's) or `similarity` (W_P = I, the centred cosine at τ 0.03: each position
    /// attends to the related image's positions that look like it; docs/quality.md).
    /// --affinity and --temperature override either.
    #[arg(long, value_enum, default_value_t = cam::infer::Attention::Trained)]
    pub attention: cam::infer::Attention,
    /// Diagnostics of what the co-attention maps are made of: `identity-wp` replaces the
    /// trained W_P by the identity (attention by feature similarity alone), `single-scorer`
    /// scores the attended features with the single-image classifier instead of φ. Repeatable.
    #[arg(long, value_enum)]
    pub probe: Vec<cam::infer::Probe>,
    /// Skip the heat-map overlay PNGs.
    #[arg(long)]
    pub no_overlays: bool,
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    #[arg(long, value_enum, default_value_t = DeviceArg::Auto)]
    pub device: DeviceArg,
}

pub fn cams_cmd(a: &CamsArgs) -> Result<()> {
    let opts = CamOptions {
        run: a.run.clone(),
        checkpoint: a.checkpoint.clone(),
        data: a.data.clone(),
        split: a.split.clone(),
        out: a.out.clone(),
        mode: a.mode,
        related: a.related,
        scales: a.scales.clone(),
        flip: a.flip,
        seed: a.seed,
        overlays: !a.no_overlays,
        affinity: a.affinity,
        temperature: a.temperature,
        probes: a.probe.clone(),
        attention: a.attention,
        batch: a.batch,
        device: select_device(a.device)?,
    };
    let s = cam::run_cams(&opts)?;
    println!(
        "wrote maps of {} images to {} in {:.1} s ({} already there, {} unreadable)",
        s.written,
        a.out.display(),
        s.secs,
        s.existing,
        s.failed.len()
    );
    for (id, e) in &s.failed {
        println!("  skipped {id}: {e}");
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct PseudoArgs {
    /// Folder of maps written by `cams`.
    #[arg(long)]
    pub cams: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    /// Background score t in [0, 1], or `auto`: maps refined by the random walk carry their
    /// own background (argmax, no threshold); other maps get t by Otsu's rule on the maps
    /// alone (no masks). A number forces that constant t (`eval-cam` shows the mIoU of each t).
    #[arg(long, default_value = "auto", conflicts_with = "saliency", value_parser = super::values::bg_threshold)]
    pub bg_threshold: String,
    /// Threshold mode: pixels whose two best scores differ by less than this become 255.
    #[arg(long, default_value_t = 0.0, value_parser = super::values::fraction)]
    pub ignore_margin: f32,
    /// Refined maps: where background may be labelled. `off` (default): wherever the
    /// refinement says so (PSA's labels). `auto`: only where the raw maps the refinement read
    /// (named in its refine.json) are below their Otsu threshold, the rest of its background
    /// 255; a folder: those raw maps. Better labels, and a network that needs the CRF at
    /// inference; harmful on the target set (docs/quality.md).
    #[arg(long, default_value = "off", conflicts_with = "saliency")]
    pub confident_background: String,
    /// Saliency maps (<id>.png, greyscale, image size): the official MCIS rules.
    #[arg(long)]
    pub saliency: Option<PathBuf>,
    /// Images whose foreground covers less than this share become all 255 (official 0.01).
    #[arg(long, default_value_t = 0.01, value_parser = super::values::fraction64)]
    pub min_fg: f64,
    /// The boundary prior: class regions whose pixels on the image border / √area exceed
    /// this become 255 (class-typical ground the maps spread over). `off` disables it; off
    /// with --saliency. Default 1.18, where Zhu et al. (CVPR 2014)'s background probability
    /// passes 1/2 (docs/quality.md measures it).
    #[arg(long, default_value = "1.18", value_parser = super::values::positive_or_off)]
    pub border_connectivity: super::values::OrOff,
    /// The dataset, for the class names and count (default: K from the maps, no names).
    #[arg(long)]
    pub data: Option<PathBuf>,
}

pub fn pseudo_cmd(a: &PseudoArgs) -> Result<()> {
    if !(0.0..=1.0).contains(&a.min_fg) {
        return Err(crate::Error::Msg(format!(
            "--min-fg must be in [0, 1], got {}",
            a.min_fg
        )));
    }
    let names = match &a.data {
        Some(d) => crate::data::voc::read_class_names(&crate::data::voc::resolve_root(d)?)?,
        None => Vec::new(),
    };
    let num_labels = if names.is_empty() {
        // the largest class id in any map file decides
        let ids = cam::pseudo::cam_ids(&a.cams)?;
        let mut k = 0;
        for id in &ids {
            k = k.max(
                cam::read_cam(&a.cams, id)?
                    .classes
                    .iter()
                    .max()
                    .map_or(0, |c| c + 1),
            );
        }
        k + 1
    } else {
        names.len()
    };
    let rule = match &a.saliency {
        Some(dir) => PseudoRule::Saliency { dir: dir.clone() },
        None => cam::threshold::choose_rule(
            &a.cams,
            &a.bg_threshold,
            a.ignore_margin,
            &cam::threshold::RawMaps::from_arg(&a.confident_background),
        )?,
    };
    // the saliency rules already mark background context
    let border_connectivity = match rule {
        PseudoRule::Saliency { .. } => None,
        _ => a.border_connectivity.0,
    };
    let filters = cam::LabelFilters {
        min_fg: a.min_fg,
        border_connectivity,
    };
    let otsu = matches!(rule, PseudoRule::Threshold { .. }) && a.bg_threshold == "auto";
    println!(
        "labels: {}",
        cam::pseudo::describe_labelling(&rule, otsu, &filters)
    );
    if let PseudoRule::Argmax {
        confident: Some(c), ..
    } = &rule
    {
        println!("raw maps: {}", c.raw.display());
    }
    let stats = cam::run_pseudo(&a.cams, &a.out, &rule, &filters, num_labels)?;
    println!(
        "wrote {} label PNGs to {} ({} images all ignored by the {:.0}% foreground rule)",
        stats.images,
        a.out.display(),
        stats.images_all_ignored,
        100.0 * a.min_fg
    );
    print!("{}", stats.markdown(&names));
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct EvalCamArgs {
    #[arg(long)]
    pub cams: PathBuf,
    #[arg(long)]
    pub data: PathBuf,
    #[arg(long, default_value = "train")]
    pub split: String,
    /// Largest background threshold of the sweep (steps of 0.01 from 0).
    #[arg(long, default_value_t = 0.60, value_parser = super::values::fraction)]
    pub t_max: f32,
    /// Where to write eval-cam.{json,md,png} (default: the maps folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

pub fn eval_cam_cmd(a: &EvalCamArgs) -> Result<()> {
    if !(0.0..=0.99).contains(&a.t_max) {
        return Err(crate::Error::Msg(format!(
            "--t-max must be in [0, 0.99], got {}",
            a.t_max
        )));
    }
    let out = a.out.clone().unwrap_or_else(|| a.cams.clone());
    let _lock = crate::io::lock::lock_dir(&out)?;
    let sweep = cam::sweep_thresholds(&a.cams, &a.data, &a.split, &cam::thresholds_up_to(a.t_max))?;
    sweep.write_report(&out)?;
    let md = sweep.markdown();
    print!("{md}");
    println!(
        "best t = {:.2}: CAM mIoU {:.2}% over {} images ({})",
        sweep.best_threshold(),
        100.0 * sweep.best_miou(),
        sweep.images,
        out.join("eval-cam.png").display()
    );
    if let Some(conf) = cam::sweep::argmax_confusion(&a.cams, &a.data, &a.split)? {
        println!(
            "argmax over the maps' own background channel (no threshold): mIoU {:.2}%",
            100.0 * conf.miou()
        );
    }
    Ok(())
}

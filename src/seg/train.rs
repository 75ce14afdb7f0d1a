//! `coatt-train train-seg`: DeepLab training on pseudo (or ground-truth) labels: softmax CE
//! ignoring 255 on logits upsampled to the crop, poly lr, ×10 head lr, momentum, weight decay;
//! progress bar, metrics.jsonl, atomic checkpoints with resume, val mIoU at the end.
use super::config::SegConfig;
use super::data::{training_items, LabelSource, SegLoader, SegLoaderConfig};
use super::infer::{labels_of, predict_probs};
use super::model::SegNet;
use crate::autograd::backward;
use crate::data::voc::{load_rgb, VocDataset};
use crate::error::{Error, Result};
use crate::eval::Confusion;
use crate::io::run::{before_iteration, TrainingRun};
use crate::io::{read_label_png, save_checkpoint, Checkpoint};
use crate::optim::{LrSchedule, Sgd};
use crate::tensor::Tensor;
use crate::Device;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub struct TrainSegOptions {
    pub data: PathBuf,
    pub labels: LabelSource,
    pub out: PathBuf,
    pub config: SegConfig,
    pub device: Device,
    pub resume: bool,
    /// Stop after this many iterations in this invocation (simulates an interruption).
    pub stop_after: Option<usize>,
    pub quiet: bool,
}

#[derive(Clone, Debug)]
pub struct SegSummary {
    pub iterations: usize,
    pub train_secs: f64,
    pub images_per_sec: f64,
    /// Single-scale val mIoU without CRF (None without a val split with masks).
    pub val_miou: Option<f64>,
    pub checkpoint: PathBuf,
}

pub use crate::io::run::LAST;

fn save_state(path: &Path, model: &SegNet, opt: &Sgd, iteration: usize) -> Result<()> {
    let mut t = model.state_tensors();
    t.extend(opt.state());
    let meta = HashMap::from([
        ("iteration".to_string(), iteration.to_string()),
        ("num_labels".to_string(), model.num_labels.to_string()),
        ("preset".to_string(), model.config.preset.clone()),
    ]);
    save_checkpoint(path, &t, &meta)
}

/// A trained segmentation network from a run folder (config.toml + last.safetensors).
pub fn load_segnet(run: &Path, device: Device) -> Result<SegNet> {
    let cfg = SegConfig::load(&run.join("config.toml"))?;
    let ck = Checkpoint::open(run.join(LAST))?;
    let l = ck.meta_usize("num_labels")?;
    let model = SegNet::new(&cfg, l, device, &mut crate::seed::rng(0));
    model.load(&ck)?;
    Ok(model)
}

/// Confusion matrix of a split's masked images under the given test views (and CRF).
pub fn evaluate_split(
    model: &SegNet,
    ds: &VocDataset,
    scales: &[f64],
    flip: bool,
    crf: Option<&crate::crf::CrfParams>,
    device: Device,
) -> Result<Confusion> {
    let mut conf = Confusion::new(ds.class_names.len());
    for it in &ds.items {
        let Some(mask) = &it.mask else { continue };
        let img = load_rgb(&it.image)?;
        let gt = read_label_png(mask)?;
        let p = predict_probs(model, &img, scales, flip, device)?;
        conf.add(&gt.data, &labels_of(&img, &p, model.num_labels, crf))?;
    }
    Ok(conf)
}

pub fn train_seg(opts: &TrainSegOptions) -> Result<SegSummary> {
    let outline = TrainingRun::open(&opts.out, opts.resume, &opts.config, SegConfig::load)?;
    let (cfg, last) = (outline.config.clone(), outline.last());
    cfg.validate()?;
    let train = VocDataset::open(&opts.data, "train")?;
    let items = Arc::new(training_items(&train, &opts.labels)?);
    if items.is_empty() {
        return Err(Error::file(
            &opts.data,
            "the train split is empty: nothing to train on",
        ));
    }
    let num_labels = train.class_names.len();
    super::data::check_label_maps(&items, num_labels)?;
    // the val masks are checked now too, not found wrong after training
    if let Ok(v) = VocDataset::open(&opts.data, "val") {
        let masks: Vec<(PathBuf, PathBuf)> = v
            .items
            .iter()
            .filter_map(|it| it.mask.clone().map(|m| (it.image.clone(), m)))
            .collect();
        super::data::check_label_maps(&masks, num_labels)?;
    }
    outline.create(SegConfig::save)?;
    let labels = train.class_names.len();
    let model = SegNet::new(&cfg, labels, opts.device, &mut crate::seed::rng(cfg.seed));
    if let (Some(p), false) = (&cfg.pretrained, opts.resume) {
        model.load_backbone(Path::new(p))?;
    }
    let mut opt = Sgd::new(model.param_groups(), cfg.momentum, false)?;
    let mut start = 0;
    if let Some(ck) = outline.checkpoint()? {
        model.load(&ck)?;
        opt.load_checkpoint(&ck, opts.device)?;
        start = ck.meta_usize("iteration")?;
    }
    let mut metrics =
        outline.metrics(|v| before_iteration(v, start) && v.get("val_miou").is_none())?;
    let schedule = LrSchedule::Poly {
        max: cfg.iterations,
        power: cfg.poly_power,
    };
    let lcfg = SegLoaderConfig {
        crop: cfg.crop,
        scale: (cfg.scale_min, cfg.scale_max),
        batch: cfg.batch,
        seed: cfg.seed,
    };
    let loader = SegLoader::start(items, lcfg, start, cfg.iterations, cfg.workers.max(1) * 2);
    let bar = crate::progress::bar((cfg.iterations) as u64, "train-seg");
    bar.set_position(start as u64);
    if opts.quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let (mut secs, mut images, mut done) = (0f64, 0usize, 0usize);
    let mut it = start;
    for batch in loader {
        for s in &batch.skipped {
            eprintln!("warning: skipped a training image: {s}");
        }
        it = batch.iteration + 1;
        if batch.count > 0 {
            let t0 = Instant::now();
            let (b, c) = (batch.count, cfg.crop);
            let x = Tensor::from_vec(batch.images, [b, 3, c, c], opts.device)?;
            let y = Tensor::from_vec(batch.labels, [b, c, c], opts.device)?;
            // dropout masks depend on the iteration only, so resume reproduces them
            let mut drop_rng =
                crate::seed::rng(cfg.seed ^ 0xD80F ^ ((batch.iteration as u64) << 20));
            let logits = model
                .forward(&x, true, &mut drop_rng)?
                .resize_bilinear(c, c)?;
            let loss = logits.cross_entropy_ignore(&y, 255)?;
            let v = loss.to_scalar()?;
            if !v.is_finite() {
                crate::autograd::clear_tape();
                return Err(Error::NonFinite(format!(
                    "loss is {v} at iteration {}; training stopped, the last good checkpoint ({}) is kept",
                    batch.iteration,
                    last.display()
                )));
            }
            let f = schedule.factor(batch.iteration);
            let grads = backward(&loss)?;
            opt.step(&grads, f)?;
            opts.device.synchronize();
            let dt = t0.elapsed().as_secs_f64();
            secs += dt;
            images += b;
            metrics.write(&json!({"iteration": batch.iteration, "loss": v, "lr": cfg.lr * f, "images_per_sec": b as f64 / dt}))?;
            bar.set_message(format!("loss {v:.4}"));
        }
        bar.set_position(it as u64);
        done += 1;
        if (cfg.checkpoint_every > 0 && it.is_multiple_of(cfg.checkpoint_every))
            || it == cfg.iterations
        {
            save_state(&last, &model, &opt, it)?;
        }
        if opts.stop_after.is_some_and(|n| done >= n) {
            save_state(&last, &model, &opt, it)?;
            bar.finish_and_clear();
            return Ok(SegSummary {
                iterations: it,
                train_secs: secs,
                images_per_sec: images as f64 / secs.max(1e-9),
                val_miou: None,
                checkpoint: last,
            });
        }
    }
    bar.finish_and_clear();
    if start >= cfg.iterations {
        save_state(&last, &model, &opt, it.max(start))?;
    }
    outline.finish()?;
    let val_miou = match VocDataset::open(&opts.data, "val") {
        Ok(v) if v.items.iter().any(|i| i.mask.is_some()) => {
            let conf = evaluate_split(&model, &v, &[1.0], false, None, opts.device)?;
            let m = conf.miou();
            metrics.write(&json!({"val_miou": m, "iteration_total": it}))?;
            if !opts.quiet {
                eprintln!("val mIoU (single scale, no CRF): {:.2}%", 100.0 * m);
            }
            Some(m)
        }
        _ => None,
    };
    Ok(SegSummary {
        iterations: it,
        train_secs: secs,
        images_per_sec: images as f64 / secs.max(1e-9),
        val_miou,
        checkpoint: last,
    })
}

//! `coatt-train train-cls`: the training loop, checkpoints, resume, metrics, val mAP.
use super::config::{ClsConfig, Variant};
use super::eval::mean_average_precision;
use super::model::Classifier;
use crate::autograd::{backward, no_grad};
use crate::data::augment::prepare;
use crate::data::loader::{multi_hot, LoaderConfig, PairLoader};
use crate::data::sampler::epoch_pairs_with_negatives;
use crate::data::voc::{load_rgb, VocDataset};
use crate::error::{Error, Result};
use crate::io::metrics::read_jsonl;
use crate::io::run::{before_iteration, TrainingRun};
use crate::io::save_checkpoint;
use crate::optim::{LrSchedule, Sgd};
use crate::tensor::Tensor;
use crate::Device;
use rayon::prelude::*;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub struct TrainClsOptions {
    pub data: PathBuf,
    pub out: PathBuf,
    pub config: ClsConfig,
    pub device: Device,
    pub resume: bool,
    /// A fresh run takes this run's epochs that it would train the same way (the epochs before
    /// the co-attention terms join, when the configs differ only in the variant and the
    /// co-attention settings: `cls::fork::shared_epochs`) instead of training them again.
    /// Ignored on resume.
    pub start_from: Option<PathBuf>,
    /// Stop after this many iterations in this invocation (simulates an interruption).
    pub stop_after: Option<usize>,
    pub quiet: bool,
}

#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub epochs_done: usize,
    pub iterations: usize,
    /// Iterations trained by this invocation (less than `iterations` after a resume or a
    /// start from another run's epochs).
    pub iterations_here: usize,
    pub val_map: Vec<f64>,
    pub images_per_sec: f64,
    pub train_secs: f64,
    pub final_checkpoint: PathBuf,
}

pub use crate::io::run::LAST;

pub fn epoch_checkpoint(run: &Path, epoch: usize) -> PathBuf {
    run.join("checkpoints")
        .join(format!("epoch_{epoch:03}.safetensors"))
}

/// Where training stands: the next epoch and batch to run, and the global iteration count.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Position {
    epoch: usize,
    batch: usize,
    iteration: usize,
}

fn save_state(
    path: &Path,
    model: &Classifier,
    opt: &Sgd,
    pos: Position,
    cfg: &ClsConfig,
) -> Result<()> {
    let mut tensors = model.state_tensors();
    tensors.extend(opt.state());
    let meta = HashMap::from([
        ("epoch".to_string(), pos.epoch.to_string()),
        ("batch".to_string(), pos.batch.to_string()),
        ("iteration".to_string(), pos.iteration.to_string()),
        ("seed".to_string(), cfg.seed.to_string()),
        ("preset".to_string(), cfg.preset.clone()),
        ("variant".to_string(), format!("{:?}", cfg.variant)),
        (
            "num_classes".to_string(),
            model.head.last_b.numel().to_string(),
        ),
    ]);
    save_checkpoint(path, &tensors, &meta)
}

/// Single-image class scores (sigmoid) and labels of a split, in batches, without gradients.
pub fn predict_scores(
    model: &Classifier,
    ds: &VocDataset,
    size: usize,
    device: Device,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let k = ds.num_classes();
    let (mut scores, mut labels) = (Vec::new(), Vec::new());
    for chunk in ds.items.chunks(16) {
        let imgs: Vec<Option<Vec<f32>>> = chunk
            .par_iter()
            .map(|it| {
                load_rgb(&it.image)
                    .ok()
                    .map(|im| prepare(&im, size, None, &mut rand::thread_rng()))
            })
            .collect();
        let ok: Vec<(usize, Vec<f32>)> = imgs
            .into_iter()
            .enumerate()
            .filter_map(|(i, v)| v.map(|v| (i, v)))
            .collect();
        if ok.is_empty() {
            continue;
        }
        let n = ok.len();
        let x = Tensor::from_vec(
            ok.iter()
                .flat_map(|(_, v)| v.iter().copied())
                .collect::<Vec<f32>>(),
            [n, 3, size, size],
            device,
        )?;
        let s = no_grad(|| {
            model
                .head
                .single(&model.features_eval(&x)?)
                .map(|t| t.sigmoid())
        })?;
        scores.extend(s.to_vec_f64());
        for (i, _) in &ok {
            labels.extend(multi_hot(&chunk[*i].labels, k).iter().map(|&v| v as f64));
        }
    }
    Ok((scores, labels))
}

fn summary(
    pos: Position,
    val_map: Vec<f64>,
    (images, iterations_here): (usize, usize),
    train_secs: f64,
    last: PathBuf,
) -> TrainSummary {
    TrainSummary {
        epochs_done: pos.epoch,
        iterations: pos.iteration,
        iterations_here,
        val_map,
        images_per_sec: images as f64 / train_secs.max(1e-9),
        train_secs,
        final_checkpoint: last,
    }
}

/// Whether a metrics.jsonl row belongs to the training a checkpoint at `epoch` (completed
/// epochs) and `iteration` holds: every iteration before it, and the end-of-epoch rows (1-based)
/// of the epochs it completed.
pub(super) fn logged_before(v: &serde_json::Value, epoch: usize, iteration: usize) -> bool {
    before_iteration(v, iteration)
        && v.get("epoch_end")
            .and_then(|e| e.as_u64())
            .is_none_or(|e| (e as usize) <= epoch)
}

/// Linear warm-up: (i+1)/n for the first n iterations, then 1.
pub fn warmup_factor(n: usize, iteration: usize) -> f64 {
    if iteration >= n {
        1.0
    } else {
        (iteration + 1) as f64 / n as f64
    }
}

pub fn train_cls(opts: &TrainClsOptions) -> Result<TrainSummary> {
    let mut outline = TrainingRun::open(&opts.out, opts.resume, &opts.config, ClsConfig::load)?;
    let (run, cfg, last) = (&outline.dir.clone(), outline.config.clone(), outline.last());
    let (train, extra) =
        crate::data::extra::training_set(VocDataset::open(&opts.data, "train")?, &cfg.extra)?;
    for rep in &extra {
        eprintln!("{}", rep.render(&train.class_names));
    }
    cfg.validate()?;
    if opts.device == Device::Cpu {
        crate::io::memory::check_fits(cfg.activation_bytes(), "this classifier config")?;
    }
    if train.items.is_empty() {
        return Err(Error::file(
            &opts.data,
            "the train split is empty: nothing to train on",
        ));
    }
    let train = Arc::new(train);
    // no (or an empty) val split: not evaluated, rather than a val mAP of 0
    let val = VocDataset::open(&opts.data, "val")
        .ok()
        .filter(|v| !v.items.is_empty());
    if val.is_none() && !opts.quiet {
        eprintln!(
            "train-cls: no val split with images in {}: val mAP not evaluated",
            opts.data.display()
        );
    }
    let k = train.num_classes();
    outline.create(ClsConfig::save)?;
    std::fs::create_dir_all(run.join("checkpoints")).map_err(|e| Error::io(run, e))?;
    if !outline.resume {
        // what this run trains on, for a run that starts from it (`cls::fork`)
        let fp = super::fork::training_set_fingerprint(&train);
        crate::io::write_atomic(&run.join(super::fork::TRAINING_SET), fp.as_bytes())?;
        if let Some(src) = &opts.start_from {
            let taken = super::fork::start_from(src, run, &cfg, &fp)?;
            if taken > 0 {
                // from here on the run is a resumed one
                outline.resume = true;
                if !opts.quiet {
                    eprintln!(
                        "train-cls: epochs 1-{taken} taken from {} (the same training until the co-attention terms join)",
                        src.display()
                    );
                }
            }
        }
    }

    let model = Classifier::new(&cfg, k, opts.device, &mut crate::seed::rng(cfg.seed));
    if let (Some(p), false) = (&cfg.pretrained, outline.resume) {
        let n = crate::nn::Backbone::load_pretrained(&model.backbone, Path::new(p))?;
        if !opts.quiet {
            eprintln!("backbone: {n} tensors from {p}");
        }
    }
    let mut opt = Sgd::new(model.param_groups(&cfg), cfg.momentum, cfg.nesterov)?;
    let mut pos = Position {
        epoch: 0,
        batch: 0,
        iteration: 0,
    };
    if let Some(ck) = outline.checkpoint()? {
        model.load(&ck)?;
        opt.load_checkpoint(&ck, opts.device)?;
        pos = Position {
            epoch: ck.meta_usize("epoch")?,
            batch: ck.meta_usize("batch")?,
            iteration: ck.meta_usize("iteration")?,
        };
    }
    // on resume: drop metrics logged after the checkpoint by the interrupted run; the
    // end-of-epoch rows (1-based) of the epochs it completed stay
    let mut metrics = outline.metrics(|v| logged_before(v, pos.epoch, pos.iteration))?;
    // the val mAP of the epochs already completed (a resumed run that is already complete
    // still reports its result)
    let mut val_map: Vec<f64> = if outline.resume {
        read_jsonl(&outline.metrics_path())?
            .iter()
            .filter(|v| v.get("epoch_end").is_some())
            .filter_map(|v| v.get("val_map").and_then(|m| m.as_f64()))
            .collect()
    } else {
        Vec::new()
    };
    let schedule = LrSchedule::Step {
        milestones: cfg.lr_steps.clone(),
        gamma: cfg.lr_gamma,
    };
    let by_class = train.by_class();
    let (mut images, mut run_iters) = (0usize, 0usize);
    let mut train_secs = 0f64;
    while pos.epoch < cfg.epochs {
        let epoch = pos.epoch;
        let pairs = Arc::new(epoch_pairs_with_negatives(
            &train,
            &by_class,
            cfg.seed,
            epoch,
            cfg.negative_pairs,
        ));
        let lcfg = LoaderConfig {
            size: cfg.input_size,
            batch: cfg.batch,
            workers: cfg.workers,
            prefetch: cfg.prefetch,
            jitter: cfg.jitter,
            seed: cfg.seed,
            epoch,
        };
        let mut loader = PairLoader::start(train.clone(), pairs, lcfg, pos.batch);
        let n_batches = if cfg.max_iters_per_epoch > 0 {
            loader.len().min(cfg.max_iters_per_epoch)
        } else {
            loader.len()
        };
        let bar = crate::progress::bar(n_batches as u64, &format!("epoch {}", epoch + 1));
        bar.set_position(pos.batch as u64);
        if opts.quiet {
            bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        let coattention_on = cfg.variant != Variant::Basic && epoch >= cfg.coattention_from;
        let step_factor = schedule.factor(epoch)
            * if coattention_on {
                cfg.coattention_lr_factor
            } else {
                1.0
            };
        while pos.batch < n_batches {
            let Some(batch) = loader.next() else { break };
            for s in &batch.skipped {
                eprintln!("warning: skipped a pair: {s}");
            }
            pos.batch += 1;
            if batch.is_empty() {
                continue;
            }
            let t0 = Instant::now();
            let (b, s) = (batch.len(), cfg.input_size);
            let runs = batch.wp_runs();
            let x1 = Tensor::from_vec(batch.img1, [b, 3, s, s], opts.device)?;
            let x2 = Tensor::from_vec(batch.img2, [b, 3, s, s], opts.device)?;
            let l1 = Tensor::from_vec(batch.l1, [b, k], opts.device)?;
            let l2 = Tensor::from_vec(batch.l2, [b, k], opts.device)?;
            let loss = model.iteration_loss_grouped(&cfg, &x1, &x2, &l1, &l2, epoch, &runs)?;
            let total = loss.total.to_scalar()?;
            if !total.is_finite() {
                crate::autograd::clear_tape();
                return Err(Error::NonFinite(format!(
                    "loss is {total} at epoch {} iteration {}; training stopped, the last good checkpoint ({}) is kept",
                    epoch + 1,
                    pos.iteration,
                    last.display()
                )));
            }
            let factor = step_factor * warmup_factor(cfg.warmup_iters, pos.iteration);
            let grads = backward(&loss.total)?;
            opt.step(&grads, factor)?;
            opts.device.synchronize();
            let dt = t0.elapsed().as_secs_f64();
            train_secs += dt;
            images += 2 * b;
            run_iters += 1;
            let ips = 2.0 * b as f64 / dt;
            let term = |t: &Option<Tensor>| t.as_ref().map(|t| t.to_scalar()).transpose();
            metrics.write(&json!({
                "iteration": pos.iteration, "epoch": epoch, "loss": total, "basic": loss.basic.to_scalar()?,
                "coatt": term(&loss.coatt)?, "contrastive": term(&loss.contrastive)?, "lr": cfg.lr * factor, "images_per_sec": ips
            }))?;
            pos.iteration += 1;
            bar.set_position(pos.batch as u64);
            bar.set_message(format!("loss {total:.4}  {ips:.1} img/s"));
            if cfg.checkpoint_every > 0 && pos.iteration.is_multiple_of(cfg.checkpoint_every) {
                save_state(&last, &model, &opt, pos, &cfg)?;
            }
            if opts.stop_after.is_some_and(|n| run_iters >= n) {
                save_state(&last, &model, &opt, pos, &cfg)?;
                bar.finish_and_clear();
                return Ok(summary(pos, val_map, (images, run_iters), train_secs, last));
            }
        }
        drop(loader);
        bar.finish_and_clear();
        pos = Position {
            epoch: epoch + 1,
            batch: 0,
            iteration: pos.iteration,
        };
        let mut rec = json!({"epoch_end": epoch + 1, "iteration_total": pos.iteration});
        if let Some(v) = &val {
            let (sc, lb) = predict_scores(&model, v, cfg.input_size, opts.device)?;
            let (map, per_class) = mean_average_precision(&sc, &lb, k);
            val_map.push(map);
            rec["val_map"] = json!(map);
            rec["val_ap_per_class"] = json!(per_class);
            if !opts.quiet {
                eprintln!("epoch {}: val mAP {:.4}", epoch + 1, map);
            }
        }
        metrics.write(&rec)?;
        save_state(&epoch_checkpoint(run, epoch + 1), &model, &opt, pos, &cfg)?;
        save_state(&last, &model, &opt, pos, &cfg)?;
    }
    outline.finish()?;
    Ok(summary(pos, val_map, (images, run_iters), train_secs, last))
}

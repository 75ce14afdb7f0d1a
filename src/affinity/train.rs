//! `coatt-train train-affinity`: AffinityNet trained on the confident parts of localization
//! maps (DESIGN §8). Labels are made once (CRF at two background powers) into RUN/labels/ as
//! palette PNGs, to look at and to reuse on resume; then SGD with poly lr over epochs of
//! shuffled images, progress bar, metrics.jsonl, loss plot, atomic checkpoints and bit-exact
//! resume (all randomness derives from (seed, iteration, slot)).
use super::config::AffConfig;
use super::labels::{affinity_labels, affinity_loss, grid_labels, PairTargets};
use super::model::AffinityNet;
use crate::autograd::backward;
use crate::cam::{read_cam, CamFile};
use crate::data::augment::{color_jitter, normalize, to_chw, warp};
use crate::data::voc::{load_rgb, VocDataset};
use crate::error::{Error, Result};
use crate::eval::IGNORE;
use crate::io::run::{before_iteration, TrainingRun};
use crate::io::{read_label_png, save_checkpoint, write_label_png, Checkpoint, LabelMap};
use crate::optim::{LrSchedule, Sgd};
use crate::tensor::Tensor;
use crate::Device;
use rand::seq::SliceRandom;
use rand::Rng;
use rayon::prelude::*;
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct TrainAffOptions {
    /// Localization maps of the train split (`coatt-train cams`).
    pub cams: PathBuf,
    pub data: PathBuf,
    pub out: PathBuf,
    pub config: AffConfig,
    pub device: Device,
    pub resume: bool,
    /// Stop after this many iterations in this invocation (simulates an interruption).
    pub stop_after: Option<usize>,
    pub quiet: bool,
}

/// What the label maps hold.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LabelStats {
    /// The background powers used (the config's, or derived from the maps' threshold t).
    pub alpha_low: f64,
    pub alpha_high: f64,
    pub threshold: Option<f64>,
    pub images: usize,
    /// Images whose confident regions are empty (every pixel ignored): left out of training.
    pub empty: usize,
    /// Shares of all pixels: confident foreground, confident background, ignored.
    pub foreground: f64,
    pub background: f64,
    pub ignored: f64,
}

#[derive(Clone, Debug)]
pub struct AffSummary {
    pub iterations: usize,
    /// Iterations whose batch held no labelled pair (skipped, not a NaN).
    pub skipped_steps: usize,
    pub labels: LabelStats,
    pub train_secs: f64,
    pub images_per_sec: f64,
    pub checkpoint: PathBuf,
}

pub use crate::io::run::LAST;

/// The map file of a labelled image, checked against the image's size.
pub fn map_for(cams: &Path, id: &str, h: usize, w: usize) -> Result<CamFile> {
    let path = crate::cam::store::cam_path(cams, id);
    if !path.exists() {
        return Err(Error::file(
            &path,
            "missing localization map for a labelled image (run `coatt-train cams` on this split first)",
        ));
    }
    let cam = read_cam(cams, id)?;
    if cam.maps.iter().any(|v| !v.is_finite()) {
        return Err(Error::file(&path, "a map value is not finite"));
    }
    if (cam.height, cam.width) != (h, w) {
        return Err(Error::file(
            &path,
            format!(
                "maps are {}×{} but the image is {w}×{h}: maps of another data set?",
                cam.width, cam.height
            ),
        ));
    }
    Ok(cam)
}

/// Makes (or reuses) RUN/labels/<id>.png for every train image; returns the ids kept for
/// training (some confident pixel) and the statistics.
fn make_labels(
    cfg: &AffConfig,
    ds: &VocDataset,
    cams: &Path,
    dir: &Path,
    quiet: bool,
) -> Result<(Vec<usize>, LabelStats)> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let crf = cfg.crf.params();
    let (alpha_low, alpha_high, threshold) = match cfg.label_points {
        None => (cfg.alpha_low, cfg.alpha_high, None),
        Some([fg, bg]) => {
            let t = crate::cam::threshold::auto_threshold_normalised(cams)? as f64;
            (
                crate::cam::threshold::alpha_at(fg * t),
                crate::cam::threshold::alpha_at(bg * t),
                Some(t),
            )
        }
    };
    let bar = crate::progress::bar(ds.items.len() as u64, "aff-labels");
    if quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let per: Vec<(usize, [u64; 3])> = ds
        .items
        .par_iter()
        .enumerate()
        .map(|(i, it)| -> Result<(usize, [u64; 3])> {
            let path = dir.join(format!("{}.png", it.id));
            let labels = match read_label_png(&path) {
                Ok(l) => l.data,
                Err(_) => {
                    let img = load_rgb(&it.image)?;
                    let (h, w) = (img.height() as usize, img.width() as usize);
                    let cam = if it.labels.is_empty() {
                        CamFile {
                            id: it.id.clone(),
                            height: h,
                            width: w,
                            classes: Vec::new(),
                            maps: Vec::new(),
                            background: None,
                        }
                    } else {
                        map_for(cams, &it.id, h, w)?.max_normalised()
                    };
                    let l =
                        affinity_labels(&cam, img.as_raw(), alpha_low, alpha_high, crf.as_ref());
                    write_label_png(
                        &path,
                        &LabelMap {
                            width: w,
                            height: h,
                            data: l.clone(),
                        },
                    )?;
                    l
                }
            };
            bar.inc(1);
            let fg = labels.iter().filter(|&&l| l != 0 && l != IGNORE).count() as u64;
            let bg = labels.iter().filter(|&&l| l == 0).count() as u64;
            let ig = labels.len() as u64 - fg - bg;
            Ok((i, [fg, bg, ig]))
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    let total: u64 = per.iter().map(|p| p.1.iter().sum::<u64>()).sum();
    let sum = |k: usize| per.iter().map(|p| p.1[k]).sum::<u64>() as f64 / total.max(1) as f64;
    let kept: Vec<usize> = per
        .iter()
        .filter(|p| p.1[0] + p.1[1] > 0)
        .map(|p| p.0)
        .collect();
    let stats = LabelStats {
        alpha_low,
        alpha_high,
        threshold,
        images: per.len(),
        empty: per.len() - kept.len(),
        foreground: sum(0),
        background: sum(1),
        ignored: sum(2),
    };
    Ok((kept, stats))
}

/// Nearest-neighbour resize of a label map to size × size.
fn resize_labels(l: &[u8], h: usize, w: usize, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size * size);
    for y in 0..size {
        let sy = ((y as f64 + 0.5) * h as f64 / size as f64) as usize;
        for x in 0..size {
            let sx = ((x as f64 + 0.5) * w as f64 / size as f64) as usize;
            out.push(l[sy.min(h - 1) * w + sx.min(w - 1)]);
        }
    }
    out
}

/// One training sample: the image (3, S, S) normalised, and its grid labels (S/stride)².
fn sample(
    cfg: &AffConfig,
    image: &Path,
    labels: &Path,
    rng: &mut impl Rng,
) -> Result<(Vec<f32>, Vec<u8>)> {
    let img = load_rgb(image)?;
    let lab = read_label_png(labels)?;
    let (h, w) = (img.height() as usize, img.width() as usize);
    if (lab.height, lab.width) != (h, w) {
        return Err(Error::file(labels, "label map and image differ in size"));
    }
    let s = cfg.input_size;
    let mut x = warp(&to_chw(&img), h, w, s);
    let mut l = resize_labels(&lab.data, h, w, s);
    if rng.gen_bool(0.5) {
        for row in x.chunks_mut(s) {
            row.reverse();
        }
        for row in l.chunks_mut(s) {
            row.reverse();
        }
    }
    if let Some(j) = &cfg.jitter {
        color_jitter(&mut x, s * s, j, rng);
    }
    normalize(&mut x, s * s);
    let g = s / cfg.stride();
    Ok((x, grid_labels(&l, s, s, g, g)))
}

fn save_state(path: &Path, model: &AffinityNet, opt: &Sgd, iteration: usize) -> Result<()> {
    let mut t = model.state_tensors();
    t.extend(opt.state());
    let meta = HashMap::from([
        ("iteration".to_string(), iteration.to_string()),
        ("preset".to_string(), model.config.preset.clone()),
    ]);
    save_checkpoint(path, &t, &meta)
}

/// A trained AffinityNet from a run folder (config.toml + last.safetensors).
pub fn load_affinity_net(run: &Path, device: Device) -> Result<AffinityNet> {
    let cfg = AffConfig::load(&run.join("config.toml"))?;
    let ck = Checkpoint::open(run.join(LAST))?;
    let model = AffinityNet::new(&cfg, device, &mut crate::seed::rng(cfg.seed));
    model.load(&ck)?;
    Ok(model)
}

pub fn train_affinity(opts: &TrainAffOptions) -> Result<AffSummary> {
    let outline = TrainingRun::open(&opts.out, opts.resume, &opts.config, AffConfig::load)?;
    let (run, cfg, last) = (&outline.dir, outline.config.clone(), outline.last());
    cfg.validate()?;
    // the maps and data this run learns from; a resume with other maps is an error
    let cams_record = std::fs::read_to_string(opts.cams.join("cams.json"))
        .ok()
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok());
    crate::io::record::check_or_write(
        run,
        "inputs",
        &json!({
            "cams": opts.cams.display().to_string(),
            "cams_record": cams_record,
            "data": opts.data.display().to_string(),
        }),
    )?;
    outline.create(AffConfig::save)?;
    let ds = VocDataset::open(&opts.data, "train")?;
    let (kept, label_stats) = make_labels(&cfg, &ds, &opts.cams, &run.join("labels"), opts.quiet)?;
    crate::io::write_atomic(
        &run.join("labels.json"),
        serde_json::to_string_pretty(&label_stats)
            .map_err(|e| Error::Msg(e.to_string()))?
            .as_bytes(),
    )?;
    if kept.is_empty() {
        return Err(Error::file(
            &opts.cams,
            "no image has a confident region in these maps: nothing to train AffinityNet on",
        ));
    }
    if !opts.quiet && label_stats.empty > 0 {
        eprintln!(
            "train-affinity: {} of {} images have no confident region and are left out",
            label_stats.empty, label_stats.images
        );
    }
    let model = AffinityNet::new(&cfg, opts.device, &mut crate::seed::rng(cfg.seed));
    if let (Some(init), false) = (&cfg.init_from, opts.resume) {
        model.load_init(Path::new(init))?;
    }
    let mut opt = Sgd::new(model.param_groups(), cfg.momentum, false)?;
    let per_epoch = kept.len().div_ceil(cfg.batch);
    let total = per_epoch * cfg.epochs;
    let mut start = 0;
    if let Some(ck) = outline.checkpoint()? {
        model.load(&ck)?;
        opt.load_checkpoint(&ck, opts.device)?;
        start = ck.meta_usize("iteration")?;
    }
    let mut metrics = outline.metrics(|v| before_iteration(v, start))?;
    let schedule = LrSchedule::Poly {
        max: total,
        power: cfg.poly_power,
    };
    let bar = crate::progress::bar(total as u64, "train-aff");
    bar.set_position(start as u64);
    if opts.quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let labels_dir = run.join("labels");
    let (mut secs, mut images, mut skipped, mut done) = (0f64, 0usize, 0usize, 0usize);
    let s = cfg.input_size;
    let mut order: Option<(usize, Vec<usize>)> = None;
    for it in start..total {
        let (epoch, pos) = (it / per_epoch, it % per_epoch);
        if order.as_ref().is_none_or(|o| o.0 != epoch) {
            let mut o = kept.clone();
            o.shuffle(&mut crate::seed::rng(
                cfg.seed ^ 0xAFF1 ^ ((epoch as u64) << 24),
            ));
            order = Some((epoch, o));
        }
        let idx = &order.as_ref().expect("set above").1
            [pos * cfg.batch..((pos + 1) * cfg.batch).min(kept.len())];
        let t0 = Instant::now();
        let samples: Vec<(Vec<f32>, Vec<u8>)> = idx
            .par_iter()
            .enumerate()
            .map(|(slot, &i)| {
                let it_ = &ds.items[i];
                let mut rng =
                    crate::seed::rng(cfg.seed ^ ((it as u64) << 20) ^ ((slot as u64) << 8) ^ 0xA5);
                sample(
                    &cfg,
                    &it_.image,
                    &labels_dir.join(format!("{}.png", it_.id)),
                    &mut rng,
                )
            })
            .collect::<Result<_>>()?;
        let b = samples.len();
        let g = s / cfg.stride();
        let x = Tensor::from_vec(
            samples
                .iter()
                .flat_map(|v| v.0.iter().copied())
                .collect::<Vec<f32>>(),
            [b, 3, s, s],
            opts.device,
        )?;
        let grid: Vec<u8> = samples.iter().flat_map(|v| v.1.iter().copied()).collect();
        let targets = PairTargets::new(&grid, b, g, g, cfg.radius);
        let a = model.affinity(&x)?;
        let f = schedule.factor(it);
        match affinity_loss(&a, &targets)? {
            None => {
                crate::autograd::clear_tape();
                skipped += 1;
            }
            Some(loss) => {
                let v = loss.to_scalar()?;
                if !v.is_finite() {
                    crate::autograd::clear_tape();
                    return Err(Error::NonFinite(format!(
                        "affinity loss is {v} at iteration {it}; training stopped, the last good checkpoint ({}) is kept",
                        last.display()
                    )));
                }
                let grads = backward(&loss)?;
                opt.step(&grads, f)?;
                opts.device.synchronize();
                let dt = t0.elapsed().as_secs_f64();
                secs += dt;
                images += b;
                let (nb, nf, nn) = targets.counts();
                metrics.write(&json!({"iteration": it, "epoch": epoch, "loss": v, "lr": cfg.lr * f,
                    "pairs_bg": nb, "pairs_fg": nf, "pairs_neg": nn, "images_per_sec": b as f64 / dt}))?;
                bar.set_message(format!("loss {v:.4}"));
            }
        }
        bar.set_position((it + 1) as u64);
        done += 1;
        let next = it + 1;
        if next % per_epoch == 0
            || (cfg.checkpoint_every > 0 && next.is_multiple_of(cfg.checkpoint_every))
        {
            save_state(&last, &model, &opt, next)?;
        }
        if opts.stop_after.is_some_and(|n| done >= n) {
            save_state(&last, &model, &opt, next)?;
            bar.finish_and_clear();
            return Ok(AffSummary {
                iterations: next,
                skipped_steps: skipped,
                labels: label_stats,
                train_secs: secs,
                images_per_sec: images as f64 / secs.max(1e-9),
                checkpoint: last,
            });
        }
    }
    bar.finish_and_clear();
    if start >= total {
        save_state(&last, &model, &opt, total)?;
    }
    outline.finish()?;
    Ok(AffSummary {
        iterations: total,
        skipped_steps: skipped,
        labels: label_stats,
        train_secs: secs,
        images_per_sec: images as f64 / secs.max(1e-9),
        checkpoint: last,
    })
}

//! Localization maps from a trained classifier (`coatt-train cams`).
//!
//! `single`: the single-image head's CAM (the paper's single-round feed-forward).
//! `coatt`: per positive class, the official inference (MCIS `scripts/test.py`): image 1's
//! co-attention map against R related images containing the class (averaged), fused with the
//! self-pair maps (flip, 0.75× and 2× views) by [`aggregate`]. Maps are fused on the feature
//! grid and then resized to the image. Several scales and the flip are averaged on top.
use super::fusion::{coattentive_maps, host_maps, CoattFeatures};
use super::store::{cam_path, write_cam, CamFile};
use crate::cls::{load_classifier, Classifier, ClsConfig};
use crate::data::augment::prepare;
use crate::data::voc::load_rgb;
use crate::data::VocDataset;
use crate::error::{Error, Result};
use crate::io::Checkpoint;
use crate::tensor::Tensor;
use crate::{no_grad, Device};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rayon::prelude::*;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::sync_channel;
use std::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CamMode {
    Single,
    Coatt,
}

pub use crate::nn::Affinity;

/// How the co-attentive inference (coatt mode) attends.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Attention {
    /// The classifier's own affinity, τ and trained W_P: the paper's.
    #[default]
    Trained,
    /// Feature similarity: W_P = I, the centred cosine ([`Affinity::Centered`]) at τ =
    /// [`SIMILARITY_TAU`], so each position attends to the related image's positions that
    /// look like it. Not in the paper: trained from scratch, W_P stays near its random start
    /// and the attention near uniform, and the co-attentive maps come out flat
    /// (docs/quality.md, "The co-attentive inference by feature similarity").
    Similarity,
}

impl Attention {
    /// How a report names it (τ read from [`SIMILARITY_TAU`], so the two cannot disagree).
    pub fn describe(self) -> String {
        match self {
            Attention::Trained => {
                "attention as trained (the classifier's affinity, τ and W_P)".to_string()
            }
            Attention::Similarity => format!(
                "attention by feature similarity (W_P = I, centred cosine, τ {SIMILARITY_TAU})"
            ),
        }
    }
}

/// τ of [`Attention::Similarity`]: sharp, close to matching each position with its nearest
/// neighbours (docs/quality.md measures 0.1 and 0.03).
pub const SIMILARITY_TAU: f64 = 0.03;

/// Inference-time changes to a classifier's co-attention, to find out what its maps are made
/// of (diagnostics; the method uses none of them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Probe {
    /// W_P := I: the attention follows feature similarity alone.
    IdentityWp,
    /// φ := the single-image classifier's weights: the attended features scored like a CAM.
    SingleScorer,
}

#[derive(Clone, Debug)]
pub struct CamOptions {
    pub run: PathBuf,
    /// A checkpoint of the run; default RUN/last.safetensors.
    pub checkpoint: Option<PathBuf>,
    pub data: PathBuf,
    pub split: String,
    pub out: PathBuf,
    pub mode: CamMode,
    /// Related images per positive class (coatt mode).
    pub related: usize,
    /// Input scales relative to the training size; maps are averaged over them.
    pub scales: Vec<f64>,
    pub flip: bool,
    pub seed: u64,
    pub overlays: bool,
    /// Co-attention affinity at inference (coatt mode); None: the one the classifier was
    /// trained with.
    pub affinity: Option<Affinity>,
    /// τ at inference (coatt mode); None: the classifier's.
    pub temperature: Option<f64>,
    /// Diagnostic changes to the co-attention ([`Probe`]).
    pub probes: Vec<Probe>,
    /// How the co-attentive inference attends; `affinity` and `temperature` override it.
    pub attention: Attention,
    /// Images per forward batch.
    pub batch: usize,
    pub device: Device,
}

impl CamOptions {
    /// What decides the maps (recorded in OUT/cams.json): a rerun with another record is an
    /// error instead of a folder of mixed maps. The device, batch and overlays do not count.
    pub fn record(&self, checkpoint: &Path) -> Result<serde_json::Value> {
        let mut r = serde_json::json!({
            "run": self.run.display().to_string(),
            "checkpoint": checkpoint.display().to_string(),
            "weights": crate::io::record::file_fingerprint(checkpoint)?,
            "data": self.data.display().to_string(),
            "split": self.split,
            "mode": self.mode,
            "related": self.related,
            "scales": self.scales,
            "flip": self.flip,
            "seed": self.seed,
            "affinity": self.affinity,
            "temperature": self.temperature,
            "probes": self.probes,
        });
        // written only when not the paper's, so folders made before the option still match
        if self.attention != Attention::Trained {
            r["attention"] = serde_json::json!(self.attention);
        }
        Ok(r)
    }

    pub fn new(run: &Path, data: &Path, out: &Path) -> CamOptions {
        CamOptions {
            run: run.to_path_buf(),
            checkpoint: None,
            data: data.to_path_buf(),
            split: "train".into(),
            out: out.to_path_buf(),
            mode: CamMode::Coatt,
            related: 3,
            scales: vec![1.0],
            flip: false,
            seed: 1,
            overlays: true,
            affinity: None,
            temperature: None,
            probes: Vec::new(),
            attention: Attention::Trained,
            batch: 8,
            device: Device::Cpu,
        }
    }
}

#[derive(Debug)]
pub struct CamSummary {
    pub written: usize,
    /// Images whose map file was already complete (a resumed run).
    pub existing: usize,
    /// Images that could not be read, with the reason.
    pub failed: Vec<(String, String)>,
    pub secs: f64,
    /// How peaked the co-attention of the related pairs was (coatt mode; empty otherwise).
    pub attention: crate::nn::AttentionStats,
}

/// One image's maps on the feature grid: (h, w, one map per positive class).
type GridMaps = (usize, usize, Vec<Vec<f32>>);

/// Computes the maps of every image of a split and writes them; images whose file already
/// exists are skipped, so a killed run resumes.
pub fn run_cams(opts: &CamOptions) -> Result<CamSummary> {
    let t0 = Instant::now();
    let ds = VocDataset::open(&opts.data, &opts.split)?;
    let (mut model, cfg) = load_classifier(
        &opts.run,
        opts.checkpoint.as_deref(),
        ds.num_classes(),
        opts.device,
    )?;
    if opts.attention == Attention::Similarity {
        model.head.affinity = Affinity::Centered;
        model.head.set_temperature(SIMILARITY_TAU, false);
        model.head.set_wp_identity()?;
    }
    if let Some(a) = opts.affinity {
        model.head.affinity = a;
    }
    if let Some(t) = opts.temperature {
        if !(t > 0.0 && t.is_finite()) {
            return Err(Error::Msg(format!("--temperature must be > 0, got {t}")));
        }
        model.head.set_temperature(t, false);
    }
    for p in &opts.probes {
        match p {
            Probe::IdentityWp => model.head.set_wp_identity()?,
            Probe::SingleScorer => model.head.phi = model.head.last_w.clone(),
        }
    }
    if opts.scales.is_empty() || opts.scales.iter().any(|&s| !(s > 0.0 && s <= 8.0)) {
        return Err(Error::Msg(format!(
            "--scales must be positive factors, got {:?}",
            opts.scales
        )));
    }
    let _lock = crate::io::lock::lock_dir(&opts.out)?;
    let ck_path = opts
        .checkpoint
        .clone()
        .unwrap_or_else(|| opts.run.join(crate::cls::train::LAST));
    crate::io::record::check_or_write(&opts.out, "cams", &opts.record(&ck_path)?)?;
    if opts.overlays {
        let d = opts.out.join("overlay");
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    let todo: Vec<usize> = (0..ds.items.len())
        .filter(|&i| {
            let it = &ds.items[i];
            !it.labels.is_empty() && Checkpoint::open(cam_path(&opts.out, &it.id)).is_err()
        })
        .collect();
    let existing = ds.items.iter().filter(|it| !it.labels.is_empty()).count() - todo.len();
    let mut engine = CamEngine {
        model: &model,
        cfg: &cfg,
        ds: &ds,
        by_class: ds.by_class(),
        opts,
        cache: HashMap::new(),
        cache_bytes: 0,
        attention: Default::default(),
        unreadable: HashMap::new(),
    };
    let bar = crate::progress::bar(todo.len() as u64, "cams");
    let mut summary = CamSummary {
        written: 0,
        existing,
        failed: Vec::new(),
        secs: 0.0,
        attention: Default::default(),
    };
    // Decoding runs on a loader thread, one batch ahead of the model (bounded queue).
    let chunks: Vec<Vec<usize>> = todo
        .chunks(opts.batch.max(1))
        .map(<[usize]>::to_vec)
        .collect();
    let (tx, rx) = sync_channel::<Vec<(usize, Result<image::RgbImage>)>>(2);
    std::thread::scope(|s| -> Result<()> {
        let items = &ds.items;
        s.spawn(move || {
            for chunk in chunks {
                let imgs = chunk
                    .par_iter()
                    .map(|&i| (i, load_rgb(&items[i].image)))
                    .collect();
                if tx.send(imgs).is_err() {
                    break;
                }
            }
        });
        for imgs in rx {
            let mut ok = Vec::new();
            for (i, r) in imgs {
                match r {
                    Ok(img) => ok.push((i, img)),
                    Err(e) => {
                        bar.println(format!("skipped: {e}"));
                        summary.failed.push((ds.items[i].id.clone(), e.to_string()));
                        bar.inc(1);
                    }
                }
            }
            if ok.is_empty() {
                continue;
            }
            let cams = no_grad(|| engine.image_cams(&ok))?;
            for ((_, img), cam) in ok.iter().zip(&cams) {
                // overlays first, atomically: the map file marks the image as done
                if opts.overlays {
                    super::store::save_overlays(&opts.out, &ds.class_names, img, cam)?;
                }
                write_cam(&opts.out, cam)?;
                summary.written += 1;
                bar.inc(1);
            }
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    summary.secs = t0.elapsed().as_secs_f64();
    summary.attention = engine.attention;
    // related images that could not be read, unless already counted as main images
    let mut extra: Vec<(String, String)> = engine
        .unreadable
        .iter()
        .map(|(&i, e)| (ds.items[i].id.clone(), e.clone()))
        .filter(|(id, _)| !summary.failed.iter().any(|f| &f.0 == id))
        .collect();
    extra.sort();
    summary.failed.extend(extra);
    if summary.attention.pairs > 0 {
        let p = opts.out.join("attention.json");
        let s = serde_json::to_string_pretty(&json_attention(&summary.attention))
            .map_err(|e| Error::Msg(e.to_string()))?;
        crate::io::write_atomic(&p, s.as_bytes())?;
    }
    Ok(summary)
}

struct CamEngine<'a> {
    model: &'a Classifier,
    cfg: &'a ClsConfig,
    ds: &'a VocDataset,
    by_class: Vec<Vec<usize>>,
    opts: &'a CamOptions,
    /// Eval-mode features of images by (item, input side), reused as related images.
    cache: HashMap<(usize, usize), Tensor>,
    cache_bytes: usize,
    /// Attention statistics of the related pairs.
    attention: crate::nn::AttentionStats,
    /// Related images that could not be read (item → reason).
    unreadable: HashMap<usize, String>,
}

/// The attention statistics as a JSON object (the derived means included).
pub fn json_attention(a: &crate::nn::AttentionStats) -> serde_json::Value {
    serde_json::json!({
        "pairs": a.pairs,
        "rows": a.rows,
        "entropy": a.entropy(),
        "top1_mass": a.top1_mass(),
        "uniform_top1": a.uniform_top1(),
        "hub_share": a.hub_share(),
        "attended_share": a.attended_share(),
    })
}

/// Bound on cached related-image features (full VGG16 on VOC would need ~21 GB).
const CACHE_BUDGET: usize = 1 << 30;

impl CamEngine<'_> {
    fn side(&self, scale: f64) -> usize {
        ((self.cfg.input_size as f64 * scale).round() as usize).max(8)
    }

    /// The related images of item `i` for class `c`: R distinct others containing c, drawn by
    /// a generator seeded from (seed, item, class) so the choice does not depend on batching.
    pub fn related_of(&self, i: usize, c: usize) -> Vec<usize> {
        let mut pool: Vec<usize> = self.by_class[c]
            .iter()
            .copied()
            .filter(|&j| j != i)
            .collect();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(
            self.opts.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ ((c as u64) << 48),
        );
        pool.shuffle(&mut rng);
        pool.truncate(self.opts.related);
        pool
    }

    fn prepared(&self, img: &image::RgbImage, side: usize, flip: bool) -> Result<Tensor> {
        let x = Tensor::from_vec(
            prepare(img, side, None, &mut rand::thread_rng()),
            [1, 3, side, side],
            self.opts.device,
        )?;
        if flip {
            x.flip(3)
        } else {
            Ok(x)
        }
    }

    /// Features (1,C,h,w) of related items at one input side (flip off), cached; None for an
    /// image that cannot be read (it is left out of the related set, like an unreadable main
    /// image is skipped).
    fn related_features(&mut self, items: &[usize], side: usize) -> Result<Vec<Option<Tensor>>> {
        let missing: Vec<usize> = {
            let mut m: Vec<usize> = items
                .iter()
                .copied()
                .filter(|&j| !self.cache.contains_key(&(j, side)))
                .collect();
            m.sort_unstable();
            m.dedup();
            m
        };
        let mut fresh = HashMap::new();
        for chunk in missing.chunks(self.opts.batch.max(1)) {
            let imgs: Vec<(usize, Result<Vec<f32>>)> = chunk
                .par_iter()
                .map(|&j| {
                    (
                        j,
                        load_rgb(&self.ds.items[j].image)
                            .map(|im| prepare(&im, side, None, &mut rand::thread_rng())),
                    )
                })
                .collect();
            let mut data = Vec::new();
            let mut ok = Vec::new();
            for (j, r) in imgs {
                match r {
                    Ok(v) => {
                        data.extend(v);
                        ok.push(j);
                    }
                    Err(e) => {
                        self.unreadable.insert(j, e.to_string());
                    }
                }
            }
            if ok.is_empty() {
                continue;
            }
            let x = Tensor::from_vec(data, [ok.len(), 3, side, side], self.opts.device)?;
            let f = self.model.features_eval(&x)?;
            for (k, &j) in ok.iter().enumerate() {
                fresh.insert(j, f.narrow(0, k, 1)?.copy());
            }
        }
        for (j, f) in &fresh {
            self.remember(*j, side, f);
        }
        Ok(items
            .iter()
            .map(|j| {
                fresh
                    .get(j)
                    .or_else(|| self.cache.get(&(*j, side)))
                    .cloned()
            })
            .collect())
    }

    fn remember(&mut self, item: usize, side: usize, f: &Tensor) {
        let bytes = f.numel() * 4;
        if self.cache_bytes + bytes <= CACHE_BUDGET && !self.cache.contains_key(&(item, side)) {
            self.cache.insert((item, side), f.clone());
            self.cache_bytes += bytes;
        }
    }

    /// The maps of a batch of decoded images, at each image's own size.
    fn image_cams(&mut self, imgs: &[(usize, image::RgbImage)]) -> Result<Vec<CamFile>> {
        let n_views = self.opts.scales.len() * if self.opts.flip { 2 } else { 1 };
        // per image: per positive class, the map summed over views at image size
        let mut acc: Vec<Vec<Vec<f32>>> = imgs
            .iter()
            .map(|(i, img)| {
                vec![
                    vec![0f32; (img.width() * img.height()) as usize];
                    self.ds.items[*i].labels.len()
                ]
            })
            .collect();
        // features of this batch by (input side, mirrored), shared by the flip passes
        let mut memo = HashMap::new();
        for &scale in &self.opts.scales.clone() {
            for flip in [false, true]
                .into_iter()
                .take(if self.opts.flip { 2 } else { 1 })
            {
                let side = self.side(scale);
                let mut xs = Vec::with_capacity(imgs.len());
                for (_, img) in imgs {
                    xs.push(self.prepared(img, side, flip)?);
                }
                let x = Tensor::concat(&xs.iter().collect::<Vec<_>>(), 0)?;
                let grid = match self.opts.mode {
                    CamMode::Single => self.single_grid(&x, imgs)?,
                    CamMode::Coatt => self.coatt_grid(&x, imgs, side, flip, &mut memo)?,
                };
                for (b, (_, img)) in imgs.iter().enumerate() {
                    let (gh, gw, maps) = &grid[b];
                    let t =
                        Tensor::from_vec(maps.concat(), [1, maps.len(), *gh, *gw], Device::Cpu)?
                            .resize_bilinear(img.height() as usize, img.width() as usize)?;
                    let t = if flip { t.flip(3)? } else { t };
                    let v = t.to_vec_f32();
                    let hw = acc[b].first().map_or(0, Vec::len);
                    for (j, a) in acc[b].iter_mut().enumerate() {
                        for (o, x) in a.iter_mut().zip(&v[j * hw..(j + 1) * hw]) {
                            *o += x;
                        }
                    }
                }
            }
        }
        let mut out = Vec::with_capacity(imgs.len());
        for ((i, img), mut maps) in imgs.iter().zip(acc) {
            for m in &mut maps {
                match self.opts.mode {
                    // CAMs of several views: summed, then scaled to a max of 1
                    CamMode::Single => super::aggregate::relu_max_normalize(m),
                    // fused maps are already in [0, 1]: average the views
                    CamMode::Coatt => m.iter_mut().for_each(|v| *v /= n_views as f32),
                }
            }
            out.push(CamFile {
                id: self.ds.items[*i].id.clone(),
                height: img.height() as usize,
                width: img.width() as usize,
                classes: self.ds.items[*i].labels.clone(),
                maps: maps.concat(),
                background: None,
            });
        }
        Ok(out)
    }

    /// Single-image CAMs on the feature grid, ReLU'd: per image (h, w, per positive class).
    fn single_grid(
        &mut self,
        x: &Tensor,
        imgs: &[(usize, image::RgbImage)],
    ) -> Result<Vec<GridMaps>> {
        let f = self.model.features_eval(x)?;
        let (h, w) = (f.dims()[2], f.dims()[3]);
        let cams = host_maps(&self.model.head.single_maps(&f)?);
        Ok(imgs
            .iter()
            .zip(cams)
            .map(|((i, _), per_class)| {
                let maps = self.ds.items[*i]
                    .labels
                    .iter()
                    .map(|&c| per_class[c].iter().map(|v| v.max(0.0)).collect())
                    .collect();
                (h, w, maps)
            })
            .collect())
    }

    /// Fused co-attention maps on the feature grid: the features of the views and of the
    /// related images here, the fusion in [`coattentive_maps`].
    fn coatt_grid(
        &mut self,
        x: &Tensor,
        imgs: &[(usize, image::RgbImage)],
        side: usize,
        flip: bool,
        memo: &mut HashMap<(usize, bool), Tensor>,
    ) -> Result<Vec<GridMaps>> {
        let (model, cfg) = (self.model, self.cfg);
        // the image and its mirror are each other's flipped view: the flipped pass takes both
        // from the unflipped one (the same input batches, so the same features to the bit)
        let mut same_size = |mirrored: bool, x: &Tensor| -> Result<Tensor> {
            match memo.get(&(side, mirrored)) {
                Some(f) => Ok(f.clone()),
                None => {
                    let f = model.features_eval(x)?;
                    memo.insert((side, mirrored), f.clone());
                    Ok(f)
                }
            }
        };
        let f1 = same_size(flip, x)?;
        let flipped = same_size(!flip, &x.flip(3)?)?;
        let (h, w) = (f1.dims()[2], f1.dims()[3]);
        if !flip {
            for (b, (i, _)) in imgs.iter().enumerate() {
                let fb = f1.narrow(0, b, 1)?.copy();
                self.remember(*i, side, &fb);
            }
        }
        let view = |factor: f64| -> Result<Tensor> {
            let s = ((side as f64 * factor).round() as usize).max(8);
            model.features_eval(&x.resize_bilinear(s, s)?)
        };
        let (small, large) = (view(cfg.small_scale)?, view(cfg.large_scale)?);
        // the related images of every (image, class); related images are other images: never
        // flipped, whichever view image 1 is in; an unreadable one is left out
        let mut wanted = Vec::new(); // (b, class, related item)
        for (b, (i, _)) in imgs.iter().enumerate() {
            for &c in &self.ds.items[*i].labels {
                for j in self.related_of(*i, c) {
                    wanted.push((b, c, j));
                }
            }
        }
        let items: Vec<usize> = wanted.iter().map(|w| w.2).collect();
        let fr_all = if wanted.is_empty() {
            Vec::new()
        } else {
            self.related_features(&items, side)?
        };
        let related: Vec<(usize, usize, Tensor)> = wanted
            .into_iter()
            .zip(fr_all)
            .filter_map(|((b, c, _), f)| f.map(|f| (b, c, f)))
            .collect();
        if !flip && !related.is_empty() {
            let fm: Vec<Tensor> = related
                .iter()
                .map(|r| f1.narrow(0, r.0, 1))
                .collect::<Result<_>>()?;
            let fm = Tensor::concat(&fm.iter().collect::<Vec<_>>(), 0)?;
            let fr = Tensor::concat(&related.iter().map(|r| &r.2).collect::<Vec<_>>(), 0)?;
            self.attention.add(&model.head.attention_rows(&fm, &fr)?)?;
        }
        let classes: Vec<Vec<usize>> = imgs
            .iter()
            .map(|(i, _)| self.ds.items[*i].labels.clone())
            .collect();
        let features = CoattFeatures {
            images: &f1,
            flipped: &flipped,
            small: &small,
            large: &large,
            related: &related,
        };
        Ok(coattentive_maps(&model.head, &features, &classes)?
            .into_iter()
            .map(|maps| (h, w, maps))
            .collect())
    }
}

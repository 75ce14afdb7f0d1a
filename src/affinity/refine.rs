//! `coatt-train refine`: localization maps propagated by the random walk over AffinityNet's
//! affinities (DESIGN §8, PSA's `infer_aff.py`), optionally followed by the dense CRF. Per image: the class maps (each scaled to a
//! maximum of 1) and a background channel (1 − max)^α, average-pooled to AffinityNet's grid
//! (stride 8, or 4 with its stride-4 level) of the image padded to a multiple of the stride; T = a^β normalised over the source axis; 2^logt
//! steps; upsampled bilinearly and cropped back. The output map files carry the background
//! channel, so `pseudo` labels them by argmax (no threshold). The walks run in order (the
//! engine parallelises each); the CRFs of a chunk of images run in parallel, one per thread.
use super::model::AffinityNet;
use super::train::{load_affinity_net, map_for};
use crate::cam::store::{save_overlays, write_cam, CamFile};
use crate::data::augment::{normalize, to_chw};
use crate::data::voc::{load_rgb, VocDataset};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use crate::{no_grad, Device, Pool2dParams};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct RefineOptions {
    /// A train-affinity run folder: the maps are walked over its affinities. None: no walk
    /// (the dense CRF alone, when `crf` is set).
    pub run: Option<PathBuf>,
    pub cams: PathBuf,
    pub data: PathBuf,
    pub split: String,
    pub out: PathBuf,
    /// Affinity power (PSA: 8).
    pub beta: f64,
    /// 2^logt walk steps (PSA: 8).
    pub logt: u32,
    /// Background power of the walked background channel (PSA: 16); None: from the maps'
    /// Otsu threshold t, α such that (1 − t)^α = t (`cam::threshold::alpha_at`), so the walk
    /// starts from the labels Otsu's threshold gives.
    pub alpha: Option<f64>,
    /// A dense CRF over [background, classes] after the walk (the maps' own CRF marginals are
    /// written): it pulls the coarse grid's boundaries onto the image's colour edges.
    pub crf: Option<crate::crf::CrfParams>,
    pub overlays: bool,
    pub device: Device,
    pub quiet: bool,
}

impl RefineOptions {
    pub fn new(run: &Path, cams: &Path, data: &Path, out: &Path) -> RefineOptions {
        RefineOptions {
            run: Some(run.to_path_buf()),
            cams: cams.to_path_buf(),
            data: data.to_path_buf(),
            split: "train".into(),
            out: out.to_path_buf(),
            beta: 8.0,
            logt: 8,
            alpha: Some(16.0),
            crf: None,
            overlays: true,
            device: Device::Cpu,
            quiet: false,
        }
    }

    fn validate(&self) -> Result<()> {
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return Err(Error::Msg(format!("--beta must be > 0, got {}", self.beta)));
        }
        if let Some(a) = self.alpha {
            if !(a.is_finite() && a > 0.0) {
                return Err(Error::Msg(format!("--alpha must be > 0, got {a}")));
            }
        }
        if self.run.is_none() && self.crf.is_none() {
            return Err(Error::Msg(
                "refine needs an AffinityNet run (--run), a CRF (--crf), or both".into(),
            ));
        }
        if self.logt > 12 {
            return Err(Error::Msg(format!(
                "--logt must be at most 12 (4096 steps), got {}",
                self.logt
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Default)]
pub struct RefineSummary {
    /// The background power used.
    pub alpha: f64,
    pub written: usize,
    pub existing: usize,
    pub secs: f64,
}

/// The planes of one image before the CRF (at image size): [background (1 − max)^α, the
/// class maps scaled to a maximum of 1], walked over AffinityNet's affinities when a model is
/// given. The tensor work of the walk is here, so that callers can run it in order (it may be
/// on the GPU) and the CRF of many images at once.
pub fn walked_planes(
    model: Option<&AffinityNet>,
    img: &image::RgbImage,
    cam: &CamFile,
    alpha: f64,
    opts: &RefineOptions,
) -> Result<(CamFile, Vec<f32>)> {
    let (h, w) = (img.height() as usize, img.width() as usize);
    let cam = cam.max_normalised();
    let n = cam.classes.len();
    let mut planes = Vec::with_capacity((n + 1) * h * w);
    planes.extend((0..h * w).map(|p| {
        let m = (0..n).map(|j| cam.map(j)[p]).fold(0f32, f32::max);
        (1.0 - m).powf(alpha as f32)
    }));
    planes.extend_from_slice(&cam.maps);
    if let Some(model) = model {
        planes = walk(model, img, &planes, n + 1, opts)?;
    }
    Ok((cam, planes))
}

/// The refined maps of one image from [`walked_planes`]: through the dense CRF when one is
/// given, with the background channel kept. Pure CPU work on one image.
pub fn crf_refined(
    img: &image::RgbImage,
    cam: &CamFile,
    mut planes: Vec<f32>,
    opts: &RefineOptions,
) -> CamFile {
    let (h, w) = (img.height() as usize, img.width() as usize);
    if let Some(p) = &opts.crf {
        planes = crate::crf::dense_crf(
            img.as_raw(),
            h,
            w,
            &planes,
            cam.classes.len() + 1,
            p,
            crate::crf::Filter::Lattice,
        );
    }
    let hw = h * w;
    CamFile {
        id: cam.id.clone(),
        height: h,
        width: w,
        classes: cam.classes.clone(),
        maps: planes[hw..].to_vec(),
        background: Some(planes[..hw].to_vec()),
    }
}

/// The random walk of `planes` (k planes at image size) over the model's affinities: pooled
/// to its grid (the image padded with the mean colour to a multiple of the stride), walked,
/// upsampled bilinearly and cropped back.
fn walk(
    model: &AffinityNet,
    img: &image::RgbImage,
    planes: &[f32],
    k: usize,
    opts: &RefineOptions,
) -> Result<Vec<f32>> {
    let (h, w) = (img.height() as usize, img.width() as usize);
    let st = model.config.stride();
    let (gh, gw) = (h.div_ceil(st), w.div_ceil(st));
    let (ph, pw) = (gh * st, gw * st);
    let dev = opts.device;
    let pad = |planes: &[f32], n: usize| -> Vec<f32> {
        let mut out = vec![0f32; n * ph * pw];
        for c in 0..n {
            for y in 0..h {
                out[(c * ph + y) * pw..(c * ph + y) * pw + w]
                    .copy_from_slice(&planes[(c * h + y) * w..(c * h + y + 1) * w]);
            }
        }
        out
    };
    let mut chw = to_chw(img);
    normalize(&mut chw, h * w);
    let x = Tensor::from_vec(pad(&chw, 3), [1, 3, ph, pw], dev)?;
    let a = model.affinity(&x)?;
    if a.dims()[2..] != [gh, gw] {
        return Err(Error::Msg(format!(
            "AffinityNet's grid {:?} is not the image's stride-{st} grid {gh}×{gw}",
            &a.dims()[2..]
        )));
    }
    let walked = Tensor::from_vec(pad(planes, k), [1, k, ph, pw], dev)?
        .avg_pool2d(Pool2dParams::new(st, st, 0))?
        .random_walk(&a, model.config.radius, opts.beta, 1usize << opts.logt)?
        .resize_bilinear(ph, pw)?
        .to_vec_f32();
    Ok((0..k)
        .flat_map(|c| (0..h).flat_map(move |y| (c * ph + y) * pw..(c * ph + y) * pw + w))
        .map(|i| walked[i])
        .collect())
}

/// Refines the maps of every labelled image of a split; outputs already there are kept when
/// the folder was made with the same run and options (recorded in OUT/refine.json).
pub fn run_refine(opts: &RefineOptions) -> Result<RefineSummary> {
    opts.validate()?;
    let _lock = crate::io::lock::lock_dir(&opts.out)?;
    let t0 = Instant::now();
    let model = opts
        .run
        .as_ref()
        .map(|r| load_affinity_net(r, opts.device))
        .transpose()?;
    let weights = opts
        .run
        .as_ref()
        .map(|r| crate::io::record::file_fingerprint(&r.join(super::train::LAST)))
        .transpose()?;
    let alpha = match opts.alpha {
        Some(a) => a,
        None => crate::cam::threshold::alpha_at(crate::cam::threshold::auto_threshold_normalised(
            &opts.cams,
        )? as f64),
    };
    crate::io::record::check_or_write(
        &opts.out,
        "refine",
        &serde_json::json!({
            "run": opts.run.as_ref().map(|r| r.display().to_string()),
            "weights": weights,
            "crf": opts.crf,
            "cams": opts.cams.display().to_string(),
            "data": opts.data.display().to_string(),
            "split": opts.split,
            "beta": opts.beta,
            "logt": opts.logt,
            "alpha": alpha,
        }),
    )?;
    if opts.overlays {
        let d = opts.out.join("overlay");
        std::fs::create_dir_all(&d).map_err(|e| Error::io(&d, e))?;
    }
    let ds = VocDataset::open(&opts.data, &opts.split)?;
    let todo: Vec<usize> = (0..ds.items.len())
        .filter(|&i| !ds.items[i].labels.is_empty())
        .collect();
    let bar = crate::progress::bar(todo.len() as u64, "refine");
    if opts.quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut s = RefineSummary {
        alpha,
        ..Default::default()
    };
    // the walks in order (tensor ops, maybe on the GPU), then the CRFs and writes of a chunk
    // of images in parallel (each image's CRF is single-threaded and independent of the others)
    let chunk = rayon::current_num_threads().max(1) * 4;
    for ids in todo.chunks(chunk) {
        let mut walked = Vec::with_capacity(ids.len());
        for &i in ids {
            let it = &ds.items[i];
            if crate::cam::read_cam(&opts.out, &it.id).is_ok() {
                s.existing += 1;
                bar.inc(1);
                continue;
            }
            let img = load_rgb(&it.image)?;
            let cam = map_for(
                &opts.cams,
                &it.id,
                img.height() as usize,
                img.width() as usize,
            )?;
            let (cam, planes) = no_grad(|| walked_planes(model.as_ref(), &img, &cam, alpha, opts))?;
            walked.push((img, cam, planes));
        }
        let fresh = walked.len();
        walked
            .into_par_iter()
            .map(|(img, cam, planes)| -> Result<()> {
                let refined = crf_refined(&img, &cam, planes, opts);
                // overlays first, atomically: the map file marks the image as done
                if opts.overlays {
                    save_overlays(&opts.out, &ds.class_names, &img, &refined)?;
                }
                write_cam(&opts.out, &refined)?;
                bar.inc(1);
                Ok(())
            })
            .collect::<Result<Vec<()>>>()?;
        s.written += fresh;
    }
    bar.finish_and_clear();
    s.secs = t0.elapsed().as_secs_f64();
    Ok(s)
}

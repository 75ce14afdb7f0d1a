//! `coatt-train infer`: multi-scale + flip averaging of softmax outputs, the dense CRF, palette
//! PNG predictions. Network passes run one image at a time (sizes differ) with the engine's
//! own parallelism; the CRF of a chunk of images runs in parallel with rayon.
use super::model::SegNet;
use crate::autograd::no_grad;
use crate::crf::{argmax_planar, dense_crf, CrfParams, Filter};
use crate::data::augment::{normalize, resize_rgb, to_chw};
use crate::data::voc::load_rgb;
use crate::error::{Error, Result};
use crate::io::{write_label_png, LabelMap};
use crate::tensor::Tensor;
use crate::Device;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct InferOptions {
    pub scales: Vec<f64>,
    pub flip: bool,
    pub crf: Option<CrfParams>,
    /// The segmentation run the model comes from (recorded with its weights in OUT/infer.json,
    /// so a rerun into the folder with another run or options is an error, not stale files).
    pub run: Option<PathBuf>,
}

/// Softmax probabilities (L × H × W) of one image, averaged over scales and flips.
pub fn predict_probs(
    model: &SegNet,
    img: &image::RgbImage,
    scales: &[f64],
    flip: bool,
    device: Device,
) -> Result<Vec<f32>> {
    if scales.is_empty() || scales.iter().any(|s| s.is_nan() || *s <= 0.0) {
        return Err(Error::Msg(format!("invalid scales {scales:?}")));
    }
    let (h, w) = (img.height() as usize, img.width() as usize);
    let chw = to_chw(img);
    let l = model.num_labels;
    let mut acc = vec![0f32; l * h * w];
    let mut views = 0;
    let mut rng = crate::seed::rng(0); // unused: no dropout at inference
    for &s in scales {
        let (hs, ws) = (
            ((h as f64 * s).round() as usize).max(8),
            ((w as f64 * s).round() as usize).max(8),
        );
        let mut x = resize_rgb(&chw, h, w, hs, ws);
        normalize(&mut x, hs * ws);
        let x = Tensor::from_vec(x, [1, 3, hs, ws], device)?;
        let inputs = if flip {
            vec![x.clone(), x.flip(3)?]
        } else {
            vec![x]
        };
        for (k, xi) in inputs.iter().enumerate() {
            let p = no_grad(|| {
                let mut y = model
                    .forward(xi, false, &mut rng)?
                    .resize_bilinear(h, w)?
                    .softmax(1)?;
                if k == 1 {
                    y = y.flip(3)?;
                }
                Ok::<_, Error>(y)
            })?;
            for (a, v) in acc.iter_mut().zip(p.to_vec_f32()) {
                *a += v;
            }
            views += 1;
        }
    }
    acc.iter_mut().for_each(|v| *v /= views as f32);
    Ok(acc)
}

/// Labels of one image: argmax of the averaged probabilities, after the CRF when asked.
pub fn labels_of(
    img: &image::RgbImage,
    probs: &[f32],
    labels: usize,
    crf: Option<&CrfParams>,
) -> Vec<u8> {
    match crf {
        Some(p) => {
            let (h, w) = (img.height() as usize, img.width() as usize);
            let q = dense_crf(img.as_raw(), h, w, probs, labels, p, Filter::Lattice);
            argmax_planar(&q, labels)
        }
        None => argmax_planar(probs, labels),
    }
}

#[derive(Debug)]
pub struct InferSummary {
    pub written: usize,
    pub existing: usize,
    pub failed: Vec<(PathBuf, String)>,
    pub secs: f64,
}

/// Predicts every image (id, path) into OUT/<id>.png; images with a prediction already are
/// skipped (a killed run resumes), unreadable ones are reported.
pub fn run_infer(
    model: &SegNet,
    images: &[(String, PathBuf)],
    out: &Path,
    opts: &InferOptions,
    device: Device,
    quiet: bool,
) -> Result<InferSummary> {
    let mut s = run_infer_many(model, images, &[(out, opts.crf)], opts, device, quiet)?;
    Ok(s.remove(0))
}

/// [`run_infer`] into several folders at once, each with its own CRF (`opts.crf` is not used):
/// the network runs once per image that some folder lacks, and each folder gets the labels of
/// its CRF. The pipeline writes its predictions with and without the CRF in one pass this way.
pub fn run_infer_many(
    model: &SegNet,
    images: &[(String, PathBuf)],
    outs: &[(&Path, Option<CrfParams>)],
    opts: &InferOptions,
    device: Device,
    quiet: bool,
) -> Result<Vec<InferSummary>> {
    for (i, (a, _)) in outs.iter().enumerate() {
        if outs[..i].iter().any(|(b, _)| b == a) {
            return Err(Error::Msg(format!(
                "infer: the folder {} is given twice",
                a.display()
            )));
        }
    }
    let _locks = outs
        .iter()
        .map(|(out, _)| crate::io::lock::lock_dir(out))
        .collect::<Result<Vec<_>>>()?;
    let scale_ok = |s: &f64| s.is_finite() && *s > 0.0 && *s <= 8.0;
    if opts.scales.is_empty() || !opts.scales.iter().all(scale_ok) {
        return Err(crate::Error::Msg(format!(
            "--scales must be positive factors up to 8, got {:?}",
            opts.scales
        )));
    }
    let weights = opts
        .run
        .as_ref()
        .map(|r| crate::io::record::file_fingerprint(&r.join(super::train::LAST)))
        .transpose()?;
    for (out, crf) in outs {
        crate::io::record::check_or_write(
            out,
            "infer",
            &serde_json::json!({
                "run": opts.run.as_ref().map(|r| r.display().to_string()),
                "weights": weights,
                "scales": opts.scales,
                "flip": opts.flip,
                "crf": crf,
            }),
        )?;
    }
    let t0 = std::time::Instant::now();
    let missing = |out: &Path, id: &str| !out.join(format!("{id}.png")).exists();
    let todo: Vec<&(String, PathBuf)> = images
        .iter()
        .filter(|(id, _)| outs.iter().any(|(out, _)| missing(out, id)))
        .collect();
    let bar = crate::progress::bar(todo.len() as u64, "infer");
    if quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut sums: Vec<InferSummary> = outs
        .iter()
        .map(|(out, _)| InferSummary {
            written: 0,
            existing: images.iter().filter(|(id, _)| !missing(out, id)).count(),
            failed: Vec::new(),
            secs: 0.0,
        })
        .collect();
    let chunk = rayon::current_num_threads().max(1) * 2;
    for part in todo.chunks(chunk) {
        let mut ready = Vec::new();
        for (id, path) in part {
            match load_rgb(path) {
                Ok(img) => {
                    let p = predict_probs(model, &img, &opts.scales, opts.flip, device)?;
                    ready.push((id, img, p));
                }
                Err(e) => sums
                    .iter_mut()
                    .for_each(|s| s.failed.push((path.clone(), e.to_string()))),
            }
        }
        let l = model.num_labels;
        for ((out, crf), s) in outs.iter().zip(&mut sums) {
            let wanted: Vec<_> = ready.iter().filter(|(id, ..)| missing(out, id)).collect();
            wanted
                .par_iter()
                .map(|(id, img, p)| {
                    let data = labels_of(img, p, l, crf.as_ref());
                    write_label_png(
                        &out.join(format!("{id}.png")),
                        &LabelMap {
                            width: img.width() as usize,
                            height: img.height() as usize,
                            data,
                        },
                    )
                })
                .collect::<Result<Vec<()>>>()?;
            s.written += wanted.len();
        }
        bar.inc(part.len() as u64);
    }
    bar.finish_and_clear();
    let secs = t0.elapsed().as_secs_f64();
    sums.iter_mut().for_each(|s| s.secs = secs);
    Ok(sums)
}

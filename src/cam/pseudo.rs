//! Pseudo labels from localization maps (`coatt-train pseudo`).
//!
//! Threshold mode (PSA/IRN style, no saliency): the background scores a constant t and every
//! pixel takes the argmax over background and the image's classes (ties go to background).
//! Saliency mode: the official rules (MCIS `gen_gt.py`): class maps min-max normalised,
//! background = 1 − saliency, values < 0.3 zeroed, pixels with more than one channel > 0.99 →
//! 255, argmax, pixels left as background where the saliency (or a map > 0.95) is ≥ 32/255 →
//! 255. Both modes: an image whose foreground covers < `min_fg` of its pixels becomes all 255.
use super::store::{read_cam, CamFile};
use crate::error::{Error, Result};
use crate::eval::IGNORE;
use crate::io::{write_atomic, write_label_png, LabelMap};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq)]
pub enum PseudoRule {
    /// Background score t; pixels whose best and second-best scores are closer than
    /// `ignore_margin` become 255 (0 disables).
    Threshold { bg: f32, ignore_margin: f32 },
    /// The argmax over the maps' own background channel and the classes (maps refined by the
    /// random walk); a map file without a background channel is an error.
    Argmax { ignore_margin: f32 },
    /// The official rules with saliency maps (`<id>.png`, greyscale, image size) from a folder.
    Saliency { dir: PathBuf },
}

/// Threshold-mode labels of one image (before the small-foreground rule).
pub fn threshold_labels(cam: &CamFile, bg: f32, ignore_margin: f32) -> Vec<u8> {
    labels_against(cam, |_| bg, ignore_margin)
}

/// Argmax-mode labels: the background score is the map file's own background channel.
pub fn argmax_labels(cam: &CamFile, ignore_margin: f32) -> Option<Vec<u8>> {
    let bg = cam.background.as_ref()?;
    Some(labels_against(cam, |p| bg[p], ignore_margin))
}

/// Labels with background score `bg(p)` at pixel p; ties go to background.
fn labels_against(cam: &CamFile, bg: impl Fn(usize) -> f32, ignore_margin: f32) -> Vec<u8> {
    let hw = cam.height * cam.width;
    (0..hw)
        .map(|p| {
            let (mut best, mut best_v, mut second) = (0u8, bg(p), f32::NEG_INFINITY);
            for (j, &c) in cam.classes.iter().enumerate() {
                let v = cam.map(j)[p];
                if v > best_v {
                    second = best_v;
                    best_v = v;
                    best = c as u8 + 1;
                } else if v > second {
                    second = v;
                }
            }
            if ignore_margin > 0.0 && best_v - second < ignore_margin {
                IGNORE
            } else {
                best
            }
        })
        .collect()
}

/// The official saliency rules for one image (before the small-foreground rule); `sal` is the
/// saliency map in 0..=255 at image size.
pub fn saliency_labels(cam: &CamFile, sal: &[u8]) -> Vec<u8> {
    const FG_THR: f32 = 0.3;
    const CONFLICT: f32 = 0.99;
    const ATT_THR: f32 = 0.95;
    const BG_THR: u8 = 32;
    let hw = cam.height * cam.width;
    let norm: Vec<Vec<f32>> = (0..cam.classes.len())
        .map(|j| {
            let m = cam.map(j);
            let (lo, hi) = m
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| {
                    (a.min(v), b.max(v))
                });
            m.iter().map(|&v| (v - lo) / (hi - lo + 1e-8)).collect()
        })
        .collect();
    (0..hw)
        .map(|p| {
            let cut = |v: f32| if v < FG_THR { 0.0 } else { v };
            let bg = cut(1.0 - sal[p] as f32 / 255.0);
            let (mut best, mut best_v) = (0u8, bg);
            let mut confident = (bg > CONFLICT) as usize;
            let mut sal_att = sal[p];
            for (j, &c) in cam.classes.iter().enumerate() {
                if norm[j][p] > ATT_THR {
                    sal_att = 255;
                }
                let v = cut(norm[j][p]);
                confident += (v > CONFLICT) as usize;
                if v > best_v {
                    best_v = v;
                    best = c as u8 + 1;
                }
            }
            if confident > 1 || (best == 0 && sal_att >= BG_THR) {
                IGNORE
            } else {
                best
            }
        })
        .collect()
}

/// The official engineering rule: too little foreground, and the whole image is ignored.
pub fn apply_min_foreground(labels: &mut [u8], min_fg: f64) -> bool {
    let fg = labels.iter().filter(|&&l| l != 0 && l != IGNORE).count();
    if (fg as f64) < min_fg * labels.len() as f64 {
        labels.iter_mut().for_each(|l| *l = IGNORE);
        true
    } else {
        false
    }
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct PseudoStats {
    pub images: usize,
    /// Pixels per label 0..=K (index = label), and ignored pixels.
    pub pixels: Vec<u64>,
    pub ignored: u64,
    /// Images set entirely to 255 by the small-foreground rule.
    pub images_all_ignored: usize,
}

impl PseudoStats {
    pub fn markdown(&self, names: &[String]) -> String {
        let total: u64 = self.pixels.iter().sum::<u64>() + self.ignored;
        let pct = |v: u64| 100.0 * v as f64 / total.max(1) as f64;
        let mut s = String::from("| label | pixels | share (%) |\n|---|---:|---:|\n");
        for (l, &n) in self.pixels.iter().enumerate() {
            let name = names.get(l).cloned().unwrap_or_else(|| l.to_string());
            s += &format!("| {name} | {n} | {:.1} |\n", pct(n));
        }
        s += &format!(
            "| ignore (255) | {} | {:.1} |\n",
            self.ignored,
            pct(self.ignored)
        );
        s
    }
}

/// The ids of the map files in a CAM folder, sorted.
pub fn cam_ids(dir: &Path) -> Result<Vec<String>> {
    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            n.strip_suffix(".safetensors").map(str::to_string)
        })
        .collect();
    ids.sort();
    if ids.is_empty() {
        return Err(Error::file(
            dir,
            "no localization maps (<id>.safetensors) here; run `coatt-train cams` first",
        ));
    }
    Ok(ids)
}

/// Reads a greyscale saliency PNG of the given size.
fn read_saliency(path: &Path, h: usize, w: usize) -> Result<Vec<u8>> {
    let img = image::open(path)
        .map_err(|e| Error::file(path, format!("cannot read saliency map ({e})")))?
        .to_luma8();
    if (img.height() as usize, img.width() as usize) != (h, w) {
        return Err(Error::file(
            path,
            format!(
                "saliency map is {}×{}, the image {w}×{h}",
                img.width(),
                img.height()
            ),
        ));
    }
    Ok(img.into_raw())
}

/// Labels every map file of `cams` into palette PNGs in `out`; `num_labels` = K + 1.
pub fn run_pseudo(
    cams: &Path,
    out: &Path,
    rule: &PseudoRule,
    min_fg: f64,
    num_labels: usize,
) -> Result<PseudoStats> {
    let ids = cam_ids(cams)?;
    let _lock = crate::io::lock::lock_dir(out)?;
    let per_image: Vec<(Vec<u64>, u64, bool)> = ids
        .par_iter()
        .map(|id| {
            let cam = read_cam(cams, id)?;
            let mut labels = match rule {
                PseudoRule::Threshold { bg, ignore_margin } => {
                    threshold_labels(&cam, *bg, *ignore_margin)
                }
                PseudoRule::Argmax { ignore_margin } => argmax_labels(&cam, *ignore_margin)
                    .ok_or_else(|| {
                        Error::file(
                            super::store::cam_path(cams, id),
                            "the maps have no background channel (only refined maps do); use a background threshold",
                        )
                    })?,
                PseudoRule::Saliency { dir } => {
                    let sal = read_saliency(&dir.join(format!("{id}.png")), cam.height, cam.width)?;
                    saliency_labels(&cam, &sal)
                }
            };
            let all_ignored = apply_min_foreground(&mut labels, min_fg);
            let mut counts = vec![0u64; num_labels];
            let mut ignored = 0;
            for &l in &labels {
                match counts.get_mut(l as usize) {
                    Some(c) => *c += 1,
                    None => ignored += 1,
                }
            }
            write_label_png(
                &out.join(format!("{id}.png")),
                &LabelMap {
                    width: cam.width,
                    height: cam.height,
                    data: labels,
                },
            )?;
            Ok((counts, ignored, all_ignored))
        })
        .collect::<Result<_>>()?;
    let mut stats = PseudoStats {
        images: ids.len(),
        pixels: vec![0; num_labels],
        ignored: 0,
        images_all_ignored: 0,
    };
    for (c, i, a) in per_image {
        stats.pixels.iter_mut().zip(&c).for_each(|(s, v)| *s += v);
        stats.ignored += i;
        stats.images_all_ignored += a as usize;
    }
    let p = out.join("stats.json");
    write_atomic(&p, serde_json::to_string_pretty(&stats).unwrap().as_bytes())?;
    Ok(stats)
}

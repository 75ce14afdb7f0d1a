//! Pseudo labels from localization maps (`coatt-train pseudo`).
//!
//! Threshold mode (PSA/IRN style, no saliency): the background scores a constant t and every
//! pixel takes the argmax over background and the image's classes (ties go to background).
//! Saliency mode: the official rules (MCIS `gen_gt.py`): class maps min-max normalised,
//! background = 1 − saliency, values < 0.3 zeroed, pixels with more than one channel > 0.99 →
//! 255, argmax, pixels left as background where the saliency (or a map > 0.95) is ≥ 32/255 →
//! 255. Both modes: an image whose foreground covers < `min_fg` of its pixels becomes all 255.
//!
//! Argmax mode (refined maps) can label background only where it is confident
//! (`--confident-background auto`; off by default): a pixel the refinement gives to
//! background while the raw maps it started from still mark it as an object (max ≥ their Otsu
//! threshold) becomes 255. The refinement cuts the raw blobs down to colour-bounded regions
//! and often drops the object's less discriminative body; labelled background, those bodies
//! teach the segmentation network to miss objects (FN/TP 1.4-2.2 per class on the demo). It is
//! the saliency rule's principle (background only where the saliency is low, the rest 255)
//! with the raw maps in place of a saliency detector. It is not the default: without negative
//! labels around its objects the network over-extends them (FP/TP ≈ 1), which only the CRF at
//! inference takes back, and on the target set, whose distractors look like the objects'
//! bodies, it costs 15 points (docs/quality.md, "Pseudo labels that say less").
//!
//! In every mode but saliency, the boundary prior of saliency detection (Zhu et al.,
//! "Saliency Optimization from Robust Background Detection", CVPR 2014): a region that
//! touches the image border along much of its size is background context, not an object.
//! Each connected region of one class whose boundary connectivity (pixels on the image's
//! outermost ring / √area) exceeds 1.18 becomes 255: the point where that paper's background
//! probability 1 − exp(−BndCon²/2) passes 1/2. It catches the class-typical ground a
//! classifier learns as evidence of its class (boats on water) and the refinement then
//! spreads over the whole ground band; objects, even cut by the border, stay below it.
//! Ignored rather than made background, so a large object that fills the frame costs
//! supervision, not a wrong label. On by default (`--border-connectivity off` disables it).
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
    /// The argmax over the maps' own background channel and the classes (refined maps); a map
    /// file without a background channel is an error. With `confident`, background pixels
    /// where the raw maps still mark an object become 255.
    Argmax {
        ignore_margin: f32,
        confident: Option<ConfidentBackground>,
    },
    /// The official rules with saliency maps (`<id>.png`, greyscale, image size) from a folder.
    Saliency { dir: PathBuf },
}

impl PseudoRule {
    /// The rule in words, for the `pseudo` command's output and the pipeline's report.
    pub fn describe(&self) -> String {
        match self {
            PseudoRule::Threshold { bg, .. } => format!("background threshold t = {bg:.3}"),
            PseudoRule::Argmax {
                confident: None, ..
            } => "argmax over the maps' background channel".to_string(),
            PseudoRule::Argmax {
                confident: Some(c),
                ..
            } => format!(
                "argmax over the maps' background channel; background only where the raw maps are below t = {:.3} (Otsu), elsewhere 255",
                c.t
            ),
            PseudoRule::Saliency { .. } => "the official saliency rules".to_string(),
        }
    }
}

/// Where background may be labelled: only where the raw maps (`raw`, the folder the refined
/// maps were made from; each class map scaled to a maximum of 1, as the refinement sees them)
/// stay below `t`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConfidentBackground {
    pub raw: PathBuf,
    pub t: f32,
}

/// Sets to 255 every background label at which the raw maps' foreground score is ≥ `t`.
pub fn ignore_unsure_background(labels: &mut [u8], raw: &CamFile, t: f32) {
    let raw = raw.max_normalised();
    let hw = raw.height * raw.width;
    for (p, l) in labels.iter_mut().enumerate().take(hw) {
        if *l == 0 && (0..raw.classes.len()).any(|j| raw.map(j)[p] >= t) {
            *l = IGNORE;
        }
    }
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

/// Rules applied to every image's labels after its mode's rule: the boundary prior, then the
/// small-foreground rule (an image whose only foreground was border context is all 255).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LabelFilters {
    /// Images whose foreground covers less than this share become all 255 (official 0.01).
    pub min_fg: f64,
    /// Class regions whose boundary connectivity exceeds this become 255 (None: off).
    pub border_connectivity: Option<f32>,
}

impl LabelFilters {
    /// The boundary prior's threshold: 1 − exp(−b²/2) = 1/2 at b = √(2 ln 2) ≈ 1.18.
    pub const BORDER_CONNECTIVITY: f32 = 1.18;

    /// The filters beyond the small-foreground rule in words (empty when there are none).
    pub fn describe(&self) -> String {
        match self.border_connectivity {
            Some(t) => format!(
                "class regions on the image border (boundary connectivity > {t:.2}) ignored"
            ),
            None => String::new(),
        }
    }

    /// Only the small-foreground rule.
    pub fn min_fg(min_fg: f64) -> LabelFilters {
        LabelFilters {
            min_fg,
            border_connectivity: None,
        }
    }
}

/// The whole labelling in one line, for the `pseudo` command's output and the pipeline's
/// report: the rule (`otsu`: its threshold came from Otsu's rule), then the filters.
pub fn describe_labelling(rule: &PseudoRule, otsu: bool, filters: &LabelFilters) -> String {
    let mut s = rule.describe();
    if otsu {
        s += " (Otsu's rule on the maps alone)";
    }
    let f = filters.describe();
    if !f.is_empty() {
        s += &format!("; {f}");
    }
    s
}

/// Sets to 255 every 4-connected region of one class whose pixels on the image's outermost
/// ring, divided by the square root of its area, exceed `tau` (see the module comment).
/// Background and ignored pixels are never changed. Returns the pixels set to 255.
pub fn ignore_border_regions(labels: &mut [u8], width: usize, height: usize, tau: f32) -> u64 {
    assert_eq!(labels.len(), width * height, "labels are width × height");
    let mut seen = vec![false; labels.len()];
    let (mut stack, mut region) = (Vec::new(), Vec::new());
    let mut ignored = 0;
    for start in 0..labels.len() {
        let class = labels[start];
        if seen[start] || class == 0 || class == IGNORE {
            continue;
        }
        seen[start] = true;
        stack.push(start);
        region.clear();
        let mut on_border = 0usize;
        while let Some(p) = stack.pop() {
            region.push(p);
            let (x, y) = (p % width, p / width);
            on_border += (x == 0 || y == 0 || x + 1 == width || y + 1 == height) as usize;
            let mut visit = |q: usize| {
                if !seen[q] && labels[q] == class {
                    seen[q] = true;
                    stack.push(q);
                }
            };
            if x > 0 {
                visit(p - 1);
            }
            if x + 1 < width {
                visit(p + 1);
            }
            if y > 0 {
                visit(p - width);
            }
            if y + 1 < height {
                visit(p + width);
            }
        }
        if on_border as f32 / (region.len() as f32).sqrt() > tau {
            region.iter().for_each(|&p| labels[p] = IGNORE);
            ignored += region.len() as u64;
        }
    }
    ignored
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

/// The raw map of `id` that the refined map `refined` was made from; it must exist and have
/// the same size and classes.
fn read_raw_of(raw_dir: &Path, id: &str, refined: &CamFile) -> Result<CamFile> {
    let path = super::store::cam_path(raw_dir, id);
    if !path.exists() {
        return Err(Error::file(
            &path,
            "missing: the raw maps must cover every refined map (the folder the refinement read)",
        ));
    }
    let raw = read_cam(raw_dir, id)?;
    if (raw.height, raw.width) != (refined.height, refined.width) || raw.classes != refined.classes
    {
        return Err(Error::file(
            &path,
            format!(
                "is {}×{} with classes {:?}, the refined map {}×{} with {:?}: not the maps it was refined from",
                raw.width, raw.height, raw.classes, refined.width, refined.height, refined.classes
            ),
        ));
    }
    Ok(raw)
}

/// Labels every map file of `cams` into palette PNGs in `out`; `num_labels` = K + 1.
pub fn run_pseudo(
    cams: &Path,
    out: &Path,
    rule: &PseudoRule,
    filters: &LabelFilters,
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
                PseudoRule::Argmax {
                    ignore_margin,
                    confident,
                } => {
                    let mut labels = argmax_labels(&cam, *ignore_margin).ok_or_else(|| {
                        Error::file(
                            super::store::cam_path(cams, id),
                            "the maps have no background channel (only refined maps do); use a background threshold",
                        )
                    })?;
                    if let Some(c) = confident {
                        let raw = read_raw_of(&c.raw, id, &cam)?;
                        ignore_unsure_background(&mut labels, &raw, c.t);
                    }
                    labels
                }
                PseudoRule::Saliency { dir } => {
                    let sal = read_saliency(&dir.join(format!("{id}.png")), cam.height, cam.width)?;
                    saliency_labels(&cam, &sal)
                }
            };
            if let Some(tau) = filters.border_connectivity {
                ignore_border_regions(&mut labels, cam.width, cam.height, tau);
            }
            let all_ignored = apply_min_foreground(&mut labels, filters.min_fg);
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

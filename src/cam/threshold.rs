//! Choosing the background threshold t without masks.
//!
//! A user has no train masks, so t must come from the maps alone. The rule here is Otsu's
//! (1979): pool every pixel's foreground score (the largest of its image's class maps; 0 in
//! an image without classes) over the split, and take the t that maximises the
//! between-class variance of the two groups it makes. It needs no prior about how much of
//! an image is object, and it follows the maps when their background level moves (maps of
//! small networks sit high over the background; the oracle t in docs/quality.md ranges from
//! 0.56 to 0.95 between classifiers and map kinds). `eval-cam` still reports the best t against the masks,
//! as a diagnostic labelled oracle.
use super::pseudo::cam_ids;
use super::store::read_cam;
use crate::error::{Error, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Histogram bins over [0, 1].
const BINS: usize = 200;

/// Otsu's threshold of a histogram over [0, 1] (bin i covers [i/B, (i+1)/B)): the upper edge
/// of the last bin of the lower class. None when the histogram is empty or one-valued.
pub fn otsu(hist: &[u64]) -> Option<f32> {
    let b = hist.len();
    let total: f64 = hist.iter().map(|&h| h as f64).sum();
    if total == 0.0 {
        return None;
    }
    let centre = |i: usize| (i as f64 + 0.5) / b as f64;
    let sum_all: f64 = hist
        .iter()
        .enumerate()
        .map(|(i, &h)| h as f64 * centre(i))
        .sum();
    let (mut w0, mut sum0) = (0.0, 0.0);
    let mut best: Option<(f64, usize)> = None;
    for (i, &h) in hist.iter().enumerate().take(b - 1) {
        w0 += h as f64;
        sum0 += h as f64 * centre(i);
        let w1 = total - w0;
        if w0 == 0.0 || w1 == 0.0 {
            continue;
        }
        let (m0, m1) = (sum0 / w0, (sum_all - sum0) / w1);
        let between = w0 * w1 * (m0 - m1) * (m0 - m1);
        if best.is_none_or(|(v, _)| between > v) {
            best = Some((between, i));
        }
    }
    best.map(|(_, i)| (i + 1) as f32 / b as f32)
}

/// The histogram of foreground scores (max over an image's maps, clamped to [0, 1]) of every
/// map file in `cams`; with `normalised`, each class map is first scaled to a maximum of 1
/// (as AffinityNet's labels and the random walk see the maps).
pub fn foreground_histogram(cams: &Path, normalised: bool) -> Result<Vec<u64>> {
    let ids = cam_ids(cams)?;
    let hists: Vec<Vec<u64>> = ids
        .par_iter()
        .map(|id| {
            let mut cam = read_cam(cams, id)?;
            if normalised {
                cam = cam.max_normalised();
            }
            let mut h = vec![0u64; BINS];
            let hw = cam.height * cam.width;
            for p in 0..hw {
                let v = (0..cam.classes.len())
                    .map(|j| cam.map(j)[p])
                    .fold(0f32, f32::max);
                if !v.is_finite() {
                    return Err(Error::file(
                        super::store::cam_path(cams, id),
                        "a map value is not finite",
                    ));
                }
                h[((v.clamp(0.0, 1.0) * BINS as f32) as usize).min(BINS - 1)] += 1;
            }
            Ok(h)
        })
        .collect::<Result<_>>()?;
    let mut all = vec![0u64; BINS];
    for h in hists {
        all.iter_mut().zip(h).for_each(|(a, v)| *a += v);
    }
    Ok(all)
}

/// The background threshold of a folder of maps, from the maps alone (Otsu).
pub fn auto_threshold(cams: &Path) -> Result<f32> {
    threshold_of(cams, false)
}

/// Otsu's threshold of the maps, each class map scaled to a maximum of 1 first.
pub fn auto_threshold_normalised(cams: &Path) -> Result<f32> {
    threshold_of(cams, true)
}

fn threshold_of(cams: &Path, normalised: bool) -> Result<f32> {
    otsu(&foreground_histogram(cams, normalised)?).ok_or_else(|| {
        Error::file(
            cams,
            "cannot choose a background threshold: every map value is the same",
        )
    })
}

/// Where the confident-background rule of refined maps finds the raw maps they were made
/// from: nowhere (the rule is off), their `refine.json`, or a folder.
#[derive(Clone, Debug, PartialEq)]
pub enum RawMaps {
    Off,
    Recorded,
    Folder(PathBuf),
}

impl RawMaps {
    /// `off`, `auto` (recorded) or a folder, as `pseudo --confident-background` takes them.
    pub fn from_arg(s: &str) -> RawMaps {
        match s {
            "off" => RawMaps::Off,
            "auto" => RawMaps::Recorded,
            dir => RawMaps::Folder(PathBuf::from(dir)),
        }
    }
}

/// The labelling rule of `pseudo` without saliency: `auto` takes the maps' own background
/// channel when they carry one (refined maps) and Otsu's t otherwise; a number in [0, 1] is a
/// constant t. `raw` applies to refined maps only: unless off, background is labelled only
/// where those raw maps are below their own Otsu threshold (see `pseudo`'s module comment).
pub fn choose_rule(
    cams: &Path,
    bg: &str,
    ignore_margin: f32,
    raw: &RawMaps,
) -> Result<super::PseudoRule> {
    if !(0.0..=1.0).contains(&ignore_margin) {
        return Err(Error::Msg(format!(
            "--ignore-margin must be in [0, 1], got {ignore_margin}"
        )));
    }
    if bg == "auto" {
        let first = cam_ids(cams)?
            .into_iter()
            .next()
            .expect("cam_ids is non-empty");
        if read_cam(cams, &first)?.background.is_some() {
            return Ok(super::PseudoRule::Argmax {
                ignore_margin,
                confident: confident_background(cams, raw)?,
            });
        }
    }
    if *raw != RawMaps::Off {
        return Err(Error::file(
            cams,
            "--confident-background applies to refined maps (with a background channel) labelled by their argmax; these are labelled at a threshold",
        ));
    }
    if bg == "auto" {
        return Ok(super::PseudoRule::Threshold {
            bg: auto_threshold(cams)?,
            ignore_margin,
        });
    }
    match bg.parse::<f32>() {
        Ok(t) if (0.0..=1.0).contains(&t) => Ok(super::PseudoRule::Threshold {
            bg: t,
            ignore_margin,
        }),
        _ => Err(Error::Msg(format!(
            "--bg-threshold must be a number in [0, 1] or `auto`, got '{bg}'"
        ))),
    }
}

/// The confident-background rule of the refined maps in `refined`. The threshold is Otsu's
/// on the raw maps scaled as the refinement sees them, the same t that set its α.
pub fn confident_background(
    refined: &Path,
    raw: &RawMaps,
) -> Result<Option<super::pseudo::ConfidentBackground>> {
    let raw = match raw {
        RawMaps::Off => return Ok(None),
        RawMaps::Folder(dir) => dir.clone(),
        RawMaps::Recorded => {
            let rec = refined.join("refine.json");
            let text = std::fs::read_to_string(&rec).map_err(|e| {
                Error::file(
                    &rec,
                    format!("cannot read it ({e}), so the raw maps are unknown: pass --confident-background DIR or off"),
                )
            })?;
            let v: serde_json::Value = serde_json::from_str(&text)
                .map_err(|e| Error::file(&rec, format!("is not valid JSON ({e})")))?;
            let raw = v
                .get("cams")
                .and_then(|c| c.as_str())
                .ok_or_else(|| Error::file(&rec, "names no raw maps (\"cams\")"))?;
            let raw = PathBuf::from(raw);
            if !raw.is_dir() {
                return Err(Error::file(
                    &rec,
                    format!(
                        "names the raw maps {}, which are not there (from here): pass --confident-background DIR or off",
                        raw.display()
                    ),
                ));
            }
            raw
        }
    };
    let t = auto_threshold_normalised(&raw)?;
    Ok(Some(super::pseudo::ConfidentBackground { raw, t }))
}

/// The background power α at which (1 − m)^α = m at m = `at`: the background then beats a
/// class map exactly where the map falls below `at` (PSA's α = 4 / 16 / 32 put that point at
/// m ≈ 0.28 / 0.14 / 0.08). `at` is clamped to [0.02, 0.98].
pub fn alpha_at(at: f64) -> f64 {
    let m = at.clamp(0.02, 0.98);
    m.ln() / (1.0 - m).ln()
}

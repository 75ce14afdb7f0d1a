//! `coatt-train eval-cam`: mIoU of the threshold-mode labels for every background threshold t
//! (0.00..=0.60 by 0.01 by default), in one pass over the maps.
//!
//! A pixel's label under threshold t is its best class (first on ties) when that class's score
//! exceeds t, else background, exactly as [`super::pseudo::threshold_labels`] with no margin.
//! So each pixel only needs (GT, best class, how many thresholds its score exceeds): a
//! histogram of those gives the confusion matrix of every t at once.
use super::store::{cam_path, read_cam};
use crate::data::VocDataset;
use crate::error::{Error, Result};
use crate::eval::{Confusion, IGNORE};
use rayon::prelude::*;
use std::path::Path;

/// The default sweep: 0.00, 0.01, …, 0.60.
pub fn default_thresholds() -> Vec<f32> {
    thresholds_up_to(0.60)
}

/// 0.00, 0.01, …, `max` (at most 0.99): maps of small networks at low resolution can be
/// high over much of the background, and their best t then lies above 0.60.
pub fn thresholds_up_to(max: f32) -> Vec<f32> {
    let n = (max.clamp(0.0, 0.99) * 100.0).round() as usize;
    (0..=n).map(|k| k as f32 / 100.0).collect()
}

#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct CamSweep {
    pub thresholds: Vec<f32>,
    pub miou: Vec<f64>,
    /// Index of the best threshold (the first on ties).
    pub best: usize,
    #[serde(skip)]
    pub confusions: Vec<Confusion>,
    pub images: usize,
}

impl CamSweep {
    pub fn best_threshold(&self) -> f32 {
        self.thresholds[self.best]
    }
    pub fn best_miou(&self) -> f64 {
        self.miou[self.best]
    }
    /// (t, mIoU in %) for every threshold: the curve the charts draw.
    pub fn curve(&self) -> Vec<(f64, f64)> {
        self.thresholds
            .iter()
            .zip(&self.miou)
            .map(|(&t, &m)| (t as f64, 100.0 * m))
            .collect()
    }
    /// The sweep [`Self::write_report`] wrote into `dir` (its confusion matrices are not kept).
    pub fn read(dir: &Path) -> Result<CamSweep> {
        let path = dir.join("eval-cam.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::file(&path, e))
    }
    /// Writes eval-cam.md, eval-cam.json and the mIoU-vs-t chart eval-cam.png (and .svg)
    /// into `out`.
    pub fn write_report(&self, out: &Path) -> Result<()> {
        use crate::io::plot::{write_line_chart, Chart, Series};
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        crate::io::write_atomic(&out.join("eval-cam.md"), self.markdown().as_bytes())?;
        let json = serde_json::to_string_pretty(self).map_err(|e| Error::Msg(e.to_string()))?;
        crate::io::write_atomic(&out.join("eval-cam.json"), json.as_bytes())?;
        let pts = self.curve();
        write_line_chart(
            &out.join("eval-cam.png"),
            &Chart {
                title: "Map quality against the background threshold",
                x_label: "background threshold t (a pixel is background where every class map < t)",
                y_label: "mIoU on the split (%)",
                series: &[Series {
                    name: "",
                    points: &pts,
                    color: [200, 30, 30],
                }],
            },
        )
    }
    pub fn markdown(&self) -> String {
        let mut s = String::from("| t | mIoU (%) |\n|---:|---:|\n");
        for (i, (t, m)) in self.thresholds.iter().zip(&self.miou).enumerate() {
            let mark = if i == self.best { " **best**" } else { "" };
            s += &format!("| {t:.2} | {:.2}{mark} |\n", 100.0 * m);
        }
        s
    }
}

/// Sweeps thresholds (sorted ascending) over the maps of every GT-masked image of a split.
/// An image with classes but no map file is an error naming the file.
pub fn sweep_thresholds(
    cams: &Path,
    data: &Path,
    split: &str,
    thresholds: &[f32],
) -> Result<CamSweep> {
    if thresholds.is_empty() || thresholds.windows(2).any(|w| w[0] >= w[1]) {
        return Err(Error::Msg(
            "thresholds must be non-empty and ascending".into(),
        ));
    }
    let ds = VocDataset::open(data, split)?;
    let n = ds.class_names.len();
    let nt = thresholds.len();
    // hist[(gt * n + best) * (nt + 1) + exceeded]
    let hists: Vec<Vec<u64>> = ds
        .items
        .par_iter()
        .filter_map(|it| it.mask.as_ref().map(|m| (it, m)))
        .map(|(it, mask)| {
            let gt = crate::io::read_label_png(mask)?;
            let mut h = vec![0u64; n * n * (nt + 1)];
            if it.labels.is_empty() && !cam_path(cams, &it.id).exists() {
                // no class: every pixel is background at every threshold
                for &g in gt.data.iter().filter(|&&g| g != IGNORE) {
                    h[(g as usize * n) * (nt + 1)] += 1;
                }
                return Ok(h);
            }
            let cam = read_cam(cams, &it.id)?;
            if (cam.height, cam.width) != (gt.height, gt.width) {
                return Err(Error::file(
                    cam_path(cams, &it.id),
                    format!(
                        "maps are {}×{}, the mask {}×{}",
                        cam.width, cam.height, gt.width, gt.height
                    ),
                ));
            }
            for (p, &g) in gt.data.iter().enumerate() {
                if g == IGNORE {
                    continue;
                }
                if g as usize >= n {
                    return Err(Error::file(mask, format!("label {g} outside 0..{n}")));
                }
                let (mut best, mut v) = (0usize, f32::NEG_INFINITY);
                for (j, &c) in cam.classes.iter().enumerate() {
                    let x = cam.map(j)[p];
                    if x > v {
                        v = x;
                        best = c + 1;
                    }
                }
                let exceeded = if best == 0 {
                    0
                } else {
                    thresholds.partition_point(|&t| v > t)
                };
                h[(g as usize * n + best) * (nt + 1) + exceeded] += 1;
            }
            Ok(h)
        })
        .collect::<Result<_>>()?;
    if hists.is_empty() {
        return Err(Error::file(
            data,
            format!("split '{split}' has no ground-truth masks to evaluate against"),
        ));
    }
    let mut confusions = vec![Confusion::new(n); nt];
    for h in &hists {
        for g in 0..n {
            for b in 0..n {
                for e in 0..=nt {
                    let count = h[(g * n + b) * (nt + 1) + e];
                    if count == 0 {
                        continue;
                    }
                    // predicted `b` under thresholds 0..e, background from e on
                    for (k, conf) in confusions.iter_mut().enumerate() {
                        let pred = if k < e { b } else { 0 };
                        conf.counts[g * n + pred] += count;
                    }
                }
            }
        }
    }
    let miou: Vec<f64> = confusions.iter().map(Confusion::miou).collect();
    let best = (0..nt).fold(0, |b, i| if miou[i] > miou[b] { i } else { b });
    Ok(CamSweep {
        thresholds: thresholds.to_vec(),
        miou,
        best,
        confusions,
        images: hists.len(),
    })
}

/// The mIoU of maps that carry their own background channel, labelled by the argmax over
/// background and classes (no threshold) against a split's masks; None when the maps have no
/// background channel.
pub fn argmax_confusion(cams: &Path, data: &Path, split: &str) -> Result<Option<Confusion>> {
    let ids = super::pseudo::cam_ids(cams)?;
    if read_cam(cams, &ids[0])?.background.is_none() {
        return Ok(None);
    }
    let ds = VocDataset::open(data, split)?;
    let n = ds.class_names.len();
    let parts: Vec<Confusion> = ds
        .items
        .par_iter()
        .filter_map(|it| it.mask.as_ref().map(|m| (it, m)))
        .map(|(it, mask)| {
            let gt = crate::io::read_label_png(mask)?;
            let mut conf = Confusion::new(n);
            let pred = if it.labels.is_empty() && !cam_path(cams, &it.id).exists() {
                vec![0u8; gt.data.len()]
            } else {
                let cam = read_cam(cams, &it.id)?;
                if (cam.height, cam.width) != (gt.height, gt.width) {
                    return Err(Error::file(
                        cam_path(cams, &it.id),
                        format!(
                            "maps are {}×{}, the mask {}×{}",
                            cam.width, cam.height, gt.width, gt.height
                        ),
                    ));
                }
                super::pseudo::argmax_labels(&cam, 0.0)
                    .ok_or_else(|| Error::file(cam_path(cams, &it.id), "no background channel"))?
            };
            conf.add(&gt.data, &pred)?;
            Ok(conf)
        })
        .collect::<Result<_>>()?;
    let mut all = Confusion::new(n);
    for c in parts {
        all.counts
            .iter_mut()
            .zip(&c.counts)
            .for_each(|(a, b)| *a += b);
    }
    Ok(Some(all))
}

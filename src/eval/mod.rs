//! Segmentation scores: a (K+1)×(K+1) confusion matrix over labelled pixels (GT 255 ignored),
//! per-class IoU = tp/(tp+fp+fn), mIoU over classes that occur in GT or prediction, and the
//! false-positive / false-negative ratios fp/tp and fn/tp that the WSSS papers report.
use crate::error::{Error, Result};

pub const IGNORE: u8 = 255;

#[derive(Clone, Debug, PartialEq)]
pub struct Confusion {
    /// Number of classes including background.
    pub n: usize,
    /// counts[gt * n + pred]
    pub counts: Vec<u64>,
    /// Labelled GT pixels whose prediction is 255 (pseudo labels leave pixels unlabelled);
    /// they are outside `counts`. Always 0 for segmentation predictions.
    pub unlabelled: u64,
}

#[derive(Clone, Debug, serde::Serialize)]
pub struct ClassScore {
    pub class: usize,
    pub iou: Option<f64>,
    /// fp/tp and fn/tp (None when tp = 0).
    pub fp_ratio: Option<f64>,
    pub fn_ratio: Option<f64>,
    pub gt_pixels: u64,
    pub pred_pixels: u64,
}

impl Confusion {
    pub fn new(n: usize) -> Self {
        Confusion {
            n,
            counts: vec![0; n * n],
            unlabelled: 0,
        }
    }

    /// Like [`Confusion::add`], but a prediction of 255 is allowed: such pixels are counted
    /// in `unlabelled` and left out of the scores (for pseudo labels).
    pub fn add_partial(&mut self, gt: &[u8], pred: &[u8]) -> Result<()> {
        if gt.len() != pred.len() {
            return Err(Error::Msg(format!(
                "prediction has {} pixels, ground truth {}",
                pred.len(),
                gt.len()
            )));
        }
        let (g2, p2): (Vec<u8>, Vec<u8>) = gt
            .iter()
            .zip(pred)
            .filter(|(&g, &p)| {
                let skip = g != IGNORE && p == IGNORE;
                self.unlabelled += skip as u64;
                !skip
            })
            .map(|(&g, &p)| (g, p))
            .unzip();
        self.add(&g2, &p2)
    }

    /// Share of labelled GT pixels that have a prediction.
    pub fn coverage(&self) -> f64 {
        let labelled: u64 = self.counts.iter().sum();
        labelled as f64 / (labelled + self.unlabelled).max(1) as f64
    }

    /// Adds one image. Predictions must be classes 0..n (255 in a prediction is an error:
    /// every labelled pixel must get a class); GT pixels of 255 are skipped.
    pub fn add(&mut self, gt: &[u8], pred: &[u8]) -> Result<()> {
        if gt.len() != pred.len() {
            return Err(Error::Msg(format!(
                "prediction has {} pixels, ground truth {}",
                pred.len(),
                gt.len()
            )));
        }
        for (&g, &p) in gt.iter().zip(pred) {
            if g == IGNORE {
                continue;
            }
            if g as usize >= self.n || p as usize >= self.n {
                return Err(Error::Msg(format!(
                    "label {} outside 0..{} (ground truth {g}, prediction {p})",
                    g.max(p),
                    self.n
                )));
            }
            self.counts[g as usize * self.n + p as usize] += 1;
        }
        Ok(())
    }

    pub fn merge(&mut self, other: &Confusion) {
        self.counts
            .iter_mut()
            .zip(&other.counts)
            .for_each(|(a, b)| *a += b);
        self.unlabelled += other.unlabelled;
    }

    pub fn scores(&self) -> Vec<ClassScore> {
        (0..self.n)
            .map(|c| {
                let tp = self.counts[c * self.n + c];
                let gt: u64 = self.counts[c * self.n..(c + 1) * self.n].iter().sum();
                let pred: u64 = (0..self.n).map(|g| self.counts[g * self.n + c]).sum();
                let (fp, fne) = (pred - tp, gt - tp);
                let union = tp + fp + fne;
                let ratio = |x: u64| (tp > 0).then(|| x as f64 / tp as f64);
                ClassScore {
                    class: c,
                    iou: (union > 0).then(|| tp as f64 / union as f64),
                    fp_ratio: ratio(fp),
                    fn_ratio: ratio(fne),
                    gt_pixels: gt,
                    pred_pixels: pred,
                }
            })
            .collect()
    }

    /// Mean IoU over classes present in GT or prediction (absent classes are not counted).
    pub fn miou(&self) -> f64 {
        let v: Vec<f64> = self.scores().iter().filter_map(|s| s.iou).collect();
        if v.is_empty() {
            0.0
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        }
    }

    /// Writes `eval.md` (the table of [`Self::markdown`]) and the per-class IoU chart
    /// `iou.png` (and `.svg`) into `dir`; `what` names the labels scored, for the chart's title.
    pub fn write_report(
        &self,
        dir: &std::path::Path,
        names: &[String],
        what: &str,
    ) -> crate::Result<()> {
        crate::io::write_atomic(&dir.join("eval.md"), self.markdown(names).as_bytes())?;
        let bars: Vec<(String, f64)> = self
            .scores()
            .iter()
            .filter_map(|sc| {
                let name = names
                    .get(sc.class)
                    .cloned()
                    .unwrap_or_else(|| sc.class.to_string());
                Some((name, 100.0 * sc.iou?))
            })
            .collect();
        crate::io::plot::write_bar_chart(
            &dir.join("iou.png"),
            &format!("IoU per class of {what} (mIoU {:.1}%)", 100.0 * self.miou()),
            "class",
            "IoU (%)",
            &bars,
        )
    }

    /// Markdown table: class, IoU, FP/TP, FN/TP; then the mean.
    pub fn markdown(&self, names: &[String]) -> String {
        let f = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{:.1}", 100.0 * x));
        let r = |v: Option<f64>| v.map_or("-".to_string(), |x| format!("{x:.2}"));
        let mut s = String::from("| class | IoU (%) | FP/TP | FN/TP |\n|---|---:|---:|---:|\n");
        for sc in self.scores() {
            let name = names
                .get(sc.class)
                .cloned()
                .unwrap_or_else(|| sc.class.to_string());
            s += &format!(
                "| {name} | {} | {} | {} |\n",
                f(sc.iou),
                r(sc.fp_ratio),
                r(sc.fn_ratio)
            );
        }
        s += &format!("| **mIoU** | **{:.1}** | | |\n", 100.0 * self.miou());
        s
    }
}

/// Scores a folder of predicted label PNGs (`<id>.png`) against a split's GT masks. Every GT
/// image must have a prediction of the same size (a missing one is an error naming it).
/// `partial`: predictions may hold 255 (pseudo labels), see [`Confusion::add_partial`].
pub fn evaluate_folder(
    pred_dir: &std::path::Path,
    data: &std::path::Path,
    split: &str,
    partial: bool,
) -> Result<(Confusion, Vec<String>)> {
    use rayon::prelude::*;
    let ds = crate::data::VocDataset::open(data, split)?;
    let n = ds.class_names.len();
    let parts: Vec<Confusion> = ds
        .items
        .par_iter()
        .filter_map(|it| it.mask.as_ref().map(|m| (it, m)))
        .map(|(it, m)| {
            let gt = crate::io::read_label_png(m)?;
            let pp = pred_dir.join(format!("{}.png", it.id));
            if !pp.exists() {
                return Err(Error::file(
                    &pp,
                    format!("no prediction for image '{}'", it.id),
                ));
            }
            let pr = crate::io::read_label_png(&pp)?;
            if (pr.width, pr.height) != (gt.width, gt.height) {
                return Err(Error::file(
                    &pp,
                    format!(
                        "prediction is {}×{}, ground truth {}×{}",
                        pr.width, pr.height, gt.width, gt.height
                    ),
                ));
            }
            // a value outside the classes is the fault of the file that holds it
            if let Some(&g) = gt.data.iter().find(|&&g| g != IGNORE && g as usize >= n) {
                return Err(Error::file(
                    m,
                    format!("ground-truth label {g} outside 0..{n} (and 255)"),
                ));
            }
            let mut c = Confusion::new(n);
            if partial {
                c.add_partial(&gt.data, &pr.data)
            } else {
                c.add(&gt.data, &pr.data)
            }
            .map_err(|e| Error::file(&pp, e))?;
            Ok(c)
        })
        .collect::<Result<_>>()?;
    if parts.is_empty() {
        return Err(Error::file(
            data,
            format!("split '{split}' has no ground-truth masks to evaluate against"),
        ));
    }
    let mut total = Confusion::new(n);
    for p in &parts {
        total.merge(p);
    }
    Ok((total, ds.class_names))
}

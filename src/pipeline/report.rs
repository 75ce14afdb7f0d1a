//! The pipeline's summary: the table printed at the end and OUT/report.md.
use super::{ClsResult, LabelQuality, LabelsFrom, MapQuality, MapSet, MapsResult, PipelineOptions};
use crate::error::Result;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct PipelineReport {
    /// Stages run by this invocation and stages skipped as already complete.
    pub ran: Vec<String>,
    pub skipped: Vec<String>,
    pub cls: ClsResult,
    /// The basic classifier (`--baseline`).
    pub basic: Option<ClsResult>,
    /// The co-attention maps stage (attention statistics).
    pub maps: MapsResult,
    /// Every map set, raw and refined.
    pub map_sets: Vec<MapSet>,
    /// How the maps were refined, and how the pseudo labels were made (from which maps,
    /// argmax over a background channel or Otsu's t).
    pub refinement: String,
    pub labels_from: LabelsFrom,
    pub pseudo_rule: String,
    pub pseudo: LabelQuality,
    /// Val mIoU of the network trained on pseudo labels, without and with the CRF; the same
    /// network on the masks (the bound). None where not measured (no masks).
    pub seg_miou: Option<f64>,
    pub seg_crf_miou: Option<f64>,
    pub gt_miou: Option<f64>,
    pub gt_crf_miou: Option<f64>,
    pub secs: Vec<(String, f64)>,
    pub report: PathBuf,
}

fn pct(v: Option<f64>) -> String {
    v.map_or("not measured".into(), |v| format!("{:.1}", 100.0 * v))
}

impl PipelineReport {
    /// The best map mIoU the pipeline has on train, at the labelling a user gets (Otsu's t
    /// for raw maps, argmax for refined maps).
    pub fn best_map_miou(&self) -> Option<f64> {
        self.map_sets
            .iter()
            .flat_map(|m| [m.raw.miou, m.refined.as_ref().and_then(|q| q.argmax_miou)])
            .flatten()
            .reduce(f64::max)
    }

    /// A map set by key.
    pub fn set(&self, key: LabelsFrom) -> Option<&MapSet> {
        self.map_sets.iter().find(|m| m.key == key)
    }

    /// Segmentation over the bound: without CRF over without CRF, and with over with.
    pub fn ratios(&self) -> (Option<f64>, Option<f64>) {
        let r = |a: Option<f64>, b: Option<f64>| Some(a? / b?.max(1e-9));
        (
            r(self.seg_miou, self.gt_miou),
            r(self.seg_crf_miou, self.gt_crf_miou),
        )
    }

    pub fn table(&self) -> String {
        let mut s = String::from("| stage | metric | value |\n|---|---|---:|\n");
        s += &format!(
            "| classifier (full) | val mAP (%) | {} |\n",
            pct(self.cls.val_map)
        );
        if let Some(b) = &self.basic {
            s += &format!(
                "| baseline classifier (basic) | val mAP (%) | {} |\n",
                pct(b.val_map)
            );
        }
        let maps = |s: &mut String, what: &str, q: &MapQuality| {
            *s += &format!(
                "| {what} | mIoU on train (%), t = {} (Otsu, from the maps) | {} |\n",
                q.threshold.map_or("-".into(), |t| format!("{t:.2}")),
                pct(q.miou)
            );
            *s += &format!(
                "| {what} | diagnostic: mIoU at the oracle t = {} (chosen with the masks) | {} |\n",
                q.oracle_threshold.map_or("-".into(), |t| format!("{t:.2}")),
                pct(q.oracle_miou)
            );
        };
        for m in &self.map_sets {
            maps(&mut s, m.key.describe(), &m.raw);
            if let Some(q) = &m.refined {
                s += &format!(
                    "| {}, refined | mIoU on train (%), argmax with their background ({}) | {} |\n",
                    m.key.describe(),
                    self.refinement,
                    pct(q.argmax_miou)
                );
            }
        }
        if let Some(a) = &self.maps.attention {
            let f = |k: &str| a.get(k).and_then(|v| v.as_f64()).unwrap_or(f64::NAN);
            s += &format!(
                "| co-attention | normalised entropy / top-1 mass (uniform {:.3}) | {:.3} / {:.3} |\n",
                f("uniform_top1"),
                f("entropy"),
                f("top1_mass")
            );
        }
        s += &format!(
            "| pseudo labels (from the {}; {}) | mIoU on train (%), {} of pixels labelled | {} |\n",
            self.labels_from.describe(),
            self.pseudo_rule,
            self.pseudo
                .coverage
                .map_or("-".into(), |c| format!("{:.0}%", 100.0 * c)),
            pct(self.pseudo.miou)
        );
        s += &format!(
            "| segmentation | val mIoU (%), no CRF | {} |\n",
            pct(self.seg_miou)
        );
        s += &format!(
            "| segmentation + CRF | val mIoU (%) | {} |\n",
            pct(self.seg_crf_miou)
        );
        s += &format!(
            "| fully supervised bound | val mIoU (%), no CRF | {} |\n",
            pct(self.gt_miou)
        );
        s += &format!(
            "| fully supervised bound + CRF | val mIoU (%) | {} |\n",
            pct(self.gt_crf_miou)
        );
        let (r, rc) = self.ratios();
        s += &format!(
            "| ratio to the bound | (%), no CRF / with CRF | {} / {} |\n",
            pct(r),
            pct(rc)
        );
        s
    }
}

pub fn write_report(r: &PipelineReport, o: &PipelineOptions, data: &Path) -> Result<()> {
    let mut s = String::from("# coatt pipeline report\n\n");
    let p = &o.preset;
    let seg = &p.seg;
    let backbone = match seg.backbone {
        crate::seg::SegBackbone::Resnet101 => format!(
            "ResNet (bottlenecks {:?}, stem width {})",
            seg.resnet.blocks, seg.resnet.base
        ),
        crate::seg::SegBackbone::Vgg16 => format!("VGG16 (widths {:?})", seg.vgg_widths),
    };
    s += &format!(
        "Data: `{}`. Device: {:?}. Classifier: preset `{}`, variant {:?}, {} epochs, affinity {:?} (τ {}{}, W_P {:?}), co-attention scorer {:?}{}{}. Maps: co-attention, {} related images per class, {}, input scales {:?}. Refinement: {}; pseudo labels from the {}. Segmentation: {backbone} LargeFOV, preset `{}`, crop {}, {} iterations; CRF {:?}; test scales {:?}{}.\n\n",
        data.display(),
        o.device,
        p.cls.preset,
        p.cls.variant,
        p.cls.epochs,
        p.cls.affinity,
        p.cls.temperature,
        if p.cls.learn_temperature { ", learned" } else { "" },
        p.cls.wp_init,
        p.cls.scorer,
        if p.cls.negative_pairs > 0.0 {
            format!(", {:.0}% of the pairs negative (sharing no class)", 100.0 * p.cls.negative_pairs)
        } else {
            String::new()
        },
        if p.baseline { "; baseline: the same classifier, variant basic, single-image CAMs" } else { "" },
        p.related,
        p.coatt_attention.describe(),
        p.cam_scales,
        r.refinement,
        p.labels_from.describe(),
        seg.preset,
        seg.crop,
        seg.iterations,
        p.crf,
        p.scales,
        if p.flip { " + flip" } else { "" }
    );
    s += &r.table();
    if let Some(b) = r.best_map_miou() {
        s += &format!(
            "\nBest map mIoU on train without masks: {:.1}%.\n",
            100.0 * b
        );
    }
    s += "\n## Time per stage\n\n| stage | seconds |\n|---|---:|\n";
    let mut total = 0.0;
    for (n, t) in &r.secs {
        s += &format!("| {n} | {t:.0} |\n");
        total += t;
    }
    s += &format!("| total | {total:.0} |\n");
    maps_vs_t_chart(&o.out)?;
    s += "\n## Plots\n\n\
          - classifier loss and val mAP: ![](cls/loss.png) ![](cls/val.png)\n\
          - the map sets' mIoU against the background threshold: ![](maps-vs-t.png)\n\
          - IoU per class of the pseudo labels: ![](pseudo/iou.png)\n\
          - segmentation loss (pseudo labels): ![](seg/loss.png)\n\
          - IoU per class of the segmentation on val: ![](pred/iou.png)\n\n\
          Details: `eval-cams*/eval-cam.md`, `pseudo/stats.md`, `pseudo/eval.md`, \
          `pred*/eval.md`, `affinity/labels/` (AffinityNet's training labels); heat maps in `cams/overlay/` and `refined/overlay/`.\n";
    crate::io::write_atomic(&o.out.join("report.md"), s.as_bytes())
}

/// `OUT/maps-vs-t.png` (and `.svg`): mIoU on train against the background threshold, one curve
/// per map set the run scored (a diagnostic: the masks pick nothing here).
fn maps_vs_t_chart(out: &Path) -> Result<()> {
    use crate::io::plot::{write_line_chart, Chart, Series};
    let sets = [
        ("eval-cams", "co-attentive maps (method)", [200, 40, 40]),
        (
            "eval-cams-single",
            "single-round maps (method)",
            [30, 110, 200],
        ),
        (
            "eval-cams-basic",
            "basic classifier's CAMs (baseline)",
            [90, 90, 90],
        ),
    ];
    let mut curves = Vec::new();
    for (dir, name, color) in sets {
        let dir = out.join(dir);
        if !dir.join("eval-cam.json").exists() {
            continue;
        }
        let pts = crate::cam::CamSweep::read(&dir)?.curve();
        if !pts.is_empty() {
            curves.push((name, pts, color));
        }
    }
    if curves.is_empty() {
        return Ok(());
    }
    let series: Vec<Series> = curves
        .iter()
        .map(|(name, pts, color)| Series {
            name,
            points: pts,
            color: *color,
        })
        .collect();
    write_line_chart(
        &out.join("maps-vs-t.png"),
        &Chart {
            title: "Localization maps against the background threshold",
            x_label: "background threshold t",
            y_label: "mIoU on train (%)",
            series: &series,
        },
    )
}

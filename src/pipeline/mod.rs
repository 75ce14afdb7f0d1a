//! `coatt-train pipeline`: the whole method in one command.
//!
//! synth (when no data is given) → train-cls (the method's classifier) and train-cls-basic
//! (the baseline, `--baseline`) → cams (co-attention maps) and cams-basic (the baseline's
//! CAMs) → train-affinity and refine (AffinityNet's random walk, `--refine affinity`) → pseudo
//! → train-seg on the pseudo labels and train-seg-gt on the masks (the fully supervised bound)
//! → infer (+CRF) → eval, and a report.
//!
//! No stage that makes pseudo labels reads the train masks: the background threshold of raw
//! maps comes from the maps alone (Otsu's rule, `cam::threshold`), refined maps carry their
//! own background channel. The train masks serve only the diagnostic rows (map and
//! pseudo-label mIoU, the oracle threshold) and the bound; without them those rows say "not
//! measured" and everything else still runs.
//!
//! Stage records and resume: `stages.rs`.
mod report;
mod stages;

pub use report::PipelineReport;

use crate::affinity::{run_refine, train_affinity, AffConfig, RefineOptions, TrainAffOptions};
use crate::cam::infer::Attention;
use crate::cam::{self, CamMode, CamOptions, PseudoRule};
use crate::cls::{train_cls, ClsConfig, TrainClsOptions, Variant};
use crate::crf::CrfPreset;
use crate::data::synth::{generate, SetKind, SynthConfig};
use crate::data::VocDataset;
use crate::error::{Error, Result};
use crate::eval::evaluate_folder;
use crate::seg::{
    load_segnet, run_infer_many, train_seg, InferOptions, LabelSource, SegConfig, TrainSegOptions,
};
use crate::Device;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stages::Stages;
use std::path::{Path, PathBuf};

/// The refinement of the maps (all start from [background (1 − max)^α, the class maps scaled
/// to a maximum of 1], α from the maps' Otsu threshold, so no mask is read).
#[derive(Clone, Debug)]
pub enum Refinement {
    /// The raw maps, labelled at Otsu's background threshold.
    None,
    /// The dense CRF over the maps and the background channel.
    Crf(CrfPreset),
    /// AffinityNet trained on the method's maps, the random walk (β, log2 of the steps) of
    /// each map set over its affinities, then optionally the CRF.
    Affinity {
        config: Box<AffConfig>,
        beta: f64,
        logt: u32,
        crf: CrfPreset,
    },
}

/// A set of localization maps the pipeline makes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum LabelsFrom {
    /// The co-attention classifier's co-attentive maps (the paper's favoured inference).
    Coattention,
    /// The co-attention classifier's single-round maps (the paper's Table 2, second row: its "variant").
    Single,
    /// The basic classifier's CAMs (the baseline).
    Baseline,
}

impl LabelsFrom {
    pub fn describe(self) -> &'static str {
        match self {
            LabelsFrom::Coattention => "co-attention maps (method, co-attentive inference)",
            LabelsFrom::Single => "single-round maps of the co-attention classifier (method)",
            LabelsFrom::Baseline => "CAMs of the basic classifier (baseline)",
        }
    }
}

/// One map set's quality, raw and refined (diagnostics against the train masks).
#[derive(Clone, Debug)]
pub struct MapSet {
    pub key: LabelsFrom,
    pub raw: MapQuality,
    pub refined: Option<MapQuality>,
}

/// The sizes and settings of one pipeline preset.
#[derive(Clone, Debug)]
pub struct PipelinePreset {
    pub name: String,
    /// Which synthetic set `synth` draws when no data is given.
    pub kind: SetKind,
    pub synth_train: usize,
    pub synth_val: usize,
    pub synth_size: usize,
    pub classes: usize,
    /// The method's classifier (variant full); the baseline is the same config, variant basic.
    pub cls: ClsConfig,
    /// Also train the basic classifier and report its CAMs beside the method's maps.
    pub baseline: bool,
    pub related: usize,
    /// How the co-attentive maps attend (`cam::infer::Attention`).
    pub coatt_attention: Attention,
    /// Input scales of the localization maps, relative to the classifier's input.
    pub cam_scales: Vec<f64>,
    /// How the maps are refined before they become pseudo labels.
    pub refine: Refinement,
    /// Which maps become the pseudo labels: the method's (co-attention) or, with the
    /// baseline on, the basic classifier's CAMs.
    pub labels_from: LabelsFrom,
    /// Refined maps label background only where the raw maps are below their Otsu threshold
    /// (the rest 255; `cam::pseudo`'s module comment and docs/quality.md say when it helps).
    pub confident_background: bool,
    /// Class regions with a high boundary connectivity become 255 (`cam::pseudo`).
    pub border_prior: bool,
    pub seg: SegConfig,
    pub crf: CrfPreset,
    pub scales: Vec<f64>,
    pub flip: bool,
}

impl PipelinePreset {
    /// `tiny`: the CPU demo (within 20 minutes on 2 cores); `micro`: seconds, for tests.
    pub fn named(name: &str) -> Result<PipelinePreset> {
        match name {
            "tiny" => Ok(PipelinePreset {
                name: name.into(),
                kind: SetKind::Scenes,
                // 1000 train images: both classifiers (method and baseline) train the whole
                // schedule of train-cls within the 20-minute budget
                synth_train: 1000,
                synth_val: 300,
                synth_size: 128,
                classes: 6,
                // exactly a classifier of train-cls (one classifier, not a demo variant):
                // `tiny` at twice its widths. Over `tiny` on scenes, three classifier seeds:
                // CAMs +3.1 (basic) and +5.2 (the co-attention classifier's own), segmentation
                // 51.9 ± 0.5 against 43.8 ± 4.6; the whole pipeline in 18 min 16 s (the baseline
                // takes the method's first three epochs instead of training them again);
                // docs/quality.md, "Twice the width"
                cls: ClsConfig::preset("tiny-wide")?,
                baseline: true,
                related: 3,
                // by feature similarity, not the trained W_P: the `tiny` classifier's W_P stays
                // near its random start and its co-attentive maps come out flat (scenes, three
                // seeds: 30.0 ± 2.0 mIoU against 14.4 ± 0.3; docs/quality.md)
                coatt_attention: Attention::Similarity,
                // maps at 2× the training input (a 16×16 grid instead of 8×8)
                cam_scales: vec![2.0],
                refine: Refinement::Crf(CrfPreset::Psa),
                // the single-round maps, not the paper's co-attentive maps: with attention by
                // similarity the co-attentive maps give better labels on scenes (segmentation
                // +0.8, +1.5, +3.0 over three seeds) but a far worse network on target (−7.7,
                // the pipeline's classifier); docs/quality.md, "Pseudo labels from the
                // co-attentive maps"
                labels_from: LabelsFrom::Single,
                // off: without the CRF the segmentation loses with it (scenes, three
                // classifier seeds: −2.2 points added to the boundary prior, −1.2 alone;
                // target: −15.7 alone; docs/quality.md)
                confident_background: false,
                // the boundary prior, a departure from PSA's labels: +4.4 points of
                // segmentation (no CRF) over three classifier seeds on scenes, −2.2 on target
                // (one seed); docs/quality.md, "Pseudo labels that say less"
                border_prior: true,
                seg: SegConfig::preset("tiny")?,
                // the official MCIS CRF: on 128-px images the PSA preset's 10 iterations of a
                // strong 80-px bilateral kernel over-smooth (bound: 72.3% → 64.4%; MCIS: 74.3%)
                crf: CrfPreset::Mcis,
                scales: vec![0.75, 1.0, 1.25],
                flip: true,
            }),
            "micro" => Ok(PipelinePreset {
                name: name.into(),
                kind: SetKind::Scenes,
                synth_train: 10,
                synth_val: 4,
                synth_size: 40,
                classes: 3,
                cls: ClsConfig {
                    epochs: 1,
                    max_iters_per_epoch: 2,
                    batch: 3,
                    ..ClsConfig::preset("micro")?
                },
                baseline: true,
                related: 1,
                coatt_attention: Attention::Similarity,
                cam_scales: vec![1.0],
                refine: Refinement::Affinity {
                    config: Box::new(AffConfig::preset("micro")?),
                    beta: 8.0,
                    logt: 4,
                    crf: CrfPreset::Mcis,
                },
                labels_from: LabelsFrom::Single,
                // on in the smoke test so that its code path runs (it reads no masks)
                confident_background: true,
                border_prior: true,
                seg: SegConfig::preset("micro")?,
                crf: CrfPreset::Mcis,
                scales: vec![1.0],
                flip: true,
            }),
            other => Err(Error::Msg(format!(
                "unknown pipeline preset '{other}' (tiny, micro)"
            ))),
        }
    }
}

#[derive(Clone, Debug)]
pub struct PipelineOptions {
    /// A VOC-layout dataset; None: synthesise one into OUT/data.
    pub data: Option<PathBuf>,
    pub out: PathBuf,
    pub preset: PipelinePreset,
    pub device: Device,
    pub quiet: bool,
    /// Redo stages recorded with other options (and every stage after the first of them).
    pub force: bool,
}

impl PipelineOptions {
    /// A run of `preset` into `out` on synthesised data, on the CPU, with progress shown.
    pub fn new(out: &Path, preset: PipelinePreset) -> PipelineOptions {
        PipelineOptions {
            data: None,
            out: out.to_path_buf(),
            preset,
            device: Device::Cpu,
            quiet: false,
            force: false,
        }
    }
}

/// A classifier stage's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ClsResult {
    pub val_map: Option<f64>,
    pub val_map_per_epoch: Vec<f64>,
    pub images_per_sec: f64,
    pub train_secs: f64,
}

/// A maps stage's result.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MapsResult {
    pub written: usize,
    pub failed: usize,
    pub attention: Option<Value>,
}

/// How good a folder of maps is against the train masks (a diagnostic stage).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct MapQuality {
    /// False when the split has no masks: nothing below was measured.
    pub measured: bool,
    /// The threshold a user gets (Otsu's rule on the maps alone) and its mIoU.
    pub threshold: Option<f64>,
    pub miou: Option<f64>,
    /// Diagnostic: the best threshold against the masks (t ≤ 0.95) and its mIoU.
    pub oracle_threshold: Option<f64>,
    pub oracle_miou: Option<f64>,
    /// Maps with a background channel: the mIoU of their argmax (no threshold).
    pub argmax_miou: Option<f64>,
}

/// Pseudo-label quality (diagnostic).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LabelQuality {
    pub measured: bool,
    pub miou: Option<f64>,
    pub coverage: Option<f64>,
}

/// The pseudo-label stage's result.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PseudoResult {
    pub images: usize,
    /// How the labels were made, in words.
    pub rule: String,
}

/// An inference stage's result: the val mIoU when the val split has masks.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct InferResult {
    pub miou: Option<f64>,
}

fn typed<T: serde::de::DeserializeOwned>(stage: &str, v: Value) -> Result<T> {
    serde_json::from_value(v).map_err(|e| {
        Error::Msg(format!(
            "stage {stage}: its record does not hold the expected result ({e}); rerun with --force"
        ))
    })
}

fn to_value<T: Serialize>(v: &T) -> Result<Value> {
    serde_json::to_value(v).map_err(|e| Error::Msg(e.to_string()))
}

/// Whether every image of a split with classes has a mask (the diagnostics need them).
fn has_masks(data: &Path, split: &str) -> Result<bool> {
    let ds = VocDataset::open(data, split)?;
    Ok(!ds.items.is_empty() && ds.items.iter().all(|it| it.mask.is_some()))
}

/// Map quality against the train masks: the user's threshold (Otsu), the oracle one, and
/// the argmax of maps that carry a background channel.
fn map_quality(cams: &Path, data: &Path, report_dir: &Path) -> Result<MapQuality> {
    if !has_masks(data, "train")? {
        return Ok(MapQuality::default());
    }
    let sweep = cam::sweep_thresholds(cams, data, "train", &cam::thresholds_up_to(0.95))?;
    sweep.write_report(report_dir)?;
    let t = cam::auto_threshold(cams)? as f64;
    // the sweep's step is 0.01: score Otsu's t exactly with a one-threshold sweep
    let at_t = cam::sweep_thresholds(cams, data, "train", &[t as f32])?;
    let argmax = cam::sweep::argmax_confusion(cams, data, "train")?.map(|c| c.miou());
    Ok(MapQuality {
        measured: true,
        threshold: Some(t),
        miou: Some(at_t.best_miou()),
        oracle_threshold: Some(sweep.best_threshold() as f64),
        oracle_miou: Some(sweep.best_miou()),
        argmax_miou: argmax,
    })
}

pub fn run_pipeline(o: &PipelineOptions) -> Result<PipelineReport> {
    let out = &o.out;
    let p = &o.preset;
    let _lock = crate::io::lock::lock_dir(out)?;
    let mut st = Stages::new(&out.join("stages"), o.quiet, o.force)?;
    let data = o.data.clone().unwrap_or_else(|| out.join("data"));
    if o.data.is_none() {
        let cfg = SynthConfig {
            out: data.clone(),
            train: p.synth_train,
            val: p.synth_val,
            size: p.synth_size,
            classes: p.classes,
            seed: p.cls.seed,
            kind: p.kind,
            context_share: crate::data::synth::DEFAULT_CONTEXT_SHARE,
        };
        st.run(
            "synth",
            json!({"kind": p.kind, "train": p.synth_train, "val": p.synth_val, "size": p.synth_size, "classes": p.classes, "seed": p.cls.seed}),
            std::slice::from_ref(&data),
            || {
                let hist = generate(&cfg)?;
                Ok(json!({"train": p.synth_train, "val": p.synth_val, "per_class": hist}))
            },
        )?;
    }
    // paths in the stage records are relative to OUT where they lie inside it, so a pipeline
    // folder can be moved or copied and still resume
    let rel = |p: &Path| -> String {
        p.strip_prefix(out)
            .map(|r| r.display().to_string())
            .unwrap_or_else(|_| p.display().to_string())
    };
    let data_s = rel(&data);
    // classifiers
    let cls_stage = |st: &mut Stages,
                     name: &str,
                     run: PathBuf,
                     cfg: ClsConfig,
                     start_from: Option<PathBuf>|
     -> Result<ClsResult> {
        let v = st.run(
            name,
            json!({"data": data_s, "config": to_value(&cfg)?}),
            std::slice::from_ref(&run),
            || {
                let s = train_cls(&TrainClsOptions {
                    data: data.clone(),
                    out: run.clone(),
                    config: cfg.clone(),
                    device: o.device,
                    resume: run.join(crate::cls::train::LAST).exists(),
                    start_from: start_from.clone(),
                    stop_after: None,
                    quiet: o.quiet,
                })?;
                to_value(&ClsResult {
                    val_map: s.val_map.last().copied(),
                    val_map_per_epoch: s.val_map,
                    images_per_sec: s.images_per_sec,
                    train_secs: s.train_secs,
                })
            },
        )?;
        typed(name, v)
    };
    let cls_run = out.join("cls");
    let cls = cls_stage(&mut st, "train-cls", cls_run.clone(), p.cls.clone(), None)?;
    let basic_run = out.join("cls-basic");
    let basic = if p.baseline {
        Some(cls_stage(
            &mut st,
            "train-cls-basic",
            basic_run.clone(),
            ClsConfig {
                variant: Variant::Basic,
                ..p.cls.clone()
            },
            // the baseline trains the method's classifier's first epochs again, bit for bit
            // (the co-attention terms join later): it takes them from it (`cls::fork`; the
            // stage's result is the same, so its record does not say)
            Some(cls_run.clone()),
        )?)
    } else {
        None
    };
    // localization maps
    let maps_stage = |st: &mut Stages,
                      name: &str,
                      run: &Path,
                      dir: PathBuf,
                      mode: CamMode|
     -> Result<MapsResult> {
        let mut c = CamOptions::new(run, &data, &dir);
        c.mode = mode;
        c.related = p.related;
        c.scales = p.cam_scales.clone();
        c.device = o.device;
        let mut record =
            json!({"run": rel(run), "mode": mode, "related": p.related, "scales": p.cam_scales});
        if mode == CamMode::Coatt {
            c.attention = p.coatt_attention;
            record["attention"] = json!(p.coatt_attention);
        }
        let v = st.run(name, record, std::slice::from_ref(&dir), || {
            let s = cam::run_cams(&c)?;
            to_value(&MapsResult {
                written: s.written + s.existing,
                failed: s.failed.len(),
                attention: (s.attention.pairs > 0)
                    .then(|| cam::infer::json_attention(&s.attention)),
            })
        })?;
        typed(name, v)
    };
    // the map sets: the method's co-attention maps and single-round maps, the baseline's CAMs
    let mut sets: Vec<(LabelsFrom, &str, PathBuf, CamMode)> = vec![
        (LabelsFrom::Coattention, "", cls_run.clone(), CamMode::Coatt),
        (
            LabelsFrom::Single,
            "-single",
            cls_run.clone(),
            CamMode::Single,
        ),
    ];
    if p.baseline {
        sets.push((
            LabelsFrom::Baseline,
            "-basic",
            basic_run.clone(),
            CamMode::Single,
        ));
    }
    if !sets.iter().any(|s| s.0 == p.labels_from) {
        return Err(Error::Msg(
            "labels from the baseline need the baseline (--baseline true)".into(),
        ));
    }
    let mut maps = None;
    for (key, suffix, run, mode) in &sets {
        let m = maps_stage(
            &mut st,
            &format!("cams{suffix}"),
            run,
            out.join(format!("cams{suffix}")),
            *mode,
        )?;
        if *key == LabelsFrom::Coattention {
            maps = Some(m);
        }
    }
    let maps = maps.expect("the co-attention maps are always made");
    let quality = |st: &mut Stages, name: &str, dir: &Path| -> Result<MapQuality> {
        let report_dir = out.join(name);
        let v = st.run(
            name,
            json!({"maps": rel(dir)}),
            std::slice::from_ref(&report_dir),
            || to_value(&map_quality(dir, &data, &report_dir)?),
        )?;
        typed(name, v)
    };
    // refinement: AffinityNet learns from the maps the labels come from
    let label_cams = out.join(format!(
        "cams{}",
        sets.iter()
            .find(|s| s.0 == p.labels_from)
            .expect("checked above")
            .1
    ));
    let aff_run = out.join("affinity");
    if let Refinement::Affinity { config, .. } = &p.refine {
        let acfg = AffConfig {
            init_from: Some(cls_run.display().to_string()),
            seed: p.cls.seed,
            ..(**config).clone()
        };
        st.run(
            "train-affinity",
            json!({"maps": rel(&label_cams), "config": to_value(&AffConfig {
                init_from: Some(rel(&cls_run)),
                ..acfg.clone()
            })?}),
            std::slice::from_ref(&aff_run),
            || {
                let s = train_affinity(&TrainAffOptions {
                    cams: label_cams.clone(),
                    data: data.clone(),
                    out: aff_run.clone(),
                    config: acfg.clone(),
                    device: o.device,
                    resume: aff_run.join(crate::affinity::train::LAST).exists(),
                    stop_after: None,
                    quiet: o.quiet,
                })?;
                Ok(
                    json!({"iterations": s.iterations, "skipped_steps": s.skipped_steps,
                    "labels": to_value(&s.labels)?, "train_secs": s.train_secs}),
                )
            },
        )?;
    }
    let refine_stage = |st: &mut Stages,
                        name: &str,
                        maps: &Path,
                        dir: PathBuf|
     -> Result<PathBuf> {
        let (run, crf, beta, logt) = match &p.refine {
            Refinement::None => return Ok(maps.to_path_buf()),
            Refinement::Crf(c) => (None, *c, 8.0, 8),
            Refinement::Affinity {
                beta, logt, crf, ..
            } => (Some(aff_run.clone()), *crf, *beta, *logt),
        };
        st.run(
            name,
            json!({"maps": rel(maps), "walk": run.is_some(), "beta": beta, "logt": logt, "crf": crf}),
            std::slice::from_ref(&dir),
            || {
                let mut r = RefineOptions::new(Path::new(""), maps, &data, &dir);
                r.run = run.clone();
                r.beta = beta;
                r.logt = logt;
                r.alpha = None;
                r.crf = crf.params();
                r.device = o.device;
                r.quiet = o.quiet;
                let s = run_refine(&r)?;
                Ok(json!({"written": s.written + s.existing, "alpha": s.alpha}))
            },
        )?;
        Ok(dir)
    };
    let refining = !matches!(p.refine, Refinement::None);
    let mut map_sets = Vec::new();
    // (refined, raw): the maps that become the pseudo labels and the ones they were refined from
    let mut label_maps = None;
    for (key, suffix, _, _) in &sets {
        let dir = out.join(format!("cams{suffix}"));
        let raw = quality(&mut st, &format!("eval-cams{suffix}"), &dir)?;
        let refined_dir = refine_stage(
            &mut st,
            &format!("refine{suffix}"),
            &dir,
            out.join(format!("refined{suffix}")),
        )?;
        let refined = if refining {
            Some(quality(
                &mut st,
                &format!("eval-refined{suffix}"),
                &refined_dir,
            )?)
        } else {
            None
        };
        if *key == p.labels_from {
            label_maps = Some((refined_dir, dir));
        }
        map_sets.push(MapSet {
            key: *key,
            raw,
            refined,
        });
    }
    let (label_maps, label_raw) = label_maps.expect("checked above");
    // pseudo labels: from the maps alone (no masks)
    let pseudo = out.join("pseudo");
    let names = VocDataset::open(&data, "train")?.class_names;
    let pseudo_rec: PseudoResult = typed(
        "pseudo",
        st.run(
            "pseudo",
            json!({"maps": rel(&label_maps), "confident_background": p.confident_background,
                "border_prior": p.border_prior}),
            std::slice::from_ref(&pseudo),
            || {
                let raw = if p.confident_background && refining {
                    cam::threshold::RawMaps::Folder(label_raw.clone())
                } else {
                    cam::threshold::RawMaps::Off
                };
                let rule = cam::threshold::choose_rule(&label_maps, "auto", 0.0, &raw)?;
                let filters = cam::LabelFilters {
                    min_fg: 0.01,
                    border_connectivity: p
                        .border_prior
                        .then_some(cam::LabelFilters::BORDER_CONNECTIVITY),
                };
                let stats = cam::run_pseudo(&label_maps, &pseudo, &rule, &filters, names.len())?;
                crate::io::write_atomic(
                    &pseudo.join("stats.md"),
                    stats.markdown(&names).as_bytes(),
                )?;
                // the pipeline always asks for Otsu's threshold ("auto")
                let otsu = matches!(rule, PseudoRule::Threshold { .. });
                let rule_text = cam::pseudo::describe_labelling(&rule, otsu, &filters);
                to_value(&PseudoResult {
                    images: stats.images,
                    rule: rule_text,
                })
            },
        )?,
    )?;
    let label_q: LabelQuality = typed(
        "eval-pseudo",
        st.run("eval-pseudo", json!({}), &[], || {
            if !has_masks(&data, "train")? {
                return to_value(&LabelQuality::default());
            }
            let (conf, _) = evaluate_folder(&pseudo, &data, "train", true)?;
            conf.write_report(&pseudo, &names, "the pseudo labels")?;
            to_value(&LabelQuality {
                measured: true,
                miou: Some(conf.miou()),
                coverage: Some(conf.coverage()),
            })
        })?,
    )?;
    // segmentation
    let seg_stage = |st: &mut Stages, name: &str, run: PathBuf, labels: LabelSource| {
        st.run(
            name,
            json!({"config": to_value(&p.seg)?, "labels": match &labels {
                LabelSource::Folder(d) => rel(d),
                LabelSource::GroundTruth => "ground truth".to_string(),
            }}),
            std::slice::from_ref(&run),
            || {
                let s = train_seg(&TrainSegOptions {
                    data: data.clone(),
                    labels: labels.clone(),
                    out: run.clone(),
                    config: p.seg.clone(),
                    device: o.device,
                    resume: run.join(crate::seg::train::LAST).exists(),
                    stop_after: None,
                    quiet: o.quiet,
                })?;
                Ok(json!({"val_miou": s.val_miou, "images_per_sec": s.images_per_sec, "train_secs": s.train_secs}))
            },
        )
    };
    seg_stage(
        &mut st,
        "train-seg",
        out.join("seg"),
        LabelSource::Folder(pseudo.clone()),
    )?;
    let bound = has_masks(&data, "train")?;
    if bound {
        seg_stage(
            &mut st,
            "train-seg-gt",
            out.join("seg-gt"),
            LabelSource::GroundTruth,
        )?;
    }
    let val = VocDataset::open(&data, "val")?;
    let images: Vec<(String, PathBuf)> = val
        .items
        .iter()
        .map(|it| (it.id.clone(), it.image.clone()))
        .collect();
    let val_masks = has_masks(&data, "val")?;
    // `also`: a folder the same network pass writes too, with its own CRF (the predictions
    // with the CRF are made beside those without it, so the network runs once per image; the
    // later stage of that folder then finds them done and only evaluates)
    let infer_stage = |st: &mut Stages,
                       name: &str,
                       run: &Path,
                       pred: PathBuf,
                       crf: CrfPreset,
                       also: Option<(&Path, CrfPreset)>|
     -> Result<Option<f64>> {
        let mut outputs = vec![pred.clone()];
        outputs.extend(also.map(|a| a.0.to_path_buf()));
        let v = st.run(
            name,
            json!({"scales": p.scales, "flip": p.flip, "crf": crf}),
            &outputs,
            || {
                let model = load_segnet(run, o.device)?;
                let opts = InferOptions {
                    scales: p.scales.clone(),
                    flip: p.flip,
                    crf: crf.params(),
                    run: Some(run.to_path_buf()),
                };
                let mut outs = vec![(pred.as_path(), crf.params())];
                outs.extend(also.map(|(dir, c)| (dir, c.params())));
                run_infer_many(&model, &images, &outs, &opts, o.device, o.quiet)?;
                if !val_masks {
                    return to_value(&InferResult { miou: None });
                }
                let (conf, names) = evaluate_folder(&pred, &data, "val", false)?;
                conf.write_report(&pred, &names, "the predictions")?;
                to_value(&InferResult {
                    miou: Some(conf.miou()),
                })
            },
        )?;
        Ok(typed::<InferResult>(name, v)?.miou)
    };
    let (pred_crf, pred_gt_crf) = (out.join("pred-crf"), out.join("pred-gt-crf"));
    let seg = infer_stage(
        &mut st,
        "infer",
        &out.join("seg"),
        out.join("pred"),
        CrfPreset::Off,
        Some((&pred_crf, p.crf)),
    )?;
    let seg_crf = infer_stage(
        &mut st,
        "infer-crf",
        &out.join("seg"),
        pred_crf.clone(),
        p.crf,
        None,
    )?;
    let (gt, gt_crf) = if bound {
        (
            infer_stage(
                &mut st,
                "infer-gt",
                &out.join("seg-gt"),
                out.join("pred-gt"),
                CrfPreset::Off,
                Some((&pred_gt_crf, p.crf)),
            )?,
            infer_stage(
                &mut st,
                "infer-gt-crf",
                &out.join("seg-gt"),
                pred_gt_crf.clone(),
                p.crf,
                None,
            )?,
        )
    } else {
        (None, None)
    };
    // the stages in the order this run met them (run or skipped): the list is the code above
    let secs = st.times.clone();
    let r = PipelineReport {
        ran: st.ran.clone(),
        skipped: st.skipped.clone(),
        cls,
        basic,
        maps,
        map_sets,
        refinement: match &p.refine {
            Refinement::None => "none: raw maps at Otsu's threshold".into(),
            Refinement::Crf(c) => format!("dense CRF, preset {c:?}"),
            Refinement::Affinity {
                config,
                beta,
                logt,
                crf,
            } => format!(
                "AffinityNet (preset `{}`, {} epochs, stride {}, radius {}), random walk β {beta}, 2^{logt} steps, then CRF {crf:?}",
                config.preset,
                config.epochs,
                config.stride(),
                config.radius
            ),
        },
        labels_from: p.labels_from,
        pseudo_rule: pseudo_rec.rule,
        pseudo: label_q,
        seg_miou: seg,
        seg_crf_miou: seg_crf,
        gt_miou: gt,
        gt_crf_miou: gt_crf,
        secs,
        report: out.join("report.md"),
    };
    report::write_report(&r, o, &data)?;
    // the page people look at: the tables above, the charts, and the galleries
    crate::report::write_html_report(&crate::report::ReportOptions {
        quiet: o.quiet,
        ..crate::report::ReportOptions::new(out)
    })?;
    Ok(r)
}

//! `coatt-train pipeline`: synth (when no data is given) → train-cls → cams → eval-cam →
//! pseudo (threshold = the best t on train, searched up to 0.95: small networks' maps can be
//! high over much of the background) → train-seg on the pseudo labels, and the same
//! network on the ground-truth masks (the fully supervised bound) → infer (+CRF) → eval.
//!
//! Each stage writes OUT/stages/<stage>.json when it completes and is skipped when that file
//! exists; a stage that was killed half way resumes from what it left (training from its last
//! checkpoint, maps and predictions already on disk are kept), so a killed pipeline resumes.
use crate::cam::{self, CamMode, CamOptions, PseudoRule};
use crate::cls::{train_cls, ClsConfig, TrainClsOptions};
use crate::crf::CrfPreset;
use crate::data::synth::{generate, SynthConfig};
use crate::data::VocDataset;
use crate::error::{Error, Result};
use crate::eval::evaluate_folder;
use crate::seg::{
    load_segnet, run_infer, train_seg, InferOptions, LabelSource, SegConfig, TrainSegOptions,
};
use crate::Device;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The sizes of one pipeline preset.
#[derive(Clone, Debug)]
pub struct PipelinePreset {
    pub synth_train: usize,
    pub synth_val: usize,
    pub synth_size: usize,
    pub classes: usize,
    pub cls: ClsConfig,
    pub related: usize,
    /// Input scales of the localization maps, relative to the classifier's input.
    pub cam_scales: Vec<f64>,
    pub seg: SegConfig,
    pub crf: CrfPreset,
    pub scales: Vec<f64>,
    pub flip: bool,
}

impl PipelinePreset {
    /// `tiny`: the CPU demo (fits in 15 minutes on 2 cores); `micro`: seconds, for tests.
    pub fn named(name: &str) -> Result<PipelinePreset> {
        match name {
            "tiny" => Ok(PipelinePreset {
                synth_train: 1500,
                synth_val: 300,
                synth_size: 128,
                classes: 6,
                // the classifier of the CAM and segmentation results in docs/results.md: the
                // tiny preset's model with its earlier, shorter schedule (6 epochs, co-attention
                // from epoch 1) and the paper's dot-product affinity, so the whole demo stays
                // within 15 minutes
                cls: ClsConfig {
                    epochs: 6,
                    lr_steps: vec![5],
                    coattention_from: 1,
                    coattention_lr_factor: 1.0,
                    affinity: crate::nn::Affinity::Dot,
                    ..ClsConfig::preset("tiny")?
                },
                related: 3,
                // maps at 2× the training input (a 16×16 grid instead of 8×8): much less flat
                // co-attention maps on the synthetic set (docs/results.md)
                cam_scales: vec![2.0],
                seg: SegConfig::preset("tiny")?,
                // the official MCIS CRF: on 128-px images the PSA preset's 10 iterations of a
                // strong 80-px bilateral kernel over-smooth (bound: 72.3% → 64.4%; MCIS: 74.3%)
                crf: CrfPreset::Mcis,
                scales: vec![0.75, 1.0, 1.25],
                flip: true,
            }),
            "micro" => Ok(PipelinePreset {
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
                related: 1,
                cam_scales: vec![1.0],
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
}

#[derive(Clone, Debug)]
pub struct PipelineReport {
    /// Stages run by this invocation and stages skipped as already complete.
    pub ran: Vec<String>,
    pub skipped: Vec<String>,
    pub cls_val_map: f64,
    pub cam_threshold: f64,
    pub cam_miou: f64,
    pub pseudo_miou: f64,
    pub pseudo_coverage: f64,
    pub seg_miou: f64,
    pub seg_crf_miou: f64,
    pub gt_miou: f64,
    pub gt_crf_miou: f64,
    pub secs: Vec<(String, f64)>,
    pub report: PathBuf,
}

impl PipelineReport {
    pub fn table(&self) -> String {
        let p = |v: f64| format!("{:.1}", 100.0 * v);
        format!(
            "| stage | metric | value |\n|---|---|---:|\n\
             | classifier | val mAP (%) | {} |\n\
             | localization maps | CAM mIoU on train (%), best t = {:.2} | {} |\n\
             | pseudo labels | mIoU on train (%), {:.0}% of pixels labelled | {} |\n\
             | segmentation | val mIoU (%), no CRF | {} |\n\
             | segmentation + CRF | val mIoU (%) | {} |\n\
             | fully supervised bound | val mIoU (%), no CRF | {} |\n\
             | fully supervised bound + CRF | val mIoU (%) | {} |\n\
             | ratio to the bound | (%) | {} |\n",
            p(self.cls_val_map),
            self.cam_threshold,
            p(self.cam_miou),
            100.0 * self.pseudo_coverage,
            p(self.pseudo_miou),
            p(self.seg_miou),
            p(self.seg_crf_miou),
            p(self.gt_miou),
            p(self.gt_crf_miou),
            p(self.seg_crf_miou / self.gt_crf_miou.max(1e-9)),
        )
    }
}

struct Stages {
    dir: PathBuf,
    ran: Vec<String>,
    skipped: Vec<String>,
    secs: Vec<(String, f64)>,
    quiet: bool,
}

impl Stages {
    /// Runs `f` unless the stage's marker exists; returns the stage's recorded result.
    fn run(&mut self, name: &str, f: impl FnOnce() -> Result<Value>) -> Result<Value> {
        let marker = self.dir.join(format!("{name}.json"));
        if marker.exists() {
            let s = std::fs::read_to_string(&marker).map_err(|e| Error::io(&marker, e))?;
            self.skipped.push(name.to_string());
            if !self.quiet {
                eprintln!("[pipeline] {name}: already complete, skipped");
            }
            return serde_json::from_str(&s)
                .map_err(|e| Error::file(&marker, format!("corrupt stage record ({e})")));
        }
        if !self.quiet {
            eprintln!("[pipeline] {name} …");
        }
        let t0 = Instant::now();
        let mut v = f()?;
        let dt = t0.elapsed().as_secs_f64();
        v["secs"] = json!(dt);
        let s = serde_json::to_string_pretty(&v).map_err(|e| Error::Msg(e.to_string()))?;
        crate::io::write_atomic(&marker, s.as_bytes())?;
        self.ran.push(name.to_string());
        self.secs.push((name.to_string(), dt));
        if !self.quiet {
            eprintln!("[pipeline] {name}: done in {dt:.0} s");
        }
        Ok(v)
    }
}

fn num(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(f64::NAN)
}

pub fn run_pipeline(o: &PipelineOptions) -> Result<PipelineReport> {
    let out = &o.out;
    let p = &o.preset;
    let mut st = Stages {
        dir: out.join("stages"),
        ran: Vec::new(),
        skipped: Vec::new(),
        secs: Vec::new(),
        quiet: o.quiet,
    };
    std::fs::create_dir_all(&st.dir).map_err(|e| Error::io(&st.dir, e))?;
    let data = o.data.clone().unwrap_or_else(|| out.join("data"));
    if o.data.is_none() {
        st.run("synth", || {
            let hist = generate(&SynthConfig {
                out: data.clone(),
                train: p.synth_train,
                val: p.synth_val,
                size: p.synth_size,
                classes: p.classes,
                seed: p.cls.seed,
            })?;
            Ok(json!({"train": p.synth_train, "val": p.synth_val, "per_class": hist}))
        })?;
    }
    let cls_run = out.join("cls");
    let cls = st.run("train-cls", || {
        let s = train_cls(&TrainClsOptions {
            data: data.clone(),
            out: cls_run.clone(),
            config: p.cls.clone(),
            device: o.device,
            resume: cls_run.join(crate::cls::train::LAST).exists(),
            stop_after: None,
            quiet: o.quiet,
        })?;
        Ok(json!({"val_map": s.val_map.last(), "val_map_per_epoch": s.val_map, "images_per_sec": s.images_per_sec, "train_secs": s.train_secs}))
    })?;
    let cams = out.join("cams");
    st.run("cams", || {
        let mut c = CamOptions::new(&cls_run, &data, &cams);
        c.mode = CamMode::Coatt;
        c.related = p.related;
        c.scales = p.cam_scales.clone();
        c.device = o.device;
        let s = cam::run_cams(&c)?;
        Ok(json!({"written": s.written, "existing": s.existing, "failed": s.failed.len()}))
    })?;
    let cam_eval = st.run("eval-cam", || {
        let sweep = cam::sweep_thresholds(&cams, &data, "train", &cam::thresholds_up_to(0.95))?;
        sweep.write_report(&out.join("eval-cam"))?;
        Ok(json!({"threshold": sweep.best_threshold(), "miou": sweep.best_miou(), "images": sweep.images}))
    })?;
    let pseudo = out.join("pseudo");
    let pseudo_eval = st.run("pseudo", || {
        let names = VocDataset::open(&data, "train")?.class_names;
        let rule = PseudoRule::Threshold {
            bg: num(&cam_eval, "threshold") as f32,
            ignore_margin: 0.0,
        };
        let stats = cam::run_pseudo(&cams, &pseudo, &rule, 0.01, names.len())?;
        crate::io::write_atomic(&pseudo.join("stats.md"), stats.markdown(&names).as_bytes())?;
        let (conf, _) = evaluate_folder(&pseudo, &data, "train", true)?;
        crate::io::write_atomic(&pseudo.join("eval.md"), conf.markdown(&names).as_bytes())?;
        Ok(json!({"miou": conf.miou(), "coverage": conf.coverage(), "images": stats.images}))
    })?;
    let seg_stage = |st: &mut Stages, name: &str, run: PathBuf, labels: LabelSource| {
        st.run(name, || {
            let s = train_seg(&TrainSegOptions {
                data: data.clone(),
                labels,
                out: run.clone(),
                config: p.seg.clone(),
                device: o.device,
                resume: run.join(crate::seg::train::LAST).exists(),
                stop_after: None,
                quiet: o.quiet,
            })?;
            Ok(json!({"val_miou": s.val_miou, "images_per_sec": s.images_per_sec, "train_secs": s.train_secs}))
        })
    };
    seg_stage(
        &mut st,
        "train-seg",
        out.join("seg"),
        LabelSource::Folder(pseudo.clone()),
    )?;
    seg_stage(
        &mut st,
        "train-seg-gt",
        out.join("seg-gt"),
        LabelSource::GroundTruth,
    )?;
    let val = VocDataset::open(&data, "val")?;
    let images: Vec<(String, PathBuf)> = val
        .items
        .iter()
        .map(|it| (it.id.clone(), it.image.clone()))
        .collect();
    let infer_stage = |st: &mut Stages, name: &str, run: &Path, pred: PathBuf, crf: CrfPreset| {
        st.run(name, || {
            let model = load_segnet(run, o.device)?;
            let opts = InferOptions {
                scales: p.scales.clone(),
                flip: p.flip,
                crf: crf.params(),
            };
            run_infer(&model, &images, &pred, &opts, o.device, o.quiet)?;
            let (conf, names) = evaluate_folder(&pred, &data, "val", false)?;
            crate::io::write_atomic(&pred.join("eval.md"), conf.markdown(&names).as_bytes())?;
            Ok(json!({"miou": conf.miou()}))
        })
    };
    let seg = infer_stage(
        &mut st,
        "infer",
        &out.join("seg"),
        out.join("pred"),
        CrfPreset::Off,
    )?;
    let seg_crf = infer_stage(
        &mut st,
        "infer-crf",
        &out.join("seg"),
        out.join("pred-crf"),
        p.crf,
    )?;
    let gt = infer_stage(
        &mut st,
        "infer-gt",
        &out.join("seg-gt"),
        out.join("pred-gt"),
        CrfPreset::Off,
    )?;
    let gt_crf = infer_stage(
        &mut st,
        "infer-gt-crf",
        &out.join("seg-gt"),
        out.join("pred-gt-crf"),
        p.crf,
    )?;

    let mut r = PipelineReport {
        ran: st.ran.clone(),
        skipped: st.skipped.clone(),
        cls_val_map: num(&cls, "val_map"),
        cam_threshold: num(&cam_eval, "threshold"),
        cam_miou: num(&cam_eval, "miou"),
        pseudo_miou: num(&pseudo_eval, "miou"),
        pseudo_coverage: num(&pseudo_eval, "coverage"),
        seg_miou: num(&seg, "miou"),
        seg_crf_miou: num(&seg_crf, "miou"),
        gt_miou: num(&gt, "miou"),
        gt_crf_miou: num(&gt_crf, "miou"),
        secs: Vec::new(),
        report: out.join("report.md"),
    };
    // every stage's time, including those recorded by an earlier invocation
    for name in [
        "synth",
        "train-cls",
        "cams",
        "eval-cam",
        "pseudo",
        "train-seg",
        "train-seg-gt",
        "infer",
        "infer-crf",
        "infer-gt",
        "infer-gt-crf",
    ] {
        let m = st.dir.join(format!("{name}.json"));
        if let Ok(s) = std::fs::read_to_string(&m) {
            if let Ok(v) = serde_json::from_str::<Value>(&s) {
                r.secs.push((name.to_string(), num(&v, "secs")));
            }
        }
    }
    write_report(&r, o, &data)?;
    Ok(r)
}

fn write_report(r: &PipelineReport, o: &PipelineOptions, data: &Path) -> Result<()> {
    let mut s = String::from("# coatt pipeline report\n\n");
    let seg = &o.preset.seg;
    let backbone = match seg.backbone {
        crate::seg::SegBackbone::Resnet101 => format!(
            "ResNet (bottlenecks {:?}, stem width {})",
            seg.resnet.blocks, seg.resnet.base
        ),
        crate::seg::SegBackbone::Vgg16 => format!("VGG16 (widths {:?})", seg.vgg_widths),
    };
    s += &format!(
        "Data: `{}`. Device: {:?}. Classifier: preset `{}`, variant {:?}, {} epochs. Maps: co-attention, {} related images per class, input scales {:?}. Segmentation: {backbone} LargeFOV, preset `{}`, crop {}, {} iterations; CRF {:?}; test scales {:?}{}.\n\n",
        data.display(),
        o.device,
        o.preset.cls.preset,
        o.preset.cls.variant,
        o.preset.cls.epochs,
        o.preset.related,
        o.preset.cam_scales,
        seg.preset,
        seg.crop,
        seg.iterations,
        o.preset.crf,
        o.preset.scales,
        if o.preset.flip { " + flip" } else { "" }
    );
    s += &r.table();
    s += "\n## Time per stage\n\n| stage | seconds |\n|---|---:|\n";
    let mut total = 0.0;
    for (n, t) in &r.secs {
        s += &format!("| {n} | {t:.0} |\n");
        total += t;
    }
    s += &format!("| total | {total:.0} |\n");
    s += "\n## Plots\n\n\
          - classifier loss: ![](cls/loss.png)\n\
          - CAM mIoU vs background threshold: ![](eval-cam/eval-cam.png)\n\
          - segmentation loss (pseudo labels): ![](seg/loss.png)\n\
          - segmentation loss (ground truth): ![](seg-gt/loss.png)\n\n\
          Details: `eval-cam/eval-cam.md`, `pseudo/stats.md`, `pseudo/eval.md`, \
          `pred/eval.md`, `pred-crf/eval.md`, `pred-gt/eval.md`, `pred-gt-crf/eval.md`; heat maps in `cams/overlay/`.\n";
    crate::io::write_atomic(&o.out.join("report.md"), s.as_bytes())
}

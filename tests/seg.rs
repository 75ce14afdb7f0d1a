//! The segmentation stage: DeepLab models on both backbones, the training samples, resume,
//! multi-scale inference, and the one-command pipeline (micro preset) with stage skipping.
use coatt::autograd::no_grad;
use coatt::data::augment::{normalize, to_chw};
use coatt::io::{read_label_png, Checkpoint};
use coatt::nn::{ResNet, ResNetConfig};
use coatt::pipeline::{run_pipeline, PipelineOptions, PipelinePreset};
use coatt::seg::data::{augment, resize_nearest};
use coatt::seg::{
    load_segnet, predict_probs, train_seg, LabelSource, SegBackbone, SegConfig, SegNet,
    TrainSegOptions,
};
use coatt::{Device, Tensor};
use std::path::Path;

#[test]
fn resnet101_has_torchvision_names_and_output_stride_8() {
    let r = ResNet::new(
        ResNetConfig::resnet101(),
        Device::Cpu,
        &mut coatt::testing::rng(0),
    );
    let t = r.named_tensors();
    let convs = t
        .iter()
        .filter(|(n, ..)| {
            n.ends_with("conv1.weight") || n.contains(".conv") || n.contains("downsample.0")
        })
        .count();
    assert_eq!(convs, 104, "1 stem + 33 bottlenecks × 3 + 4 projections");
    let get = |name: &str| {
        t.iter()
            .find(|(n, ..)| n == name)
            .map(|(_, t, tr)| (t.dims().to_vec(), *tr))
    };
    assert_eq!(
        get("layer3.22.conv3.weight"),
        Some((vec![1024, 256, 1, 1], true))
    );
    assert_eq!(
        get("layer4.0.downsample.0.weight"),
        Some((vec![2048, 1024, 1, 1], true))
    );
    // the official BN is frozen: its statistics and affine parameters are not trained
    assert_eq!(
        get("layer4.0.downsample.1.running_var"),
        Some((vec![2048], false))
    );
    assert_eq!(get("bn1.weight"), Some((vec![64], false)));
    for backbone in [SegBackbone::Resnet101, SegBackbone::Vgg16] {
        let cfg = SegConfig {
            backbone,
            ..SegConfig::preset("micro").unwrap()
        };
        let m = SegNet::new(&cfg, 4, Device::Cpu, &mut coatt::testing::rng(1));
        let x =
            Tensor::from_vec(vec![0.1f32; 2 * 3 * 40 * 48], [2, 3, 40, 48], Device::Cpu).unwrap();
        let y = no_grad(|| m.forward(&x, false, &mut coatt::testing::rng(2))).unwrap();
        assert_eq!(y.dims(), [2, 4, 5, 6], "{backbone:?}");
        let g = m.param_groups();
        assert_eq!(g.len(), 2);
        assert_eq!(
            g[1].params.len(),
            if backbone == SegBackbone::Vgg16 { 6 } else { 4 }
        );
    }
}

#[test]
fn training_samples_pad_with_ignore_and_mirror_image_and_labels_together() {
    // image colour encodes the label: red where label 1, black elsewhere
    let (w, h) = (20u32, 12u32);
    let mut img = image::RgbImage::new(w, h);
    let mut lab = vec![0u8; (w * h) as usize];
    for y in 0..h {
        for x in 0..w {
            if x < 5 {
                img.put_pixel(x, y, image::Rgb([255, 0, 0]));
                lab[(y * w + x) as usize] = 1;
            }
        }
    }
    let mut rng = coatt::testing::rng(4);
    let mut saw_pad = false;
    let mut red = vec![1.0f32, 0.0, 0.0];
    normalize(&mut red, 1);
    let mid = (red[0] + (0.0 - 0.485) / 0.229) / 2.0;
    for _ in 0..20 {
        let (x, y) = augment(&img, &lab, 24, (0.8, 1.2), &mut rng);
        let n = 24 * 24;
        // bilinear image vs nearest labels may differ on the one-pixel seam; elsewhere the
        // label follows the colour, whichever way the sample was mirrored
        let (mut agree, mut labelled) = (0, 0);
        for p in 0..n {
            match y[p] {
                255 => {
                    saw_pad = true;
                    assert!(
                        (0..3).all(|c| x[c * n + p] == 0.0),
                        "padding is the mean colour"
                    );
                }
                v @ (0 | 1) => {
                    labelled += 1;
                    agree += ((x[p] > mid) == (v == 1)) as usize;
                }
                v => panic!("label {v}"),
            }
        }
        assert!(
            agree as f64 >= 0.9 * labelled as f64,
            "{agree} of {labelled}"
        );
    }
    assert!(saw_pad, "24-px crops of a ≤ 24×14 image must pad");
    assert_eq!(resize_nearest(&[1, 2, 3, 4], 2, 2, 4, 4)[..4], [1, 1, 2, 2]);
}

#[test]
fn one_scale_inference_equals_a_single_forward() {
    let cfg = SegConfig::preset("micro").unwrap();
    let m = SegNet::new(&cfg, 3, Device::Cpu, &mut coatt::testing::rng(3));
    let mut img = image::RgbImage::new(30, 22);
    for (i, p) in img.pixels_mut().enumerate() {
        *p = image::Rgb([(i * 7 % 256) as u8, (i * 3 % 256) as u8, 90]);
    }
    let got = predict_probs(&m, &img, &[1.0], false, Device::Cpu).unwrap();
    let mut x = to_chw(&img);
    normalize(&mut x, 30 * 22);
    let x = Tensor::from_vec(x, [1, 3, 22, 30], Device::Cpu).unwrap();
    let want = no_grad(|| {
        m.forward(&x, false, &mut coatt::testing::rng(0))?
            .resize_bilinear(22, 30)?
            .softmax(1)
    })
    .unwrap()
    .to_vec_f32();
    assert_eq!(got, want);
    // flip averaging and several scales still give distributions
    let multi = predict_probs(&m, &img, &[0.5, 1.0, 1.5], true, Device::Cpu).unwrap();
    for i in 0..30 * 22 {
        let s: f32 = (0..3).map(|l| multi[l * 660 + i]).sum();
        assert!((s - 1.0).abs() < 1e-4);
    }
    assert!(predict_probs(&m, &img, &[], false, Device::Cpu).is_err());
}

fn micro_data(dir: &Path) {
    coatt::data::synth::generate(&coatt::data::synth::SynthConfig {
        out: dir.to_path_buf(),
        train: 8,
        val: 3,
        size: 40,
        classes: 3,
        seed: 2,
        kind: Default::default(),
        context_share: coatt::data::synth::DEFAULT_CONTEXT_SHARE,
    })
    .unwrap();
}

fn seg_opts(data: &Path, out: &Path, resume: bool, stop: Option<usize>) -> TrainSegOptions {
    TrainSegOptions {
        data: data.to_path_buf(),
        labels: LabelSource::GroundTruth,
        out: out.to_path_buf(),
        config: SegConfig {
            iterations: 6,
            checkpoint_every: 0,
            ..SegConfig::preset("micro").unwrap()
        },
        device: Device::Cpu,
        resume,
        stop_after: stop,
        quiet: true,
    }
}

#[test]
fn interrupted_segmentation_training_resumes_to_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    micro_data(&data);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let full = train_seg(&seg_opts(&data, &a, false, None)).unwrap();
    assert_eq!(full.iterations, 6);
    assert!(full.val_miou.is_some());
    train_seg(&seg_opts(&data, &b, false, Some(4))).unwrap();
    let e = train_seg(&seg_opts(&data, &b, false, None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--resume"), "{e}");
    train_seg(&seg_opts(&data, &b, true, None)).unwrap();
    let (ca, cb) = (
        Checkpoint::open(a.join("last.safetensors")).unwrap(),
        Checkpoint::open(b.join("last.safetensors")).unwrap(),
    );
    for n in ca.names() {
        assert_eq!(ca.get_f32(&n).unwrap(), cb.get_f32(&n).unwrap(), "{n}");
    }
    assert!(load_segnet(&a, Device::Cpu).is_ok());
    // a missing pseudo-label file is named
    let mut o = seg_opts(&data, &tmp.path().join("c"), false, None);
    o.labels = LabelSource::Folder(tmp.path().join("nolabels"));
    let e = train_seg(&o).unwrap_err().to_string();
    assert!(e.contains("nolabels"), "{e}");
}

fn micro_pipeline(out: &std::path::Path) -> PipelineOptions {
    PipelineOptions {
        quiet: true,
        ..PipelineOptions::new(out, PipelinePreset::named("micro").unwrap())
    }
}

#[test]
fn micro_pipeline_runs_end_to_end_and_resumes_by_skipping_completed_stages() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("p");
    let opts = micro_pipeline(&out);
    let r = run_pipeline(&opts).unwrap();
    assert_eq!(r.ran.len(), 24, "{:?}", r.ran);
    assert!(r.skipped.is_empty());
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("fully supervised bound"));
    assert!(report.contains("CAMs of the basic classifier (baseline)"));
    assert!(report.contains("single-round maps of the co-attention classifier"));
    assert!(report.contains(", refined"));
    use coatt::pipeline::LabelsFrom;
    assert_eq!(
        r.map_sets.len(),
        3,
        "co-attention, single-round and baseline maps"
    );
    let mut vals = Vec::new();
    for k in [
        LabelsFrom::Coattention,
        LabelsFrom::Single,
        LabelsFrom::Baseline,
    ] {
        let m = r.set(k).unwrap();
        vals.extend([
            m.raw.miou,
            m.raw.oracle_miou,
            m.refined.as_ref().unwrap().argmax_miou,
        ]);
    }
    for v in vals
        .into_iter()
        .chain([r.pseudo.miou, r.seg_miou, r.seg_crf_miou, r.gt_crf_miou])
    {
        let v = v.expect("measured");
        assert!((0.0..=1.0).contains(&v), "{v}");
    }
    assert!(r.cls.val_map.is_some() && r.basic.as_ref().unwrap().val_map.is_some());
    let ds = coatt::data::VocDataset::open(&out.join("data"), "val").unwrap();
    for it in &ds.items {
        let p = read_label_png(&out.join("pred-crf").join(format!("{}.png", it.id))).unwrap();
        assert!(p.data.iter().all(|&v| v < 4));
    }
    // everything complete: nothing runs again, the figures are the same
    let ck = std::fs::metadata(out.join("seg/last.safetensors"))
        .unwrap()
        .modified()
        .unwrap();
    let again = run_pipeline(&opts).unwrap();
    assert!(again.ran.is_empty(), "{:?}", again.ran);
    assert_eq!(again.skipped.len(), 24);
    assert_eq!(again.seg_crf_miou, r.seg_crf_miou);
    assert_eq!(
        std::fs::metadata(out.join("seg/last.safetensors"))
            .unwrap()
            .modified()
            .unwrap(),
        ck
    );
    // a stage killed half way (its record missing, one prediction missing) runs again alone
    std::fs::remove_file(out.join("stages/infer-crf.json")).unwrap();
    std::fs::remove_file(out.join("pred-crf").join(format!("{}.png", ds.items[0].id))).unwrap();
    let third = run_pipeline(&opts).unwrap();
    assert_eq!(third.ran, vec!["infer-crf".to_string()]);
    assert_eq!(third.seg_crf_miou, r.seg_crf_miou);
    // the folder moved elsewhere: its records hold paths relative to it, so it still resumes
    let moved = tmp.path().join("moved");
    std::fs::rename(&out, &moved).unwrap();
    let m = run_pipeline(&micro_pipeline(&moved)).unwrap();
    assert!(m.ran.is_empty(), "{:?}", m.ran);
    std::fs::rename(&moved, &out).unwrap();
    // killed after the classifier's last checkpoint but before its record: the resumed stage
    // still reports the classifier's val mAP (it was NaN)
    std::fs::remove_file(out.join("stages/train-cls.json")).unwrap();
    let fourth = run_pipeline(&opts).unwrap();
    assert_eq!(fourth.ran, vec!["train-cls".to_string()]);
    assert_eq!(fourth.cls.val_map, r.cls.val_map);
}

/// A rerun of `o` with an option changed: it must stop at `stage` and name `change` (the
/// error is returned for further checks); then `--force` must start again from that stage.
fn stops_at_then_redoes(
    o: &mut PipelineOptions,
    stage: &str,
    change: &str,
) -> (String, coatt::pipeline::PipelineReport) {
    let e = run_pipeline(o).unwrap_err().to_string();
    assert!(e.contains(stage) && e.contains(change), "{e}");
    o.force = true;
    let r = run_pipeline(o).unwrap();
    o.force = false;
    assert_eq!(r.ran[0], stage, "{:?}", r.ran);
    (e, r)
}

#[test]
fn pipeline_rerun_with_other_options_stops_and_force_redoes_from_there() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("p");
    let opts = micro_pipeline(&out);
    run_pipeline(&opts).unwrap();
    // another segmentation schedule: the first stage that differs is named, nothing runs,
    // named by its key path, alone: not the whole config it sits in; --force: that stage and
    // every stage after it run again; the earlier ones are kept
    let mut other = micro_pipeline(&out);
    other.preset.seg.iterations += 1;
    let it = opts.preset.seg.iterations;
    let (e, r) = stops_at_then_redoes(
        &mut other,
        "train-seg",
        &format!("config.iterations: {it} → {}", it + 1),
    );
    assert!(!e.contains("crop"), "{e}");
    assert!(e.contains("--force"), "{e}");
    assert!(r.skipped.contains(&"train-cls".to_string()));
    assert!(r.ran.contains(&"infer-crf".to_string()));
    // and the new record holds: a plain rerun skips everything
    assert!(run_pipeline(&other).unwrap().ran.is_empty());
    // the co-attentive maps' attention: the maps stage is the first to differ, the classifiers
    // are kept, and the report says which attention made the maps
    other.preset.coatt_attention = coatt::cam::infer::Attention::Trained;
    let (_, r) = stops_at_then_redoes(
        &mut other,
        "cams",
        "attention: \"similarity\" → \"trained\"",
    );
    assert!(r.skipped.contains(&"train-cls".to_string()));
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("attention as trained"), "{report}");
    // a classifier option that is not written at its default (as `pipeline --cls-config` sets
    // it): named by its key path, and once redone, in the classifier's config and the report
    other.preset.cls.negative_pairs = 0.5;
    stops_at_then_redoes(
        &mut other,
        "train-cls",
        "config.negative_pairs: (none) → 0.5",
    );
    let cfg = std::fs::read_to_string(out.join("cls/config.toml")).unwrap();
    assert!(cfg.contains("negative_pairs = 0.5"), "{cfg}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("50% of the pairs negative"), "{report}");
}

#[test]
fn no_stage_that_makes_pseudo_labels_reads_the_train_masks() {
    // the train masks removed after synth: the label-making stages run without them, the
    // diagnostics that need them say "not measured", the bound is skipped
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("p");
    let data = tmp.path().join("data");
    coatt::data::synth::generate(&coatt::data::synth::SynthConfig {
        out: data.clone(),
        train: 10,
        val: 4,
        size: 40,
        classes: 3,
        seed: 1,
        kind: coatt::data::synth::SetKind::Scenes,
        context_share: coatt::data::synth::DEFAULT_CONTEXT_SHARE,
    })
    .unwrap();
    let train = coatt::data::VocDataset::open(&data, "train").unwrap();
    for it in &train.items {
        std::fs::remove_file(it.mask.as_ref().unwrap()).unwrap();
    }
    let mut opts = micro_pipeline(&out);
    opts.data = Some(data.clone());
    let r = run_pipeline(&opts).unwrap();
    for it in &train.items {
        assert!(out.join("pseudo").join(format!("{}.png", it.id)).exists());
    }
    for m in &r.map_sets {
        assert!(!m.raw.measured && m.raw.miou.is_none());
    }
    assert!(!r.pseudo.measured);
    assert!(r.gt_miou.is_none() && !r.ran.contains(&"train-seg-gt".to_string()));
    assert!(r.seg_miou.is_some(), "val masks are still there");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("not measured"));
}

#[test]
fn imagenet_backbone_weights_load_by_torchvision_name() {
    // a weight file holding torchvision-named backbone tensors (and an unrelated `fc`)
    let tmp = tempfile::tempdir().unwrap();
    let cfg = SegConfig::preset("micro").unwrap();
    let src = SegNet::new(&cfg, 3, Device::Cpu, &mut coatt::testing::rng(10));
    let mut tensors: Vec<(String, Tensor)> = src
        .state_tensors()
        .into_iter()
        .filter(|(n, _)| !n.starts_with("head."))
        .collect();
    assert!(tensors
        .iter()
        .any(|(n, _)| n == "layer1.0.downsample.1.running_mean"));
    tensors.push((
        "fc.weight".into(),
        Tensor::from_vec(vec![0f32; 6], [2, 3], Device::Cpu).unwrap(),
    ));
    let file = tmp.path().join("resnet.safetensors");
    coatt::io::save_checkpoint(&file, &tensors, &Default::default()).unwrap();
    let dst = SegNet::new(&cfg, 3, Device::Cpu, &mut coatt::testing::rng(11));
    let n = dst.load_backbone(&file).unwrap();
    assert_eq!(n, tensors.len() - 1);
    for ((na, a), (nb, b)) in src.state_tensors().iter().zip(dst.state_tensors()) {
        assert_eq!(na, &nb);
        if !na.starts_with("head.") {
            assert_eq!(a.to_vec_f32(), b.to_vec_f32(), "{na}");
        }
    }
    // a file from another architecture is an error naming the file and tensor
    let other = tmp.path().join("other.safetensors");
    coatt::io::save_checkpoint(&other, &tensors[..3], &Default::default()).unwrap();
    let e = dst.load_backbone(&other).unwrap_err().to_string();
    assert!(
        e.contains("other.safetensors") && e.contains("missing tensor"),
        "{e}"
    );
}

//! Localization maps and pseudo labels: the official fusion and labelling rules on fixed maps,
//! the threshold sweep against direct labelling, map files, and a CAM run end to end.
use coatt::cam::aggregate::{aggregate, passes_filter, relu_max_normalize};
use coatt::cam::pseudo::{apply_min_foreground, saliency_labels, threshold_labels};
use coatt::cam::{
    read_cam, run_cams, run_pseudo, sweep_thresholds, write_cam, CamFile, CamMode, CamOptions,
    PseudoRule,
};
use coatt::cls::{train_cls, ClsConfig, TrainClsOptions, Variant};
use coatt::data::synth::{generate, SynthConfig};
use coatt::data::VocDataset;
use coatt::eval::Confusion;
use coatt::io::read_label_png;
use coatt::Device;
use rand::Rng;
use std::path::Path;

fn close_tol(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol, "element {i}: {x} vs {y}");
    }
}

fn close(a: &[f32], b: &[f32]) {
    close_tol(a, b, 1e-6)
}

#[test]
fn aggregate_follows_the_official_rules() {
    let mut m = vec![-1.0, 0.0, 2.0, 4.0];
    relu_max_normalize(&mut m);
    close(&m, &[0.0, 0.0, 0.5, 1.0]);
    // sigmoid(mean) > 0.1 ⇔ mean > ln(1/9) ≈ −2.197
    assert!(passes_filter(&[-2.0, -2.0]));
    assert!(!passes_filter(&[-2.3, -2.3]));
    let first_bad = vec![-9.0, -9.0, -9.0, 1.0]; // fails the filter, kept anyway (first map)
    let good = vec![1.0, 2.0, 0.0, -1.0];
    let bad = vec![-5.0, -5.0, -5.0, 8.0]; // mean −1.75 … passes
    let dropped = vec![-10.0, -10.0, 10.0, -10.0]; // mean −5 → dropped
    assert!(passes_filter(&bad) && !passes_filter(&dropped));
    let got = aggregate(&[first_bad, good, bad, dropped]);
    // (first [0,0,0,1] + good [0.5,1,0,0] + bad [0,0,0,1] + dropped 0) / 4 maps offered
    close(&got, &[0.125, 0.25, 0.0, 0.5]);
    assert!(aggregate(&[]).is_empty());
}

fn cam(classes: Vec<usize>, maps: Vec<f32>, h: usize, w: usize) -> CamFile {
    CamFile {
        id: "x".into(),
        height: h,
        width: w,
        classes,
        maps,
        background: None,
    }
}

#[test]
fn threshold_labels_ties_margin_and_small_foreground() {
    // classes 2 and 4 (labels 3 and 5); background score 0.3
    let c = cam(
        vec![2, 4],
        vec![
            0.9, 0.3, 0.1, 0.5, 0.6, //
            0.1, 0.1, 0.15, 0.5, 0.55,
        ],
        1,
        5,
    );
    // px0 class 2; px1 tie with bg → bg; px2 bg; px3 tie between classes → first (class 2);
    // px4 class 2
    assert_eq!(threshold_labels(&c, 0.3, 0.0), vec![3, 0, 0, 3, 3]);
    // margin 0.1: px1 (0.3 vs 0.3), px3 (0.5 vs 0.5), px4 (0.6 vs 0.55) → 255; px2 (0.3 vs
    // 0.15) keeps background
    assert_eq!(threshold_labels(&c, 0.3, 0.1), vec![3, 255, 0, 255, 255]);
    let mut l = vec![0u8; 200];
    l[0] = 3; // 0.5% foreground
    assert!(apply_min_foreground(&mut l, 0.01));
    assert!(l.iter().all(|&v| v == 255));
    let mut l = vec![0u8; 100];
    l[0] = 3;
    l[1] = 255;
    assert!(!apply_min_foreground(&mut l, 0.01), "exactly 1% is kept");
    assert_eq!(l[0], 3);
}

#[test]
fn saliency_rules_match_the_official_script() {
    // two classes (0 → label 1, 1 → label 2); maps are min-max normalised first, so the
    // values below are already in [0, 1] with a 0 and a 1 in each map.
    let c = cam(
        vec![0, 1],
        vec![
            1.0, 0.0, 0.2, 0.0, 0.5, 0.0, //
            1.0, 0.0, 0.0, 0.0, 0.6, 0.96,
        ],
        1,
        6,
    );
    let sal = [255u8, 0, 0, 200, 255, 0];
    let got = saliency_labels(&c, &sal);
    // px0: two channels > 0.99 → conflict 255
    // px1: bg 1.0, nothing else → 0 (saliency 0 < 32)
    // px2: class map 0.2 < 0.3 zeroed, bg 1 → 0
    // px3: bg 1−200/255 = 0.216 < 0.3 → 0, classes 0 → argmax bg; saliency 200 ≥ 32 → 255
    // px4: bg 0, class 1 0.6 beats class 0 0.5 → label 2
    // px5: bg 1 (sal 0) but a map > 0.95 → sal_att 255; argmax: bg 1.0 vs 0.96 → bg → 255
    assert_eq!(got, vec![255, 0, 0, 255, 2, 255]);
}

#[test]
fn map_files_round_trip_in_float16_and_reject_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = coatt::testing::rng(2);
    let maps: Vec<f32> = (0..2 * 3 * 5).map(|_| rng.gen::<f32>()).collect();
    let c = CamFile {
        id: "img_7".into(),
        height: 3,
        width: 5,
        classes: vec![1, 19],
        maps: maps.clone(),
        background: None,
    };
    write_cam(dir.path(), &c).unwrap();
    let back = read_cam(dir.path(), "img_7").unwrap();
    assert_eq!(
        (back.height, back.width, &back.classes),
        (3, 5, &vec![1, 19])
    );
    for (a, b) in back.maps.iter().zip(&maps) {
        assert!((a - b).abs() <= 1e-3 * b.abs().max(1e-3), "f16 {a} vs {b}");
    }
    assert!(back.background.is_none());
    // with a background channel (refined maps)
    let bg: Vec<f32> = (0..15).map(|i| i as f32 / 15.0).collect();
    let with_bg = CamFile {
        id: "img_8".into(),
        background: Some(bg.clone()),
        ..c.clone()
    };
    write_cam(dir.path(), &with_bg).unwrap();
    let back = read_cam(dir.path(), "img_8").unwrap();
    let got = back.background.expect("background kept");
    assert!(got.iter().zip(&bg).all(|(a, b)| (a - b).abs() <= 1e-3));
    let short_bg = CamFile {
        background: Some(vec![0.0; 4]),
        ..c.clone()
    };
    assert!(write_cam(dir.path(), &short_bg).is_err());
    let bad = CamFile {
        maps: vec![0.0; 7],
        ..c
    };
    assert!(write_cam(dir.path(), &bad).is_err());
    std::fs::write(dir.path().join("broken.safetensors"), b"not a file").unwrap();
    let e = read_cam(dir.path(), "broken").unwrap_err().to_string();
    assert!(e.contains("broken.safetensors"), "{e}");
}

fn micro_data(dir: &Path) {
    generate(&SynthConfig {
        out: dir.to_path_buf(),
        train: 12,
        val: 4,
        size: 40,
        classes: 3,
        seed: 11,
        kind: Default::default(),
        context_share: coatt::data::synth::DEFAULT_CONTEXT_SHARE,
    })
    .unwrap();
}

fn micro_run(data: &Path, run: &Path) {
    let cfg = ClsConfig {
        variant: Variant::Full,
        epochs: 1,
        max_iters_per_epoch: 2,
        batch: 3,
        workers: 1,
        ..ClsConfig::preset("micro").unwrap()
    };
    train_cls(&TrainClsOptions {
        data: data.to_path_buf(),
        out: run.to_path_buf(),
        config: cfg,
        device: Device::Cpu,
        resume: false,
        start_from: None,
        stop_after: None,
        quiet: true,
    })
    .unwrap();
}

fn all_maps(dir: &Path, ds: &VocDataset) -> Vec<CamFile> {
    ds.items
        .iter()
        .map(|it| read_cam(dir, &it.id).unwrap())
        .collect()
}

#[test]
fn cam_run_end_to_end_on_a_micro_dataset() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, run) = (tmp.path().join("data"), tmp.path().join("run"));
    micro_data(&data);
    micro_run(&data, &run);
    let ds = VocDataset::open(&data, "train").unwrap();

    let mut o = CamOptions::new(&run, &data, &tmp.path().join("cams"));
    o.related = 2;
    let s = run_cams(&o).unwrap();
    assert_eq!((s.written, s.existing), (ds.items.len(), 0));
    let maps = all_maps(&o.out, &ds);
    for (m, it) in maps.iter().zip(&ds.items) {
        assert_eq!(m.classes, it.labels);
        let img = image::open(&it.image).unwrap();
        assert_eq!(
            (m.width, m.height),
            (img.width() as usize, img.height() as usize)
        );
        assert!(m.maps.iter().all(|v| (0.0..=1.0 + 1e-3).contains(v)));
        for c in &m.classes {
            let name = &ds.class_names[c + 1];
            assert!(o
                .out
                .join("overlay")
                .join(format!("{}_{name}.png", it.id))
                .exists());
        }
    }
    // a second run finds every file and writes nothing; batching does not change the maps
    assert_eq!(run_cams(&o).unwrap().existing, ds.items.len());
    let mut o1 = o.clone();
    o1.out = tmp.path().join("cams_b1");
    o1.batch = 1;
    o1.overlays = false;
    run_cams(&o1).unwrap();
    // (the GEMM's blocking depends on the batch, so sums round differently: allow two
    // float16 steps at 1.0 in the stored maps)
    for (a, b) in maps.iter().zip(all_maps(&o1.out, &ds)) {
        close_tol(&a.maps, &b.maps, 2e-3);
    }
    // other modes run and give other maps
    for (mode, related, flip, scales) in [
        (CamMode::Single, 0, false, vec![1.0]),
        (CamMode::Single, 0, true, vec![0.75, 1.0]),
        (CamMode::Coatt, 0, true, vec![1.0, 1.25]),
    ] {
        let mut ov = o1.clone();
        ov.out = tmp
            .path()
            .join(format!("cams_{mode:?}_{related}_{flip}_{}", scales.len()));
        (ov.mode, ov.related, ov.flip, ov.scales) = (mode, related, flip, scales);
        run_cams(&ov).unwrap();
        let other = all_maps(&ov.out, &ds);
        assert!(other.iter().zip(&maps).any(|(a, b)| a.maps != b.maps));
    }

    // attention by feature similarity is W_P = I with the centred cosine at τ 0.03: the same
    // maps as those three set by hand, other maps than the trained attention's, and a record
    // that names it (a folder made with the other attention is not mixed with it)
    let mut os = o1.clone();
    os.out = tmp.path().join("cams_similarity");
    os.attention = coatt::cam::infer::Attention::Similarity;
    run_cams(&os).unwrap();
    let mut oh = o1.clone();
    oh.out = tmp.path().join("cams_by_hand");
    oh.affinity = Some(coatt::nn::Affinity::Centered);
    oh.temperature = Some(coatt::cam::infer::SIMILARITY_TAU);
    oh.probes = vec![coatt::cam::infer::Probe::IdentityWp];
    run_cams(&oh).unwrap();
    let similar = all_maps(&os.out, &ds);
    for (a, b) in similar.iter().zip(all_maps(&oh.out, &ds)) {
        assert_eq!(a.maps, b.maps);
    }
    assert!(similar.iter().zip(&maps).any(|(a, b)| a.maps != b.maps));
    let mut mixed = os.clone();
    mixed.attention = coatt::cam::infer::Attention::Trained;
    let e = run_cams(&mixed).unwrap_err().to_string();
    assert!(e.contains("attention"), "{e}");

    // the sweep agrees with labelling every image at each t and scoring it directly
    let thresholds = [0.0f32, 0.1, 0.25, 0.4];
    let sweep = sweep_thresholds(&o.out, &data, "train", &thresholds).unwrap();
    for (k, &t) in thresholds.iter().enumerate() {
        let mut conf = Confusion::new(ds.class_names.len());
        for (m, it) in maps.iter().zip(&ds.items) {
            let gt = read_label_png(it.mask.as_ref().unwrap()).unwrap();
            conf.add(&gt.data, &threshold_labels(m, t, 0.0)).unwrap();
        }
        assert_eq!(conf, sweep.confusions[k], "t = {t}");
        assert_eq!(sweep.miou[k], conf.miou());
    }
    assert!(sweep.miou[sweep.best] >= sweep.miou.iter().cloned().fold(0.0, f64::max));

    // pseudo labels: PNGs readable as raw indices, equal to the rule applied directly
    let labels = tmp.path().join("labels");
    let rule = PseudoRule::Threshold {
        bg: 0.25,
        ignore_margin: 0.0,
    };
    let stats = run_pseudo(
        &o.out,
        &labels,
        &rule,
        &coatt::cam::LabelFilters::min_fg(0.01),
        ds.class_names.len(),
    )
    .unwrap();
    assert_eq!(stats.images, ds.items.len());
    let mut total = 0;
    for m in &maps {
        let png = read_label_png(&labels.join(format!("{}.png", m.id))).unwrap();
        let mut want = threshold_labels(m, 0.25, 0.0);
        apply_min_foreground(&mut want, 0.01);
        assert_eq!(png.data, want);
        total += want.len() as u64;
    }
    assert_eq!(stats.pixels.iter().sum::<u64>() + stats.ignored, total);
    let (conf, _) = coatt::eval::evaluate_folder(&labels, &data, "train", true).unwrap();
    assert!(conf.coverage() > 0.0 && conf.coverage() <= 1.0);
}

#[test]
fn missing_maps_and_bad_options_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, run) = (tmp.path().join("data"), tmp.path().join("run"));
    micro_data(&data);
    let o = CamOptions::new(&run, &data, &tmp.path().join("cams"));
    let e = run_cams(&o).unwrap_err().to_string();
    assert!(e.contains("config.toml"), "{e}");
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let e = sweep_thresholds(&empty, &data, "train", &[0.1])
        .unwrap_err()
        .to_string();
    assert!(e.contains(".safetensors"), "{e}");
    let e = run_pseudo(
        &empty,
        &tmp.path().join("l"),
        &PseudoRule::Threshold {
            bg: 0.2,
            ignore_margin: 0.0,
        },
        &coatt::cam::LabelFilters::min_fg(0.01),
        4,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("cams"), "{e}");
}

/// Random features (f32, CPU) of the given shape.
fn features(dims: [usize; 4], seed: u64) -> coatt::Tensor {
    let mut r = coatt::testing::rng(seed);
    let n = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| r.gen_range(0.0..1.0)).collect();
    coatt::Tensor::from_vec(v, dims, Device::Cpu).unwrap()
}

#[test]
fn coattentive_fusion_is_per_image_and_ignores_the_order_of_related_images() {
    use coatt::cam::fusion::{coattentive_maps, CoattFeatures};
    let (c, k) = (6, 3);
    let mut head = coatt::nn::CoattHead::new(
        c,
        k,
        coatt::nn::Init::KaimingNormal,
        coatt::DType::F32,
        Device::Cpu,
        &mut coatt::testing::rng(9),
    );
    // a scorer with positive weights over positive features: every map has a foreground
    let phi: Vec<f32> = (0..k * c).map(|i| 0.05 + 0.01 * (i % 7) as f32).collect();
    head.phi = coatt::Tensor::from_vec(phi, [k, c], Device::Cpu).unwrap();
    let images = features([2, c, 4, 5], 1);
    let flipped = features([2, c, 4, 5], 2);
    let small = features([2, c, 3, 4], 3);
    let large = features([2, c, 8, 10], 4);
    let rel = |s| features([1, c, 4, 5], s);
    // image 0 (classes 0, 2) has two related images for class 0, one for class 2; image 1
    // (class 1) has one
    let related = vec![
        (0, 0, rel(10)),
        (1, 1, rel(11)),
        (0, 2, rel(12)),
        (0, 0, rel(13)),
    ];
    let classes = vec![vec![0, 2], vec![1]];
    let f = CoattFeatures {
        images: &images,
        flipped: &flipped,
        small: &small,
        large: &large,
        related: &related,
    };
    let maps = coattentive_maps(&head, &f, &classes).unwrap();
    assert_eq!(maps.len(), 2);
    assert_eq!((maps[0].len(), maps[1].len()), (2, 1));
    for m in maps.iter().flatten() {
        assert_eq!(m.len(), 20);
        assert!(m.iter().all(|v| (0.0..=1.0).contains(v)), "{m:?}");
        assert!(
            m.iter().any(|&v| v > 0.0),
            "an empty map tests nothing: {m:?}"
        );
    }
    // the order of the related images does not matter
    let mut reversed = related.clone();
    reversed.reverse();
    let f_rev = CoattFeatures {
        related: &reversed,
        ..f
    };
    let again = coattentive_maps(&head, &f_rev, &classes).unwrap();
    for (a, b) in maps.iter().flatten().zip(again.iter().flatten()) {
        close_tol(a, b, 1e-6);
    }
    // image 1 alone (a batch of one, its own related image) gets the same map as in the batch
    let one = |t: &coatt::Tensor| t.narrow(0, 1, 1).unwrap().copy();
    let (i1, f1, s1, l1) = (one(&images), one(&flipped), one(&small), one(&large));
    let rel1 = vec![(0, 1, rel(11))];
    let alone = coattentive_maps(
        &head,
        &CoattFeatures {
            images: &i1,
            flipped: &f1,
            small: &s1,
            large: &l1,
            related: &rel1,
        },
        &[vec![1]],
    )
    .unwrap();
    close_tol(&alone[0][0], &maps[1][0], 1e-6);
    // a related image changes the map of its own image and class only
    let mut other = related.clone();
    other[2] = (0, 2, rel(99));
    let changed = coattentive_maps(
        &head,
        &CoattFeatures {
            related: &other,
            ..f
        },
        &classes,
    )
    .unwrap();
    close_tol(&changed[0][0], &maps[0][0], 0.0);
    close_tol(&changed[1][0], &maps[1][0], 0.0);
    assert_ne!(changed[0][1], maps[0][1]);
}

#[test]
fn confident_background_ignores_only_background_the_raw_maps_call_object() {
    use coatt::cam::pseudo::{ignore_unsure_background, ConfidentBackground};
    // raw maps of classes 0 and 2 over six pixels; class 2 peaks at 0.5, so scaled to a
    // maximum of 1 it reaches t = 0.5 at pixels 3 (0.3 / 0.5) and 4
    let raw = CamFile {
        id: "a".into(),
        height: 1,
        width: 6,
        classes: vec![0, 2],
        maps: vec![
            0.1, 1.0, 0.4, 0.0, 0.0, 0.0, // class 0
            0.0, 0.0, 0.0, 0.3, 0.5, 0.2, // class 2
        ],
        background: None,
    };
    // the refinement's labels: background, class 0, background, background, class 2, bg
    let mut labels = vec![0u8, 1, 0, 0, 3, 0];
    ignore_unsure_background(&mut labels, &raw, 0.5);
    // pixel 2: 0.4 < t stays background; pixel 3: 0.6 ≥ t becomes 255; labels kept
    assert_eq!(labels, vec![0, 1, 0, 255, 3, 0]);

    // through `run_pseudo`: refined maps with a background channel and their raw maps
    let tmp = tempfile::tempdir().unwrap();
    let (refined, raw_dir) = (tmp.path().join("refined"), tmp.path().join("raw"));
    let r = CamFile {
        maps: vec![
            0.0, 0.9, 0.1, 0.1, 0.0, 0.0, // class 0
            0.0, 0.0, 0.0, 0.2, 0.8, 0.0, // class 2
        ],
        background: Some(vec![0.9, 0.1, 0.8, 0.7, 0.2, 0.9]),
        ..raw.clone()
    };
    write_cam(&refined, &r).unwrap();
    write_cam(&raw_dir, &raw).unwrap();
    let rule = |raw: &Path| PseudoRule::Argmax {
        ignore_margin: 0.0,
        confident: Some(ConfidentBackground {
            raw: raw.to_path_buf(),
            t: 0.5,
        }),
    };
    let out = tmp.path().join("labels");
    let stats = run_pseudo(
        &refined,
        &out,
        &rule(&raw_dir),
        &coatt::cam::LabelFilters::min_fg(0.0),
        4,
    )
    .unwrap();
    assert_eq!(
        read_label_png(&out.join("a.png")).unwrap().data,
        vec![0, 1, 0, 255, 3, 0]
    );
    assert_eq!((stats.ignored, stats.pixels[0]), (1, 3));

    // raw maps of another size, or none for an image, are named
    write_cam(
        &raw_dir,
        &CamFile {
            width: 3,
            maps: vec![0.5; 6],
            ..raw.clone()
        },
    )
    .unwrap();
    let e = run_pseudo(
        &refined,
        &tmp.path().join("l2"),
        &rule(&raw_dir),
        &coatt::cam::LabelFilters::min_fg(0.0),
        4,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("a.safetensors") && e.contains("3×1"), "{e}");
    let e = run_pseudo(
        &refined,
        &tmp.path().join("l3"),
        &rule(&tmp.path().join("nothing")),
        &coatt::cam::LabelFilters::min_fg(0.0),
        4,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("a.safetensors") && e.contains("missing"), "{e}");
}

#[test]
fn border_regions_are_ignored_by_their_boundary_connectivity() {
    use coatt::cam::pseudo::ignore_border_regions;
    // 8×8: a ground band of class 1 over the two bottom rows (10 border pixels / √16 = 2.5),
    // a 2×2 object of class 2 inside (0), a 3×3 object of class 2 in the top-left corner
    // (5 / 3 = 1.67), two interior objects (classes 3 and 4, no border pixel) and a 255
    #[rustfmt::skip]
    let mut labels: Vec<u8> = vec![
        2, 2, 2, 0, 0, 0, 0, 0,
        2, 2, 2, 0, 4, 4, 0, 0,
        2, 2, 2, 0, 4, 4, 0, 0,
        0, 0, 0, 0, 4, 4, 0, 0,
        0, 3, 3, 0, 4, 4, 0, 0,
        0, 3, 3, 0, 0, 0, 255, 0,
        1, 1, 1, 1, 1, 1, 1, 1,
        1, 1, 1, 1, 1, 1, 1, 1,
    ];
    let before = labels.clone();
    let ignored = ignore_border_regions(&mut labels, 8, 8, 1.18);
    // ignored: the band (16 px) and the corner object (9 px); kept: the interior objects
    // (class 3, 0 border pixels; class 4, 0) and background and 255 as they were
    assert_eq!(ignored, 25);
    for (p, (&b, &a)) in before.iter().zip(&labels).enumerate() {
        let want = if b == 1 || b == 2 { 255 } else { b };
        assert_eq!(a, want, "pixel {p}");
    }
    // one class, two regions: only the one on the border goes; an object that touches the
    // border along a short edge stays (4 border pixels of 16: 4 / 4 = 1.0 ≤ 1.18)
    #[rustfmt::skip]
    let mut labels: Vec<u8> = vec![
        0, 5, 5, 5, 5, 0, 0, 0,
        0, 5, 5, 5, 5, 0, 0, 0,
        0, 5, 5, 5, 5, 0, 0, 0,
        0, 5, 5, 5, 5, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 0,
        0, 0, 0, 0, 0, 0, 0, 5,
        0, 0, 0, 0, 0, 0, 5, 5,
        0, 0, 0, 0, 0, 5, 5, 5,
    ];
    let ignored = ignore_border_regions(&mut labels, 8, 8, 1.18);
    assert_eq!(ignored, 6, "the corner region: 5 border pixels / √6 = 2.04");
    assert!(labels[..32].iter().all(|&l| l != 255));
    assert!(labels[40..].iter().all(|&l| l == 0 || l == 255));
}

//! Extra training data (paper §3.2): the domain → W_P rule, pairing across sets, the grouped
//! loss, checkpoints with three W_P, and the paths a real web folder takes through the reader
//! (greyscale, CMYK, mixed sizes, error pages, truncated and missing files, noisy labels).
use coatt::cam::infer::{run_cams, CamMode, CamOptions};
use coatt::cls::load_classifier;
use coatt::cls::{train_cls, Classifier, ClsConfig, TrainClsOptions, Variant};
use coatt::data::extra::{open_extra, training_set};
use coatt::data::loader::{wp_runs, LoaderConfig, PairLoader, WpRun};
use coatt::data::sampler::epoch_pairs;
use coatt::data::synth::{generate, generate_extra, ExtraSynth, SynthConfig};
use coatt::data::{Domain, ExtraKind, ExtraSpec, VocDataset};
use coatt::io::Checkpoint;
use coatt::{DType, Device, Tensor};
use std::path::Path;
use std::sync::Arc;

fn synth_cfg(dir: &Path, train: usize, val: usize, seed: u64) -> SynthConfig {
    SynthConfig {
        out: dir.to_path_buf(),
        train,
        val,
        size: 40,
        classes: 3,
        seed,
        kind: Default::default(),
        context_share: coatt::data::synth::DEFAULT_CONTEXT_SHARE,
    }
}

fn spec(path: &Path, kind: ExtraKind) -> ExtraSpec {
    ExtraSpec {
        path: path.to_path_buf(),
        kind,
    }
}

fn run((start, len, pair_wp, self_wp): (usize, usize, usize, usize)) -> WpRun {
    WpRun {
        start,
        len,
        pair_wp,
        self_wp,
    }
}

#[test]
fn domain_pairs_pick_their_w_p() {
    use Domain::*;
    let cases = [
        (Target, Target, 0),
        (Target, Web, 0),
        (Web, Web, 0),
        (SingleLabel, SingleLabel, 1),
        (Target, SingleLabel, 2),
        (SingleLabel, Target, 2),
        (SingleLabel, Web, 2),
    ];
    for (a, b, want) in cases {
        assert_eq!(Domain::wp_index(a, b), want, "{a:?}-{b:?}");
    }
    assert_eq!(
        "d:single".parse::<ExtraSpec>().unwrap().kind,
        ExtraKind::Single
    );
    assert_eq!("d:web".parse::<ExtraSpec>().unwrap().kind, ExtraKind::Web);
    assert_eq!("a/b".parse::<ExtraSpec>().unwrap().kind, ExtraKind::Web);
    assert!("d:singel".parse::<ExtraSpec>().is_err());
    assert_eq!(
        wp_runs(&[(0, 0), (0, 0), (1, 1), (2, 0), (2, 1), (2, 1)]),
        [(0, 2, 0, 0), (2, 1, 1, 1), (3, 1, 2, 0), (4, 2, 2, 1)].map(run)
    );
}

/// A head with three W_P uses the one each pair asks for; maps for CAMs use the target's.
#[test]
fn head_selects_w_p_and_cam_maps_use_the_target_one() {
    let mut cfg = ClsConfig::preset("micro").unwrap();
    cfg.extra = vec![spec(Path::new("x"), ExtraKind::Single)];
    let mut rng = coatt::testing::rng(5);
    let m = Classifier::new(&cfg, 3, Device::Cpu, &mut rng);
    assert_eq!(m.head.wp_domains.len(), 2);
    let names: Vec<String> = m.named_params().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"head.wp_extra".into()) && names.contains(&"head.wp_mixed".into()));
    // a single-domain model draws the same initial weights as before the extra W_P existed
    let plain = Classifier::new(
        &ClsConfig::preset("micro").unwrap(),
        3,
        Device::Cpu,
        &mut coatt::testing::rng(5),
    );
    for ((n, a), (_, b)) in plain.named_params().iter().zip(m.named_params().iter()) {
        assert_eq!(a.to_vec_f64(), b.to_vec_f64(), "{n}");
    }
    let c = m.head.channels();
    let f1 = Tensor::randn([2, c, 3, 3], 1.0, DType::F32, Device::Cpu, &mut rng);
    let f2 = Tensor::randn([2, c, 3, 3], 1.0, DType::F32, Device::Cpu, &mut rng);
    let logits = |h: &coatt::nn::CoattHead, wp: usize| {
        let (co, cx) = h.pair_with(&f1, &f2, true, wp).unwrap();
        [&co[0], &co[1], &cx.as_ref().unwrap()[0]].map(|t| t.to_vec_f64())
    };
    for wp in 1..3 {
        let mut h = m.head.clone();
        h.wp = m.head.wp_domains[wp - 1].clone();
        h.wp_domains.clear();
        assert_eq!(logits(&m.head, wp), logits(&h, 0), "W_P {wp}");
        assert_ne!(logits(&m.head, wp), logits(&m.head, 0));
    }
    // CAM maps: changing the extra W_P changes nothing
    let before = m.head.pair_maps(&f1, &f2).unwrap()[0].to_vec_f64();
    let mut h = m.head.clone();
    h.wp_domains = vec![
        h.wp_domains[0].mul_scalar(3.0),
        h.wp_domains[1].mul_scalar(-1.0),
    ];
    assert_eq!(h.pair_maps(&f1, &f2).unwrap()[0].to_vec_f64(), before);
    let plain_head = plain.head.clone();
    assert!(
        plain_head.wp_at(1).is_err(),
        "no extra W_P without single-label data"
    );
}

/// Per-run co-attention terms weighted by run size equal the whole-batch terms: with all three
/// W_P equal, grouping must not change the loss; with different W_P each run's own value
/// (a BN-free backbone, so features do not depend on the batch) is what counts.
#[test]
fn grouped_loss_weighs_runs_by_their_share() {
    let mut cfg = ClsConfig::preset("micro").unwrap();
    cfg.variant = Variant::Full;
    cfg.backbone.batch_norm = false;
    cfg.extra = vec![spec(Path::new("x"), ExtraKind::Single)];
    let mut rng = coatt::testing::rng(8);
    let m = Classifier::new(&cfg, 3, Device::Cpu, &mut rng);
    let s = cfg.input_size;
    let x1 = Tensor::randn([4, 3, s, s], 1.0, DType::F32, Device::Cpu, &mut rng);
    let x2 = Tensor::randn([4, 3, s, s], 1.0, DType::F32, Device::Cpu, &mut rng);
    let l = |v: &[f64]| Tensor::from_f64(v, [4, 3], DType::F32, Device::Cpu).unwrap();
    let l1 = l(&[1., 0., 1., 0., 1., 0., 1., 1., 0., 0., 0., 1.]);
    let l2 = l(&[1., 1., 0., 0., 1., 1., 1., 0., 0., 1., 0., 1.]);
    let runs = [(0, 1, 0, 0), (1, 2, 2, 0), (3, 1, 1, 1)].map(run);
    let terms = |m: &Classifier, x1: &Tensor, x2: &Tensor, l1: &Tensor, l2: &Tensor, r: &[_]| {
        let got = m
            .iteration_loss_grouped(&cfg, x1, x2, l1, l2, 2, r)
            .unwrap();
        [
            got.coatt.unwrap().to_scalar().unwrap(),
            got.contrastive.unwrap().to_scalar().unwrap(),
        ]
    };
    let close = |a: [f64; 2], b: [f64; 2], what: &str| {
        for (x, y) in a.iter().zip(&b) {
            assert!(
                (x - y).abs() < 1e-5 * y.abs().max(1.0),
                "{what}: {a:?} vs {b:?}"
            );
        }
    };
    let mut same = m.clone();
    same.head.wp_domains = vec![m.head.wp.clone(), m.head.wp.clone()];
    close(
        terms(&same, &x1, &x2, &l1, &l2, &runs),
        terms(&same, &x1, &x2, &l1, &l2, &[WpRun::whole(4)]),
        "equal W_P",
    );
    let grouped = terms(&m, &x1, &x2, &l1, &l2, &runs);
    let mut want = [0.0; 2];
    for r in &runs {
        let p = |t: &Tensor| t.narrow(0, r.start, r.len).unwrap();
        let alone = WpRun { start: 0, ..*r };
        let part = terms(&m, &p(&x1), &p(&x2), &p(&l1), &p(&l2), &[alone]);
        for i in 0..2 {
            want[i] += part[i] * r.len as f64 / 4.0;
        }
    }
    close(grouped, want, "runs with their own W_P");
    assert_ne!(
        grouped[0],
        terms(&m, &x1, &x2, &l1, &l2, &[WpRun::whole(4)])[0],
        "the extra W_P take part"
    );
}

/// A web folder as crawls deliver it: every readable file kept (greyscale, CMYK, odd sizes),
/// every unreadable one named with its reason, the rest trains.
#[test]
fn web_folder_with_broken_files_is_reported_and_skipped() {
    let d = tempfile::tempdir().unwrap();
    let target = d.path().join("target");
    generate(&synth_cfg(&target, 6, 2, 1)).unwrap();
    let names = VocDataset::open(&target, "train").unwrap().class_names;
    let web = d.path().join("web");
    std::fs::create_dir_all(web.join("img")).unwrap();
    let rgb = image::RgbImage::from_fn(37, 23, |x, y| image::Rgb([x as u8 * 6, y as u8 * 9, 90]));
    rgb.save(web.join("img/wide.jpg")).unwrap();
    image::GrayImage::from_pixel(19, 30, image::Luma([120]))
        .save(web.join("img/grey.jpg"))
        .unwrap();
    // written by Pillow (Image.new('RGB', (24, 20), (220, 30, 40)).convert('CMYK').save(...))
    std::fs::copy(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/cmyk.jpg"),
        web.join("img/cmyk.jpg"),
    )
    .unwrap();
    rgb.save(web.join("img/real_png.jpg.png")).unwrap();
    std::fs::rename(
        web.join("img/real_png.jpg.png"),
        web.join("img/png_named_jpg.jpg"),
    )
    .unwrap();
    std::fs::write(web.join("img/page.jpg"), b"<html>404 Not Found</html>").unwrap();
    let full = std::fs::read(web.join("img/wide.jpg")).unwrap();
    std::fs::write(web.join("img/cut.jpg"), &full[..120]).unwrap();
    std::fs::write(web.join("img/empty.jpg"), b"").unwrap();
    std::fs::write(
        web.join("list.txt"),
        "# crawled for three queries\n\
         img/wide.jpg red-head\n\
         img/grey.jpg 1\n\
         img/cmyk.jpg blue-head green-head\n\
         img/png_named_jpg.jpg 2\n\
         img/page.jpg red-head\n\
         img/cut.jpg 0\n\
         img/empty.jpg 0\n\
         img/missing.jpg 0\n",
    )
    .unwrap();
    let (items, rep) = open_extra(&spec(&web.join("list.txt"), ExtraKind::Web), &names, 0).unwrap();
    let kept: Vec<&str> = items.iter().map(|i| i.id.as_str()).collect();
    assert_eq!(
        kept,
        [
            "extra0:img/wide.jpg",
            "extra0:img/grey.jpg",
            "extra0:img/cmyk.jpg",
            "extra0:img/png_named_jpg.jpg"
        ]
    );
    assert_eq!(items[2].labels, vec![1, 2], "names resolve to ids");
    assert!(items
        .iter()
        .all(|i| i.domain == Domain::Web && i.mask.is_none()));
    assert_eq!(rep.skipped.len(), 4, "{:?}", rep.skipped);
    for bad in ["page.jpg", "cut.jpg", "empty.jpg", "missing.jpg"] {
        assert!(
            rep.skipped.iter().any(|s| s.contains(bad)),
            "{bad} reported"
        );
    }
    assert!(rep.render(&names).contains("4 skipped"));
    // CMYK decodes to the colour Pillow was given
    let px = coatt::data::voc::load_rgb(&web.join("img/cmyk.jpg")).unwrap();
    let p = px.get_pixel(5, 5).0;
    assert!(
        (p[0] as i32 - 220).abs() < 12
            && (p[1] as i32 - 30).abs() < 12
            && (p[2] as i32 - 40).abs() < 12,
        "CMYK → RGB {p:?}"
    );
    // the kept images go through the loader like any other
    let (ds, _) = training_set(
        VocDataset::open(&target, "train").unwrap(),
        &[spec(&web.join("list.txt"), ExtraKind::Web)],
    )
    .unwrap();
    let ds = Arc::new(ds);
    let pairs = Arc::new(epoch_pairs(&ds, &ds.by_class(), 1, 0));
    let cfg = LoaderConfig {
        size: 32,
        batch: 4,
        workers: 2,
        prefetch: 1,
        jitter: None,
        seed: 1,
        epoch: 0,
    };
    let batches: Vec<_> = PairLoader::start(ds.clone(), pairs.clone(), cfg, 0).collect();
    assert_eq!(batches.iter().map(|b| b.len()).sum::<usize>(), pairs.len());
    assert!(batches.iter().all(|b| b.skipped.is_empty()));

    // bad lists and folders are errors that name the file
    std::fs::write(web.join("bad.txt"), "img/wide.jpg zebra\n").unwrap();
    let e = open_extra(&spec(&web.join("bad.txt"), ExtraKind::Web), &names, 0).unwrap_err();
    assert!(
        e.to_string().contains("bad.txt") && e.to_string().contains("line 1"),
        "{e}"
    );
    std::fs::write(web.join("broken_only.txt"), "img/page.jpg 0\n").unwrap();
    let e = open_extra(
        &spec(&web.join("broken_only.txt"), ExtraKind::Web),
        &names,
        0,
    )
    .unwrap_err();
    assert!(e.to_string().contains("no usable image"), "{e}");
    let other = d.path().join("other");
    generate(&SynthConfig {
        classes: 4,
        ..synth_cfg(&other, 2, 1, 1)
    })
    .unwrap();
    let e = open_extra(&spec(&other, ExtraKind::Single), &names, 0).unwrap_err();
    assert!(e.to_string().contains("other classes"), "{e}");
    assert!(open_extra(&spec(&d.path().join("nope"), ExtraKind::Web), &names, 0).is_err());
}

#[test]
fn synthetic_extra_sets_single_label_and_noisy_web() {
    let d = tempfile::tempdir().unwrap();
    let single = synth_cfg(&d.path().join("single"), 60, 0, 2);
    let st = generate_extra(&single, ExtraSynth::Single).unwrap();
    let ds = VocDataset::open(&single.out, "train").unwrap();
    assert!(ds.items.len() >= 55 && ds.items.iter().all(|i| i.labels.len() == 1));
    assert_eq!(st.per_class.iter().sum::<usize>(), ds.items.len());
    assert!(!single.out.join("SegmentationClass").exists(), "no masks");
    // same config, same bytes; the studio look differs from the target's
    let again = synth_cfg(&d.path().join("again"), 60, 0, 2);
    generate_extra(&again, ExtraSynth::Single).unwrap();
    for id in ["s00000", "s00031"] {
        let f = |root: &Path| std::fs::read(root.join(format!("JPEGImages/{id}.jpg"))).unwrap();
        assert_eq!(f(&single.out), f(&again.out));
    }
    let mean = |img: &image::RgbImage| {
        img.pixels()
            .map(|p| p.0.iter().map(|&v| v as f64).sum::<f64>())
            .sum::<f64>()
            / (3 * img.width() * img.height()) as f64
    };
    let target = d.path().join("target");
    generate(&synth_cfg(&target, 20, 0, 2)).unwrap();
    let bright = |root: &Path| {
        (0..20)
            .map(|i| {
                mean(
                    &image::open(root.join(format!("JPEGImages/s{i:05}.jpg")))
                        .unwrap()
                        .to_rgb8(),
                )
            })
            .sum::<f64>()
            / 20.0
    };
    assert!(
        bright(&single.out) > bright(&target) + 30.0,
        "studio backgrounds are bright"
    );

    let web = synth_cfg(&d.path().join("web"), 400, 0, 3);
    let st = generate_extra(&web, ExtraSynth::Web { label_noise: 0.3 }).unwrap();
    let read = |f: &str| -> Vec<(String, Vec<usize>)> {
        std::fs::read_to_string(web.out.join(f))
            .unwrap()
            .lines()
            .map(|l| {
                let mut it = l.split_whitespace();
                let id = it.next().unwrap().to_string();
                (id, it.map(|v| v.parse().unwrap()).collect())
            })
            .collect()
    };
    let (noisy, clean) = (read("cls_labels.txt"), read("cls_labels_clean.txt"));
    assert_eq!(noisy.len(), 400);
    let wrong = noisy
        .iter()
        .zip(&clean)
        .filter(|((_, l), (_, c))| {
            assert_eq!(l.len(), 1, "one query label per web image");
            !c.contains(&l[0])
        })
        .count();
    assert_eq!(wrong, st.wrong_labels);
    assert!(
        (80..=160).contains(&wrong),
        "≈30% wrong labels, got {wrong}/400"
    );
    assert!(st.greyscale > 5 && st.broken >= 1, "{st:?}");
    let (_, rep) = open_extra(
        &spec(&web.out, ExtraKind::Web),
        &coatt::data::synth::class_names(3),
        1,
    )
    .unwrap();
    assert_eq!(rep.skipped.len(), st.broken, "{:?}", rep.skipped);
    assert_eq!(rep.images, 400 - st.broken);
    let sizes: std::collections::HashSet<(u32, u32)> = (0..20)
        .filter_map(|i| {
            image::image_dimensions(web.out.join(format!("JPEGImages/s{i:05}.jpg"))).ok()
        })
        .collect();
    assert!(sizes.len() > 10, "mixed sizes");
    assert!(generate_extra(&web, ExtraSynth::Web { label_noise: 1.5 }).is_err());
}

/// Pairs drawn over target + extra sets always share a class, cross the domains, and the
/// loader groups each batch by W_P with its labels still matching its ids.
#[test]
fn mixed_pairs_share_a_class_and_batches_group_by_w_p() {
    let d = tempfile::tempdir().unwrap();
    let target = d.path().join("target");
    generate(&synth_cfg(&target, 24, 2, 1)).unwrap();
    let single = synth_cfg(&d.path().join("single"), 24, 0, 2);
    generate_extra(&single, ExtraSynth::Single).unwrap();
    let web = synth_cfg(&d.path().join("web"), 24, 0, 3);
    generate_extra(&web, ExtraSynth::Web { label_noise: 0.3 }).unwrap();
    let (ds, reps) = training_set(
        VocDataset::open(&target, "train").unwrap(),
        &[
            spec(&single.out, ExtraKind::Single),
            spec(&web.out, ExtraKind::Web),
        ],
    )
    .unwrap();
    assert_eq!(reps.len(), 2);
    let n_target = 24;
    assert!(ds.items[..n_target]
        .iter()
        .all(|i| i.domain == Domain::Target));
    assert!(ds.items[n_target..]
        .iter()
        .any(|i| i.domain == Domain::SingleLabel));
    let ds = Arc::new(ds);
    let by = ds.by_class();
    let mut kinds = std::collections::HashSet::new();
    for epoch in 0..3 {
        let pairs = epoch_pairs(&ds, &by, 4, epoch);
        assert_eq!(
            pairs.len(),
            ds.items.iter().filter(|i| !i.labels.is_empty()).count()
        );
        for p in &pairs {
            let (a, b) = (&ds.items[p.first], &ds.items[p.second]);
            assert!(a.labels.contains(&p.class) && b.labels.contains(&p.class));
            kinds.insert(Domain::wp_index(a.domain, b.domain));
        }
    }
    assert_eq!(kinds.len(), 3, "target, extra and mixed pairs all occur");
    let pairs = Arc::new(epoch_pairs(&ds, &by, 4, 0));
    let cfg = LoaderConfig {
        size: 32,
        batch: 6,
        workers: 2,
        prefetch: 1,
        jitter: None,
        seed: 4,
        epoch: 0,
    };
    let id_of: std::collections::HashMap<&str, &coatt::data::Item> =
        ds.items.iter().map(|i| (i.id.as_str(), i)).collect();
    for b in PairLoader::start(ds.clone(), pairs, cfg, 0) {
        assert!(b.wp.windows(2).all(|w| w[0] <= w[1]), "grouped: {:?}", b.wp);
        for (i, (a, c)) in b.ids.iter().enumerate() {
            let (a, c) = (id_of[a.as_str()], id_of[c.as_str()]);
            assert_eq!(
                b.wp[i],
                (
                    Domain::wp_index(a.domain, c.domain),
                    Domain::wp_index(a.domain, a.domain)
                )
            );
            let k = 3;
            let hot = |l: &[usize]| {
                (0..k)
                    .map(|c| l.contains(&c) as u8 as f32)
                    .collect::<Vec<_>>()
            };
            assert_eq!(b.l1[i * k..(i + 1) * k], hot(&a.labels)[..]);
            assert_eq!(b.l2[i * k..(i + 1) * k], hot(&c.labels)[..]);
        }
        assert_eq!(b.wp_runs().iter().map(|r| r.len).sum::<usize>(), b.len());
    }
}

/// `train-cls` with extra sets: the config records them, the checkpoint holds three W_P, a
/// resumed run ends where an uninterrupted one does, and CAM inference loads the run.
#[test]
fn training_with_extra_data_checkpoints_three_w_p_and_resumes() {
    let d = tempfile::tempdir().unwrap();
    let target = d.path().join("target");
    generate(&synth_cfg(&target, 12, 4, 1)).unwrap();
    let single = synth_cfg(&d.path().join("single"), 12, 0, 2);
    generate_extra(&single, ExtraSynth::Single).unwrap();
    let cfg = ClsConfig {
        variant: Variant::Full,
        epochs: 2,
        coattention_from: 0,
        contrastive_from: 1,
        max_iters_per_epoch: 3,
        batch: 4,
        workers: 2,
        extra: vec![spec(&single.out, ExtraKind::Single)],
        ..ClsConfig::preset("micro").unwrap()
    };
    let opts = |out: &Path, resume, stop_after| TrainClsOptions {
        data: target.clone(),
        out: out.to_path_buf(),
        config: cfg.clone(),
        device: Device::Cpu,
        resume,
        start_from: None,
        stop_after,
        quiet: true,
    };
    let (a, b) = (d.path().join("a"), d.path().join("b"));
    train_cls(&opts(&a, false, None)).unwrap();
    train_cls(&opts(&b, false, Some(2))).unwrap();
    train_cls(&opts(&b, true, None)).unwrap();
    let (ca, cb) = (
        Checkpoint::open(a.join("last.safetensors")).unwrap(),
        Checkpoint::open(b.join("last.safetensors")).unwrap(),
    );
    for n in ["head.wp", "head.wp_extra", "head.wp_mixed"] {
        let w = |c: &Checkpoint| c.get(n, DType::F32, Device::Cpu).unwrap().to_vec_f64();
        assert_eq!(w(&ca), w(&cb), "{n} after resume");
    }
    assert_eq!(
        ClsConfig::load(&a.join("config.toml")).unwrap().extra,
        cfg.extra
    );
    // the extra W_P were trained (mixed and extra pairs occurred)
    let fresh = Classifier::new(&cfg, 3, Device::Cpu, &mut coatt::testing::rng(cfg.seed));
    let trained = ca
        .get("head.wp_extra", DType::F32, Device::Cpu)
        .unwrap()
        .to_vec_f64();
    assert_ne!(trained, fresh.head.wp_domains[0].to_vec_f64());
    // CAM inference on the target set loads all three and runs with the target W_P
    let (m, _) = load_classifier(&a, None, 3, Device::Cpu).unwrap();
    assert_eq!(m.head.wp_domains.len(), 2);
    let mut o = CamOptions::new(&a, &target, &d.path().join("cams"));
    o.mode = CamMode::Coatt;
    o.related = 1;
    o.overlays = false;
    let s = run_cams(&o).unwrap();
    assert_eq!(s.written, 12);
}

/// `wp_lr_mult` moves every W_P (three with single-label data) into a group of its own with
/// the multiplied lr; by default the four official groups are unchanged.
#[test]
fn w_p_lr_group_holds_every_w_p() {
    let mut cfg = ClsConfig::preset("micro").unwrap();
    let m = Classifier::new(&cfg, 3, Device::Cpu, &mut coatt::testing::rng(1));
    let names =
        |g: &[coatt::optim::ParamGroup]| g.iter().map(|g| g.name.clone()).collect::<Vec<_>>();
    let plain = m.param_groups(&cfg);
    assert_eq!(plain.len(), 4, "{:?}", names(&plain));
    cfg.extra = vec![spec(Path::new("x"), ExtraKind::Single)];
    cfg.wp_lr_mult = 10.0;
    let m = Classifier::new(&cfg, 3, Device::Cpu, &mut coatt::testing::rng(1));
    let g = m.param_groups(&cfg);
    let wp = g.iter().find(|g| g.name == "coattention_wp").unwrap();
    assert_eq!(wp.params.len(), 3);
    assert!((wp.lr - cfg.lr * cfg.new_lr_mult * 10.0).abs() < 1e-12);
    let ids: Vec<_> = [&m.head.wp, &m.head.wp_domains[0], &m.head.wp_domains[1]]
        .iter()
        .map(|t| t.id())
        .collect();
    assert!(wp.params.iter().all(|t| ids.contains(&t.id())));
    let new_weights = g.iter().find(|g| g.name == "new_weights").unwrap();
    assert!(new_weights.params.iter().all(|t| !ids.contains(&t.id())));
    let total: usize = g.iter().map(|g| g.params.len()).sum();
    assert_eq!(
        total,
        m.named_params().len(),
        "every parameter in exactly one group"
    );
}

//! Classifier training: the loss of one official iteration against a composition of
//! primitives, bit-exact resume, NaN handling, run-folder protection, outputs.
use coatt::cls::{train_cls, Classifier, ClsConfig, TrainClsOptions, Variant};
use coatt::data::synth::{generate, SynthConfig};
use coatt::io::Checkpoint;
use coatt::{backward, DType, Device, Result, Tensor};
use std::path::Path;

fn micro_data(dir: &Path) {
    generate(&SynthConfig {
        out: dir.to_path_buf(),
        train: 16,
        val: 6,
        size: 40,
        classes: 3,
        seed: 4,
        kind: Default::default(),
        context_share: coatt::data::synth::DEFAULT_CONTEXT_SHARE,
    })
    .unwrap();
}

fn micro_cfg(variant: Variant) -> ClsConfig {
    ClsConfig {
        variant,
        epochs: 3,
        contrastive_from: 1,
        max_iters_per_epoch: 3,
        batch: 3,
        workers: 2,
        ..ClsConfig::preset("micro").unwrap()
    }
}

fn opts(
    data: &Path,
    out: &Path,
    cfg: ClsConfig,
    resume: bool,
    stop_after: Option<usize>,
) -> TrainClsOptions {
    TrainClsOptions {
        data: data.to_path_buf(),
        out: out.to_path_buf(),
        config: cfg,
        device: Device::Cpu,
        resume,
        start_from: None,
        stop_after,
        quiet: true,
    }
}

/// Softmax co-attention written out with matmul/softmax (no fused op), then φ-scored.
fn coatt_scores(fm: &Tensor, fnn: &Tensor, m: &Classifier) -> Result<[Tensor; 2]> {
    let flat = |f: &Tensor| f.reshape(&[f.dims()[0], f.dims()[1], f.dims()[2] * f.dims()[3]]);
    let (fm, fnn) = (flat(fm)?, flat(fnn)?);
    let q = fm.transpose(1, 2)?.matmul_t(&m.head.wp, false, true)?; // (B,N,C) = (W·Fm)ᵀ
    let s = q.matmul(&fnn)?; // (B,N,M)
    let fn_att = fm.matmul(&s.softmax(1)?)?;
    let fm_att = fnn.matmul_t(&s.softmax(2)?, false, true)?;
    let score = |f: &Tensor| f.mean_axes(&[2], false)?.matmul_t(&m.head.phi, false, true);
    Ok([score(&fm_att)?, score(&fn_att)?])
}

#[test]
fn iteration_loss_equals_composition_of_primitives() {
    for variant in [Variant::Basic, Variant::Coatt, Variant::Full] {
        // BN-free backbone: the model batches x1, x2 and flip(x1) through one pass, which with
        // batch norm would share statistics that the per-view reference below does not.
        let mut cfg = micro_cfg(variant);
        cfg.backbone.batch_norm = false;
        let mut rng = coatt::testing::rng(3);
        let m = Classifier::new(&cfg, 3, Device::Cpu, &mut rng);
        let s = cfg.input_size;
        let x1 = Tensor::randn([2, 3, s, s], 1.0, DType::F32, Device::Cpu, &mut rng);
        let x2 = Tensor::randn([2, 3, s, s], 1.0, DType::F32, Device::Cpu, &mut rng);
        let l1 =
            Tensor::from_f64(&[1., 0., 1., 0., 1., 0.], [2, 3], DType::F32, Device::Cpu).unwrap();
        let l2 =
            Tensor::from_f64(&[1., 1., 0., 0., 1., 1.], [2, 3], DType::F32, Device::Cpu).unwrap();
        let got = m.iteration_loss(&cfg, &x1, &x2, &l1, &l2, 2).unwrap();
        // reference: each view through the backbone on its own
        let views = [
            x1.clone(),
            x2.clone(),
            x1.flip(3).unwrap(),
            x1.resize_bilinear(24, 24).unwrap(),
            x1.resize_bilinear(64, 64).unwrap(),
        ];
        let f: Vec<Tensor> = views.iter().map(|v| m.features(v).unwrap()).collect();
        let single = |t: &Tensor| {
            t.mean_axes(&[2, 3], false)
                .unwrap()
                .matmul_t(&m.head.last_w, false, true)
                .unwrap()
                .add(&m.head.last_b)
                .unwrap()
        };
        let ml = |x: &Tensor, t: &Tensor| x.multilabel_soft_margin(t).unwrap().to_scalar().unwrap();
        let s1 = single(&f[0]);
        let basic = 4.0 * ml(&s1, &l1)
            + ml(&single(&f[1]), &l2)
            + [2, 3, 4]
                .iter()
                .map(|&i| ml(&single(&f[i]), &l1))
                .sum::<f64>();
        assert!(
            (got.basic.to_scalar().unwrap() - basic).abs() < 1e-4 * basic.abs().max(1.0),
            "{variant:?} basic"
        );
        let mut total = basic;
        if variant != Variant::Basic {
            let common = l1.mul(&l2).unwrap();
            let p1 = coatt_scores(&f[0], &f[1], &m).unwrap();
            let mut co = ml(&p1[0], &common) + ml(&p1[1], &common);
            for i in [2, 3, 4] {
                let p = coatt_scores(&f[0], &f[i], &m).unwrap();
                co += ml(&p[0], &l1) + ml(&p[1], &l1);
            }
            assert!(
                (got.coatt.as_ref().unwrap().to_scalar().unwrap() - co).abs() < 1e-4 * co.max(1.0),
                "{variant:?} coatt"
            );
            total += co;
        } else {
            assert!(got.coatt.is_none() && got.contrastive.is_none());
        }
        assert_eq!(got.contrastive.is_some(), variant == Variant::Full);
        if let Some(cx) = &got.contrastive {
            total += cx.to_scalar().unwrap();
        }
        assert!((got.total.to_scalar().unwrap() - total).abs() < 1e-4 * total.max(1.0));
        // before `contrastive_from` the contrastive term is off, before `coattention_from`
        // both co-attention terms are
        let early = m.iteration_loss(&cfg, &x1, &x2, &l1, &l2, 0).unwrap();
        assert!(early.contrastive.is_none());
        assert_eq!(cfg.coattention_from, 1);
        assert!(early.coatt.is_none());
        assert!(
            (early.total.to_scalar().unwrap() - got.basic.to_scalar().unwrap()).abs()
                < 1e-6 * basic.max(1.0)
        );
        backward(&got.total).unwrap();
        coatt::autograd::clear_tape();
    }
}

fn weights(path: &Path) -> Vec<(String, Vec<f64>)> {
    let ck = Checkpoint::open(path).unwrap();
    ck.names()
        .into_iter()
        .map(|n| {
            (
                n.clone(),
                ck.get(&n, DType::F32, Device::Cpu).unwrap().to_vec_f64(),
            )
        })
        .collect()
}

/// The last checkpoints of two runs hold the same tensors, bit for bit.
fn assert_same_weights(a: &Path, b: &Path, what: &str) {
    let (wa, wb) = (
        weights(&a.join("last.safetensors")),
        weights(&b.join("last.safetensors")),
    );
    assert_eq!(wa.len(), wb.len());
    for ((na, va), (nb, vb)) in wa.iter().zip(&wb) {
        assert_eq!(na, nb);
        assert!(va == vb, "{na} differs {what}");
    }
}

#[test]
fn interrupted_and_resumed_run_ends_with_identical_weights() {
    let d = tempfile::tempdir().unwrap();
    micro_data(d.path());
    let (a, b) = (d.path().join("run_a"), d.path().join("run_b"));
    let cfg = micro_cfg(Variant::Full);
    let full = train_cls(&opts(d.path(), &a, cfg.clone(), false, None)).unwrap();
    assert_eq!(full.iterations, 9);
    // stop mid-epoch 1 (after 4 iterations), then resume twice (second stop inside epoch 2)
    let first = train_cls(&opts(d.path(), &b, cfg.clone(), false, Some(4))).unwrap();
    assert_eq!(first.iterations, 4);
    train_cls(&opts(d.path(), &b, cfg.clone(), true, Some(3))).unwrap();
    let end = train_cls(&opts(d.path(), &b, cfg.clone(), true, None)).unwrap();
    assert_eq!(end.iterations, 9);
    assert_same_weights(&a, &b, "after resume");
    // metrics hold each iteration once and each epoch's val row once (the same as the
    // uninterrupted run's), the loss curve and per-epoch checkpoints exist
    let lines = std::fs::read_to_string(b.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().filter(|l| l.contains("\"loss\"")).count(), 9);
    let epoch_rows = |run: &Path| -> Vec<(u64, f64)> {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter_map(|v| Some((v.get("epoch_end")?.as_u64()?, v["val_map"].as_f64()?)))
            .collect()
    };
    let rows = epoch_rows(&b);
    assert_eq!(rows, epoch_rows(&a));
    assert_eq!(rows.iter().map(|r| r.0).collect::<Vec<_>>(), [1, 2, 3]);
    assert!(b.join("loss.png").exists() && b.join("config.toml").exists());
    assert!(b.join("checkpoints/epoch_003.safetensors").exists());
    assert_eq!(ClsConfig::load(&b.join("config.toml")).unwrap(), cfg);
}

#[test]
fn existing_run_is_not_overwritten_and_resume_needs_a_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    micro_data(d.path());
    let run = d.path().join("run");
    let cfg = ClsConfig {
        epochs: 1,
        max_iters_per_epoch: 1,
        ..micro_cfg(Variant::Basic)
    };
    let e = train_cls(&opts(
        d.path(),
        &d.path().join("fresh"),
        cfg.clone(),
        true,
        None,
    ))
    .unwrap_err()
    .to_string();
    assert!(e.contains("nothing to resume"), "{e}");
    train_cls(&opts(d.path(), &run, cfg.clone(), false, None)).unwrap();
    let before = std::fs::read(run.join("last.safetensors")).unwrap();
    let e = train_cls(&opts(d.path(), &run, cfg, false, None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("--resume"), "{e}");
    assert_eq!(before, std::fs::read(run.join("last.safetensors")).unwrap());
}

#[test]
fn non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint() {
    let d = tempfile::tempdir().unwrap();
    micro_data(d.path());
    let run = d.path().join("run");
    // one good epoch, then an absurd learning rate from a resumed config
    let cfg = ClsConfig {
        epochs: 1,
        max_iters_per_epoch: 2,
        ..micro_cfg(Variant::Full)
    };
    train_cls(&opts(d.path(), &run, cfg.clone(), false, None)).unwrap();
    let good = std::fs::read(run.join("last.safetensors")).unwrap();
    let wild = ClsConfig {
        epochs: 3,
        lr: 1e30,
        ..cfg
    };
    wild.save(&run.join("config.toml")).unwrap();
    let e = train_cls(&opts(d.path(), &run, wild, true, None))
        .unwrap_err()
        .to_string();
    assert!(e.contains("NaN") || e.contains("inf"), "{e}");
    assert!(e.contains("last.safetensors"), "{e}");
    assert_eq!(
        good,
        std::fs::read(run.join("last.safetensors")).unwrap(),
        "the last good checkpoint is kept"
    );
}

#[test]
fn coattention_lr_factor_applies_only_while_the_coattention_terms_are_on() {
    let d = tempfile::tempdir().unwrap();
    micro_data(d.path());
    for variant in [Variant::Full, Variant::Basic] {
        let run = d.path().join(format!("{variant:?}"));
        let cfg = ClsConfig {
            epochs: 3,
            max_iters_per_epoch: 2,
            coattention_from: 1,
            coattention_lr_factor: 0.5,
            lr_steps: vec![2],
            lr_gamma: 0.1,
            ..micro_cfg(variant)
        };
        train_cls(&opts(d.path(), &run, cfg.clone(), false, None)).unwrap();
        let text = std::fs::read_to_string(run.join("metrics.jsonl")).unwrap();
        let lrs: Vec<(u64, f64)> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v.get("lr").is_some())
            .map(|v| (v["epoch"].as_u64().unwrap(), v["lr"].as_f64().unwrap()))
            .collect();
        assert_eq!(lrs.len(), 6, "{variant:?}");
        for (epoch, lr) in lrs {
            // the step schedule (×0.1 from epoch 2), times 0.5 from epoch 1 when the
            // co-attention terms are in the loss
            let mut want = cfg.lr * if epoch >= 2 { 0.1 } else { 1.0 };
            if variant != Variant::Basic && epoch >= 1 {
                want *= 0.5;
            }
            assert!(
                (lr - want).abs() < 1e-12 * want,
                "{variant:?} epoch {epoch}: lr {lr}, want {want}"
            );
        }
    }
}

#[test]
fn a_run_started_from_another_variants_shared_epochs_equals_one_trained_from_the_start() {
    let d = tempfile::tempdir().unwrap();
    micro_data(d.path());
    let cfg = |variant| ClsConfig {
        coattention_from: 2,
        contrastive_from: 2,
        ..micro_cfg(variant)
    };
    let (full, basic) = (cfg(Variant::Full), cfg(Variant::Basic));
    assert_eq!(coatt::cls::shared_epochs(&full, &basic), Some(2));
    assert_eq!(coatt::cls::shared_epochs(&basic, &basic), Some(3));
    let other_lr = ClsConfig {
        lr: basic.lr * 2.0,
        ..basic.clone()
    };
    assert_eq!(coatt::cls::shared_epochs(&full, &other_lr), None);

    let (a, b, c) = (
        d.path().join("full"),
        d.path().join("basic"),
        d.path().join("forked"),
    );
    train_cls(&opts(d.path(), &a, full, false, None)).unwrap();
    let scratch = train_cls(&opts(d.path(), &b, basic.clone(), false, None)).unwrap();
    let forked = train_cls(&TrainClsOptions {
        start_from: Some(a.clone()),
        ..opts(d.path(), &c, basic.clone(), false, None)
    })
    .unwrap();
    // the last epoch trained here, the first two taken
    assert_eq!(forked.iterations, scratch.iterations);
    assert_eq!((scratch.iterations_here, forked.iterations_here), (9, 3));
    assert_eq!(forked.val_map, scratch.val_map);
    assert_same_weights(&b, &c, "from the run trained from the start");
    let rows = |run: &Path| -> Vec<String> {
        std::fs::read_to_string(run.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| {
                // the timing field differs between any two runs
                let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                v.as_object_mut().unwrap().remove("images_per_sec");
                v.to_string()
            })
            .collect()
    };
    // the taken epochs' rows come from the full run: the same losses, lr and val mAP
    assert_eq!(rows(&c), rows(&b));
    // the taken checkpoints name the variant of the run that holds them
    for e in 1..=3 {
        let ck = Checkpoint::open(c.join(format!("checkpoints/epoch_{e:03}.safetensors"))).unwrap();
        assert_eq!(ck.metadata()["variant"], "Basic", "epoch {e}");
    }
    assert_eq!(ClsConfig::load(&c.join("config.toml")).unwrap(), basic);

    // the other way round, with settings only the co-attention terms use changed too (the
    // ablations' full classifiers continued from a basic run's epoch 2 here)
    let tuned = ClsConfig {
        affinity: coatt::nn::Affinity::Centered,
        temperature: 0.1,
        scorer: coatt::nn::Scorer::Shared,
        coattention_lr_factor: 0.5,
        contrastive_from: 3,
        preset: "another name".into(),
        ..cfg(Variant::Full)
    };
    assert_eq!(coatt::cls::shared_epochs(&basic, &tuned), Some(2));
    let (e, f) = (d.path().join("tuned"), d.path().join("tuned-forked"));
    train_cls(&opts(d.path(), &e, tuned.clone(), false, None)).unwrap();
    let forked = train_cls(&TrainClsOptions {
        start_from: Some(b.clone()),
        ..opts(d.path(), &f, tuned.clone(), false, None)
    })
    .unwrap();
    assert_eq!(forked.iterations_here, 3);
    assert_same_weights(&e, &f, "from the tuned run trained from the start");
    // a learned τ is a parameter from the start: not the same training
    let learned = ClsConfig {
        learn_temperature: true,
        ..tuned.clone()
    };
    assert_eq!(coatt::cls::shared_epochs(&basic, &learned), None);

    // a source trained with other settings is refused, naming what differs
    let e = train_cls(&TrainClsOptions {
        start_from: Some(a.clone()),
        ..opts(d.path(), &d.path().join("refused"), other_lr, false, None)
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("config.toml") && e.contains("lr:"), "{e}");
    assert!(
        !e.contains("variant:"),
        "only what may not differ is named: {e}"
    );
    assert!(!d.path().join("refused/last.safetensors").exists());

    // so is a source trained on another training set (another synth seed: the same ids)
    let other = d.path().join("other-data");
    generate(&SynthConfig {
        out: other.clone(),
        train: 16,
        val: 6,
        size: 40,
        classes: 3,
        seed: 5,
        kind: Default::default(),
        context_share: coatt::data::synth::DEFAULT_CONTEXT_SHARE,
    })
    .unwrap();
    let e = train_cls(&TrainClsOptions {
        start_from: Some(a.clone()),
        ..opts(
            &other,
            &d.path().join("other-run"),
            basic.clone(),
            false,
            None,
        )
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("another training set"), "{e}");
    // a source made before runs named their training set is taken on trust
    std::fs::remove_file(a.join("training-set.txt")).unwrap();
    let trusted = train_cls(&TrainClsOptions {
        start_from: Some(a.clone()),
        ..opts(d.path(), &d.path().join("trusted"), basic, false, None)
    })
    .unwrap();
    assert_eq!(trusted.iterations_here, 3);
}

//! The VGG16-D1 backbone and the head: torchvision names and shapes, output stride 8,
//! dilated conv5, BN only where configured, checkpoint round trip of the whole classifier.
use coatt::cls::{Classifier, ClsConfig};
use coatt::io::{save_checkpoint, Checkpoint};
use coatt::nn::{Init, Vgg, VggConfig};
use coatt::{no_grad, DType, Device, Tensor};
use std::collections::HashMap;

#[test]
fn full_vgg16_d1_has_torchvision_shapes_and_output_stride_8() {
    let v = Vgg::new(
        VggConfig::full(),
        Init::KaimingNormal,
        Init::TorchDefault,
        DType::F32,
        Device::Cpu,
        &mut coatt::testing::rng(1),
    );
    let p: HashMap<String, Vec<usize>> = v
        .named_params()
        .into_iter()
        .map(|(n, t)| (n, t.dims().to_vec()))
        .collect();
    assert_eq!(
        p.len(),
        26 + 6,
        "13 VGG convs + 3 extra convs, weight and bias each, no BN"
    );
    assert_eq!(p["features.0.weight"], vec![64, 3, 3, 3]);
    assert_eq!(p["features.5.weight"], vec![128, 64, 3, 3]);
    assert_eq!(p["features.10.weight"], vec![256, 128, 3, 3]);
    assert_eq!(p["features.17.weight"], vec![512, 256, 3, 3]);
    assert_eq!(p["features.28.weight"], vec![512, 512, 3, 3]);
    assert_eq!(p["extra_convs.4.weight"], vec![512, 512, 3, 3]);
    assert!(
        v.features[10..]
            .iter()
            .all(|c| c.params.dilation == (2, 2) && c.params.padding == (2, 2)),
        "conv5_x dilated"
    );
    assert!(v.features[..10].iter().all(|c| c.params.dilation == (1, 1)));
    assert!(v.bn.is_empty());
    // 24×24 → pool1-3 → 3×3; pool4 (3×3, stride 1, pad 1) keeps it
    let x = Tensor::ones([1, 3, 24, 24], DType::F32, Device::Cpu);
    let f = no_grad(|| v.forward(&x, false)).unwrap();
    assert_eq!(f.dims(), &[1, 512, 3, 3]);
}

#[test]
fn scratch_presets_have_the_same_structure_narrower_with_bn() {
    for (preset, div) in [("tiny", 8), ("tiny-wide", 4), ("small", 4), ("micro", 16)] {
        let cfg = ClsConfig::preset(preset).unwrap();
        assert!(cfg.backbone.batch_norm);
        assert_eq!(
            cfg.backbone.widths,
            VggConfig::full()
                .widths
                .iter()
                .map(|w| w / div)
                .collect::<Vec<_>>()
        );
        let m = Classifier::new(&cfg, 5, Device::Cpu, &mut coatt::testing::rng(2));
        assert_eq!(m.backbone.features.len(), 13);
        assert_eq!(m.backbone.named_buffers().len(), 26);
        assert_eq!(m.head.phi.dims(), &[5, cfg.backbone.extra]);
        assert_eq!(m.head.wp.dims(), &[cfg.backbone.extra, cfg.backbone.extra]);
    }
    let tiny = ClsConfig::preset("tiny").unwrap();
    assert_eq!(
        (tiny.lr, tiny.new_lr_mult, tiny.bias_lr_mult),
        (2e-3, 1.0, 1.0)
    );
    assert_eq!(
        tiny.jitter.unwrap(),
        coatt::data::augment::Jitter {
            brightness: 0.1,
            contrast: 0.1,
            saturation: 0.1,
            hue: 0.0
        }
    );
    assert_eq!(
        (
            tiny.input_size,
            tiny.epochs,
            tiny.lr_steps.clone(),
            tiny.coattention_from,
            tiny.coattention_lr_factor,
            tiny.affinity
        ),
        (64, 9, vec![7], 3, 0.5, coatt::nn::Affinity::Cosine)
    );
    let official = ClsConfig::preset("vgg16").unwrap();
    assert_eq!(
        (
            official.input_size,
            official.batch,
            official.epochs,
            official.lr
        ),
        (256, 5, 15, 1e-3)
    );
    assert_eq!(
        (
            official.bias_lr_mult,
            official.new_lr_mult,
            official.lr_steps.clone()
        ),
        (2.0, 10.0, vec![5, 10])
    );
    assert!(ClsConfig::preset("nope").is_err());
}

#[test]
fn param_groups_follow_the_official_multipliers() {
    let cfg = ClsConfig {
        backbone: VggConfig {
            batch_norm: false,
            ..VggConfig::narrow(16)
        },
        ..ClsConfig::preset("vgg16").unwrap()
    };
    let m = Classifier::new(&cfg, 4, Device::Cpu, &mut coatt::testing::rng(3));
    let g = m.param_groups(&cfg);
    let lrs: Vec<f64> = g.iter().map(|g| g.lr).collect();
    assert_eq!(lrs, vec![1e-3, 2e-3, 1e-2, 2e-2]);
    let counts: Vec<usize> = g.iter().map(|g| g.params.len()).collect();
    // 13 VGG weights, 13 VGG biases, 3 extra + wp, last_w, phi, wb weights, 3 extra + last_b biases
    assert_eq!(counts, vec![13, 13, 7, 4]);
}

#[test]
fn classifier_checkpoint_round_trip_includes_bn_statistics() {
    let cfg = ClsConfig::preset("micro").unwrap();
    let a = Classifier::new(&cfg, 3, Device::Cpu, &mut coatt::testing::rng(4));
    // move the running statistics away from their initial values
    let x = Tensor::randn(
        [2, 3, 32, 32],
        1.0,
        DType::F32,
        Device::Cpu,
        &mut coatt::testing::rng(5),
    );
    no_grad(|| a.features(&x)).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("m.safetensors");
    save_checkpoint(&p, &a.state_tensors(), &HashMap::new()).unwrap();
    let b = Classifier::new(&cfg, 3, Device::Cpu, &mut coatt::testing::rng(6));
    b.load(&Checkpoint::open(&p).unwrap()).unwrap();
    let fa = no_grad(|| a.features_eval(&x)).unwrap().to_vec_f64();
    let fb = no_grad(|| b.features_eval(&x)).unwrap().to_vec_f64();
    assert_eq!(fa, fb);
    // a model with another number of classes does not load silently
    let c = Classifier::new(&cfg, 4, Device::Cpu, &mut coatt::testing::rng(7));
    let e = c
        .load(&Checkpoint::open(&p).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("shape"), "{e}");
}

#[test]
fn cosine_affinity_maps_equal_the_dot_maps_on_unit_length_features() {
    let cfg = ClsConfig::preset("micro").unwrap();
    let mut rng = coatt::testing::rng(8);
    let model = Classifier::new(&cfg, 3, Device::Cpu, &mut rng);
    let mut cosine = model.head.clone();
    cosine.affinity = coatt::nn::Affinity::Cosine;
    let c = cfg.feature_channels();
    let unit = |t: Tensor| {
        t.div(&t.sqr().sum_axes(&[1], true).unwrap().sqrt())
            .unwrap()
    };
    let f1 = unit(
        Tensor::randn([2, c, 3, 4], 1.0, DType::F32, Device::Cpu, &mut rng)
            .relu()
            .add_scalar(0.1),
    );
    let f2 = unit(
        Tensor::randn([2, c, 2, 5], 1.0, DType::F32, Device::Cpu, &mut rng)
            .relu()
            .add_scalar(0.1),
    );
    let (dot, cos) = no_grad(|| {
        Ok::<_, coatt::Error>((model.head.pair_maps(&f1, &f2)?, cosine.pair_maps(&f1, &f2)?))
    })
    .unwrap();
    for (a, b) in dot.iter().zip(&cos) {
        assert_eq!(a.dims(), b.dims());
        for (x, y) in a.to_vec_f32().iter().zip(b.to_vec_f32()) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }
    // with position-dependent lengths, the dot-product attention differs
    let scale: Vec<f32> = (0..2 * 10).map(|i| 1.0 + (i % 7) as f32).collect();
    let f2s = f2
        .mul(&Tensor::from_vec(scale, [2, 1, 2, 5], Device::Cpu).unwrap())
        .unwrap();
    let (dot, cos) = no_grad(|| {
        Ok::<_, coatt::Error>((
            model.head.pair_maps(&f1, &f2s)?,
            cosine.pair_maps(&f1, &f2s)?,
        ))
    })
    .unwrap();
    let diff = dot[0]
        .to_vec_f32()
        .iter()
        .zip(cos[0].to_vec_f32())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(diff > 1e-3, "{diff}");
}

#[test]
fn centred_affinity_ignores_what_every_position_of_an_image_shares() {
    // The centred cosine subtracts each image's channel means: an offset common to all the
    // positions of one image (the positive orthant's shared component of ReLU features) leaves
    // its attention unchanged, where it moves the plain cosine's. It also equals the plain
    // cosine on features centred by hand.
    let cfg = ClsConfig::preset("micro").unwrap();
    let mut rng = coatt::testing::rng(9);
    let model = Classifier::new(&cfg, 3, Device::Cpu, &mut rng);
    let (mut centred, mut cosine) = (model.head.clone(), model.head.clone());
    centred.affinity = coatt::nn::Affinity::Centered;
    cosine.affinity = coatt::nn::Affinity::Cosine;
    let c = cfg.feature_channels();
    let f1 = Tensor::randn([2, c, 3, 4], 1.0, DType::F32, Device::Cpu, &mut rng).relu();
    let f2 = Tensor::randn([2, c, 2, 5], 1.0, DType::F32, Device::Cpu, &mut rng).relu();
    let offset = Tensor::randn([2, c, 1, 1], 3.0, DType::F32, Device::Cpu, &mut rng).sqr();
    let f2o = f2.add(&offset).unwrap();
    let centre = |f: &Tensor| f.sub(&f.mean_axes(&[2, 3], true).unwrap()).unwrap();
    let rows = |h: &coatt::nn::CoattHead, a: &Tensor, b: &Tensor| {
        no_grad(|| h.attention_rows(a, b)).unwrap().to_vec_f32()
    };
    let max_diff = |a: Vec<f32>, b: Vec<f32>| {
        a.iter()
            .zip(&b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0f32, f32::max)
    };
    let base = rows(&centred, &f1, &f2);
    assert!(max_diff(base.clone(), rows(&centred, &f1, &f2o)) < 1e-5);
    assert!(max_diff(base, rows(&cosine, &centre(&f1), &centre(&f2))) < 1e-5);
    assert!(max_diff(rows(&cosine, &f1, &f2), rows(&cosine, &f1, &f2o)) > 1e-3);
}

#[test]
fn shared_scorer_scores_the_coattentive_features_with_the_single_image_classifier() {
    // Features equal at every position: whatever the attention, F∩ is that same vector, so
    // the shared scorer's co-attention logits are the single-image logits (bias included)
    // and the separate φ gives φ·f. Its gradient reaches the single-image classifier, not φ.
    let cfg = ClsConfig::preset("micro").unwrap();
    let mut rng = coatt::testing::rng(9);
    let model = Classifier::new(&cfg, 3, Device::Cpu, &mut rng);
    let mut shared = model.head.clone();
    shared.scorer = coatt::nn::Scorer::Shared;
    let c = cfg.feature_channels();
    let v = Tensor::randn([1, c, 1, 1], 1.0, DType::F32, Device::Cpu, &mut rng).relu();
    let f = v
        .mul(&Tensor::full(1.0, [1, 1, 3, 4], DType::F32, Device::Cpu))
        .unwrap();
    let g = v
        .mul(&Tensor::full(1.0, [1, 1, 2, 2], DType::F32, Device::Cpu))
        .unwrap();
    let single = model.head.single(&f).unwrap().to_vec_f32();
    let phi_f: Vec<f32> = {
        let (w, x) = (model.head.phi.to_vec_f32(), v.to_vec_f32());
        (0..3)
            .map(|k| (0..c).map(|i| w[k * c + i] * x[i]).sum())
            .collect()
    };
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4);
    let (co_shared, _) = shared.pair(&f, &g, false).unwrap();
    let (co_sep, _) = model.head.pair(&f, &g, false).unwrap();
    for i in 0..2 {
        assert!(close(&co_shared[i].to_vec_f32(), &single), "shared {i}");
        assert!(close(&co_sep[i].to_vec_f32(), &phi_f), "separate {i}");
    }
    assert!(!close(&single, &phi_f), "the two scorers differ");
    let (co, cx) = shared.pair(&f, &g, true).unwrap();
    let loss = co[0]
        .sum_all()
        .unwrap()
        .add(&cx.unwrap()[1].sum_all().unwrap())
        .unwrap();
    let grads = coatt::autograd::backward(&loss).unwrap();
    assert!(grads.get(&shared.last_w).is_some() && grads.get(&shared.last_b).is_some());
    assert!(grads.get(&shared.phi).is_none(), "φ is not used");
}

//! SGD against hand-computed updates (PyTorch semantics) and lr schedules at their boundaries.
use coatt::optim::{LrSchedule, ParamGroup, Sgd};
use coatt::{backward, DType, Device, Tensor};

fn param(v: f64) -> Tensor {
    Tensor::full(v, [1], DType::F64, Device::Cpu).into_param()
}

/// loss = Σ c·p, so the gradient is the constant c.
fn step(opt: &mut Sgd, params: &[&Tensor], c: f64, factor: f64) {
    let mut loss = params[0].mul_scalar(c).sum_all().unwrap();
    for p in &params[1..] {
        loss = loss.add(&p.mul_scalar(c).sum_all().unwrap()).unwrap();
    }
    let g = backward(&loss).unwrap();
    opt.step(&g, factor).unwrap();
}

fn val(t: &Tensor) -> f64 {
    t.to_scalar().unwrap()
}

#[test]
fn nesterov_momentum_weight_decay_two_steps() {
    let p = param(1.0);
    let mut opt = Sgd::new(
        vec![ParamGroup {
            name: "w".into(),
            params: vec![p.clone()],
            lr: 0.1,
            weight_decay: 0.01,
        }],
        0.9,
        true,
    )
    .unwrap();
    step(&mut opt, &[&p], 0.5, 1.0);
    // d = 0.5 + 0.01·1 = 0.51; buf = 0.51; d = 0.51 + 0.9·0.51 = 0.969; p = 1 − 0.0969
    assert!((val(&p) - 0.9031).abs() < 1e-12, "{}", val(&p));
    step(&mut opt, &[&p], 0.5, 1.0);
    // d = 0.509031; buf = 0.9·0.51 + d = 0.968031; d = 0.509031 + 0.9·0.968031 = 1.3802589
    assert!((val(&p) - 0.76507411).abs() < 1e-12, "{}", val(&p));
}

#[test]
fn plain_momentum_and_groups_with_their_own_lr() {
    let (a, b) = (param(1.0), param(1.0));
    let groups = vec![
        ParamGroup {
            name: "weights".into(),
            params: vec![a.clone()],
            lr: 0.1,
            weight_decay: 0.01,
        },
        ParamGroup {
            name: "biases".into(),
            params: vec![b.clone()],
            lr: 0.2,
            weight_decay: 0.0,
        },
    ];
    let mut opt = Sgd::new(groups, 0.9, false).unwrap();
    step(&mut opt, &[&a, &b], 0.5, 1.0);
    assert!((val(&a) - 0.949).abs() < 1e-12);
    assert!((val(&b) - 0.9).abs() < 1e-12);
    step(&mut opt, &[&a, &b], 0.5, 1.0);
    // a: d = 0.50949, buf = 0.459 + 0.50949 = 0.96849, p = 0.949 − 0.096849
    assert!((val(&a) - 0.852151).abs() < 1e-12, "{}", val(&a));
    // b: buf = 0.45 + 0.5 = 0.95, p = 0.9 − 0.19
    assert!((val(&b) - 0.71).abs() < 1e-12, "{}", val(&b));
}

#[test]
fn lr_factor_scales_every_group_and_missing_grads_are_skipped() {
    let (a, unused) = (param(1.0), param(3.0));
    let mut opt = Sgd::new(
        vec![ParamGroup {
            name: "g".into(),
            params: vec![a.clone(), unused.clone()],
            lr: 1.0,
            weight_decay: 0.0,
        }],
        0.0,
        false,
    )
    .unwrap();
    step(&mut opt, &[&a], 2.0, 0.1);
    assert!((val(&a) - 0.8).abs() < 1e-12);
    assert_eq!(val(&unused), 3.0);
}

#[test]
fn state_round_trip_continues_identically() {
    let run = |split: bool| {
        let p = param(1.0);
        let mk = |p: &Tensor| {
            Sgd::new(
                vec![ParamGroup {
                    name: "w".into(),
                    params: vec![p.clone()],
                    lr: 0.1,
                    weight_decay: 0.01,
                }],
                0.9,
                true,
            )
            .unwrap()
        };
        let mut opt = mk(&p);
        step(&mut opt, &[&p], 0.5, 1.0);
        step(&mut opt, &[&p], -0.3, 1.0);
        if split {
            let state = opt.state();
            let mut fresh = mk(&p);
            fresh
                .load_state(|n| state.iter().find(|(k, _)| k == n).map(|(_, t)| t.clone()))
                .unwrap();
            opt = fresh;
        }
        step(&mut opt, &[&p], 0.7, 1.0);
        val(&p)
    };
    assert_eq!(run(false), run(true));
}

#[test]
fn invalid_configurations_are_errors() {
    let p = param(1.0);
    let g = || {
        vec![ParamGroup {
            name: "w".into(),
            params: vec![p.clone()],
            lr: 0.1,
            weight_decay: 0.0,
        }]
    };
    assert!(
        Sgd::new(g(), 0.0, true).is_err(),
        "nesterov without momentum"
    );
    let untracked = Tensor::zeros([1], DType::F64, Device::Cpu);
    assert!(Sgd::new(
        vec![ParamGroup {
            name: "x".into(),
            params: vec![untracked],
            lr: 0.1,
            weight_decay: 0.0
        }],
        0.9,
        false
    )
    .is_err());
}

#[test]
fn schedules_at_their_boundaries() {
    let s = LrSchedule::Step {
        milestones: vec![5, 10],
        gamma: 0.1,
    };
    assert_eq!(s.factor(0), 1.0);
    assert_eq!(s.factor(4), 1.0);
    assert!((s.factor(5) - 0.1).abs() < 1e-15);
    assert!((s.factor(9) - 0.1).abs() < 1e-15);
    assert!((s.factor(10) - 0.01).abs() < 1e-15);
    let p = LrSchedule::Poly {
        max: 100,
        power: 0.9,
    };
    assert_eq!(p.factor(0), 1.0);
    assert!((p.factor(50) - 0.5f64.powf(0.9)).abs() < 1e-15);
    assert!((p.factor(99) - 0.01f64.powf(0.9)).abs() < 1e-15);
    assert_eq!(p.factor(100), 0.0);
    assert_eq!(p.factor(150), 0.0);
    assert_eq!(LrSchedule::Constant.factor(12345), 1.0);
}

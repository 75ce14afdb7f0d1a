//! CUDA vs CPU: every op of the backend, forward and backward (through the autograd, so the
//! backward passes' own device ops are covered too), on fresh random inputs; then whole
//! training steps of a small classifier (loss, every gradient, the SGD update) and the caching
//! allocator's steady state. Without a GPU each test says SKIPPED and passes; with
//! COATT_REQUIRE_CUDA=1 it fails instead.
//!
//! Tolerances: |gpu − cpu| ≤ atol + rtol·|cpu|. Element-wise, reduction, layout, pooling and
//! loss kernels are float32 against float32 (different summation orders): 1e-5 / 1e-4. GEMM
//! paths (matmul, conv, co-attention, whole steps) are checked twice where it matters: with
//! TF32 off at float32 tolerances, and with TF32 on (the default) at TF32 tolerances.
use coatt::autograd::backward;
use coatt::backend::cuda;
use coatt::cls::{Classifier, ClsConfig};
use coatt::ops::{Conv2dParams, Pool2dParams};
use coatt::optim::Sgd;
use coatt::testing::{cuda_parity, rng, ParityReport};
use coatt::{DType, Device, Tensor};
use rand::Rng;
use std::sync::Mutex;

/// GPU tests share the TF32 switch: run them one at a time.
static GPU: Mutex<()> = Mutex::new(());

fn gpu() -> Option<std::sync::MutexGuard<'static, ()>> {
    let guard = GPU.lock().unwrap_or_else(|e| e.into_inner());
    match cuda::init() {
        Ok(()) => Some(guard),
        Err(why) => {
            assert!(
                std::env::var("COATT_REQUIRE_CUDA").as_deref() != Ok("1"),
                "COATT_REQUIRE_CUDA=1 but CUDA is unavailable: {why}"
            );
            eprintln!("SKIPPED (no GPU: {why})");
            None
        }
    }
}

const F32: (f64, f64) = (1e-5, 1e-4);
const GEMM_F32: (f64, f64) = (1e-4, 1e-3);
const TF32: (f64, f64) = (5e-2, 5e-2);

fn randn(dims: &[usize], r: &mut impl Rng) -> Tensor {
    Tensor::randn(dims.to_vec(), 1.0, DType::F32, Device::Cpu, r)
}
fn positive(dims: &[usize], r: &mut impl Rng) -> Tensor {
    Tensor::rand_uniform(dims.to_vec(), 0.5, 2.0, DType::F32, Device::Cpu, r)
}

type Op = Box<dyn Fn(&[Tensor]) -> coatt::Result<Tensor>>;

fn check(name: &str, inputs: Vec<Tensor>, tol: (f64, f64), f: Op) -> ParityReport {
    let rep = cuda_parity(&inputs, tol.0, tol.1, f).unwrap_or_else(|e| panic!("{name}: {e}"));
    // and as a whole: the relative norm error well inside the element tolerance
    assert!(
        rep.max_rel_norm <= tol.1 / 10.0,
        "{name}: relative norm error {:.2e}",
        rep.max_rel_norm
    );
    println!(
        "parity {name:<34} values {:>8}  worst |err|/tol {:.3}  max rel-norm err {:.2e}",
        rep.compared, rep.worst_ratio, rep.max_rel_norm
    );
    rep
}

#[test]
fn cuda_elementwise_ops_match_the_cpu() {
    let Some(_g) = gpu() else { return };
    let r = &mut rng(11);
    let d = [3, 4, 5, 6];
    let unary: Vec<(&str, bool, Op)> = vec![
        ("relu", false, Box::new(|v| Ok(v[0].relu()))),
        ("sigmoid", false, Box::new(|v| Ok(v[0].sigmoid()))),
        ("exp", false, Box::new(|v| Ok(v[0].exp()))),
        ("neg", false, Box::new(|v| Ok(v[0].neg()))),
        ("sqr", false, Box::new(|v| Ok(v[0].sqr()))),
        ("affine", false, Box::new(|v| Ok(v[0].affine(1.5, -0.3)))),
        ("log", true, Box::new(|v| Ok(v[0].log()))),
        ("sqrt", true, Box::new(|v| Ok(v[0].sqrt()))),
        ("recip", true, Box::new(|v| Ok(v[0].recip()))),
        ("powf", true, Box::new(|v| Ok(v[0].powf(1.7)))),
    ];
    for (name, pos, f) in unary {
        let x = if pos { positive(&d, r) } else { randn(&d, r) };
        check(name, vec![x], F32, f);
    }
    // broadcasting in every pattern the engine uses (bias rows, per-channel, scalars, both sides)
    let pairs: [(&[usize], &[usize]); 5] = [
        (&[3, 4, 5, 6], &[3, 4, 5, 6]),
        (&[3, 4, 5, 6], &[4, 1, 1]),
        (&[3, 4, 5, 6], &[6]),
        (&[3, 1, 5, 1], &[1, 4, 1, 6]),
        (&[2, 3, 4, 5, 6], &[3, 1, 5, 1]),
    ];
    for (a, b) in pairs {
        let binary: Vec<(&str, Op)> = vec![
            ("add", Box::new(|v| v[0].add(&v[1]))),
            ("sub", Box::new(|v| v[0].sub(&v[1]))),
            ("mul", Box::new(|v| v[0].mul(&v[1]))),
            ("div", Box::new(|v| v[0].div(&v[1]))),
            ("maximum", Box::new(|v| v[0].maximum(&v[1]))),
            ("minimum", Box::new(|v| v[0].minimum(&v[1]))),
        ];
        for (name, f) in binary {
            let y = if name == "div" {
                positive(b, r)
            } else {
                randn(b, r)
            };
            check(&format!("{name} {a:?}·{b:?}"), vec![randn(a, r), y], F32, f);
        }
    }
}

#[test]
fn cuda_reductions_softmax_and_layout_match_the_cpu() {
    let Some(_g) = gpu() else { return };
    let r = &mut rng(12);
    let x = || randn(&[4, 5, 6, 7], &mut rng(13));
    check(
        "sum_axes [0,2]",
        vec![x()],
        F32,
        Box::new(|v| v[0].sum_axes(&[0, 2], false)),
    );
    check(
        "sum_axes [1,2,3] keepdim",
        vec![x()],
        F32,
        Box::new(|v| v[0].sum_axes(&[1, 2, 3], true)),
    );
    check(
        "sum_axes [0,2,3] (bias grad)",
        vec![randn(&[8, 16, 32, 32], r)],
        (1e-4, 1e-4),
        Box::new(|v| v[0].sum_axes(&[0, 2, 3], false)),
    );
    check(
        "mean_axes [3]",
        vec![x()],
        F32,
        Box::new(|v| v[0].mean_axes(&[3], false)),
    );
    check(
        "sum_all 512×1024",
        vec![randn(&[512, 1024], r)],
        (1e-3, 1e-4),
        Box::new(|v| v[0].sum_all()),
    );
    for axis in 0..3 {
        check(
            &format!("softmax axis {axis}"),
            vec![randn(&[5, 9, 130], r)],
            F32,
            Box::new(move |v| v[0].softmax(axis)),
        );
    }
    check(
        "permute [0,2,3,1]",
        vec![x()],
        F32,
        Box::new(|v| v[0].permute(&[0, 2, 3, 1])),
    );
    check(
        "transpose 1,2",
        vec![randn(&[3, 5, 7], r)],
        F32,
        Box::new(|v| v[0].transpose(1, 2)),
    );
    check(
        "narrow axis 2",
        vec![x()],
        F32,
        Box::new(|v| v[0].narrow(2, 1, 4)),
    );
    check("flip axis 3", vec![x()], F32, Box::new(|v| v[0].flip(3)));
    check("flip axis 0", vec![x()], F32, Box::new(|v| v[0].flip(0)));
    check(
        "concat axis 1",
        vec![
            randn(&[2, 3, 4], r),
            randn(&[2, 5, 4], r),
            randn(&[2, 1, 4], r),
        ],
        F32,
        Box::new(|v| Tensor::concat(&[&v[0], &v[1], &v[2]], 1)),
    );
    check("copy", vec![x()], F32, Box::new(|v| Ok(v[0].copy())));
}

#[test]
fn cuda_matmul_matches_the_cpu_with_tf32_off_and_on() {
    let Some(_g) = gpu() else { return };
    let r = &mut rng(14);
    for tf32 in [false, true] {
        cuda::set_tf32(tf32);
        let tol = if tf32 { TF32 } else { GEMM_F32 };
        let tag = if tf32 { "tf32" } else { "f32" };
        for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
            let a = if ta {
                randn(&[3, 17, 9], r)
            } else {
                randn(&[3, 9, 17], r)
            };
            let b = if tb {
                randn(&[3, 13, 17], r)
            } else {
                randn(&[3, 17, 13], r)
            };
            check(
                &format!("bmm ta={ta} tb={tb} {tag}"),
                vec![a, b],
                tol,
                Box::new(move |v| v[0].matmul_t(&v[1], ta, tb)),
            );
        }
        check(
            &format!("matmul 2-D {tag}"),
            vec![randn(&[33, 65], r), randn(&[65, 31], r)],
            tol,
            Box::new(|v| v[0].matmul(&v[1])),
        );
        check(
            &format!("matmul 3-D × shared 2-D {tag}"),
            vec![randn(&[4, 6, 20], r), randn(&[20, 7], r)],
            tol,
            Box::new(|v| v[0].matmul(&v[1])),
        );
    }
    cuda::set_tf32(true);
}

/// Winograd F(2×2, 3×3) (forced, so Cin = 3 takes it too): odd sizes (partial 2×2 tiles),
/// padding 0 to 2·dilation, dilations 1 to 3 (phases of unequal sizes), Cin ≠ Cout, with and
/// without bias, forward and both gradients, and several image chunks.
#[test]
fn cuda_conv_winograd_matches_the_cpu() {
    let Some(_g) = gpu() else { return };
    let r = &mut rng(17);
    // (name, x, w, padding, dilation, bias)
    type Case = (&'static str, [usize; 4], [usize; 4], usize, usize, bool);
    let cases: [Case; 9] = [
        (
            "3→4 9×9 pad 1 + bias",
            [2, 3, 9, 9],
            [4, 3, 3, 3],
            1,
            1,
            true,
        ),
        ("5→6 9×11 pad 1", [2, 5, 9, 11], [6, 5, 3, 3], 1, 1, false),
        (
            "4→3 8×7 pad 0 + bias",
            [2, 4, 8, 7],
            [3, 4, 3, 3],
            0,
            1,
            true,
        ),
        ("4→5 6×7 pad 2", [1, 4, 6, 7], [5, 4, 3, 3], 2, 1, false),
        (
            "3→4 11×10 dilation 2 pad 2 + bias",
            [2, 3, 11, 10],
            [4, 3, 3, 3],
            2,
            2,
            true,
        ),
        (
            "3→2 12×9 dilation 2 pad 1",
            [1, 3, 12, 9],
            [2, 3, 3, 3],
            1,
            2,
            false,
        ),
        (
            "2→3 13×14 dilation 3 pad 3",
            [1, 2, 13, 14],
            [3, 2, 3, 3],
            3,
            3,
            false,
        ),
        (
            "32→48 13×10 pad 1 + bias",
            [3, 32, 13, 10],
            [48, 32, 3, 3],
            1,
            1,
            true,
        ),
        (
            "64→64 16×16 pad 1 + bias",
            [2, 64, 16, 16],
            [64, 64, 3, 3],
            1,
            1,
            true,
        ),
    ];
    cuda::set_conv_algo(cuda::ConvAlgo::Winograd);
    for tf32 in [false, true] {
        cuda::set_tf32(tf32);
        let tol = if tf32 { TF32 } else { GEMM_F32 };
        for (name, xd, wd, pad, dil, bias) in cases {
            let mut inputs = vec![
                randn(&xd, r),
                Tensor::randn(wd.to_vec(), 0.3, DType::F32, Device::Cpu, r),
            ];
            if bias {
                inputs.push(randn(&[wd[0]], r));
            }
            check(
                &format!("winograd {name} {}", if tf32 { "tf32" } else { "f32" }),
                inputs,
                tol,
                Box::new(move |v| v[0].conv2d(&v[1], v.get(2), Conv2dParams::same(pad, dil))),
            );
        }
    }
    // conv2d_relu: the ReLU inside Winograd's output transform, and in the bias pass of the
    // im2col and pointwise paths
    cuda::set_tf32(false);
    for (algo, wd, pad) in [
        (cuda::ConvAlgo::Winograd, [6, 5, 3, 3], 1),
        (cuda::ConvAlgo::Im2col, [6, 5, 3, 3], 1),
        (cuda::ConvAlgo::Auto, [6, 5, 1, 1], 0),
    ] {
        cuda::set_conv_algo(algo);
        check(
            &format!("conv2d_relu {algo:?} {}×{} + bias", wd[2], wd[3]),
            vec![
                randn(&[2, 5, 9, 11], r),
                Tensor::randn(wd.to_vec(), 0.3, DType::F32, Device::Cpu, r),
                randn(&[6], r),
            ],
            GEMM_F32,
            Box::new(move |v| v[0].conv2d_relu(&v[1], v.get(2), Conv2dParams::same(pad, 1))),
        );
    }
    cuda::set_conv_algo(cuda::ConvAlgo::Winograd);
    std::env::set_var("COATT_CONV_CHUNK_BYTES", "1");
    check(
        "winograd 5→4 9×9 pad 1 one image per chunk",
        vec![
            randn(&[3, 5, 9, 9], r),
            Tensor::randn([4, 5, 3, 3], 0.3, DType::F32, Device::Cpu, r),
            randn(&[4], r),
        ],
        GEMM_F32,
        Box::new(|v| v[0].conv2d(&v[1], v.get(2), Conv2dParams::same(1, 1))),
    );
    std::env::remove_var("COATT_CONV_CHUNK_BYTES");
    cuda::set_conv_algo(cuda::ConvAlgo::Auto);
    cuda::set_tf32(true);
}

#[test]
fn cuda_conv_pool_resize_match_the_cpu() {
    let Some(_g) = gpu() else { return };
    let r = &mut rng(15);
    type ConvCase = (&'static str, [usize; 4], [usize; 4], Conv2dParams, bool);
    // column matrices under 64 rows are laid out image by image, larger ones with the images
    // side by side: both layouts appear (K = 27, 45, 36 and 72, 576)
    let convs: [ConvCase; 6] = [
        (
            "conv 3×3 pad 1 + bias",
            [2, 3, 9, 9],
            [4, 3, 3, 3],
            Conv2dParams::same(1, 1),
            true,
        ),
        (
            "conv 3×3 stride 2",
            [2, 5, 10, 9],
            [6, 5, 3, 3],
            Conv2dParams {
                stride: (2, 2),
                padding: (1, 1),
                dilation: (1, 1),
            },
            false,
        ),
        (
            "conv 3×3 stride 2, K = 72",
            [2, 8, 10, 9],
            [6, 8, 3, 3],
            Conv2dParams {
                stride: (2, 2),
                padding: (1, 1),
                dilation: (1, 1),
            },
            true,
        ),
        (
            "conv 3×3 dilation 2",
            [2, 4, 11, 12],
            [3, 4, 3, 3],
            Conv2dParams::same(2, 2),
            true,
        ),
        (
            "conv 1×1 + bias",
            [3, 16, 5, 6],
            [8, 16, 1, 1],
            Conv2dParams::same(0, 1),
            true,
        ),
        (
            "conv 3×3 64→64 16×16",
            [2, 64, 16, 16],
            [64, 64, 3, 3],
            Conv2dParams::same(1, 1),
            true,
        ),
    ];
    // the im2col path on every shape (Winograd takes some 3×3 stride-1 shapes by default; it
    // has its own test below)
    cuda::set_conv_algo(cuda::ConvAlgo::Im2col);
    for tf32 in [false, true] {
        cuda::set_tf32(tf32);
        let tol = if tf32 { TF32 } else { GEMM_F32 };
        for (name, xd, wd, p, bias) in convs {
            let mut inputs = vec![
                randn(&xd, r),
                Tensor::randn(wd.to_vec(), 0.3, DType::F32, Device::Cpu, r),
            ];
            if bias {
                inputs.push(randn(&[wd[0]], r));
            }
            check(
                &format!("{name} {}", if tf32 { "tf32" } else { "f32" }),
                inputs,
                tol,
                Box::new(move |v| v[0].conv2d(&v[1], v.get(2), p)),
            );
        }
    }
    // several im2col chunks (one image each), as the wide early layers of VGG16 take
    std::env::set_var("COATT_CONV_CHUNK_BYTES", "1");
    cuda::set_tf32(false);
    check(
        "conv 3×3 pad 1 one image per chunk",
        vec![
            randn(&[3, 5, 9, 9], r),
            Tensor::randn([4, 5, 3, 3], 0.3, DType::F32, Device::Cpu, r),
            randn(&[4], r),
        ],
        GEMM_F32,
        Box::new(|v| v[0].conv2d(&v[1], v.get(2), Conv2dParams::same(1, 1))),
    );
    check(
        "conv 3×3 pad 1 one image per chunk, K = 72",
        vec![
            randn(&[3, 8, 9, 9], r),
            Tensor::randn([4, 8, 3, 3], 0.3, DType::F32, Device::Cpu, r),
            randn(&[4], r),
        ],
        GEMM_F32,
        Box::new(|v| v[0].conv2d(&v[1], v.get(2), Conv2dParams::same(1, 1))),
    );
    std::env::remove_var("COATT_CONV_CHUNK_BYTES");
    cuda::set_conv_algo(cuda::ConvAlgo::Auto);
    cuda::set_tf32(true);
    let x = || randn(&[2, 3, 9, 11], &mut rng(16));
    check(
        "max_pool 3 s2 p1",
        vec![x()],
        F32,
        Box::new(|v| v[0].max_pool2d(Pool2dParams::new(3, 2, 1))),
    );
    check(
        "max_pool 3 s1 p1 (VGG16-D1's pool4)",
        vec![x()],
        F32,
        Box::new(|v| v[0].max_pool2d(Pool2dParams::new(3, 1, 1))),
    );
    check(
        "max_pool 2 s2",
        vec![x()],
        F32,
        Box::new(|v| v[0].max_pool2d(Pool2dParams::new(2, 2, 0))),
    );
    check(
        "avg_pool 3 s1 p1",
        vec![x()],
        F32,
        Box::new(|v| v[0].avg_pool2d(Pool2dParams::new(3, 1, 1))),
    );
    check(
        "avg_pool 2 s2",
        vec![x()],
        F32,
        Box::new(|v| v[0].avg_pool2d(Pool2dParams::new(2, 2, 0))),
    );
    check(
        "global_avg_pool",
        vec![x()],
        F32,
        Box::new(|v| v[0].global_avg_pool()),
    );
    check(
        "resize up 9×11→20×23",
        vec![x()],
        F32,
        Box::new(|v| v[0].resize_bilinear(20, 23)),
    );
    check(
        "resize down 9×11→4×5",
        vec![x()],
        F32,
        Box::new(|v| v[0].resize_bilinear(4, 5)),
    );
}

#[test]
fn cuda_batch_norm_and_losses_match_the_cpu() {
    let Some(_g) = gpu() else { return };
    let r = &mut rng(17);
    let c = 6;
    let stats = move |dev: Device| {
        (
            Tensor::zeros([c], DType::F32, dev),
            Tensor::ones([c], DType::F32, dev),
        )
    };
    check(
        "batch_norm_train",
        vec![randn(&[4, c, 5, 5], r), positive(&[c], r), randn(&[c], r)],
        (1e-4, 1e-3),
        Box::new(move |v| {
            let (m, s) = stats(v[0].device());
            v[0].batch_norm_train(&v[1], &v[2], &m, &s, 0.1, 1e-5)
        }),
    );
    check(
        "batch_norm_train_act (fused ReLU)",
        vec![randn(&[4, c, 5, 5], r), positive(&[c], r), randn(&[c], r)],
        (1e-4, 1e-3),
        Box::new(move |v| {
            let (m, s) = stats(v[0].device());
            v[0].batch_norm_train_act(&v[1], &v[2], &m, &s, 0.1, 1e-5, true)
        }),
    );
    check(
        "batch_norm_frozen",
        vec![
            randn(&[4, c, 5, 5], r),
            positive(&[c], r),
            randn(&[c], r),
            randn(&[c], r),
            positive(&[c], r),
        ],
        F32,
        Box::new(|v| v[0].batch_norm_frozen(&v[1], &v[2], &v[3], &v[4], 1e-5)),
    );
    let targets: Vec<f32> = (0..80).map(|_| r.gen_range(0..2) as f32).collect();
    let t = Tensor::from_vec(targets, [4, 20], Device::Cpu).unwrap();
    check(
        "multilabel_soft_margin",
        vec![randn(&[4, 20], r)],
        F32,
        Box::new(move |v| v[0].multilabel_soft_margin(&t.to_device(v[0].device()))),
    );
    let labels: Vec<f32> = (0..2 * 6 * 7)
        .map(|_| {
            if r.gen_bool(0.2) {
                255.0
            } else {
                r.gen_range(0..5) as f32
            }
        })
        .collect();
    let l = Tensor::from_vec(labels.clone(), [2, 6, 7], Device::Cpu).unwrap();
    check(
        "cross_entropy_ignore",
        vec![randn(&[2, 5, 6, 7], r)],
        F32,
        Box::new(move |v| v[0].cross_entropy_ignore(&l.to_device(v[0].device()), 255)),
    );
    // a label outside 0..K is the same error on both devices
    let mut bad = labels;
    bad[5] = 7.0;
    let lb = Tensor::from_vec(bad, [2, 6, 7], Device::Cpu).unwrap();
    let x = randn(&[2, 5, 6, 7], r);
    let e_cpu = x.cross_entropy_ignore(&lb, 255).unwrap_err().to_string();
    let e_gpu = x
        .to_device(Device::Cuda)
        .cross_entropy_ignore(&lb.to_device(Device::Cuda), 255)
        .unwrap_err()
        .to_string();
    assert_eq!(e_cpu, e_gpu);
}

#[test]
fn cuda_fused_coattention_matches_the_cpu() {
    let Some(_g) = gpu() else { return };
    let r = &mut rng(19);
    cuda::set_tf32(false);
    cuda::set_coattention_impl(cuda::CoattImpl::Fused);
    // C = 32 (one register per lane), 512 (the largest), N ≠ M, rows not multiples of the tiles
    for (b, c, n, m) in [(2, 32, 12, 20), (3, 64, 50, 33), (2, 512, 40, 70)] {
        let inputs = vec![
            randn(&[b, c, n], r).mul_scalar(0.5),
            randn(&[b, c, m], r).mul_scalar(0.5),
            Tensor::randn([c, c], 0.3 / (c as f64).sqrt(), DType::F32, Device::Cpu, r),
        ];
        for out in 0..2 {
            check(
                &format!("fused coattention out {out} B{b} C{c} N{n} M{m}"),
                inputs.clone(),
                GEMM_F32,
                Box::new(move |v| {
                    let (a, bb) = coatt::ops::coattention(&v[0], &v[1], &v[2])?;
                    Ok(if out == 0 { a } else { bb })
                }),
            );
        }
    }
    cuda::set_coattention_impl(cuda::CoattImpl::Auto);
    cuda::set_tf32(true);
}

#[test]
fn cuda_coattention_matches_the_cpu() {
    let Some(_g) = gpu() else { return };
    let r = &mut rng(18);
    cuda::set_coattention_impl(cuda::CoattImpl::Unfused);
    for tf32 in [false, true] {
        cuda::set_tf32(tf32);
        for (b, c, n, m) in [(2, 16, 12, 20), (3, 64, 64, 100)] {
            let inputs = vec![
                randn(&[b, c, n], r),
                randn(&[b, c, m], r),
                Tensor::randn([c, c], 0.1, DType::F32, Device::Cpu, r),
            ];
            for out in 0..2 {
                check(
                    &format!(
                        "coattention out {out} B{b} C{c} N{n} M{m} {}",
                        if tf32 { "tf32" } else { "f32" }
                    ),
                    inputs.clone(),
                    if tf32 { TF32 } else { GEMM_F32 },
                    Box::new(move |v| {
                        let (a, bb) = coatt::ops::coattention(&v[0], &v[1], &v[2])?;
                        Ok(if out == 0 { a } else { bb })
                    }),
                );
            }
        }
    }
    cuda::set_coattention_impl(cuda::CoattImpl::Auto);
    cuda::set_tf32(true);
}

/// Two full training iterations (the four pair forwards, every loss term, backward, nesterov
/// SGD) of the micro classifier on each device from the same weights and batch.
#[test]
fn cuda_affinity_and_random_walk_match_the_cpu() {
    let Some(_g) = gpu() else { return };
    let r = &mut rng(91);
    // odd grid, a radius that crosses the grid's edge; forward and backward
    check(
        "local_affinity r=3",
        vec![randn(&[2, 7, 6, 9], r)],
        F32,
        Box::new(|v| v[0].local_affinity(3)),
    );
    check(
        "local_affinity r=5",
        vec![randn(&[1, 12, 11, 10], r)],
        F32,
        Box::new(|v| v[0].local_affinity(5)),
    );
    // the walk (no backward): maps in [0,1], affinities from features
    let f = randn(&[2, 5, 9, 8], r);
    let a = f.local_affinity(4).unwrap();
    let x = positive(&[2, 3, 9, 8], r);
    let cpu = x.random_walk(&a, 4, 8.0, 32).unwrap().to_vec_f64();
    let gpu = x
        .to_device(Device::Cuda)
        .random_walk(&a.to_device(Device::Cuda), 4, 8.0, 32)
        .unwrap()
        .to_vec_f64();
    let worst = cpu
        .iter()
        .zip(&gpu)
        .map(|(c, g)| (c - g).abs() / (F32.0 + F32.1 * c.abs()))
        .fold(0f64, f64::max);
    assert!(worst <= 1.0, "random walk: worst |err|/tol {worst:.3}");
    println!("parity random_walk r=4 β=8 32 steps worst |err|/tol {worst:.3}");
}

fn training_steps(device: Device, steps: usize) -> (Vec<f64>, Vec<(String, Vec<f64>)>) {
    let cfg = ClsConfig::preset("micro").unwrap();
    let k = 4;
    let model = Classifier::new(&cfg, k, device, &mut rng(21));
    let mut opt = Sgd::new(model.param_groups(&cfg), cfg.momentum, cfg.nesterov).unwrap();
    let r = &mut rng(22);
    let s = cfg.input_size;
    let x1 = Tensor::randn([2, 3, s, s], 1.0, DType::F32, device, r);
    let x2 = Tensor::randn([2, 3, s, s], 1.0, DType::F32, device, r);
    let l1 = Tensor::from_vec(vec![1f32, 0., 1., 0., 0., 1., 0., 0.], [2, k], device).unwrap();
    let l2 = Tensor::from_vec(vec![1f32, 1., 0., 0., 0., 1., 0., 1.], [2, k], device).unwrap();
    let mut losses = Vec::new();
    let mut grads_first = Vec::new();
    for step in 0..steps {
        // epoch 2: every loss term of the full variant is active
        let it = model.iteration_loss(&cfg, &x1, &x2, &l1, &l2, 2).unwrap();
        losses.push(it.total.to_scalar().unwrap());
        let g = backward(&it.total).unwrap();
        if step == 0 {
            grads_first = model
                .named_params()
                .into_iter()
                .map(|(n, p)| (n, g.get(&p).map(|t| t.to_vec_f64()).unwrap_or_default()))
                .collect();
        }
        opt.step(&g, 1.0).unwrap();
    }
    (losses, grads_first)
}

#[test]
fn cuda_whole_training_step_matches_the_cpu() {
    let Some(_g) = gpu() else { return };
    for tf32 in [false, true] {
        cuda::set_tf32(tf32);
        let (lc, gc) = training_steps(Device::Cpu, 2);
        let (lg, gg) = training_steps(Device::Cuda, 2);
        let tag = if tf32 { "tf32" } else { "f32" };
        println!("training step ({tag}): loss cpu {lc:?} gpu {lg:?}");
        // the loss of step 1, and of step 2 after an SGD update with the step-1 gradients
        let rtol = if tf32 { 1e-3 } else { 1e-5 };
        for (a, b) in lg.iter().zip(&lc) {
            assert!((a - b).abs() <= rtol * b.abs(), "{tag}: loss {a} vs {b}");
        }
        let (mut num_all, mut den_all, mut worst) = (0f64, 0f64, (0f64, String::new()));
        for ((n, g), (_, c)) in gg.iter().zip(&gc) {
            assert_eq!(g.len(), c.len(), "{n}");
            assert!(g.iter().all(|v| v.is_finite()), "{n}: non-finite gradient");
            let num: f64 = g.iter().zip(c).map(|(x, y)| (x - y) * (x - y)).sum::<f64>();
            let den: f64 = c.iter().map(|y| y * y).sum::<f64>();
            num_all += num;
            den_all += den;
            let rel = (num / den.max(1e-30)).sqrt();
            if rel > worst.0 && den.sqrt() > 1e-3 {
                worst = (rel, n.clone());
            }
            if !tf32 {
                // ‖gpu − cpu‖ ≤ 1e-3·‖cpu‖ + 1e-5·√n per parameter. A conv bias followed by a
                // training-mode batch norm has a gradient of exactly 0 analytically, so its
                // values are rounding noise on both devices and only the absolute term applies.
                let bound = 1e-3 * den.sqrt() + 1e-5 * (c.len() as f64).sqrt();
                assert!(
                    num.sqrt() <= bound,
                    "gradient of {n}: ‖diff‖ {:.3e} > {bound:.3e}",
                    num.sqrt()
                );
            }
        }
        let global = (num_all / den_all).sqrt();
        println!(
            "  all gradients together: relative-norm error {global:.2e}; worst parameter {} {:.2e}",
            worst.1, worst.0
        );
        if !tf32 {
            assert!(global <= 1e-4, "{tag}: gradients differ by {global:.2e}");
        }
        // At TF32 (10-bit mantissas in every conv and matmul) the gradients of this small
        // batch-norm network differ from float32 by up to ~10% in norm (batch-norm weight
        // gradients are sums with heavy cancellation), so they are not compared element-wise;
        // the step-2 loss above, taken after an SGD update with those gradients, is.
    }
    cuda::set_tf32(true);
}

#[test]
fn cuda_training_steps_reuse_device_memory() {
    let Some(_g) = gpu() else { return };
    // warm: the first steps allocate activations, gradients and momentum buffers
    let _ = training_steps(Device::Cuda, 3);
    let before = cuda::memory_stats().unwrap();
    let _ = training_steps(Device::Cuda, 3);
    let after = cuda::memory_stats().unwrap();
    println!("allocator: {before:?} → {after:?}");
    assert_eq!(
        after.device_mallocs, before.device_mallocs,
        "a repeated run of training steps called cuMemAlloc again"
    );
    assert!(after.reuses > before.reuses);
}

#[test]
fn cuda_rejects_f64_and_mixed_devices_with_errors() {
    let Some(_g) = gpu() else { return };
    let e = Tensor::from_vec(vec![1f64, 2.0], [2], Device::Cuda)
        .unwrap_err()
        .to_string();
    assert!(e.contains("f32 only"), "{e}");
    let a = Tensor::ones([2], DType::F32, Device::Cuda);
    let b = Tensor::ones([2], DType::F32, Device::Cpu);
    let e = a.add(&b).unwrap_err().to_string();
    assert!(e.contains("different devices"), "{e}");
    // below the ops' own checks, the backend dispatch refuses a mixed pair too (an error, not
    // a panic)
    let e = a
        .storage()
        .binary(
            coatt::backend::BinaryOp::Add,
            a.shape(),
            &b.storage(),
            b.shape(),
            a.shape(),
        )
        .unwrap_err();
    assert!(
        matches!(e, coatt::Error::Device { op: "binary", .. }),
        "{e}"
    );
}

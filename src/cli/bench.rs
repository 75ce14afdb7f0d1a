//! `coatt-train bench`: times the engine's core CPU kernels and prints achieved GFLOP/s.
//! Speed is measured here (and in the criterion benches), never asserted in a test.
use crate::autograd::backward;
use crate::backend::cpu::matmul::{gemm_into, parallelism};
use crate::error::Result;
use crate::tensor::{DType, Tensor};
use crate::{coattention, Conv2dParams, Device};
use std::time::Instant;

#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// Timed repetitions per case (the median is reported, after one warm-up run).
    #[arg(long, default_value_t = 5)]
    pub reps: usize,
    /// Batch size of the conv2d and co-attention cases.
    #[arg(long, default_value_t = 2)]
    pub batch: usize,
    /// Channels (conv in/out and co-attention C).
    #[arg(long, default_value_t = 512)]
    pub channels: usize,
    /// Spatial side of the feature map (N = M = side²).
    #[arg(long, default_value_t = 32)]
    pub side: usize,
    /// `cuda` times the GPU cases of tools/torch_bench.py instead (CUDA events, median).
    #[arg(long, value_enum, default_value_t = super::DeviceArg::Cpu)]
    pub device: super::DeviceArg,
    /// GPU runs: TF32 off (float32 GEMMs)
    #[arg(long)]
    pub no_tf32: bool,
    /// Instead of the kernel cases, time whole classifier training steps of this preset
    /// (variant full with every loss term on; random images and labels already on the device;
    /// forward, loss read back, backward, SGD step), as tools/torch_train_bench.py does.
    /// `tiny-ref` is the step the JAX peer mirrors, pinned whatever the `tiny` preset becomes.
    #[arg(long)]
    pub train_step: Option<String>,
}

/// Median seconds of `reps` runs of `f`, after one warm-up.
pub fn median_secs(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut t = Vec::with_capacity(reps);
    for _ in 0..reps.max(1) {
        let s = Instant::now();
        f()?;
        t.push(s.elapsed().as_secs_f64());
    }
    t.sort_by(|a, b| a.total_cmp(b));
    Ok(t[t.len() / 2])
}

pub struct BenchRow {
    pub name: String,
    pub secs: f64,
    pub gflop: f64,
}

/// The benchmark cases' inputs and FLOP counts, shared by `coatt-train bench` and the
/// criterion benches so the two cannot drift apart.
pub struct Cases {
    /// conv2d 3×3 C→C on (B,C,S,S), with bias; x is tracked so backward computes dx too.
    pub x: Tensor,
    pub w: Tensor,
    pub bias: Tensor,
    pub conv: Conv2dParams,
    /// Co-attention inputs (B,C,S²) ×2 and W_P (C,C).
    pub fm: Tensor,
    pub fnn: Tensor,
    pub wp: Tensor,
    /// The conv's GEMM shape with the batch folded into N.
    pub gemm_mnk: (usize, usize, usize),
    pub conv_gflop: f64,
    pub co_fwd_gflop: f64,
    /// Backward alone (it recomputes Q, S and both softmaxes).
    pub co_bwd_gflop: f64,
}

impl Cases {
    pub fn new(b: usize, c: usize, s: usize) -> Cases {
        let hw = s * s;
        let mut rng = crate::seed::rng(1);
        let mut randn = |dims: Vec<usize>, std: f64| {
            Tensor::randn(dims, std, DType::F32, Device::Cpu, &mut rng).into_param()
        };
        let (x, w) = (randn(vec![b, c, s, s], 1.0), randn(vec![c, c, 3, 3], 0.02));
        let (fm, fnn, wp) = (
            randn(vec![b, c, hw], 1.0),
            randn(vec![b, c, hw], 1.0),
            randn(vec![c, c], 0.02),
        );
        let (bf, cf, nf) = (b as f64, c as f64, hw as f64);
        Cases {
            x,
            w,
            bias: Tensor::zeros([c], DType::F32, Device::Cpu).into_param(),
            conv: Conv2dParams::same(1, 1),
            fm,
            fnn,
            wp,
            gemm_mnk: (c, b * hw, c * 9),
            conv_gflop: 2.0 * bf * cf * nf * cf * 9.0 / 1e9,
            co_fwd_gflop: bf * (2.0 * cf * cf * nf + 6.0 * cf * nf * nf) / 1e9,
            co_bwd_gflop: bf * (6.0 * cf * cf * nf + 14.0 * cf * nf * nf) / 1e9,
        }
    }
    pub fn conv_forward(&self) -> Result<Tensor> {
        crate::no_grad(|| self.x.conv2d(&self.w, Some(&self.bias), self.conv))
    }
    pub fn conv_forward_backward(&self) -> Result<()> {
        let y = self
            .x
            .conv2d(&self.w, Some(&self.bias), self.conv)?
            .sum_all()?;
        backward(&y).map(|_| ())
    }
    /// One plain GEMM of the conv's shape, into `out` (len m·n).
    pub fn gemm(&self, lhs: &[f32], rhs: &[f32], out: &mut [f32]) {
        let (m, n, k) = self.gemm_mnk;
        gemm_into(
            out,
            lhs,
            rhs,
            m,
            k,
            n,
            false,
            false,
            false,
            parallelism(m, n, k),
        );
    }
    pub fn coattention_forward(&self) -> Result<(Tensor, Tensor)> {
        crate::no_grad(|| coattention(&self.fm, &self.fnn, &self.wp))
    }
    pub fn coattention_forward_backward(&self) -> Result<()> {
        let (a, o) = coattention(&self.fm, &self.fnn, &self.wp)?;
        backward(&a.sum_all()?.add(&o.sum_all()?)?).map(|_| ())
    }
}

pub fn run_rows(a: &BenchArgs) -> Result<Vec<BenchRow>> {
    let (b, c, s) = (a.batch, a.channels, a.side);
    let cs = Cases::new(b, c, s);
    let row = |name: String, gflop: f64, f: &mut dyn FnMut() -> Result<()>| -> Result<BenchRow> {
        Ok(BenchRow {
            name,
            secs: median_secs(a.reps, f)?,
            gflop,
        })
    };
    let (m, n, k) = cs.gemm_mnk;
    let (lhs, rhs, mut out) = (vec![0.5f32; m * k], vec![0.25f32; k * n], vec![0f32; m * n]);
    Ok(vec![
        row(
            format!("conv2d 3x3 {c}->{c} {s}x{s} b{b} forward"),
            cs.conv_gflop,
            &mut || cs.conv_forward().map(|_| ()),
        )?,
        row(
            "conv2d forward+backward (dx, dW, db)".into(),
            3.0 * cs.conv_gflop,
            &mut || cs.conv_forward_backward(),
        )?,
        // the conv's GEMM with the batch folded into N: equal FLOPs
        row(
            format!("gemm {m}x{n}x{k} (same FLOPs as the conv)"),
            cs.conv_gflop,
            &mut || {
                cs.gemm(&lhs, &rhs, &mut out);
                Ok(())
            },
        )?,
        row(
            format!("co-attention C={c} N=M={} b{b} forward", s * s),
            cs.co_fwd_gflop,
            &mut || cs.coattention_forward().map(|_| ()),
        )?,
        row(
            "co-attention forward+backward".into(),
            cs.co_fwd_gflop + cs.co_bwd_gflop,
            &mut || cs.coattention_forward_backward(),
        )?,
    ])
}

/// Median GPU time in ms of `f` over `reps` runs (CUDA events around each), after at least
/// 0.3 s of warm-up runs (the GPU's clocks ramp up under load; a few runs are not enough).
pub fn median_ms_cuda(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    let mut warm = 0;
    while warm < 3 || start.elapsed().as_secs_f64() < 0.3 {
        f()?;
        crate::backend::cuda::synchronize();
        warm += 1;
    }
    let mut t = Vec::with_capacity(reps);
    let mut err = Ok(());
    for _ in 0..reps.max(1) {
        t.push(crate::backend::cuda::time_ms(|| {
            if let Err(e) = f() {
                err = Err(e);
            }
        }) as f64);
    }
    err?;
    t.sort_by(|a, b| a.total_cmp(b));
    Ok(t[t.len() / 2])
}

/// The GPU cases of the CUDA benchmarks, shaped as tools/torch_bench.py's: co-attention with
/// C = 512, B = 5 at N = M = 1024 and N = 1024, M = 4096 (features uniform in [0, 0.05) like
/// ReLU maps; W ~ N(0, 1/C)), and conv2d 3×3 C→C with bias at B = 5 for VGG16's 512 ch at 32²,
/// 128 at 128² and 64 at 256², with im2col and with Winograd.
pub struct CudaCase {
    pub name: String,
    /// FLOPs of the forward pass (the backward is counted as twice that for the rate column)
    pub fwd_flop: f64,
    /// whether `run(true)` times a backward too (the plain matmuls have none)
    pub has_backward: bool,
    pub run: Box<dyn Fn(bool) -> Result<()>>,
}

pub fn cuda_cases() -> Vec<CudaCase> {
    let dev = Device::Cuda;
    let mut rng = crate::seed::rng(1);
    let mut v = Vec::new();
    let (b, c) = (5usize, 512usize);
    for (n, m) in [(1024usize, 1024usize), (1024, 4096)] {
        let fm = Tensor::rand_uniform([b, c, n], 0.0, 0.05, DType::F32, dev, &mut rng).into_param();
        let fnn =
            Tensor::rand_uniform([b, c, m], 0.0, 0.05, DType::F32, dev, &mut rng).into_param();
        let w =
            Tensor::randn([c, c], 1.0 / (c as f64).sqrt(), DType::F32, dev, &mut rng).into_param();
        let ga = Tensor::randn([b, c, n], 1.0, DType::F32, dev, &mut rng);
        let gb = Tensor::randn([b, c, m], 1.0, DType::F32, dev, &mut rng);
        let (bf, cf, nf, mf) = (b as f64, c as f64, n as f64, m as f64);
        use crate::backend::cuda::{set_coattention_impl, CoattImpl};
        for (label, imp) in [("unfused", CoattImpl::Unfused), ("fused", CoattImpl::Fused)] {
            let (fm, fnn, w, ga, gb) = (fm.clone(), fnn.clone(), w.clone(), ga.clone(), gb.clone());
            v.push(CudaCase {
                name: format!("co-attention {label} C={c} B={b} N={n} M={m}"),
                fwd_flop: bf * (2.0 * cf * cf * nf + 6.0 * cf * nf * mf),
                has_backward: true,
                run: Box::new(move |with_backward| {
                    set_coattention_impl(imp);
                    if !with_backward {
                        return crate::no_grad(|| coattention(&fm, &fnn, &w)).map(|_| ());
                    }
                    // as torch.autograd.backward([x, y], [ga, gb]) in tools/torch_bench.py
                    let (x, y) = coattention(&fm, &fnn, &w)?;
                    crate::autograd::backward_from(&[(&x, &ga), (&y, &gb)]).map(|_| ())
                }),
            });
        }
    }
    // the GEMM ceiling: one square product (what cuBLAS reaches at all), and the conv's own
    // GEMM shape (the batch folded into N)
    for (m, n, k) in [(4096usize, 4096usize, 4096usize), (c, b * 1024, c * 9)] {
        let x = Tensor::randn([m, k], 1.0, DType::F32, dev, &mut rng);
        let y = Tensor::randn([k, n], 1.0, DType::F32, dev, &mut rng);
        v.push(CudaCase {
            name: format!("matmul {m}x{n}x{k}"),
            fwd_flop: 2.0 * (m * n * k) as f64,
            has_backward: false,
            run: Box::new(move |_| crate::no_grad(|| x.matmul(&y)).map(|_| ())),
        });
    }
    // VGG16's three 3×3 shapes of equal FLOPs (512 ch at 32², 128 at 128², 64 at 256²), B = 5,
    // with bias, as each conv algorithm
    for (ch, s) in [(c, 32usize), (128, 128), (64, 256)] {
        let x = Tensor::randn([b, ch, s, s], 1.0, DType::F32, dev, &mut rng).into_param();
        let w = Tensor::randn([ch, ch, 3, 3], 0.02, DType::F32, dev, &mut rng).into_param();
        let bias = Tensor::zeros([ch], DType::F32, dev).into_param();
        let gy = Tensor::randn([b, ch, s, s], 1.0, DType::F32, dev, &mut rng);
        use crate::backend::cuda::{set_conv_algo, ConvAlgo};
        for (label, algo) in [
            ("im2col", ConvAlgo::Im2col),
            ("winograd", ConvAlgo::Winograd),
        ] {
            let (x, w, bias, gy) = (x.clone(), w.clone(), bias.clone(), gy.clone());
            v.push(CudaCase {
                name: format!("conv2d 3x3 {ch}->{ch} {s}x{s} B={b} {label}"),
                fwd_flop: 2.0 * (b * ch * ch * 9 * s * s) as f64,
                has_backward: true,
                run: Box::new(move |with_backward| {
                    set_conv_algo(algo);
                    let p = Conv2dParams::same(1, 1);
                    if !with_backward {
                        return crate::no_grad(|| x.conv2d(&w, Some(&bias), p)).map(|_| ());
                    }
                    let y = x.conv2d(&w, Some(&bias), p)?;
                    crate::autograd::backward_from(&[(&y, &gy)]).map(|_| ())
                }),
            });
        }
    }
    v
}

/// `coatt-train bench --device cuda`: the table to put beside tools/torch_bench.py's.
pub fn run_cuda(a: &BenchArgs) -> Result<()> {
    crate::backend::cuda::init().map_err(|e| crate::Error::Msg(format!("--device cuda: {e}")))?;
    crate::backend::cuda::set_tf32(!a.no_tf32);
    println!(
        "coatt CUDA backend, {}, TF32 {}, median of {} (CUDA events, after warm-up)",
        crate::backend::cuda::device_name().unwrap_or_default(),
        if a.no_tf32 { "off" } else { "on" },
        a.reps
    );
    println!(
        "| case | forward (ms) | forward+backward (ms) | forward TFLOP/s |\n|---|---:|---:|---:|"
    );
    for case in cuda_cases() {
        let f = median_ms_cuda(a.reps, || (case.run)(false))?;
        let fb = if case.has_backward {
            format!("{:.3}", median_ms_cuda(a.reps, || (case.run)(true))?)
        } else {
            "–".into()
        };
        println!(
            "| {} | {f:.3} | {fb} | {:.1} |",
            case.name,
            case.fwd_flop / f / 1e9
        );
    }
    if let Some(s) = crate::backend::cuda::memory_stats() {
        println!("allocator: {s:?}");
    }
    Ok(())
}

/// `bench --train-step PRESET`: the median wall time of whole training steps of the classifier
/// (synchronised at the end of each), after warm-up, and the images/s the training loop
/// would report (2·B images per step).
pub fn run_train_step(a: &BenchArgs, preset: &str) -> Result<()> {
    use crate::cls::{Classifier, ClsConfig, Variant};
    let device = match a.device {
        super::DeviceArg::Cuda => {
            crate::backend::cuda::init()
                .map_err(|e| crate::Error::Msg(format!("--device cuda: {e}")))?;
            crate::backend::cuda::set_tf32(!a.no_tf32);
            Device::Cuda
        }
        _ => Device::Cpu,
    };
    let cfg = if preset == "tiny-ref" {
        tiny_ref()?
    } else {
        ClsConfig {
            variant: Variant::Full,
            ..ClsConfig::preset(preset)?
        }
    };
    let k = 20; // VOC's classes
    let mut rng = crate::seed::rng(1);
    let model = Classifier::new(&cfg, k, device, &mut rng);
    let mut opt = crate::optim::Sgd::new(model.param_groups(&cfg), cfg.momentum, cfg.nesterov)?;
    let (b, s) = (cfg.batch, cfg.input_size);
    let x1 = Tensor::randn([b, 3, s, s], 1.0, DType::F32, device, &mut rng);
    let x2 = Tensor::randn([b, 3, s, s], 1.0, DType::F32, device, &mut rng);
    // two positives each, one shared (so every loss term has a target)
    let mut l = vec![vec![0f32; b * k]; 2];
    for i in 0..b {
        l[0][i * k + i % k] = 1.0;
        l[0][i * k + (i + 1) % k] = 1.0;
        l[1][i * k + i % k] = 1.0;
        l[1][i * k + (i + 3) % k] = 1.0;
    }
    let l1 = Tensor::from_vec(l[0].clone(), [b, k], device)?;
    let l2 = Tensor::from_vec(l[1].clone(), [b, k], device)?;
    let epoch = cfg.contrastive_from.max(cfg.coattention_from);
    let mut step = || -> Result<()> {
        let loss = model.iteration_loss(&cfg, &x1, &x2, &l1, &l2, epoch)?;
        let total = loss.total.to_scalar()?;
        if !total.is_finite() {
            return Err(crate::Error::NonFinite(format!("bench step loss {total}")));
        }
        let grads = backward(&loss.total)?;
        opt.step(&grads, 1.0)?;
        device.synchronize();
        Ok(())
    };
    let params: usize = model.named_params().iter().map(|(_, t)| t.numel()).sum();
    let first = model
        .iteration_loss(&cfg, &x1, &x2, &l1, &l2, epoch)?
        .total
        .to_scalar()?;
    println!("{params} parameters; first-step loss {first:.4} (the sum of every term)");
    let start = Instant::now();
    let mut warm = 0;
    while warm < 3 || start.elapsed().as_secs_f64() < 1.0 {
        step()?;
        warm += 1;
    }
    let secs = median_secs(a.reps, &mut step)?;
    println!(
        "coatt train step, preset {preset} (batch {b} pairs, {s} px, variant full, all terms), {}: median of {} steps {:.2} ms, {:.1} images/s",
        match device {
            Device::Cuda => format!(
                "{} TF32 {}",
                crate::backend::cuda::device_name().unwrap_or_default(),
                if a.no_tf32 { "off" } else { "on" }
            ),
            _ => "CPU".into(),
        },
        a.reps,
        secs * 1e3,
        2.0 * b as f64 / secs
    );
    // COATT_CPU_PROFILE=1: where the CPU step's time goes, op by op (wall time of each kernel
    // call, over `reps` steps)
    if device == Device::Cpu && std::env::var("COATT_CPU_PROFILE").is_ok_and(|v| v == "1") {
        use crate::backend::cpu::profile;
        let t = Instant::now();
        profile::set_profiling(true);
        for _ in 0..a.reps {
            step()?;
        }
        let rows = profile::profile_report();
        profile::set_profiling(false);
        let wall = t.elapsed().as_secs_f64() * 1e3 / a.reps as f64;
        // ops are one word; the finer rows (a conv at its sizes) are parts of them
        let (ops, parts): (Vec<_>, Vec<_>) = rows.iter().partition(|r| !r.0.contains(' '));
        let total: f64 = ops.iter().map(|r| r.2).sum::<f64>() / a.reps as f64;
        println!("one step's CPU ops: {total:.1} ms of {wall:.1} ms (the rest: autograd, allocation, the loss read)");
        let per_step = |rows: Vec<&(String, usize, f64)>| -> Vec<(String, usize, f64)> {
            let n = a.reps;
            rows.into_iter()
                .map(|(name, calls, ms)| (name.clone(), calls / n, ms / n as f64))
                .collect()
        };
        print_profile("op", "ms per step", &per_step(ops), wall);
        print_profile("call at its sizes", "ms per step", &per_step(parts), wall);
    }
    // COATT_CUDA_PROFILE=1: where one step's device time goes
    if device == Device::Cuda {
        let _ = crate::backend::cuda::profile_report();
        step()?;
        if let Some(rows) = crate::backend::cuda::profile_report() {
            let total: f64 = rows.iter().map(|r| r.2).sum();
            println!("one step's kernels (events around each): {total:.2} ms in all");
            print_profile("kernel", "ms", &rows[..rows.len().min(30)], total);
        }
    }
    Ok(())
}

/// A profile as a markdown table: (name, calls, ms) rows, each a share of `whole` ms.
fn print_profile(title: &str, ms_label: &str, rows: &[(String, usize, f64)], whole: f64) {
    println!("\n| {title} | calls | {ms_label} | share |\n|---|---:|---:|---:|");
    for (name, calls, ms) in rows {
        println!(
            "| {name} | {calls} | {ms:.3} | {:.1}% |",
            100.0 * ms / whole
        );
    }
}

/// The training step the JAX peer mirrors (an external reference kept outside, not part of
/// the repository): the `tiny` classifier as it was when the peer was written (VGG16-D1 at 1/8
/// width with BN, 64 px, batch 8 pairs, cosine affinity without temperature, W_P random, all 18
/// loss terms, nesterov SGD at lr 2e-3, weight decay 5e-4): 349,148 parameters at K = 20.
fn tiny_ref() -> Result<crate::cls::ClsConfig> {
    use crate::cls::{ClsConfig, Variant};
    let tiny = ClsConfig::preset("tiny")?;
    Ok(ClsConfig {
        preset: "tiny-ref".into(),
        variant: Variant::Full,
        input_size: 64,
        small_scale: 0.75,
        large_scale: 2.0,
        batch: 8,
        lr: 2e-3,
        bias_lr_mult: 1.0,
        new_lr_mult: 1.0,
        momentum: 0.9,
        nesterov: true,
        weight_decay: 5e-4,
        affinity: crate::nn::Affinity::Cosine,
        temperature: 1.0,
        learn_temperature: false,
        wp_init: crate::nn::WpInit::Random,
        backbone: crate::nn::VggConfig::narrow(8),
        ..tiny
    })
}

pub fn run(a: &BenchArgs) -> Result<()> {
    if let Some(p) = &a.train_step {
        return run_train_step(a, p);
    }
    if a.device == super::DeviceArg::Cuda {
        return run_cuda(a);
    }
    println!(
        "coatt CPU kernels, {} rayon threads, f32, median of {} runs",
        rayon::current_num_threads(),
        a.reps
    );
    let rows = run_rows(a)?;
    println!("{:<52} {:>10} {:>10}", "case", "ms", "GFLOP/s");
    for r in &rows {
        println!(
            "{:<52} {:>10.2} {:>10.1}",
            r.name,
            r.secs * 1e3,
            r.gflop / r.secs
        );
    }
    let rate = |i: usize| rows[i].gflop / rows[i].secs;
    println!(
        "conv forward / gemm throughput ratio: {:.2}",
        rate(0) / rate(2)
    );
    Ok(())
}

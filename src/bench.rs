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

pub fn run_rows(a: &BenchArgs) -> Result<Vec<BenchRow>> {
    let (b, c, s) = (a.batch, a.channels, a.side);
    let hw = s * s;
    let mut rng = crate::testing::rng(1);
    let mut rows = Vec::new();
    let conv_flop = 2.0 * (b * c * hw * c * 9) as f64 / 1e9;

    let x = Tensor::randn([b, c, s, s], 1.0, DType::F32, Device::Cpu, &mut rng);
    let w = Tensor::randn([c, c, 3, 3], 0.02, DType::F32, Device::Cpu, &mut rng).into_param();
    let bias = Tensor::zeros([c], DType::F32, Device::Cpu).into_param();
    let p = Conv2dParams::same(1, 1);
    let fwd = median_secs(a.reps, || {
        crate::no_grad(|| x.conv2d(&w, Some(&bias), p).map(|_| ()))
    })?;
    rows.push(BenchRow {
        name: format!("conv2d 3x3 {c}->{c} {s}x{s} b{b} forward"),
        secs: fwd,
        gflop: conv_flop,
    });
    let xp = x.clone().into_param();
    let fb = median_secs(a.reps, || {
        let y = xp.conv2d(&w, Some(&bias), p)?.sum_all()?;
        backward(&y).map(|_| ())
    })?;
    rows.push(BenchRow {
        name: "conv2d forward+backward (dx, dW, db)".into(),
        secs: fb,
        gflop: 3.0 * conv_flop,
    });

    // The same M, N, K as the conv's GEMM with the batch folded into N: equal FLOPs.
    let (m, n, k) = (c, b * hw, c * 9);
    let lhs = vec![0.5f32; m * k];
    let rhs = vec![0.25f32; k * n];
    let mut out = vec![0f32; m * n];
    let g = median_secs(a.reps, || {
        gemm_into(
            &mut out,
            &lhs,
            &rhs,
            m,
            k,
            n,
            false,
            false,
            false,
            parallelism(m, n, k),
        );
        Ok(())
    })?;
    rows.push(BenchRow {
        name: format!("gemm {m}x{n}x{k} (same FLOPs as the conv)"),
        secs: g,
        gflop: conv_flop,
    });

    let fm = Tensor::randn([b, c, hw], 1.0, DType::F32, Device::Cpu, &mut rng).into_param();
    let fnn = Tensor::randn([b, c, hw], 1.0, DType::F32, Device::Cpu, &mut rng).into_param();
    let wp = Tensor::randn([c, c], 0.02, DType::F32, Device::Cpu, &mut rng).into_param();
    let (cf, nf) = (c as f64, hw as f64);
    let co_fwd_flop = b as f64 * (2.0 * cf * cf * nf + 6.0 * cf * nf * nf) / 1e9;
    let cf_t = median_secs(a.reps, || {
        crate::no_grad(|| coattention(&fm, &fnn, &wp).map(|_| ()))
    })?;
    rows.push(BenchRow {
        name: format!("co-attention C={c} N=M={hw} b{b} forward"),
        secs: cf_t,
        gflop: co_fwd_flop,
    });
    let co_bwd_flop = b as f64 * (6.0 * cf * cf * nf + 14.0 * cf * nf * nf) / 1e9;
    let cb_t = median_secs(a.reps, || {
        let (x1, x2) = coattention(&fm, &fnn, &wp)?;
        let l = x1.sum_all()?.add(&x2.sum_all()?)?;
        backward(&l).map(|_| ())
    })?;
    rows.push(BenchRow {
        name: "co-attention forward+backward".into(),
        secs: cb_t,
        gflop: co_fwd_flop + co_bwd_flop,
    });
    Ok(rows)
}

pub fn run(a: &BenchArgs) -> Result<()> {
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

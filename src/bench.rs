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
        let mut rng = crate::testing::rng(1);
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

//! CPU kernel benchmarks. Throughput is reported in FLOP ("elements" = floating-point
//! operations), so criterion's Gelem/s column reads as GFLOP/s.
use coatt::backend::cpu::matmul::{gemm_into, parallelism};
use coatt::{backward, coattention, no_grad, Conv2dParams, DType, Device, Tensor};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn conv_vs_gemm(c: &mut Criterion) {
    let (b, ch, s) = (2, 512, 32);
    let mut rng = coatt::testing::rng(1);
    let x = Tensor::randn([b, ch, s, s], 1.0, DType::F32, Device::Cpu, &mut rng).into_param();
    let w = Tensor::randn([ch, ch, 3, 3], 0.02, DType::F32, Device::Cpu, &mut rng).into_param();
    let bias = Tensor::zeros([ch], DType::F32, Device::Cpu).into_param();
    let p = Conv2dParams::same(1, 1);
    let flop = 2 * b * ch * s * s * ch * 9;
    let mut g = c.benchmark_group("conv2d_3x3_512_32x32_b2");
    g.sample_size(10);
    g.throughput(Throughput::Elements(flop as u64));
    g.bench_function("forward", |bn| {
        bn.iter(|| no_grad(|| x.conv2d(&w, Some(&bias), p).unwrap()))
    });
    g.throughput(Throughput::Elements(3 * flop as u64));
    g.bench_function("forward_backward", |bn| {
        bn.iter(|| {
            let y = x.conv2d(&w, Some(&bias), p).unwrap().sum_all().unwrap();
            backward(&y).unwrap()
        })
    });
    // one plain GEMM with the conv's M, N, K (batch folded into N): the same FLOPs
    let (m, n, k) = (ch, b * s * s, ch * 9);
    let (lhs, rhs, mut out) = (vec![0.5f32; m * k], vec![0.25f32; k * n], vec![0f32; m * n]);
    g.throughput(Throughput::Elements(flop as u64));
    g.bench_function("plain_gemm_same_mnk", |bn| {
        bn.iter(|| {
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
            )
        })
    });
    g.finish();
}

fn coattention_op(c: &mut Criterion) {
    let (b, ch, hw) = (2, 512, 1024);
    let mut rng = coatt::testing::rng(2);
    let fm = Tensor::randn([b, ch, hw], 1.0, DType::F32, Device::Cpu, &mut rng).into_param();
    let fnn = Tensor::randn([b, ch, hw], 1.0, DType::F32, Device::Cpu, &mut rng).into_param();
    let w = Tensor::randn([ch, ch], 0.02, DType::F32, Device::Cpu, &mut rng).into_param();
    let (cf, nf) = (ch as f64, hw as f64);
    let fwd = b as f64 * (2.0 * cf * cf * nf + 6.0 * cf * nf * nf);
    let bwd = b as f64 * (6.0 * cf * cf * nf + 14.0 * cf * nf * nf);
    let mut g = c.benchmark_group("coattention_c512_n1024_m1024_b2");
    g.sample_size(10);
    g.throughput(Throughput::Elements(fwd as u64));
    g.bench_function("forward", |bn| {
        bn.iter(|| no_grad(|| coattention(&fm, &fnn, &w).unwrap()))
    });
    g.throughput(Throughput::Elements((fwd + bwd) as u64));
    g.bench_function("forward_backward", |bn| {
        bn.iter(|| {
            let (a, o) = coattention(&fm, &fnn, &w).unwrap();
            backward(&a.sum_all().unwrap().add(&o.sum_all().unwrap()).unwrap()).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, conv_vs_gemm, coattention_op);
criterion_main!(benches);

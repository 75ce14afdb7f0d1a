//! CPU kernel benchmarks (the cases of `coatt-train bench`). Throughput is reported in FLOP
//! ("elements" = floating-point operations), so criterion's Gelem/s column reads as GFLOP/s.
use coatt::cli::bench::Cases;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

fn conv_vs_gemm(c: &mut Criterion) {
    let cs = Cases::new(2, 512, 32);
    let flop = (cs.conv_gflop * 1e9) as u64;
    let mut g = c.benchmark_group("conv2d_3x3_512_32x32_b2");
    g.sample_size(10);
    g.throughput(Throughput::Elements(flop));
    g.bench_function("forward", |bn| bn.iter(|| cs.conv_forward().unwrap()));
    g.throughput(Throughput::Elements(3 * flop));
    g.bench_function("forward_backward", |bn| {
        bn.iter(|| cs.conv_forward_backward().unwrap())
    });
    let (m, n, k) = cs.gemm_mnk;
    let (lhs, rhs, mut out) = (vec![0.5f32; m * k], vec![0.25f32; k * n], vec![0f32; m * n]);
    g.throughput(Throughput::Elements(flop));
    g.bench_function("plain_gemm_same_mnk", |bn| {
        bn.iter(|| cs.gemm(&lhs, &rhs, &mut out))
    });
    g.finish();
}

fn coattention_op(c: &mut Criterion) {
    let cs = Cases::new(2, 512, 32);
    let mut g = c.benchmark_group("coattention_c512_n1024_m1024_b2");
    g.sample_size(10);
    g.throughput(Throughput::Elements((cs.co_fwd_gflop * 1e9) as u64));
    g.bench_function("forward", |bn| {
        bn.iter(|| cs.coattention_forward().unwrap())
    });
    g.throughput(Throughput::Elements(
        ((cs.co_fwd_gflop + cs.co_bwd_gflop) * 1e9) as u64,
    ));
    g.bench_function("forward_backward", |bn| {
        bn.iter(|| cs.coattention_forward_backward().unwrap())
    });
    g.finish();
}

criterion_group!(benches, conv_vs_gemm, coattention_op);
criterion_main!(benches);

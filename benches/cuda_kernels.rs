//! CUDA benchmarks: the cases of `coatt-train bench --device cuda` (the shapes of
//! tools/torch_bench.py), timed with CUDA events after criterion's warm-up (iter_custom), so
//! the numbers are device time. Without a GPU it prints SKIPPED and measures nothing.
use coatt::backend::cuda;
use coatt::cli::bench::cuda_cases;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::time::Duration;

fn cuda_benches(c: &mut Criterion) {
    if let Err(why) = cuda::init() {
        eprintln!("SKIPPED CUDA benches: {why}");
        return;
    }
    for case in cuda_cases() {
        let mut g = c.benchmark_group(case.name.replace(' ', "_"));
        g.sample_size(10);
        g.warm_up_time(Duration::from_millis(500));
        g.measurement_time(Duration::from_secs(2));
        let mut variants = vec![("forward", false, case.fwd_flop)];
        if case.has_backward {
            variants.push(("forward_backward", true, 3.0 * case.fwd_flop));
        }
        for (label, bwd, flop) in variants {
            g.throughput(Throughput::Elements(flop as u64));
            g.bench_function(label, |b| {
                b.iter_custom(|iters| {
                    let ms = cuda::time_ms(|| {
                        for _ in 0..iters {
                            (case.run)(bwd).unwrap();
                        }
                    });
                    Duration::from_secs_f64(ms as f64 / 1e3)
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, cuda_benches);
criterion_main!(benches);

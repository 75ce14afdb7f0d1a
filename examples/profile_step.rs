//! Times the pieces of one tiny-preset classifier iteration (backbone passes, head, backward).
use coatt::cls::{Classifier, ClsConfig};
use coatt::{backward, no_grad, DType, Device, Tensor};
use std::time::Instant;

fn main() -> coatt::Result<()> {
    let preset = std::env::args().nth(1).unwrap_or_else(|| "tiny".into());
    let cfg = ClsConfig::preset(&preset)?;
    let mut rng = coatt::testing::rng(1);
    let model = Classifier::new(&cfg, 6, Device::Cpu, &mut rng);
    let (b, s) = (cfg.batch, cfg.input_size);
    let x1 = Tensor::randn([b, 3, s, s], 1.0, DType::F32, Device::Cpu, &mut rng);
    let x2 = Tensor::randn([b, 3, s, s], 1.0, DType::F32, Device::Cpu, &mut rng);
    let l = Tensor::ones([b, 6], DType::F32, Device::Cpu);
    for sz in [s, s * 3 / 4, s * 2] {
        let x = Tensor::randn([3 * b, 3, sz, sz], 1.0, DType::F32, Device::Cpu, &mut rng);
        let t = Instant::now();
        for _ in 0..3 {
            no_grad(|| model.features(&x))?;
        }
        println!(
            "backbone fwd {}x{sz}²: {:.1} ms",
            3 * b,
            t.elapsed().as_secs_f64() * 1e3 / 3.0
        );
    }
    let reps: usize = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(9);
    let mut times = Vec::new();
    for _ in 0..reps + 1 {
        let t = Instant::now();
        let loss = model.iteration_loss(&cfg, &x1, &x2, &l, &l, 5)?;
        let t1 = t.elapsed().as_secs_f64();
        backward(&loss.total)?;
        times.push((t1, t.elapsed().as_secs_f64() - t1));
    }
    times.remove(0); // warm-up
    times.sort_by(|a, b| (a.0 + a.1).total_cmp(&(b.0 + b.1)));
    let (f, b) = times[times.len() / 2];
    println!(
        "iteration (median of {reps}): {:.1} ms = forward {:.1} + backward {:.1}",
        (f + b) * 1e3,
        f * 1e3,
        b * 1e3
    );
    Ok(())
}

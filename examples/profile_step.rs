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
    for _ in 0..2 {
        let t = Instant::now();
        let loss = model.iteration_loss(&cfg, &x1, &x2, &l, &l, 5)?;
        let t1 = t.elapsed().as_secs_f64();
        backward(&loss.total)?;
        println!(
            "iteration: forward {:.1} ms, backward {:.1} ms",
            t1 * 1e3,
            (t.elapsed().as_secs_f64() - t1) * 1e3
        );
    }
    Ok(())
}

//! Prints activation scale and gradient norm per parameter for one tiny-preset iteration.
use coatt::cls::{Classifier, ClsConfig};
use coatt::{backward, DType, Device, Tensor};

fn norm(t: &Tensor) -> f64 {
    t.to_vec_f64().iter().map(|v| v * v).sum::<f64>().sqrt()
}

fn main() -> coatt::Result<()> {
    let cfg = ClsConfig::preset("tiny")?;
    let mut rng = coatt::testing::rng(1);
    let m = Classifier::new(&cfg, 6, Device::Cpu, &mut rng);
    let s = cfg.input_size;
    let x = Tensor::randn([4, 3, s, s], 1.0, DType::F32, Device::Cpu, &mut rng);
    let l = Tensor::from_f64(
        &[1., 0., 0., 0., 0., 0.].repeat(4),
        [4, 6],
        DType::F32,
        Device::Cpu,
    )?;
    let f = m.features(&x)?;
    println!("feature rms {:.3e}", norm(&f) / (f.numel() as f64).sqrt());
    let loss = m.iteration_loss(&cfg, &x, &x, &l, &l, 3)?;
    let g = backward(&loss.total)?;
    for (n, p) in m.named_params() {
        let gn = g.get(&p).map(norm).unwrap_or(0.0);
        println!("{n:<24} |w| {:.3e}  |g| {:.3e}", norm(&p), gn);
    }
    Ok(())
}

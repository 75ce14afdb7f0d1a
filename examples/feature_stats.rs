//! Fraction of dead (always-zero) channels per backbone stage of a trained run.
use coatt::cls::{Classifier, ClsConfig};
use coatt::data::augment::prepare;
use coatt::data::voc::{load_rgb, VocDataset};
use coatt::io::Checkpoint;
use coatt::{no_grad, Device, Tensor};
use std::path::Path;

fn main() -> coatt::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let (run, data) = (Path::new(&a[1]), Path::new(&a[2]));
    let cfg = ClsConfig::load(&run.join("config.toml"))?;
    let ds = VocDataset::open(data, "val")?;
    let m = Classifier::new(
        &cfg,
        ds.num_classes(),
        Device::Cpu,
        &mut coatt::testing::rng(0),
    );
    if a.get(3).is_none() {
        m.load(&Checkpoint::open(run.join("last.safetensors"))?)?;
    }
    let s = cfg.input_size;
    let x: Vec<f32> = ds.items[..32]
        .iter()
        .flat_map(|it| {
            prepare(
                &load_rgb(&it.image).unwrap(),
                s,
                None,
                &mut coatt::testing::rng(0),
            )
        })
        .collect();
    let mut h = Tensor::from_vec(x, [32, 3, s, s], Device::Cpu)?;
    no_grad(|| -> coatt::Result<()> {
        let v = &m.backbone;
        for (i, conv) in v.features.iter().chain(v.extra.iter()).enumerate() {
            h = conv.forward(&h)?;
            if let Some(b) = v.bn.get(i) {
                h = h.batch_norm_frozen(&b.gamma, &b.beta, &b.mean, &b.var, 1e-5)?;
            }
            h = h.relu();
            let c = h.dims()[1];
            let mx = h
                .permute(&[1, 0, 2, 3])?
                .reshape(&[c, h.numel() / c])?
                .to_vec_f64();
            let per = h.numel() / c;
            let dead = (0..c)
                .filter(|&k| mx[k * per..(k + 1) * per].iter().all(|&v| v == 0.0))
                .count();
            let mean = mx.iter().sum::<f64>() / mx.len() as f64;
            println!("layer {i:>2}: {c:>3} channels, {dead:>3} dead, mean act {mean:.3}");
            if [1, 3, 6].contains(&i) {
                h = h.max_pool2d(coatt::Pool2dParams::new(2, 2, 0))?;
            } else if i == 9 {
                h = h.max_pool2d(coatt::Pool2dParams::new(3, 1, 1))?;
            }
        }
        Ok(())
    })?;
    Ok(())
}

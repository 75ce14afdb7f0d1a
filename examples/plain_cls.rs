//! Diagnostic: a plain single-image classifier (the tiny backbone + single head, one view)
//! on a dataset, printing val per-class AP every 100 steps.
//! `cargo run --release --example plain_cls -- DATA [LR] [STEPS] [SEED]`
use coatt::cls::eval::mean_average_precision;
use coatt::cls::{Classifier, ClsConfig, Variant};
use coatt::data::augment::prepare;
use coatt::data::loader::multi_hot;
use coatt::data::voc::{load_rgb, VocDataset};
use coatt::optim::Sgd;
use coatt::{backward, no_grad, Device, Tensor};

fn batch(ds: &VocDataset, idx: &[usize], s: usize) -> (Tensor, Tensor) {
    let k = ds.num_classes();
    let x: Vec<f32> = idx
        .iter()
        .flat_map(|&i| {
            prepare(
                &load_rgb(&ds.items[i].image).unwrap(),
                s,
                None,
                &mut coatt::testing::rng(i as u64),
            )
        })
        .collect();
    let l: Vec<f32> = idx
        .iter()
        .flat_map(|&i| multi_hot(&ds.items[i].labels, k))
        .collect();
    (
        Tensor::from_vec(x, [idx.len(), 3, s, s], Device::Cpu).unwrap(),
        Tensor::from_vec(l, [idx.len(), k], Device::Cpu).unwrap(),
    )
}

fn main() -> coatt::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let data = std::path::Path::new(&a[1]);
    let lr: f64 = a.get(2).map(|s| s.parse().unwrap()).unwrap_or(0.02);
    let steps: usize = a.get(3).map(|s| s.parse().unwrap()).unwrap_or(300);
    let seed: u64 = a.get(4).map(|s| s.parse().unwrap()).unwrap_or(1);
    let (tr, va) = (
        VocDataset::open(data, "train")?,
        VocDataset::open(data, "val")?,
    );
    let cfg = ClsConfig {
        variant: Variant::Basic,
        lr,
        ..ClsConfig::preset("tiny")?
    };
    let m = Classifier::new(
        &cfg,
        tr.num_classes(),
        Device::Cpu,
        &mut coatt::testing::rng(seed),
    );
    let mut opt = Sgd::new(m.param_groups(&cfg), 0.9, true)?;
    let s = cfg.input_size;
    let (vx, vl) = batch(&va, &(0..200).collect::<Vec<_>>(), s);
    let t0 = std::time::Instant::now();
    for step in 0..=steps {
        if step % 100 == 0 {
            let sc = no_grad(|| m.head.single(&m.features_eval(&vx)?))?;
            let (map, per) =
                mean_average_precision(&sc.to_vec_f64(), &vl.to_vec_f64(), tr.num_classes());
            println!(
                "{:.0}s step {step}: val mAP {map:.3} {:?}",
                t0.elapsed().as_secs_f64(),
                per.iter()
                    .map(|p| format!("{:.2}", p.unwrap_or(0.0)))
                    .collect::<Vec<_>>()
            );
        }
        let idx: Vec<usize> = (0..16).map(|j| (step * 16 + j) % tr.items.len()).collect();
        let (x, l) = batch(&tr, &idx, s);
        let loss = m
            .head
            .single(&m.features(&x)?)?
            .multilabel_soft_margin(&l)?;
        opt.step(&backward(&loss)?, 1.0)?;
    }
    Ok(())
}

//! Sanity check: repeated steps on one fixed batch must drive the loss down.
use coatt::cls::{Classifier, ClsConfig, Variant};
use coatt::data::augment::prepare;
use coatt::data::loader::multi_hot;
use coatt::data::voc::{load_rgb, VocDataset};
use coatt::optim::Sgd;
use coatt::{backward, Device, Tensor};

fn main() -> coatt::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let lr: f64 = args.get(2).map(|s| s.parse().unwrap()).unwrap_or(0.01);
    let ds = VocDataset::open(std::path::Path::new(&args[1]), "train")?;
    let mut cfg = ClsConfig {
        variant: Variant::Basic,
        lr,
        ..ClsConfig::preset("tiny")?
    };
    if let Some(m) = args.get(3) {
        cfg.new_lr_mult = m.parse().unwrap();
        cfg.bias_lr_mult = 1.0;
        cfg.head_init = coatt::nn::Init::KaimingNormal;
    }
    let m = Classifier::new(
        &cfg,
        ds.num_classes(),
        Device::Cpu,
        &mut coatt::testing::rng(1),
    );
    let mut opt = Sgd::new(m.param_groups(&cfg), 0.9, true)?;
    let s = cfg.input_size;
    let items = &ds.items[..8];
    let x: Vec<f32> = items
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
    let l: Vec<f32> = items
        .iter()
        .flat_map(|it| multi_hot(&it.labels, ds.num_classes()))
        .collect();
    let x = Tensor::from_vec(x, [8, 3, s, s], Device::Cpu)?;
    let l = Tensor::from_vec(l, [8, ds.num_classes()], Device::Cpu)?;
    for step in 0..150 {
        let logits = m.head.single(&m.features(&x)?)?;
        let loss = logits.multilabel_soft_margin(&l)?;
        if step % 15 == 0 {
            println!("step {step}: loss {:.4}", loss.to_scalar()?);
        }
        let g = backward(&loss)?;
        opt.step(&g, 1.0)?;
    }
    Ok(())
}

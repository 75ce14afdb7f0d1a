//! Per-class AP of a classifier run on a split, with BN in eval mode and in batch mode.
use coatt::cls::eval::mean_average_precision;
use coatt::cls::{Classifier, ClsConfig};
use coatt::data::augment::prepare;
use coatt::data::loader::multi_hot;
use coatt::data::voc::{load_rgb, VocDataset};
use coatt::io::Checkpoint;
use coatt::{no_grad, Device, Tensor};
use std::path::Path;

fn main() -> coatt::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let (run, data, split) = (
        Path::new(&a[1]),
        Path::new(&a[2]),
        a.get(3).map(String::as_str).unwrap_or("val"),
    );
    let cfg = ClsConfig::load(&run.join("config.toml"))?;
    let ds = VocDataset::open(data, split)?;
    let k = ds.num_classes();
    let m = Classifier::new(&cfg, k, Device::Cpu, &mut coatt::testing::rng(0));
    m.load(&Checkpoint::open(run.join("last.safetensors"))?)?;
    let s = cfg.input_size;
    let items = &ds.items[..ds.items.len().min(400)];
    for train_mode in [false, true] {
        let (mut sc, mut lb) = (Vec::new(), Vec::new());
        for ch in items.chunks(40) {
            let x: Vec<f32> = ch
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
            let x = Tensor::from_vec(x, [ch.len(), 3, s, s], Device::Cpu)?;
            let f = no_grad(|| {
                if train_mode {
                    m.features(&x)
                } else {
                    m.features_eval(&x)
                }
            })?;
            sc.extend(m.head.single(&f)?.to_vec_f64());
            lb.extend(
                ch.iter()
                    .flat_map(|it| multi_hot(&it.labels, k))
                    .map(|v| v as f64),
            );
        }
        let (map, per) = mean_average_precision(&sc, &lb, k);
        println!(
            "{split} bn-{}: mAP {map:.3}  per class {:?}",
            if train_mode { "batch" } else { "running" },
            per.iter()
                .map(|p| format!("{:.2}", p.unwrap_or(f64::NAN)))
                .collect::<Vec<_>>()
        );
    }
    Ok(())
}

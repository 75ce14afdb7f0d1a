//! Does the BN running statistics' mix of scales hurt the val mAP? Evaluates a run, then
//! re-estimates the running statistics on training images at the input size only and
//! evaluates again.  `cargo run --release --example bn_recal -- RUN DATA [BATCHES]`
use coatt::cls::eval::mean_average_precision;
use coatt::cls::load_classifier;
use coatt::cls::train::predict_scores;
use coatt::data::augment::prepare;
use coatt::data::voc::{load_rgb, VocDataset};
use coatt::{no_grad, Device, Tensor};
use std::path::PathBuf;

fn main() -> coatt::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let (run, data) = (PathBuf::from(&a[1]), PathBuf::from(&a[2]));
    let batches: usize = a.get(3).map(|s| s.parse().unwrap()).unwrap_or(100);
    let val = VocDataset::open(&data, "val")?;
    let train = VocDataset::open(&data, "train")?;
    let k = val.num_classes();
    let (model, cfg) = load_classifier(&run, None, k, Device::Cpu)?;
    let s = cfg.input_size;
    let (sc, lb) = predict_scores(&model, &val, s, Device::Cpu)?;
    println!(
        "val mAP, stored running stats: {:.4}",
        mean_average_precision(&sc, &lb, k).0
    );
    let mut sub = VocDataset::open(&data, "train")?;
    sub.items.truncate(400);
    let (sc, lb) = predict_scores(&model, &sub, s, Device::Cpu)?;
    println!(
        "train (first 400) mAP: {:.4}",
        mean_average_precision(&sc, &lb, k).0
    );
    let mut rng = coatt::testing::rng(7);
    for chunk in train.items.chunks(16).take(batches) {
        let v: Vec<f32> = chunk
            .iter()
            .flat_map(|it| prepare(&load_rgb(&it.image).unwrap(), s, None, &mut rng))
            .collect();
        let x = Tensor::from_vec(v, [chunk.len(), 3, s, s], Device::Cpu)?;
        no_grad(|| model.features(&x))?;
    }
    let (sc, lb) = predict_scores(&model, &val, s, Device::Cpu)?;
    println!(
        "val mAP, running stats re-estimated at {s}²: {:.4}",
        mean_average_precision(&sc, &lb, k).0
    );
    Ok(())
}

//! Diagnostic for the co-attention maps: how peaked is the attention of a trained classifier?
//! For pairs of training images sharing a class, prints the library's attention statistics
//! (`nn::AttentionStats`: normalised entropy, top-1 mass, hub share) of softmax_j(S/τ) under the
//! classifier's own affinity and temperature. `coatt-train cams` writes the same statistics for
//! the related pairs it uses (OUT/attention.json).
//! Usage: cargo run --release --example attention_stats -- RUN DATA [pairs]
use coatt::cls::load_classifier;
use coatt::data::augment::prepare;
use coatt::data::voc::{load_rgb, VocDataset};
use coatt::nn::AttentionStats;
use coatt::{no_grad, Device, Tensor};

fn main() -> coatt::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let (run, data) = (std::path::Path::new(&a[1]), std::path::Path::new(&a[2]));
    let pairs: usize = a.get(3).and_then(|v| v.parse().ok()).unwrap_or(50);
    let ds = VocDataset::open(data, "train")?;
    let (model, cfg) = load_classifier(run, None, ds.num_classes(), Device::Cpu)?;
    let by = ds.by_class();
    let s = cfg.input_size;
    let mut stats = AttentionStats::default();
    for p in 0..pairs {
        let i = p * 7 % ds.items.len();
        let Some(&c) = ds.items[i].labels.first() else {
            continue;
        };
        let j = by[c][(p * 13 + 1) % by[c].len()];
        let load = |k: usize| -> coatt::Result<Vec<f32>> {
            Ok(prepare(
                &load_rgb(&ds.items[k].image)?,
                s,
                None,
                &mut rand::thread_rng(),
            ))
        };
        let x = Tensor::from_vec([load(i)?, load(j)?].concat(), [2, 3, s, s], Device::Cpu)?;
        no_grad(|| -> coatt::Result<()> {
            let f = model.features_eval(&x)?;
            let rows = model
                .head
                .attention_rows(&f.narrow(0, 0, 1)?, &f.narrow(0, 1, 1)?)?;
            stats.add(&rows)
        })?;
    }
    println!("{} (τ = {:.4})", stats.summary(), model.head.tau());
    Ok(())
}

//! Analysis aid (tools/attention_match.py reads it): writes a classifier's eval features and single-image logit maps of every
//! train image at one input side as raw little-endian f32, for analysis outside the engine.
//! Usage: cargo run --release --example dump_features -- RUN DATA SIDE OUT
use coatt::cls::load_classifier;
use coatt::data::augment::prepare;
use coatt::data::voc::{load_rgb, VocDataset};
use coatt::{no_grad, Device, Tensor};
use std::io::Write;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a: Vec<String> = std::env::args().collect();
    let (run, data) = (std::path::Path::new(&a[1]), std::path::Path::new(&a[2]));
    let side: usize = a[3].parse().expect("SIDE");
    let out = std::path::Path::new(&a[4]);
    std::fs::create_dir_all(out)?;
    let ds = VocDataset::open(data, "train")?;
    let (model, _) = load_classifier(run, None, ds.num_classes(), Device::Cpu)?;
    let mut ff = std::fs::File::create(out.join("features.f32"))?;
    let mut fl = std::fs::File::create(out.join("logits.f32"))?;
    let mut dims = Vec::new();
    for chunk in (0..ds.items.len()).collect::<Vec<_>>().chunks(32) {
        let mut v = Vec::new();
        for &i in chunk {
            v.extend(prepare(
                &load_rgb(&ds.items[i].image)?,
                side,
                None,
                &mut rand::thread_rng(),
            ));
        }
        let x = Tensor::from_vec(v, [chunk.len(), 3, side, side], Device::Cpu)?;
        no_grad(|| -> Result<(), Box<dyn std::error::Error>> {
            let f = model.features_eval(&x)?;
            let l = model.head.single_maps(&f)?;
            dims = vec![f.dims().to_vec(), l.dims().to_vec()];
            for (t, file) in [(&f, &mut ff), (&l, &mut fl)] {
                let bytes: Vec<u8> = t
                    .to_vec_f32()
                    .iter()
                    .flat_map(|v| v.to_le_bytes())
                    .collect();
                file.write_all(&bytes)?;
            }
            Ok(())
        })?;
    }
    let meta = serde_json::json!({
        "n": ds.items.len(), "features": dims[0], "logits": dims[1],
        "ids": ds.items.iter().map(|it| it.id.clone()).collect::<Vec<_>>(),
        "labels": ds.items.iter().map(|it| it.labels.clone()).collect::<Vec<_>>(),
        "num_classes": ds.num_classes(),
    });
    std::fs::write(out.join("meta.json"), meta.to_string())?;
    println!("{} images → {}", ds.items.len(), out.display());
    Ok(())
}

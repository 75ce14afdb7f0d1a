//! Diagnostic for the co-attention maps: how peaked is the attention of a trained classifier?
//! For pairs of training images sharing a class, prints the mean over positions of the largest
//! attention weight and the normalised entropy of each row of softmax_j(S) (1 = uniform).
//! Usage: cargo run --release --example attention_stats -- RUN DATA [pairs]
use coatt::cam::infer::load_classifier;
use coatt::data::augment::prepare;
use coatt::data::voc::{load_rgb, VocDataset};
use coatt::{no_grad, Device, Tensor};

fn main() -> coatt::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let (run, data) = (std::path::Path::new(&a[1]), std::path::Path::new(&a[2]));
    let pairs: usize = a.get(3).and_then(|v| v.parse().ok()).unwrap_or(50);
    let ds = VocDataset::open(data, "train")?;
    let (model, cfg) = load_classifier(run, None, ds.num_classes(), Device::Cpu)?;
    let by = ds.by_class();
    let s = cfg.input_size;
    let (mut maxw, mut ent, mut cnt) = (0f64, 0f64, 0usize);
    let (mut hub, mut distinct) = (0f64, 0f64);
    for p in 0..pairs {
        let i = p * 7 % ds.items.len();
        let c = ds.items[i].labels[0];
        let j = by[c][(p * 13 + 1) % by[c].len()];
        let load = |k: usize| {
            prepare(
                &load_rgb(&ds.items[k].image).unwrap(),
                s,
                None,
                &mut rand::thread_rng(),
            )
        };
        let x = Tensor::from_vec([load(i), load(j)].concat(), [2, 3, s, s], Device::Cpu)?;
        let f = no_grad(|| model.features_eval(&x))?;
        let d = f.dims().to_vec();
        let n = d[2] * d[3];
        let flat = f.reshape(&[2, d[1], n])?;
        let fm = flat.narrow(0, 0, 1)?.reshape(&[d[1], n])?;
        let fnn = flat.narrow(0, 1, 1)?.reshape(&[d[1], n])?;
        // S = (W·Fm)ᵀ·Fn (on unit-length features for the cosine affinity), softmax over
        // image n's positions
        let (fm, fnn) = if model.head.affinity == coatt::nn::Affinity::Cosine {
            let unit = |x: &Tensor| -> coatt::Result<Tensor> {
                x.div(&x.sqr().sum_axes(&[0], true)?.add_scalar(1e-12).sqrt())
            };
            (unit(&fm)?, unit(&fnn)?)
        } else {
            (fm, fnn)
        };
        let q = model.head.wp.matmul(&fm)?;
        let sm = q.matmul_t(&fnn, true, false)?.softmax(1)?.to_vec_f64();
        // how many of m's positions pick the same column of n (a "hub" position)
        let arg: Vec<usize> = sm
            .chunks(n)
            .map(|r| (0..n).max_by(|&a, &b| r[a].total_cmp(&r[b])).unwrap())
            .collect();
        let mut counts = vec![0usize; n];
        arg.iter().for_each(|&j| counts[j] += 1);
        hub += *counts.iter().max().unwrap() as f64 / n as f64;
        distinct += counts.iter().filter(|&&c| c > 0).count() as f64;
        for r in sm.chunks(n) {
            maxw += r.iter().cloned().fold(0.0, f64::max);
            ent += -r
                .iter()
                .map(|&v| if v > 0.0 { v * v.ln() } else { 0.0 })
                .sum::<f64>()
                / (n as f64).ln();
            cnt += 1;
        }
    }
    println!(
        "{pairs} pairs, {cnt} rows: mean max weight {:.4} (uniform {:.4}), mean normalised entropy {:.3}",
        maxw / cnt as f64,
        1.0 / ((s / 8) * (s / 8)) as f64,
        ent / cnt as f64
    );
    println!(
        "share of m's positions attending to the most popular position of n: {:.3}; distinct attended positions per pair: {:.1} of {}",
        hub / pairs as f64,
        distinct / pairs as f64,
        (s / 8) * (s / 8)
    );
    Ok(())
}

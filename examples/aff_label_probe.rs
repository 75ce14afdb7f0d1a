//! Diagnostic: how precise are AffinityNet's training labels made from a folder of maps?
//! For each setting (α_low, α_high, CRF preset), the share of pixels labelled foreground /
//! background / ignored and the accuracy of the confident labels against the masks.
//! Usage: cargo run --release --example aff_label_probe -- CAMS DATA N alo:ahi:crf ...
use coatt::affinity::affinity_labels;
use coatt::affinity::train::map_for;
use coatt::crf::CrfPreset;
use coatt::data::voc::{load_rgb, VocDataset};
use coatt::io::read_label_png;
use rayon::prelude::*;

fn main() -> coatt::Result<()> {
    let a: Vec<String> = std::env::args().collect();
    let (cams, data) = (std::path::Path::new(&a[1]), std::path::Path::new(&a[2]));
    let n: usize = a[3].parse().unwrap();
    let ds = VocDataset::open(data, "train")?;
    for spec in &a[4..] {
        let p: Vec<&str> = spec.split(':').collect();
        let (lo, hi): (f64, f64) = (p[0].parse().unwrap(), p[1].parse().unwrap());
        let crf = match p[2] {
            "mcis" => CrfPreset::Mcis,
            "psa" => CrfPreset::Psa,
            _ => CrfPreset::Off,
        }
        .params();
        let confs: Vec<coatt::eval::Confusion> = ds.items[..n]
            .par_iter()
            .filter(|it| !it.labels.is_empty())
            .map(|it| {
                let img = load_rgb(&it.image).unwrap();
                let (h, w) = (img.height() as usize, img.width() as usize);
                let cam = map_for(cams, &it.id, h, w).unwrap().max_normalised();
                let l = affinity_labels(&cam, img.as_raw(), lo, hi, crf.as_ref());
                let gt = read_label_png(it.mask.as_ref().unwrap()).unwrap().data;
                let mut conf = coatt::eval::Confusion::new(ds.class_names.len());
                conf.add_partial(&gt, &l).unwrap();
                conf
            })
            .collect();
        let mut all = coatt::eval::Confusion::new(ds.class_names.len());
        for c in confs {
            all.counts
                .iter_mut()
                .zip(&c.counts)
                .for_each(|(a, b)| *a += b);
        }
        let c: Vec<[u64; 5]> = ds.items[..n]
            .par_iter()
            .filter(|it| !it.labels.is_empty())
            .map(|it| {
                let img = load_rgb(&it.image).unwrap();
                let (h, w) = (img.height() as usize, img.width() as usize);
                let cam = map_for(cams, &it.id, h, w).unwrap().max_normalised();
                let l = affinity_labels(&cam, img.as_raw(), lo, hi, crf.as_ref());
                let gt = read_label_png(it.mask.as_ref().unwrap()).unwrap().data;
                let mut r = [0u64; 5]; // fg, fg correct, bg, bg correct, total
                for (&x, &g) in l.iter().zip(&gt) {
                    if g == 255 {
                        continue;
                    }
                    r[4] += 1;
                    if x != 0 && x != 255 {
                        r[0] += 1;
                        r[1] += (x == g) as u64;
                    } else if x == 0 {
                        r[2] += 1;
                        r[3] += (g == 0) as u64;
                    }
                }
                r
            })
            .collect();
        let s = |k: usize| c.iter().map(|r| r[k]).sum::<u64>() as f64;
        println!(
            "{spec}: mIoU of the labelled pixels {:.1}%, fg {:.1}% (precision {:.3}), bg {:.1}% (precision {:.3}), ignored {:.1}%",
            100.0 * all.miou(),
            100.0 * s(0) / s(4),
            s(1) / s(0),
            100.0 * s(2) / s(4),
            s(3) / s(2),
            100.0 * (1.0 - (s(0) + s(2)) / s(4))
        );
    }
    Ok(())
}

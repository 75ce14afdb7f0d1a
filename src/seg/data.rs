//! Segmentation training samples (DeepLab recipe): random scale, pad with the mean (label
//! 255), random crop, mirror. Batches are built ahead on a loader thread; every sample's
//! randomness is seeded by (seed, global sample index), so a resumed run sees the same data.
use crate::data::augment::{normalize, resize_rgb, to_chw};
use crate::data::voc::{load_rgb, VocDataset};
use crate::error::{Error, Result};
use crate::eval::IGNORE;
use crate::io::read_label_png;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Where a training image's label map comes from.
#[derive(Clone, Debug)]
pub enum LabelSource {
    /// `<dir>/<id>.png` (pseudo labels).
    Folder(PathBuf),
    /// The dataset's own masks (the fully supervised bound).
    GroundTruth,
}

/// (image path, label path) of every usable training image; a missing label is an error
/// naming the file.
pub fn training_items(ds: &VocDataset, labels: &LabelSource) -> Result<Vec<(PathBuf, PathBuf)>> {
    ds.items
        .iter()
        .map(|it| {
            let l = match labels {
                LabelSource::Folder(d) => d.join(format!("{}.png", it.id)),
                LabelSource::GroundTruth => it.mask.clone().ok_or_else(|| {
                    Error::Msg(format!("image '{}' has no ground-truth mask", it.id))
                })?,
            };
            if !l.exists() {
                return Err(Error::file(&l, "missing label map for a training image"));
            }
            Ok((it.image.clone(), l))
        })
        .collect()
}

/// Checks label maps before any training: readable, the image's size, values in 0..labels or
/// 255; an error names the label file (not a shape error from inside the loss, or a mismatch
/// found only after training).
pub fn check_label_maps(items: &[(PathBuf, PathBuf)], labels: usize) -> Result<()> {
    use rayon::prelude::*;
    items.par_iter().try_for_each(|(image, label)| {
        let l = crate::io::read_label_png(label)?;
        let (w, h) = image::image_dimensions(image).map_err(|e| Error::file(image, e))?;
        if (l.width, l.height) != (w as usize, h as usize) {
            return Err(Error::file(
                label,
                format!("label map is {}×{}, its image {w}×{h}", l.width, l.height),
            ));
        }
        if let Some(&v) = l.data.iter().find(|&&v| v != 255 && v as usize >= labels) {
            return Err(Error::file(
                label,
                format!("label {v} is neither a class 0..{labels} nor 255 (ignore)"),
            ));
        }
        Ok(())
    })
}

/// Nearest-neighbour resize of a label map (labels must not be interpolated).
pub fn resize_nearest(src: &[u8], h: usize, w: usize, ho: usize, wo: usize) -> Vec<u8> {
    let mut out = vec![0u8; ho * wo];
    for y in 0..ho {
        let sy = ((y as f64 + 0.5) * h as f64 / ho as f64) as usize;
        for x in 0..wo {
            let sx = ((x as f64 + 0.5) * w as f64 / wo as f64) as usize;
            out[y * wo + x] = src[sy.min(h - 1) * w + sx.min(w - 1)];
        }
    }
    out
}

/// Normalised CHW image and its labels → one crop×crop training sample.
pub fn augment(
    img: &image::RgbImage,
    label: &[u8],
    crop: usize,
    scale: (f64, f64),
    rng: &mut impl Rng,
) -> (Vec<f32>, Vec<u8>) {
    let (h, w) = (img.height() as usize, img.width() as usize);
    let s = rng.gen_range(scale.0..=scale.1);
    let (hs, ws) = (
        ((h as f64 * s).round() as usize).max(1),
        ((w as f64 * s).round() as usize).max(1),
    );
    let mut x = resize_rgb(&to_chw(img), h, w, hs, ws);
    normalize(&mut x, hs * ws);
    let l = resize_nearest(label, h, w, hs, ws);
    // pad to at least crop×crop: 0 after normalisation is the mean colour; labels 255
    let (ph, pw) = (hs.max(crop), ws.max(crop));
    let oy = rng.gen_range(0..=ph - crop);
    let ox = rng.gen_range(0..=pw - crop);
    let mirror = rng.gen_bool(0.5);
    let mut xo = vec![0f32; 3 * crop * crop];
    let mut lo = vec![IGNORE; crop * crop];
    for y in 0..crop {
        let sy = y + oy;
        if sy >= hs {
            continue;
        }
        for xx in 0..crop {
            let sx = xx + ox;
            if sx >= ws {
                continue;
            }
            let dx = if mirror { crop - 1 - xx } else { xx };
            for c in 0..3 {
                xo[c * crop * crop + y * crop + dx] = x[c * hs * ws + sy * ws + sx];
            }
            lo[y * crop + dx] = l[sy * ws + sx];
        }
    }
    (xo, lo)
}

pub struct SegBatch {
    pub iteration: usize,
    pub images: Vec<f32>,
    pub labels: Vec<f32>,
    pub count: usize,
    pub skipped: Vec<String>,
}

#[derive(Clone, Debug)]
pub struct SegLoaderConfig {
    pub crop: usize,
    pub scale: (f64, f64),
    pub batch: usize,
    pub seed: u64,
}

/// The order of the samples: a fresh seeded permutation of the set per pass, computed once
/// per pass (the loader thread keeps it between batches).
struct EpochOrder {
    n: usize,
    seed: u64,
    epoch: Option<usize>,
    perm: Vec<usize>,
}

impl EpochOrder {
    fn new(n: usize, seed: u64) -> Self {
        EpochOrder {
            n,
            seed,
            epoch: None,
            perm: Vec::new(),
        }
    }
    /// The item of global sample g.
    fn item(&mut self, g: usize) -> usize {
        let epoch = g / self.n;
        if self.epoch != Some(epoch) {
            self.perm = (0..self.n).collect();
            self.perm.shuffle(&mut ChaCha8Rng::seed_from_u64(
                self.seed ^ ((epoch as u64) << 32),
            ));
            self.epoch = Some(epoch);
        }
        self.perm[g % self.n]
    }
}

fn load_sample(img: &Path, lab: &Path) -> Result<(image::RgbImage, Vec<u8>)> {
    let im = load_rgb(img)?;
    let l = read_label_png(lab)?;
    if (l.width, l.height) != (im.width() as usize, im.height() as usize) {
        return Err(Error::file(
            lab,
            format!(
                "label map is {}×{}, image is {}×{}",
                l.width,
                l.height,
                im.width(),
                im.height()
            ),
        ));
    }
    Ok((im, l.data))
}

fn build(
    items: &[(PathBuf, PathBuf)],
    order: &mut EpochOrder,
    it: usize,
    cfg: &SegLoaderConfig,
) -> SegBatch {
    let mut b = SegBatch {
        iteration: it,
        images: Vec::new(),
        labels: Vec::new(),
        count: 0,
        skipped: Vec::new(),
    };
    for j in 0..cfg.batch {
        let g = it * cfg.batch + j;
        let (img, lab) = &items[order.item(g)];
        let mut rng =
            ChaCha8Rng::seed_from_u64(cfg.seed ^ (g as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        match load_sample(img, lab) {
            Ok((im, l)) => {
                let (x, y) = augment(&im, &l, cfg.crop, cfg.scale, &mut rng);
                b.images.extend(x);
                b.labels.extend(y.iter().map(|&v| v as f32));
                b.count += 1;
            }
            Err(e) => b.skipped.push(e.to_string()),
        }
    }
    b
}

/// Batches for iterations `start..end`, built ahead on one thread (bounded queue).
pub struct SegLoader {
    rx: Option<Receiver<SegBatch>>,
    handle: Option<JoinHandle<()>>,
}

impl SegLoader {
    pub fn start(
        items: Arc<Vec<(PathBuf, PathBuf)>>,
        cfg: SegLoaderConfig,
        start: usize,
        end: usize,
        prefetch: usize,
    ) -> SegLoader {
        let (tx, rx) = sync_channel(prefetch.max(1));
        let handle = std::thread::spawn(move || {
            let mut order = EpochOrder::new(items.len(), cfg.seed);
            for it in start..end {
                if tx.send(build(&items, &mut order, it, &cfg)).is_err() {
                    return;
                }
            }
        });
        SegLoader {
            rx: Some(rx),
            handle: Some(handle),
        }
    }
}

impl Iterator for SegLoader {
    type Item = SegBatch;
    fn next(&mut self) -> Option<SegBatch> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for SegLoader {
    fn drop(&mut self) {
        self.rx = None;
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

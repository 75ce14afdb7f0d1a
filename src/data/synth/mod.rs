//! `coatt-train synth`: a synthetic VOC-layout dataset that poses the real WSSS problem.
//!
//! Every object is a large *body* whose look (a brown striped texture) is shared by all
//! classes, plus a small *head* (about a tenth of the object) whose colour and pattern are
//! the class's own. Image labels say which classes are present, so a classifier only needs
//! the heads: a plain CAM lights up the head and misses the body, which is exactly the
//! "most discriminative part" failure the co-attention classifier addresses. Images hold 1-3
//! classes; bodies occlude each other; the background is a gradient with low-saturation
//! clutter and headless body-textured distractors (labelled background), so "body texture"
//! alone is not evidence of any class. Masks mark object borders 255 (ignore), like VOC.
use crate::error::{Error, Result};
use crate::io::{write_atomic, write_label_png, LabelMap};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

mod scenes;
pub use scenes::draw_scene;

#[derive(Clone, Debug)]
pub struct SynthConfig {
    pub out: PathBuf,
    pub train: usize,
    pub val: usize,
    pub size: usize,
    pub classes: usize,
    pub seed: u64,
    /// Which segmentation set to draw (extra sets ignore it).
    pub kind: SetKind,
    /// `scenes` only: the share of images whose ground is the typical context of one of their
    /// own classes (the rest get the ground of any class, so there it is no evidence).
    /// [`DEFAULT_CONTEXT_SHARE`] unless a study asks for another.
    pub context_share: f64,
}

/// The share of `scenes` images whose ground goes with one of their classes, like boats on
/// water. At 0 the ground says nothing of the classes: the set then asks the co-attention to
/// mine the objects alone (docs/quality.md, "Without the context").
pub const DEFAULT_CONTEXT_SHARE: f64 = 0.7;

/// The two segmentation sets `synth` draws.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SetKind {
    /// Heads only: every class shares one body look and headless bodies are background, so
    /// only the small head is ever evidence of a class. Tests the "most discriminative part"
    /// failure at its hardest: no cross-image mining can extend a map to the body.
    #[default]
    Target,
    /// The paper's premise ([`draw_scene`]): each class's whole object carries evidence
    /// (a small distinctive head, a larger class-typical but variable body, limbs), and
    /// backgrounds carry class-typical context that is background in the masks.
    Scenes,
}

/// What one generated image contains.
#[derive(Clone, Debug)]
pub struct SynthImage {
    pub id: String,
    pub rgb: Vec<u8>,
    pub mask: LabelMap,
    pub classes: Vec<usize>,
}

const HUE_NAMES: [&str; 12] = [
    "red", "orange", "yellow", "lime", "green", "spring", "cyan", "azure", "blue", "violet",
    "magenta", "rose",
];

/// Class names (background first) for K synthetic classes: the head's hue, plus an index
/// when hues repeat.
pub fn class_names(k: usize) -> Vec<String> {
    let mut names = vec!["background".to_string()];
    for c in 0..k {
        let h = ((c as f64 / k as f64) * 12.0).round() as usize % 12;
        names.push(if k <= 12 {
            format!("{}-head", HUE_NAMES[h])
        } else {
            format!("{}-head-{c}", HUE_NAMES[h])
        });
    }
    names
}

fn hsv(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h6 = (h.rem_euclid(1.0)) * 6.0;
    let c = v * s;
    let x = c * (1.0 - ((h6 % 2.0) - 1.0).abs());
    let (r, g, b) = match h6 as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = v - c;
    [r + m, g + m, b + m]
}

struct Canvas {
    s: usize,
    rgb: Vec<[f32; 3]>,
    lab: Vec<u8>,
}

/// A rotated ellipse: centre, radii, angle.
#[derive(Clone, Copy)]
struct Ellipse {
    cx: f32,
    cy: f32,
    a: f32,
    b: f32,
    th: f32,
}

impl Ellipse {
    fn contains(&self, x: f32, y: f32) -> bool {
        let (dx, dy) = (x - self.cx, y - self.cy);
        let (c, s) = (self.th.cos(), self.th.sin());
        let (u, v) = (dx * c + dy * s, -dx * s + dy * c);
        (u / self.a).powi(2) + (v / self.b).powi(2) <= 1.0
    }
    fn boundary(&self, phi: f32) -> (f32, f32) {
        let (u, v) = (self.a * phi.cos(), self.b * phi.sin());
        let (c, s) = (self.th.cos(), self.th.sin());
        (self.cx + u * c - v * s, self.cy + u * s + v * c)
    }
}

impl Canvas {
    fn paint(&mut self, e: &Ellipse, label: Option<u8>, color: impl Fn(f32, f32) -> [f32; 3]) {
        let r = e.a.max(e.b).ceil() as isize + 1;
        let (x0, x1) = (
            (e.cx as isize - r).max(0),
            (e.cx as isize + r).min(self.s as isize - 1),
        );
        let (y0, y1) = (
            (e.cy as isize - r).max(0),
            (e.cy as isize + r).min(self.s as isize - 1),
        );
        for y in y0..=y1 {
            for x in x0..=x1 {
                let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
                if e.contains(fx, fy) {
                    let i = y as usize * self.s + x as usize;
                    self.rgb[i] = color(fx, fy);
                    if let Some(l) = label {
                        self.lab[i] = l;
                    }
                }
            }
        }
    }
}

/// The shared body look: brown stripes at a per-object angle and period.
fn body_color(rng: &mut ChaCha8Rng) -> impl Fn(f32, f32) -> [f32; 3] {
    let base = [
        0.55 + rng.gen_range(-0.05..0.05),
        0.42 + rng.gen_range(-0.05..0.05),
        0.30 + rng.gen_range(-0.04..0.04),
    ];
    let ang: f32 = rng.gen_range(0.0..std::f32::consts::PI);
    let period: f32 = rng.gen_range(4.0..7.0);
    move |x, y| {
        let t = ((x * ang.cos() + y * ang.sin()) * std::f32::consts::TAU / period).sin() * 0.08;
        [base[0] + t, base[1] + t, base[2] + t]
    }
}

/// The class's own look: its hue, and one of three patterns.
fn head_color(c: usize, k: usize) -> impl Fn(f32, f32) -> [f32; 3] {
    let main = hsv(c as f32 / k as f32, 0.9, 0.95);
    let dark = hsv(c as f32 / k as f32, 0.9, 0.55);
    let pattern = c % 3;
    move |x, y| {
        let alt = match pattern {
            0 => false,
            1 => ((x + y) / 3.0).floor() as i32 % 2 == 0,
            _ => ((x / 3.0).floor() as i32 + (y / 3.0).floor() as i32) % 2 == 0,
        };
        if alt {
            dark
        } else {
            main
        }
    }
}

/// The look of a generated set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// The target set: cluttered gradient backgrounds, distractors, 1-3 classes.
    Target,
    /// Another domain ("studio" photos, like Caltech-256): one larger centred object on a
    /// bright plain gradient, no clutter or distractors, and other colour statistics
    /// (gamma 0.7 and a per-image warm or cool cast) while each class keeps its head.
    Studio,
}

/// Draws image `index` of the configured set (deterministic in (seed, index, kind)).
pub fn draw(cfg: &SynthConfig, index: usize) -> SynthImage {
    match cfg.kind {
        SetKind::Target => draw_styled(cfg, index, Style::Target),
        SetKind::Scenes => draw_scene(cfg, index),
    }
}

/// Draws image `index` in a style (deterministic in (seed, index, style)).
pub fn draw_styled(cfg: &SynthConfig, index: usize, style: Style) -> SynthImage {
    let studio = style == Style::Studio;
    let mut rng = ChaCha8Rng::seed_from_u64(
        cfg.seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(index as u64)
            ^ if studio { 0x5754_5544_494F } else { 0 },
    );
    let s = cfg.size;
    let sf = s as f32;
    let k = cfg.classes;
    // background: a gradient between two muted colours (studio: two bright near-greys)
    let (sat, val) = if studio {
        (0.0..0.12, 0.75..0.95)
    } else {
        (0.05..0.35, 0.35..0.8)
    };
    let c0 = hsv(
        rng.gen(),
        rng.gen_range(sat.clone()),
        rng.gen_range(val.clone()),
    );
    let c1 = hsv(rng.gen(), rng.gen_range(sat), rng.gen_range(val));
    let gang: f32 = rng.gen_range(0.0..std::f32::consts::TAU);
    let mut cv = Canvas {
        s,
        rgb: vec![[0.0; 3]; s * s],
        lab: vec![0; s * s],
    };
    for y in 0..s {
        for x in 0..s {
            let t = (((x as f32 / sf - 0.5) * gang.cos() + (y as f32 / sf - 0.5) * gang.sin())
                + 0.5)
                .clamp(0.0, 1.0);
            cv.rgb[y * s + x] = [0, 1, 2].map(|i| c0[i] * (1.0 - t) + c1[i] * t);
        }
    }
    // clutter: low-saturation blobs and stripes (below the heads' saturation even after jitter)
    let (clutter, distractors, objects) = if studio {
        (0..1, 0..1, 1..2)
    } else {
        (3..7, 0..3, 1..4)
    };
    for _ in 0..rng.gen_range(clutter) {
        let e = Ellipse {
            cx: rng.gen_range(0.0..sf),
            cy: rng.gen_range(0.0..sf),
            a: rng.gen_range(0.03..0.2) * sf,
            b: rng.gen_range(0.02..0.08) * sf,
            th: rng.gen_range(0.0..3.2),
        };
        let col = hsv(rng.gen(), rng.gen_range(0.0..0.25), rng.gen_range(0.2..0.9));
        cv.paint(&e, None, |_, _| col);
    }
    // headless distractors with the shared body look
    for _ in 0..rng.gen_range(distractors) {
        let e = Ellipse {
            cx: rng.gen_range(0.0..sf),
            cy: rng.gen_range(0.0..sf),
            a: rng.gen_range(0.06..0.14) * sf,
            b: rng.gen_range(0.05..0.1) * sf,
            th: rng.gen_range(0.0..3.2),
        };
        let col = body_color(&mut rng);
        cv.paint(&e, None, col);
    }
    // objects: 1-3 distinct classes, bodies first (they occlude each other), heads last
    let n = match rng.gen_range(0..100) {
        0..=44 => 1,
        45..=79 => 2,
        _ => 3,
    }
    .clamp(objects.start, objects.end - 1)
    .min(k);
    let mut classes: Vec<usize> = Vec::new();
    while classes.len() < n {
        let c = rng.gen_range(0..k);
        if !classes.contains(&c) {
            classes.push(c);
        }
    }
    let mut heads = Vec::new();
    let (radius, centre) = if studio {
        (0.2..0.3, 0.38..0.62)
    } else {
        (0.13..0.24, 0.22..0.78)
    };
    for &c in &classes {
        let a = rng.gen_range(radius.clone()) * sf;
        let b = a * rng.gen_range(0.55..0.9);
        let body = Ellipse {
            cx: rng.gen_range(centre.clone()) * sf,
            cy: rng.gen_range(centre.clone()) * sf,
            a,
            b,
            th: rng.gen_range(0.0..3.2),
        };
        let col = body_color(&mut rng);
        cv.paint(&body, Some(c as u8 + 1), col);
        let at = rng.gen_range(0.0..std::f32::consts::TAU);
        heads.push((c, head_of(&body, at, &mut rng)));
    }
    let (present, mask) = paint_heads_and_label(&mut cv, &heads, &classes, k);
    // the studio domain's colour statistics: gamma and a warm or cool cast
    if studio {
        let cast: f32 = rng.gen_range(-0.08..0.08);
        let gain = [1.0 + cast, 1.0, 1.0 - cast];
        for p in cv.rgb.iter_mut() {
            *p = [0, 1, 2].map(|i| (p[i].clamp(0.0, 1.0).powf(0.7) * gain[i]).clamp(0.0, 1.0));
        }
    }
    let rgb = with_sensor_noise(&cv.rgb, &mut rng);
    SynthImage {
        id: format!("s{index:05}"),
        rgb,
        mask: LabelMap {
            width: s,
            height: s,
            data: mask,
        },
        classes: present,
    }
}

/// The head of a body, on its boundary at angle `at`: 10-16% of the object's area.
fn head_of(body: &Ellipse, at: f32, rng: &mut ChaCha8Rng) -> Ellipse {
    let (hx, hy) = body.boundary(at);
    let r = 0.42 * body.b;
    Ellipse {
        cx: body.cx + (hx - body.cx) * 0.9,
        cy: body.cy + (hy - body.cy) * 0.9,
        a: r,
        b: r * rng.gen_range(0.8..1.0),
        th: body.th,
    }
}

/// Heads are painted last (every labelled class stays identifiable); then the labelled
/// classes and the mask with its 255 borders.
fn paint_heads_and_label(
    cv: &mut Canvas,
    heads: &[(usize, Ellipse)],
    classes: &[usize],
    k: usize,
) -> (Vec<usize>, Vec<u8>) {
    for &(c, e) in heads {
        cv.paint(&e, Some(c as u8 + 1), head_color(c, k));
    }
    let present = drop_invisible(&mut cv.lab, classes);
    let mask = border_mask(&cv.lab, cv.s);
    (present, mask)
}

/// A class that ends up (almost) invisible is not labelled; its pixels become "ignore".
/// Returns the labelled classes, sorted.
fn drop_invisible(lab: &mut [u8], classes: &[usize]) -> Vec<usize> {
    let mut present = Vec::new();
    for &c in classes {
        let cnt = lab.iter().filter(|&&l| l == c as u8 + 1).count();
        if cnt >= 30 {
            present.push(c);
        } else {
            lab.iter_mut()
                .filter(|l| **l == c as u8 + 1)
                .for_each(|l| *l = 255);
        }
    }
    present.sort_unstable();
    present
}

/// Borders between different labels are ignored (both sides), as in VOC.
fn border_mask(lab: &[u8], s: usize) -> Vec<u8> {
    let mut mask = lab.to_vec();
    for y in 0..s {
        for x in 0..s {
            let l = lab[y * s + x];
            let diff = [(0isize, 1isize), (1, 0), (0, -1), (-1, 0)]
                .iter()
                .any(|&(dx, dy)| {
                    let (nx, ny) = (x as isize + dx, y as isize + dy);
                    nx >= 0
                        && ny >= 0
                        && nx < s as isize
                        && ny < s as isize
                        && lab[ny as usize * s + nx as usize] != l
                });
            if diff {
                mask[y * s + x] = 255;
            }
        }
    }
    mask
}

/// 8-bit RGB with uniform sensor noise of ±0.04.
fn with_sensor_noise(rgb: &[[f32; 3]], rng: &mut ChaCha8Rng) -> Vec<u8> {
    rgb.iter()
        .flat_map(|p| {
            let n: [f32; 3] = [
                rng.gen_range(-0.04..0.04),
                rng.gen_range(-0.04..0.04),
                rng.gen_range(-0.04..0.04),
            ];
            [0, 1, 2].map(|i| ((p[i] + n[i]).clamp(0.0, 1.0) * 255.0).round() as u8)
        })
        .collect()
}

pub fn encode_jpeg(path: &Path, rgb: &[u8], w: usize, h: usize) -> Result<()> {
    let mut buf = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 92)
        .encode(rgb, w as u32, h as u32, image::ExtendedColorType::Rgb8)
        .map_err(|e| Error::file(path, e))?;
    write_atomic(path, &buf)
}

/// Writes the whole dataset; returns the number of images per class (train split).
pub fn generate(cfg: &SynthConfig) -> Result<Vec<usize>> {
    if cfg.classes == 0 || cfg.classes > 254 || cfg.size < 32 || cfg.train == 0 {
        return Err(Error::Msg(format!(
            "synth: need 1-254 classes, size ≥ 32 and ≥ 1 train image (got {cfg:?})"
        )));
    }
    if !(0.0..=1.0).contains(&cfg.context_share) {
        return Err(Error::Msg(format!(
            "synth: the context share must be in [0, 1] (got {})",
            cfg.context_share
        )));
    }
    let root = &cfg.out;
    let _lock = crate::io::lock::lock_dir(root)?;
    for d in ["JPEGImages", "SegmentationClass", "ImageSets/Segmentation"] {
        std::fs::create_dir_all(root.join(d)).map_err(|e| Error::io(root.join(d), e))?;
    }
    let total = cfg.train + cfg.val;
    let bar = crate::progress::bar(total as u64, "synth");
    let labels: Vec<(String, Vec<usize>)> = (0..total)
        .into_par_iter()
        .map(|i| {
            let im = draw(cfg, i);
            encode_jpeg(
                &root.join("JPEGImages").join(format!("{}.jpg", im.id)),
                &im.rgb,
                cfg.size,
                cfg.size,
            )?;
            write_label_png(
                &root
                    .join("SegmentationClass")
                    .join(format!("{}.png", im.id)),
                &im.mask,
            )?;
            bar.inc(1);
            Ok((im.id, im.classes))
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    let list = |r: std::ops::Range<usize>| {
        labels[r]
            .iter()
            .map(|(id, _)| format!("{id}\n"))
            .collect::<String>()
    };
    write_atomic(
        &root.join("ImageSets/Segmentation/train.txt"),
        list(0..cfg.train).as_bytes(),
    )?;
    write_atomic(
        &root.join("ImageSets/Segmentation/val.txt"),
        list(cfg.train..total).as_bytes(),
    )?;
    let cls: String = labels
        .iter()
        .map(|(id, c)| {
            format!(
                "{id} {}\n",
                c.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(" ")
            )
        })
        .collect();
    write_atomic(&root.join("cls_labels.txt"), cls.as_bytes())?;
    let names = match cfg.kind {
        SetKind::Target => class_names(cfg.classes),
        SetKind::Scenes => scenes::class_names(cfg.classes),
    };
    write_atomic(
        &root.join("class_names.txt"),
        (names.join("\n") + "\n").as_bytes(),
    )?;
    let mut hist = vec![0; cfg.classes];
    for (_, c) in &labels[..cfg.train] {
        for &k in c {
            hist[k] += 1;
        }
    }
    Ok(hist)
}

/// An extra classifier training set for the settings of paper §4.2-4.3.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ExtraSynth {
    /// Single-label images in the studio style (another domain).
    Single,
    /// "Web" images: the target's look, each labelled with one query class, which is wrong
    /// (a class the image does not show) for a `label_noise` share of the images. Like a
    /// crawled folder, sizes and aspect ratios vary (0.75-1.5× the side), ~5% are greyscale
    /// JPEGs and ~1% cannot be decoded (an HTML error page named .jpg, or a file cut off
    /// inside its headers).
    Web { label_noise: f64 },
}

/// What [`generate_extra`] wrote.
#[derive(Clone, Debug, Default)]
pub struct ExtraStats {
    /// Labelled images per class.
    pub per_class: Vec<usize>,
    /// Images whose label is wrong, greyscale files, undecodable files.
    pub wrong_labels: usize,
    pub greyscale: usize,
    pub broken: usize,
}

/// Writes an extra set (no masks, no val split): JPEGImages, ImageSets/Segmentation/train.txt,
/// cls_labels.txt and class_names.txt; a web set also gets cls_labels_clean.txt (the classes
/// each image really shows). Same config → same bytes.
pub fn generate_extra(cfg: &SynthConfig, kind: ExtraSynth) -> Result<ExtraStats> {
    if cfg.classes < 2 || cfg.classes > 254 || cfg.size < 32 || cfg.train == 0 {
        return Err(Error::Msg(format!(
            "synth: need 2-254 classes, size ≥ 32 and ≥ 1 image (got {cfg:?})"
        )));
    }
    if let ExtraSynth::Web { label_noise } = kind {
        if !(0.0..=1.0).contains(&label_noise) {
            return Err(Error::Msg(format!(
                "synth: --label-noise must be in [0, 1] (got {label_noise})"
            )));
        }
    }
    let root = &cfg.out;
    let _lock = crate::io::lock::lock_dir(root)?;
    for d in ["JPEGImages", "ImageSets/Segmentation"] {
        std::fs::create_dir_all(root.join(d)).map_err(|e| Error::io(root.join(d), e))?;
    }
    let bar = crate::progress::bar(cfg.train as u64, "synth");
    let k = cfg.classes;
    // (id, label, true classes, wrong, grey, broken)
    type Row = (String, Vec<usize>, Vec<usize>, bool, bool, bool);
    let rows: Vec<Row> = (0..cfg.train)
        .into_par_iter()
        .map(|i| -> Result<Row> {
            let path = |id: &str| root.join("JPEGImages").join(format!("{id}.jpg"));
            let row = match kind {
                ExtraSynth::Single => {
                    let im = draw_styled(cfg, i, Style::Studio);
                    encode_jpeg(&path(&im.id), &im.rgb, cfg.size, cfg.size)?;
                    (im.id, im.classes.clone(), im.classes, false, false, false)
                }
                ExtraSynth::Web { label_noise } => {
                    let im = draw(cfg, i);
                    let mut rng = ChaCha8Rng::seed_from_u64(
                        cfg.seed.wrapping_mul(0xA24B_AED4_963E_E407) ^ i as u64,
                    );
                    let absent: Vec<usize> = (0..k).filter(|c| !im.classes.contains(c)).collect();
                    // an image showing every class cannot be mislabelled
                    let wrong =
                        !absent.is_empty() && (im.classes.is_empty() || rng.gen_bool(label_noise));
                    let label = if wrong {
                        absent[rng.gen_range(0..absent.len())]
                    } else {
                        im.classes[rng.gen_range(0..im.classes.len())]
                    };
                    let (w, h) = (
                        (cfg.size as f64 * rng.gen_range(0.75..1.5)) as u32,
                        (cfg.size as f64 * rng.gen_range(0.75..1.5)) as u32,
                    );
                    let img = image::RgbImage::from_raw(cfg.size as u32, cfg.size as u32, im.rgb)
                        .expect("a drawn image has size² pixels");
                    let img =
                        image::imageops::resize(&img, w, h, image::imageops::FilterType::Triangle);
                    let grey = rng.gen_bool(0.05);
                    let mut buf = Vec::new();
                    let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut buf, 90);
                    let p = path(&im.id);
                    if grey {
                        let g = image::DynamicImage::ImageRgb8(img).to_luma8();
                        enc.encode(g.as_raw(), w, h, image::ExtendedColorType::L8)
                    } else {
                        enc.encode(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
                    }
                    .map_err(|e| Error::file(&p, e))?;
                    // what crawls really bring back: an error page saved as .jpg, or a file
                    // cut off inside its headers
                    let broken = rng.gen_bool(0.01);
                    if broken {
                        if rng.gen_bool(0.5) {
                            buf = b"<html><body>404 Not Found</body></html>\n".to_vec();
                        } else {
                            buf.truncate(160);
                        }
                    }
                    write_atomic(&p, &buf)?;
                    (im.id, vec![label], im.classes, wrong, grey, broken)
                }
            };
            bar.inc(1);
            Ok(row)
        })
        .collect::<Result<_>>()?;
    bar.finish_and_clear();
    let join = |c: &[usize]| {
        c.iter()
            .map(|v| v.to_string())
            .collect::<Vec<_>>()
            .join(" ")
    };
    // an image with nothing visible has no label in single-label data: not listed
    let listed: Vec<&Row> = rows.iter().filter(|r| !r.1.is_empty()).collect();
    let ids: String = listed.iter().map(|r| format!("{}\n", r.0)).collect();
    write_atomic(
        &root.join("ImageSets/Segmentation/train.txt"),
        ids.as_bytes(),
    )?;
    let cls: String = listed
        .iter()
        .map(|r| format!("{} {}\n", r.0, join(&r.1)))
        .collect();
    write_atomic(&root.join("cls_labels.txt"), cls.as_bytes())?;
    if matches!(kind, ExtraSynth::Web { .. }) {
        let clean: String = listed
            .iter()
            .map(|r| format!("{} {}\n", r.0, join(&r.2)))
            .collect();
        write_atomic(&root.join("cls_labels_clean.txt"), clean.as_bytes())?;
    }
    write_atomic(
        &root.join("class_names.txt"),
        (class_names(k).join("\n") + "\n").as_bytes(),
    )?;
    let mut st = ExtraStats {
        per_class: vec![0; k],
        ..Default::default()
    };
    for r in &listed {
        for &c in &r.1 {
            st.per_class[c] += 1;
        }
        st.wrong_labels += r.3 as usize;
        st.greyscale += r.4 as usize;
        st.broken += r.5 as usize;
    }
    Ok(st)
}

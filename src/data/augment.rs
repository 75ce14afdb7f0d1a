//! Augmentation of the official code: warp to a square, colour jitter (brightness, contrast,
//! saturation 0.3, hue 0.1, in random order like torchvision), ImageNet mean/std.
use crate::backend::cpu::resize;
use rand::seq::SliceRandom;
use rand::Rng;

pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Jitter {
    pub brightness: f32,
    pub contrast: f32,
    pub saturation: f32,
    pub hue: f32,
}

impl Default for Jitter {
    fn default() -> Self {
        Jitter {
            brightness: 0.3,
            contrast: 0.3,
            saturation: 0.3,
            hue: 0.1,
        }
    }
}

/// RGB8 (HWC) → CHW floats in [0, 1].
pub fn to_chw(img: &image::RgbImage) -> Vec<f32> {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let mut out = vec![0f32; 3 * h * w];
    for (i, p) in img.pixels().enumerate() {
        for c in 0..3 {
            out[c * h * w + i] = p.0[c] as f32 / 255.0;
        }
    }
    out
}

/// Bilinear resize of a 3-channel CHW image to oh×ow (half-pixel centres, as PyTorch's
/// `align_corners=False`): the one place where image code calls the engine's resize kernel.
pub fn resize_rgb(chw: &[f32], h: usize, w: usize, oh: usize, ow: usize) -> Vec<f32> {
    resize::forward(chw, 3, h, w, oh, ow)
}

/// Bilinear warp of a CHW image to size×size (aspect ratio not kept, as the official code).
pub fn warp(chw: &[f32], h: usize, w: usize, size: usize) -> Vec<f32> {
    resize_rgb(chw, h, w, size, size)
}

fn grey(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

fn rgb_to_hsv(r: f32, g: f32, b: f32) -> (f32, f32, f32) {
    let mx = r.max(g).max(b);
    let mn = r.min(g).min(b);
    let d = mx - mn;
    let h = if d == 0.0 {
        0.0
    } else if mx == r {
        ((g - b) / d).rem_euclid(6.0) / 6.0
    } else if mx == g {
        ((b - r) / d + 2.0) / 6.0
    } else {
        ((r - g) / d + 4.0) / 6.0
    };
    (h, if mx == 0.0 { 0.0 } else { d / mx }, mx)
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> (f32, f32, f32) {
    let h6 = h.rem_euclid(1.0) * 6.0;
    let i = h6.floor();
    let f = h6 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i as u32 % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

/// torchvision ColorJitter on a CHW image in [0, 1], in place.
pub fn color_jitter(chw: &mut [f32], hw: usize, j: &Jitter, rng: &mut impl Rng) {
    let mut order = [0usize, 1, 2, 3];
    order.shuffle(rng);
    let factor = |rng: &mut dyn rand::RngCore, a: f32| {
        if a > 0.0 {
            rng.gen_range(1.0 - a..1.0 + a).max(0.0)
        } else {
            1.0
        }
    };
    let (rr, rest) = chw.split_at_mut(hw);
    let (gg, bb) = rest.split_at_mut(hw);
    for op in order {
        match op {
            0 => {
                let f = factor(rng, j.brightness);
                for v in rr.iter_mut().chain(gg.iter_mut()).chain(bb.iter_mut()) {
                    *v = (*v * f).clamp(0.0, 1.0);
                }
            }
            1 => {
                let f = factor(rng, j.contrast);
                let mean = (0..hw).map(|i| grey(rr[i], gg[i], bb[i])).sum::<f32>() / hw as f32;
                for v in rr.iter_mut().chain(gg.iter_mut()).chain(bb.iter_mut()) {
                    *v = (*v * f + mean * (1.0 - f)).clamp(0.0, 1.0);
                }
            }
            2 => {
                let f = factor(rng, j.saturation);
                for i in 0..hw {
                    let g = grey(rr[i], gg[i], bb[i]);
                    rr[i] = (rr[i] * f + g * (1.0 - f)).clamp(0.0, 1.0);
                    gg[i] = (gg[i] * f + g * (1.0 - f)).clamp(0.0, 1.0);
                    bb[i] = (bb[i] * f + g * (1.0 - f)).clamp(0.0, 1.0);
                }
            }
            _ => {
                if j.hue > 0.0 {
                    let d: f32 = rng.gen_range(-j.hue..j.hue);
                    for i in 0..hw {
                        let (h, s, v) = rgb_to_hsv(rr[i], gg[i], bb[i]);
                        let (r, g, b) = hsv_to_rgb(h + d, s, v);
                        (rr[i], gg[i], bb[i]) = (r, g, b);
                    }
                }
            }
        }
    }
}

/// (x − mean)/std per channel, in place.
pub fn normalize(chw: &mut [f32], hw: usize) {
    for c in 0..3 {
        for v in &mut chw[c * hw..(c + 1) * hw] {
            *v = (*v - IMAGENET_MEAN[c]) / IMAGENET_STD[c];
        }
    }
}

/// Decoded image → warped, optionally jittered, normalised CHW of size×size.
pub fn prepare(
    img: &image::RgbImage,
    size: usize,
    jitter: Option<&Jitter>,
    rng: &mut impl Rng,
) -> Vec<f32> {
    let (h, w) = (img.height() as usize, img.width() as usize);
    let mut x = warp(&to_chw(img), h, w, size);
    if let Some(j) = jitter {
        color_jitter(&mut x, size * size, j, rng);
    }
    normalize(&mut x, size * size);
    x
}

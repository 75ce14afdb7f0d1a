//! `synth --kind scenes`: a segmentation set built on the paper's premise, where objects of
//! one class share semantics beyond their most discriminative part and backgrounds co-occur
//! with classes.
//!
//! Each object has three parts, all labelled with its class:
//! - a small *head* (10-16% of the body's area) in the class's saturated hue and pattern: the
//!   most discriminative part, as in the `target` set;
//! - a larger *body* whose look is class-typical but varies: a desaturated colour around the
//!   class's hue (±0.6 of the hue spacing, so neighbouring classes overlap), a texture whose
//!   period and kind (stripes or spots) are the class's own; one body in five is atypical
//!   (any hue, any texture), so the body is weaker evidence than the head;
//! - two or three *limbs* with the body's look, reaching away from the head.
//!
//! The scene is a muted sky above a textured ground. The ground is the typical context of
//! one of the image's classes for 70% of the images (`SynthConfig::context_share`; of any
//! class otherwise), like boats on water; it is background in the masks, so a classifier that
//! leans on it lights up background. Images hold 1-3 classes at scales 0.10-0.26 of the side;
//! bodies and limbs occlude each other, heads are drawn last so every labelled class stays
//! identifiable; object borders are 255 (ignore), as in VOC.
use super::{
    head_of, hsv, paint_heads_and_label, with_sensor_noise, Canvas, Ellipse, SynthConfig,
    SynthImage,
};
use crate::io::LabelMap;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::f32::consts::{PI, TAU};

/// Class names (background first): the class's hue.
pub fn class_names(k: usize) -> Vec<String> {
    super::class_names(k)
        .into_iter()
        .map(|n| n.replacen("-head", "", 1))
        .collect()
}

/// A cheap deterministic hash of a grid cell to [0, 1) (texture noise without an rng, so a
/// texture is a pure function of position).
fn cell_noise(x: i32, y: i32, salt: u32) -> f32 {
    let mut h = (x as u32).wrapping_mul(0x9E37_79B1)
        ^ (y as u32).wrapping_mul(0x85EB_CA77)
        ^ salt.wrapping_mul(0xC2B2_AE3D);
    h ^= h >> 15;
    h = h.wrapping_mul(0x2C1B_3C6D);
    h ^= h >> 12;
    (h & 0xFFFF) as f32 / 65536.0
}

/// The ground that typically surrounds class `c`: its own hue half-way between two classes'
/// hues, and one of three textures (waves, grass-like streaks, speckle).
fn context_color(c: usize, k: usize, rng: &mut ChaCha8Rng) -> impl Fn(f32, f32) -> [f32; 3] {
    let spacing = 1.0 / k as f32;
    let base = hsv(
        (c as f32 + 0.5) * spacing + rng.gen_range(-0.15..0.15) * spacing,
        rng.gen_range(0.2..0.4),
        rng.gen_range(0.35..0.6),
    );
    let salt: u32 = rng.gen();
    let phase: f32 = rng.gen_range(0.0..TAU);
    let kind = c % 3;
    move |x, y| {
        let t = match kind {
            0 => ((y * 0.9 + (x * 0.25 + phase).sin() * 2.0) * 0.8).sin() * 0.09,
            1 => (cell_noise(x as i32, (y / 5.0) as i32, salt) - 0.5) * 0.2,
            _ => (cell_noise((x / 2.0) as i32, (y / 2.0) as i32, salt) - 0.5) * 0.18,
        };
        [base[0] + t, base[1] + t, base[2] + t]
    }
}

/// A body look of class `c`: typical (80%) or any.
fn body_color(c: usize, k: usize, rng: &mut ChaCha8Rng) -> impl Fn(f32, f32) -> [f32; 3] {
    let spacing = 1.0 / k as f32;
    let typical = rng.gen_bool(0.8);
    let (hue, period, spots) = if typical {
        (
            c as f32 * spacing + rng.gen_range(-0.6..0.6) * spacing,
            3.0 + 1.5 * (c % 3) as f32 + rng.gen_range(-0.7..0.7),
            (c / 3) % 2 == 1,
        )
    } else {
        (rng.gen(), rng.gen_range(3.0..7.0), rng.gen_bool(0.5))
    };
    let base = hsv(hue, rng.gen_range(0.25..0.5), rng.gen_range(0.45..0.75));
    let ang: f32 = rng.gen_range(0.0..PI);
    let (ca, sa) = (ang.cos(), ang.sin());
    move |x, y| {
        let (u, v) = (x * ca + y * sa, -x * sa + y * ca);
        let w = TAU / period;
        let t = if spots {
            ((u * w).sin() * (v * w).sin()).max(0.0) * 0.22 - 0.05
        } else {
            (u * w).sin() * 0.09
        };
        [base[0] + t, base[1] + t, base[2] + t]
    }
}

/// Draws image `index` of the scenes set (deterministic in (seed, index)). Panics on a
/// `context_share` outside [0, 1]; [`super::generate`] checks it first.
pub fn draw_scene(cfg: &SynthConfig, index: usize) -> SynthImage {
    let mut rng = ChaCha8Rng::seed_from_u64(
        cfg.seed
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(index as u64)
            ^ 0x5343_454E_4553,
    );
    let s = cfg.size;
    let sf = s as f32;
    let k = cfg.classes;
    let n = match rng.gen_range(0..100) {
        0..=44 => 1,
        45..=79 => 2,
        _ => 3,
    }
    .min(k);
    let mut classes: Vec<usize> = Vec::new();
    while classes.len() < n {
        let c = rng.gen_range(0..k);
        if !classes.contains(&c) {
            classes.push(c);
        }
    }
    // the scene: a muted sky gradient above a (tilted) horizon, the context ground below
    let ctx = if rng.gen_bool(cfg.context_share) {
        classes[rng.gen_range(0..n)]
    } else {
        rng.gen_range(0..k)
    };
    let horizon = rng.gen_range(0.2..0.55) * sf;
    let tilt: f32 = rng.gen_range(-0.15..0.15);
    let sky0 = hsv(
        rng.gen(),
        rng.gen_range(0.05..0.3),
        rng.gen_range(0.55..0.9),
    );
    let sky1 = hsv(
        rng.gen(),
        rng.gen_range(0.05..0.3),
        rng.gen_range(0.55..0.9),
    );
    let ground = context_color(ctx, k, &mut rng);
    let mut cv = Canvas {
        s,
        rgb: vec![[0.0; 3]; s * s],
        lab: vec![0; s * s],
    };
    for y in 0..s {
        for x in 0..s {
            let (fx, fy) = (x as f32 + 0.5, y as f32 + 0.5);
            cv.rgb[y * s + x] = if fy < horizon + tilt * (fx - sf / 2.0) {
                let t = (fy / horizon.max(1.0)).clamp(0.0, 1.0);
                [0, 1, 2].map(|i| sky0[i] * (1.0 - t) + sky1[i] * t)
            } else {
                ground(fx, fy)
            };
        }
    }
    // clutter: low-saturation blobs (rocks, clouds)
    for _ in 0..rng.gen_range(2..5) {
        let e = Ellipse {
            cx: rng.gen_range(0.0..sf),
            cy: rng.gen_range(0.0..sf),
            a: rng.gen_range(0.03..0.12) * sf,
            b: rng.gen_range(0.02..0.06) * sf,
            th: rng.gen_range(0.0..PI),
        };
        let col = hsv(
            rng.gen(),
            rng.gen_range(0.0..0.2),
            rng.gen_range(0.25..0.85),
        );
        cv.paint(&e, None, |_, _| col);
    }
    // objects: bodies with limbs first (they occlude each other), heads last
    let mut heads = Vec::new();
    for &c in &classes {
        let a = rng.gen_range(0.10..0.26) * sf;
        let b = a * rng.gen_range(0.5..0.85);
        let body = Ellipse {
            cx: rng.gen_range(0.18..0.82) * sf,
            cy: rng.gen_range(0.3..0.8) * sf,
            a,
            b,
            th: rng.gen_range(0.0..PI),
        };
        let look = body_color(c, k, &mut rng);
        let head_at: f32 = rng.gen_range(0.0..TAU);
        // limbs spread over the side away from the head
        let limbs = rng.gen_range(2..4);
        for l in 0..limbs {
            let phi =
                head_at + PI + (l as f32 - (limbs - 1) as f32 / 2.0) * rng.gen_range(0.5..0.9);
            let (bx, by) = body.boundary(phi);
            let (dx, dy) = (bx - body.cx, by - body.cy);
            let len = (dx * dx + dy * dy).sqrt().max(1e-3);
            let la = a * rng.gen_range(0.3..0.5);
            let limb = Ellipse {
                cx: bx + dx / len * la * 0.6,
                cy: by + dy / len * la * 0.6,
                a: la,
                b: la * rng.gen_range(0.3..0.45),
                th: dy.atan2(dx),
            };
            cv.paint(&limb, Some(c as u8 + 1), &look);
        }
        cv.paint(&body, Some(c as u8 + 1), &look);
        heads.push((c, head_of(&body, head_at, &mut rng)));
    }
    let (present, mask) = paint_heads_and_label(&mut cv, &heads, &classes, k);
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

//! Minimal line plots as PNG (loss curves, mIoU-vs-threshold): axes, a light grid, tick
//! values in a built-in 3×5 pixel digit font (no system font is needed), one polyline per
//! series. Axis names are not drawn: they are in the markdown next to each plot.
use crate::error::Result;
use image::{Rgb, RgbImage};
use std::path::Path;

pub struct Series<'a> {
    pub points: &'a [(f64, f64)],
    pub color: [u8; 3],
}

fn line(img: &mut RgbImage, (x0, y0): (f64, f64), (x1, y1): (f64, f64), c: Rgb<u8>) {
    let n = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
    for i in 0..=n {
        let t = i as f64 / n as f64;
        let (x, y) = (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t);
        for (dx, dy) in [(0, 0), (1, 0), (0, 1)] {
            let (px, py) = (x.round() as i64 + dx, y.round() as i64 + dy);
            if px >= 0 && py >= 0 && (px as u32) < img.width() && (py as u32) < img.height() {
                img.put_pixel(px as u32, py as u32, c);
            }
        }
    }
}

/// 3×5 glyphs (one row of 3 bits per line, top first) for tick labels.
fn glyph(c: char) -> Option<[u8; 5]> {
    Some(match c {
        '0' => [7, 5, 5, 5, 7],
        '1' => [2, 6, 2, 2, 7],
        '2' => [7, 1, 7, 4, 7],
        '3' => [7, 1, 7, 1, 7],
        '4' => [5, 5, 7, 1, 1],
        '5' => [7, 4, 7, 1, 7],
        '6' => [7, 4, 7, 5, 7],
        '7' => [7, 1, 1, 1, 1],
        '8' => [7, 5, 7, 5, 7],
        '9' => [7, 5, 7, 1, 7],
        '.' => [0, 0, 0, 0, 2],
        '-' => [0, 0, 7, 0, 0],
        _ => return None,
    })
}

const SCALE: u32 = 2;
const ADVANCE: u32 = 4 * SCALE;

/// Draws `text` with its top-left corner at (x, y).
fn text(img: &mut RgbImage, x: i64, y: i64, t: &str, c: Rgb<u8>) {
    for (k, ch) in t.chars().enumerate() {
        let Some(g) = glyph(ch) else { continue };
        for (row, bits) in g.iter().enumerate() {
            for col in 0..3 {
                if bits >> (2 - col) & 1 == 1 {
                    for dy in 0..SCALE {
                        for dx in 0..SCALE {
                            let px = x + (k as u32 * ADVANCE + col * SCALE + dx) as i64;
                            let py = y + (row as u32 * SCALE + dy) as i64;
                            if px >= 0
                                && py >= 0
                                && (px as u32) < img.width()
                                && (py as u32) < img.height()
                            {
                                img.put_pixel(px as u32, py as u32, c);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// A tick value with as many decimals as the axis span needs.
fn tick(v: f64, span: f64) -> String {
    let decimals = if span >= 50.0 {
        0
    } else if span >= 5.0 {
        1
    } else {
        2
    };
    format!("{v:.decimals$}")
}

/// Plots the series on shared axes (y from 0 unless negative values occur).
pub fn write_line_plot(path: &Path, series: &[Series]) -> Result<()> {
    let (w, h, m, left) = (800u32, 450u32, 40.0, 64.0);
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let pts = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|p| p.0.is_finite() && p.1.is_finite());
    let (mut xmin, mut xmax, mut ymin, mut ymax) =
        (f64::INFINITY, f64::NEG_INFINITY, 0f64, f64::NEG_INFINITY);
    for &(x, y) in pts {
        xmin = xmin.min(x);
        xmax = xmax.max(x);
        ymin = ymin.min(y);
        ymax = ymax.max(y);
    }
    if !xmin.is_finite() || !ymax.is_finite() {
        xmin = 0.0;
        xmax = 1.0;
        ymax = 1.0;
    }
    if xmax <= xmin {
        xmax = xmin + 1.0;
    }
    if ymax <= ymin {
        ymax = ymin + 1.0;
    }
    let (pw, ph) = (w as f64 - m - left, h as f64 - 2.0 * m);
    let to = |x: f64, y: f64| {
        (
            left + (x - xmin) / (xmax - xmin) * pw,
            h as f64 - m - (y - ymin) / (ymax - ymin) * ph,
        )
    };
    let grid = Rgb([225, 225, 225]);
    for i in 0..=10 {
        let gx = xmin + (xmax - xmin) * i as f64 / 10.0;
        let gy = ymin + (ymax - ymin) * i as f64 / 10.0;
        line(&mut img, to(gx, ymin), to(gx, ymax), grid);
        line(&mut img, to(xmin, gy), to(xmax, gy), grid);
    }
    let axis = Rgb([60, 60, 60]);
    line(&mut img, to(xmin, ymin), to(xmax, ymin), axis);
    line(&mut img, to(xmin, ymin), to(xmin, ymax), axis);
    for i in (0..=10).step_by(2) {
        let gx = xmin + (xmax - xmin) * i as f64 / 10.0;
        let gy = ymin + (ymax - ymin) * i as f64 / 10.0;
        let lx = tick(gx, xmax - xmin);
        let (px, py) = to(gx, ymin);
        let half = (lx.len() as u32 * ADVANCE / 2) as i64;
        text(&mut img, px as i64 - half, py as i64 + 8, &lx, axis);
        let ly = tick(gy, ymax - ymin);
        let (px, py) = to(xmin, gy);
        let wdt = (ly.len() as u32 * ADVANCE) as i64;
        text(&mut img, px as i64 - wdt - 6, py as i64 - 5, &ly, axis);
    }
    for s in series {
        for win in s.points.windows(2) {
            if win.iter().all(|p| p.0.is_finite() && p.1.is_finite()) {
                line(
                    &mut img,
                    to(win[0].0, win[0].1),
                    to(win[1].0, win[1].1),
                    Rgb(s.color),
                );
            }
        }
    }
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)
        .map_err(|e| crate::Error::file(path, e))?;
    crate::io::write_atomic(path, buf.get_ref())
}

/// Moving average over `win` points (for a readable loss curve).
pub fn smooth(points: &[(f64, f64)], win: usize) -> Vec<(f64, f64)> {
    let win = win.max(1);
    let mut out = Vec::with_capacity(points.len());
    let mut acc = 0.0;
    for (i, p) in points.iter().enumerate() {
        acc += p.1;
        if i >= win {
            acc -= points[i - win].1;
        }
        out.push((p.0, acc / (i + 1).min(win) as f64));
    }
    out
}

//! One image's evidence side by side, as one PNG strip: the input, its ground truth, a heat map
//! per labelled class, the refined map, the pseudo label (train), or the prediction with and
//! without CRF (val). Each tile is captioned (bundled font), label maps use the VOC palette.
use crate::cam::{read_cam, CamFile};
use crate::data::voc::load_rgb;
use crate::error::{Error, Result};
use crate::io::png::voc_palette;
use crate::io::{read_label_png, LabelMap};
use image::{imageops::FilterType, Rgb, RgbImage};
use plotters::prelude::*;
use std::path::{Path, PathBuf};

/// Side of a tile in pixels; captions sit in a band above the tiles.
pub const TILE: u32 = 128;
pub const CAPTION: u32 = 22;

/// One tile: a caption and a picture (scaled to TILE × TILE).
pub struct Tile {
    pub caption: String,
    pub image: RgbImage,
}

/// What a pipeline folder holds for one image (paths that exist; absent ones are None).
#[derive(Clone, Debug, Default)]
pub struct ImageSources {
    pub image: PathBuf,
    pub mask: Option<PathBuf>,
    /// Folders of map files (`<id>.safetensors`) with a caption each.
    pub maps: Vec<(String, PathBuf)>,
    /// Folders of label PNGs (`<id>.png`) with a caption each.
    pub labels: Vec<(String, PathBuf)>,
}

/// A label map in VOC colours (255, ignore, in white as in VOC's masks).
pub fn colorize(m: &LabelMap) -> RgbImage {
    let pal = voc_palette();
    RgbImage::from_fn(m.width as u32, m.height as u32, |x, y| {
        let v = m.data[y as usize * m.width + x as usize] as usize;
        if v == 255 {
            Rgb([255, 255, 255])
        } else {
            Rgb([pal[3 * v], pal[3 * v + 1], pal[3 * v + 2]])
        }
    })
}

/// The tiles of one image: input, ground truth, one heat map per labelled class for each maps
/// folder, one coloured label map per labels folder; `names` are the class names (background
/// first).
pub fn tiles(id: &str, src: &ImageSources, names: &[String]) -> Result<Vec<Tile>> {
    let img = load_rgb(&src.image)?;
    let mut tiles = vec![Tile {
        caption: format!("input {id}"),
        image: img.clone(),
    }];
    if let Some(m) = &src.mask {
        tiles.push(Tile {
            caption: "ground truth".into(),
            image: colorize(&read_label_png(m)?),
        });
    }
    for (what, dir) in &src.maps {
        let path = crate::cam::store::cam_path(dir, id);
        if !path.exists() {
            continue;
        }
        let cam: CamFile = read_cam(dir, id)?;
        if (cam.width, cam.height) != (img.width() as usize, img.height() as usize) {
            return Err(Error::file(
                &path,
                "maps of another image size than the image",
            ));
        }
        let hw = cam.width * cam.height;
        for (k, &c) in cam.classes.iter().enumerate() {
            let name = names
                .get(c + 1)
                .cloned()
                .unwrap_or_else(|| format!("class {c}"));
            tiles.push(Tile {
                caption: format!("{what}: {name}"),
                image: crate::cam::store::overlay(&img, &cam.maps[k * hw..(k + 1) * hw]),
            });
        }
    }
    for (what, dir) in &src.labels {
        let path = dir.join(format!("{id}.png"));
        if path.exists() {
            tiles.push(Tile {
                caption: what.clone(),
                image: colorize(&read_label_png(&path)?),
            });
        }
    }
    Ok(tiles)
}

/// The tiles side by side with their captions above.
pub fn strip(tiles: &[Tile]) -> Result<RgbImage> {
    let w = TILE * tiles.len().max(1) as u32;
    let h = TILE + CAPTION;
    let mut out = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    for (i, t) in tiles.iter().enumerate() {
        let small = image::imageops::resize(&t.image, TILE, TILE, FilterType::Triangle);
        image::imageops::overlay(&mut out, &small, (i as u32 * TILE) as i64, CAPTION as i64);
    }
    crate::io::plot::register_font();
    {
        let mut raw = out.as_raw().clone();
        {
            let root = BitMapBackend::with_buffer(&mut raw, (w, h)).into_drawing_area();
            for (i, t) in tiles.iter().enumerate() {
                let style = TextStyle::from(("sans-serif", 12).into_font()).color(&BLACK);
                root.draw_text(
                    &fit(&t.caption, 20),
                    &style,
                    (i as i32 * TILE as i32 + 3, 4),
                )
                .map_err(|e| Error::Msg(format!("drawing a caption: {e:?}")))?;
            }
            root.present()
                .map_err(|e| Error::Msg(format!("drawing a caption: {e:?}")))?;
        }
        out = RgbImage::from_raw(w, h, raw).expect("same size");
    }
    Ok(out)
}

/// At most `n` characters, with an ellipsis when cut.
fn fit(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).chain(['…']).collect()
    }
}

/// Writes a strip as PNG, atomically.
pub fn write_png(path: &Path, img: &RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| Error::file(path, e))?;
    crate::io::write_atomic(path, &bytes)
}

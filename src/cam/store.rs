//! One localization-map file per image: the positive classes' maps at image size as float16
//! safetensors (`maps` (n,H,W), `classes` (n) i64, 0-based), optionally a `background` (H,W)
//! score (maps refined by the random walk carry one: labels are then the argmax over
//! background and classes, no threshold), plus heat-map overlay PNGs.
use crate::error::{Error, Result};
use crate::io::{save_raw, Checkpoint, RawTensor};
use safetensors::Dtype;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq)]
pub struct CamFile {
    pub id: String,
    pub height: usize,
    pub width: usize,
    /// 0-based class ids, one per map.
    pub classes: Vec<usize>,
    /// classes.len() × height × width, row-major, values in [0, 1].
    pub maps: Vec<f32>,
    /// A background score per pixel (height × width), when the maps carry their own.
    pub background: Option<Vec<f32>>,
}

impl CamFile {
    pub fn map(&self, i: usize) -> &[f32] {
        let hw = self.height * self.width;
        &self.maps[i * hw..(i + 1) * hw]
    }

    /// The class maps, each ReLU'd and scaled to a maximum of 1 (PSA normalises its CAMs so;
    /// fused co-attention maps peak below 1). An all-zero map stays zero.
    pub fn max_normalised(&self) -> CamFile {
        let mut c = self.clone();
        let hw = c.height * c.width;
        for m in c.maps.chunks_mut(hw.max(1)) {
            let mx = m.iter().cloned().fold(0f32, f32::max);
            m.iter_mut()
                .for_each(|v| *v = if mx > 0.0 { v.max(0.0) / mx } else { 0.0 });
        }
        c
    }
}

pub fn cam_path(dir: &Path, id: &str) -> PathBuf {
    dir.join(format!("{id}.safetensors"))
}

pub fn write_cam(dir: &Path, cam: &CamFile) -> Result<()> {
    let n = cam.classes.len();
    if cam.maps.len() != n * cam.height * cam.width {
        return Err(Error::Msg(format!(
            "CAM of {}: {} values for {n} maps of {}x{}",
            cam.id,
            cam.maps.len(),
            cam.height,
            cam.width
        )));
    }
    let maps: Vec<u8> = cam
        .maps
        .iter()
        .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
        .collect();
    let classes: Vec<u8> = cam
        .classes
        .iter()
        .flat_map(|&c| (c as i64).to_le_bytes())
        .collect();
    let meta = HashMap::from([("id".to_string(), cam.id.clone())]);
    let mut tensors = vec![
        RawTensor {
            name: "maps".into(),
            dtype: Dtype::F16,
            dims: vec![n, cam.height, cam.width],
            bytes: maps,
        },
        RawTensor {
            name: "classes".into(),
            dtype: Dtype::I64,
            dims: vec![n],
            bytes: classes,
        },
    ];
    if let Some(bg) = &cam.background {
        if bg.len() != cam.height * cam.width {
            return Err(Error::Msg(format!(
                "CAM of {}: background of {} values for {}x{}",
                cam.id,
                bg.len(),
                cam.height,
                cam.width
            )));
        }
        tensors.push(RawTensor {
            name: "background".into(),
            dtype: Dtype::F16,
            dims: vec![cam.height, cam.width],
            bytes: bg
                .iter()
                .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                .collect(),
        });
    }
    save_raw(&cam_path(dir, &cam.id), &tensors, &meta)
}

pub fn read_cam(dir: &Path, id: &str) -> Result<CamFile> {
    let path = cam_path(dir, id);
    let ck = Checkpoint::open(&path)?;
    let (maps, dims) = ck.get_f32("maps")?;
    let classes = ck.get_ints("classes")?;
    if dims.len() != 3 || dims[0] != classes.len() {
        return Err(Error::file(
            &path,
            format!(
                "maps of shape {dims:?} do not match {} classes",
                classes.len()
            ),
        ));
    }
    if let Some(bad) = classes.iter().find(|&&c| !(0..255).contains(&c)) {
        return Err(Error::file(&path, format!("class id {bad} out of range")));
    }
    let background = if ck.contains("background") {
        let (bg, bd) = ck.get_f32("background")?;
        if bd != [dims[1], dims[2]] {
            return Err(Error::file(
                &path,
                format!("background of shape {bd:?} does not match maps {dims:?}"),
            ));
        }
        Some(bg)
    } else {
        None
    };
    Ok(CamFile {
        id: id.to_string(),
        height: dims[1],
        width: dims[2],
        classes: classes.into_iter().map(|c| c as usize).collect(),
        maps,
        background,
    })
}

/// The jet colour map, v in [0, 1].
pub fn jet(v: f32) -> [u8; 3] {
    let v = v.clamp(0.0, 1.0);
    let ch = |c: f32| ((1.5 - (4.0 * v - c).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
    [ch(3.0), ch(2.0), ch(1.0)]
}

/// Writes an overlay PNG atomically (a killed writer leaves no torn picture).
pub fn save_png_atomic(img: &image::RgbImage, path: &Path) -> Result<()> {
    let mut buf = std::io::Cursor::new(Vec::new());
    img.write_to(&mut buf, image::ImageFormat::Png)
        .map_err(|e| Error::file(path, e))?;
    crate::io::write_atomic(path, &buf.into_inner())
}

/// The overlay of each of a map file's classes, as OUT/overlay/<id>_<class name>.png (the
/// class named from `class_names`, index 0 being the background). Written before the map file,
/// which marks the image as done.
pub fn save_overlays(
    out: &Path,
    class_names: &[String],
    img: &image::RgbImage,
    cam: &CamFile,
) -> Result<()> {
    for (j, &c) in cam.classes.iter().enumerate() {
        let name = class_names.get(c + 1).cloned().unwrap_or(c.to_string());
        let p = out.join("overlay").join(format!("{}_{name}.png", cam.id));
        save_png_atomic(&overlay(img, cam.map(j)), &p)?;
    }
    Ok(())
}

/// The image with a map on top (half image, half jet colours), for looking at.
pub fn overlay(img: &image::RgbImage, map: &[f32]) -> image::RgbImage {
    let w = img.width() as usize;
    image::RgbImage::from_fn(img.width(), img.height(), |x, y| {
        let c = jet(map[y as usize * w + x as usize]);
        let p = img.get_pixel(x, y).0;
        image::Rgb([0, 1, 2].map(|i| ((p[i] as u16 + c[i] as u16) / 2) as u8))
    })
}

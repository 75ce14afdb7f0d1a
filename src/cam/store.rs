//! One localization-map file per image: the positive classes' maps at image size as float16
//! safetensors (`maps` (n,H,W), `classes` (n) i64, 0-based), plus heat-map overlay PNGs.
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
}

impl CamFile {
    pub fn map(&self, i: usize) -> &[f32] {
        let hw = self.height * self.width;
        &self.maps[i * hw..(i + 1) * hw]
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
    save_raw(
        &cam_path(dir, &cam.id),
        &[
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
        ],
        &meta,
    )
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
    Ok(CamFile {
        id: id.to_string(),
        height: dims[1],
        width: dims[2],
        classes: classes.into_iter().map(|c| c as usize).collect(),
        maps,
    })
}

/// The jet colour map, v in [0, 1].
pub fn jet(v: f32) -> [u8; 3] {
    let v = v.clamp(0.0, 1.0);
    let ch = |c: f32| ((1.5 - (4.0 * v - c).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
    [ch(3.0), ch(2.0), ch(1.0)]
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

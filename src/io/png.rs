//! Label maps as palette PNGs (the VOC convention): pixel values are class indices, 255 is
//! "ignore". Read back as raw indices, never through an RGB conversion.
use crate::error::{Error, Result};
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::Path;

/// The PASCAL VOC colour map (bit-interleaved), 256 RGB entries.
pub fn voc_palette() -> Vec<u8> {
    let mut p = Vec::with_capacity(768);
    for i in 0..256u32 {
        let (mut r, mut g, mut b, mut c) = (0u8, 0u8, 0u8, i);
        for j in 0..8 {
            r |= ((c & 1) as u8) << (7 - j);
            g |= (((c >> 1) & 1) as u8) << (7 - j);
            b |= (((c >> 2) & 1) as u8) << (7 - j);
            c >>= 3;
        }
        p.extend_from_slice(&[r, g, b]);
    }
    p
}

/// A label map: row-major indices.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelMap {
    pub width: usize,
    pub height: usize,
    pub data: Vec<u8>,
}

/// Writes an 8-bit palette PNG with the VOC colours.
pub fn write_label_png(path: &Path, map: &LabelMap) -> Result<()> {
    let mut buf = Vec::new();
    {
        let mut enc = png::Encoder::new(
            BufWriter::new(&mut buf),
            map.width as u32,
            map.height as u32,
        );
        enc.set_color(png::ColorType::Indexed);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_palette(voc_palette());
        let mut w = enc.write_header().map_err(|e| Error::file(path, e))?;
        w.write_image_data(&map.data)
            .map_err(|e| Error::file(path, e))?;
    }
    crate::io::write_atomic(path, &buf)
}

/// Reads an 8-bit palette or greyscale PNG as raw indices (SegmentationClass and
/// SegmentationClassAug both work). Other layouts are an error naming the file.
pub fn read_label_png(path: &Path) -> Result<LabelMap> {
    let f = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut dec = png::Decoder::new(BufReader::new(f));
    dec.set_transformations(png::Transformations::IDENTITY);
    let mut reader = dec
        .read_info()
        .map_err(|e| Error::file(path, format!("not a readable PNG ({e})")))?;
    let info = reader.info();
    let (color, depth) = (info.color_type, info.bit_depth);
    if !matches!(color, png::ColorType::Indexed | png::ColorType::Grayscale)
        || depth != png::BitDepth::Eight
    {
        return Err(Error::file(
            path,
            format!("label PNG must be 8-bit palette or greyscale, found {color:?} {depth:?}"),
        ));
    }
    let size = reader
        .output_buffer_size()
        .ok_or_else(|| Error::file(path, "PNG too large"))?;
    let mut data = vec![0u8; size];
    let out = reader
        .next_frame(&mut data)
        .map_err(|e| Error::file(path, format!("corrupt PNG data ({e})")))?;
    data.truncate(out.buffer_size());
    let (width, height) = (out.width as usize, out.height as usize);
    if data.len() != width * height {
        return Err(Error::file(path, "unexpected PNG row layout"));
    }
    Ok(LabelMap {
        width,
        height,
        data,
    })
}

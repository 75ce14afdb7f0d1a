//! safetensors checkpoints: written to a temporary file in the same folder, synced, then
//! renamed over the target (a crash never leaves a torn file); read through memmap2.
use crate::backend::Device;
use crate::error::{Error, Result};
use crate::tensor::{DType, Tensor};
use memmap2::Mmap;
use safetensors::{tensor::TensorView, Dtype, SafeTensors};
use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically (temp file + fsync + rename + directory fsync).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path
        .file_name()
        .ok_or_else(|| Error::file(path, "not a file path"))?;
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = super::faults::FaultyWriter(File::create(&tmp)?);
        f.write_all(bytes)?;
        f.0.sync_all()?;
        std::fs::rename(&tmp, path)?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    result.map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        Error::io(path, e)
    })
}

/// The config of a training run: with `resume`, the run's own (`load` of its config file) when
/// it has a last checkpoint; otherwise `fresh`, unless the folder already holds a run.
pub fn run_config<C: Clone>(
    run: &Path,
    last: &Path,
    resume: bool,
    fresh: &C,
    load: impl FnOnce(&Path) -> Result<C>,
) -> Result<C> {
    if resume {
        if !last.exists() {
            return Err(Error::file(
                last,
                "nothing to resume: no checkpoint in this run folder",
            ));
        }
        load(&run.join("config.toml"))
    } else {
        if last.exists() {
            return Err(Error::file(run, "this run folder already holds a training run; pass --resume to continue it, or choose another --out"));
        }
        Ok(fresh.clone())
    }
}

/// Writes a config as TOML (atomically).
pub fn save_toml<C: serde::Serialize>(path: &Path, c: &C) -> Result<()> {
    let s = toml::to_string_pretty(c).map_err(|e| Error::file(path, e))?;
    write_atomic(path, s.as_bytes())
}

/// Overlays a TOML file on a base config: the file may give any subset of the fields
/// (tables merge key by key), so `epochs = 8` alone is a valid file; unknown keys are an
/// error naming the file.
pub fn overlay_toml<C: serde::Serialize + serde::de::DeserializeOwned>(
    base: &C,
    path: &Path,
) -> Result<C> {
    fn merge(into: &mut toml::Value, from: toml::Value) {
        match (into, from) {
            (toml::Value::Table(a), toml::Value::Table(b)) => {
                for (k, v) in b {
                    match a.get_mut(&k) {
                        Some(slot) => merge(slot, v),
                        None => {
                            a.insert(k, v);
                        }
                    }
                }
            }
            (slot, v) => *slot = v,
        }
    }
    let s = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let bad = |e: &dyn std::fmt::Display| Error::file(path, format!("invalid config ({e})"));
    let over: toml::Value = toml::from_str(&s).map_err(|e| bad(&e))?;
    let mut v = toml::Value::try_from(base).map_err(|e| bad(&e))?;
    // every key path of the file ("backbone.extra"), to check that the config knows it
    fn paths(v: &toml::Value, prefix: &str, out: &mut Vec<String>) {
        if let toml::Value::Table(t) = v {
            for (k, x) in t {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.push(p.clone());
                paths(x, &p, out);
            }
        }
    }
    let mut keys = Vec::new();
    paths(&over, "", &mut keys);
    merge(&mut v, over);
    let c: C = v.try_into().map_err(|e| bad(&e))?;
    // a key the config does not know would be dropped silently by serde: refuse it instead
    let back = toml::Value::try_from(&c).map_err(|e| bad(&e))?;
    let known = |k: &str| {
        k.split('.')
            .try_fold(&back, |v, part| v.get(part))
            .is_some()
    };
    if let Some(k) = keys.iter().find(|k| !known(k)) {
        return Err(Error::file(
            path,
            format!("invalid config (unknown field `{k}`)"),
        ));
    }
    Ok(c)
}

/// Reads a TOML config; a parse error names the file.
pub fn load_toml<C: serde::de::DeserializeOwned>(path: &Path) -> Result<C> {
    let s = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    toml::from_str(&s).map_err(|e| Error::file(path, format!("invalid config ({e})")))
}

/// Saves named tensors (in their own dtype) and string metadata.
pub fn save_checkpoint(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    // never a checkpoint with NaN or inf weights, momenta or BN statistics: a model that
    // looks saved but predicts nothing (the previous checkpoint stays as it was)
    for (n, t) in tensors {
        if t.to_vec_f64().iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!(
                "{n} holds NaN or inf values; {} was not written (training diverged: lower the lr)",
                path.display()
            )));
        }
    }
    let bytes: Vec<(String, Vec<u8>, DType, Vec<usize>)> = tensors
        .iter()
        .map(|(n, t)| {
            (
                n.clone(),
                t.storage().to_le_bytes(),
                t.dtype(),
                t.dims().to_vec(),
            )
        })
        .collect();
    let raw: Vec<RawTensor> = bytes
        .into_iter()
        .map(|(name, bytes, dt, dims)| RawTensor {
            name,
            dtype: match dt {
                DType::F32 => Dtype::F32,
                DType::F64 => Dtype::F64,
            },
            dims,
            bytes,
        })
        .collect();
    save_raw(path, &raw, metadata)
}

/// One tensor as little-endian bytes in any safetensors dtype (f16 maps, i64 ids).
pub struct RawTensor {
    pub name: String,
    pub dtype: Dtype,
    pub dims: Vec<usize>,
    pub bytes: Vec<u8>,
}

/// Writes raw tensors and metadata as one safetensors file, atomically.
pub fn save_raw(
    path: &Path,
    tensors: &[RawTensor],
    metadata: &HashMap<String, String>,
) -> Result<()> {
    let mut views = Vec::with_capacity(tensors.len());
    for t in tensors {
        let v = TensorView::new(t.dtype, t.dims.clone(), &t.bytes)
            .map_err(|e| Error::file(path, format!("tensor {}: {e}", t.name)))?;
        views.push((t.name.as_str(), v));
    }
    let meta = (!metadata.is_empty()).then(|| metadata.clone());
    let buf = safetensors::serialize(views, &meta).map_err(|e| Error::file(path, e))?;
    write_atomic(path, &sorted_header(buf).map_err(|e| Error::file(path, e))?)
}

/// The same safetensors file with its JSON header's keys sorted: the crate writes the
/// metadata map in hash order, which differs between processes, so two identical runs would
/// write different bytes. Offsets are relative to the data block, so they stay valid; the
/// header is padded with spaces to a multiple of 8 bytes, as the format's writers do.
fn sorted_header(buf: Vec<u8>) -> std::result::Result<Vec<u8>, String> {
    let n = u64::from_le_bytes(buf[..8].try_into().expect("8 bytes")) as usize;
    // serde_json's map is ordered by key (no `preserve_order` feature)
    let header: serde_json::Value =
        serde_json::from_slice(&buf[8..8 + n]).map_err(|e| e.to_string())?;
    let mut h = serde_json::to_vec(&header).map_err(|e| e.to_string())?;
    h.resize(h.len().div_ceil(8) * 8, b' ');
    let mut out = Vec::with_capacity(8 + h.len() + buf.len() - 8 - n);
    out.extend_from_slice(&(h.len() as u64).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&buf[8 + n..]);
    Ok(out)
}

/// A checkpoint opened for reading; tensors are copied out on request.
pub struct Checkpoint {
    path: PathBuf,
    mmap: Mmap,
}

impl Checkpoint {
    /// Opens and validates the whole header; a truncated or corrupt file is an `Err` naming it.
    pub fn open(path: impl AsRef<Path>) -> Result<Checkpoint> {
        let path = path.as_ref().to_path_buf();
        let f = File::open(&path).map_err(|e| Error::io(&path, e))?;
        // SAFETY: the map is read-only and private to this process; a concurrent writer would
        // replace the file by rename (a new inode), never modify this one in place.
        let mmap = unsafe { Mmap::map(&f) }.map_err(|e| Error::io(&path, e))?;
        SafeTensors::deserialize(&mmap)
            .map_err(|e| Error::file(&path, format!("not a valid safetensors file ({e:?})")))?;
        Ok(Checkpoint { path, mmap })
    }
    pub fn path(&self) -> &Path {
        &self.path
    }
    fn parsed(&self) -> SafeTensors<'_> {
        SafeTensors::deserialize(&self.mmap).expect("validated in open")
    }
    pub fn names(&self) -> Vec<String> {
        let mut n: Vec<String> = self.parsed().names().into_iter().cloned().collect();
        n.sort();
        n
    }
    pub fn metadata(&self) -> HashMap<String, String> {
        SafeTensors::read_metadata(&self.mmap)
            .ok()
            .and_then(|(_, m)| m.metadata().clone())
            .unwrap_or_default()
    }
    pub fn contains(&self, name: &str) -> bool {
        self.parsed().tensor(name).is_ok()
    }
    /// The tensor `name` as `dtype` on `device`; missing names and unsupported dtypes are errors.
    /// A float tensor (f16, f32 or f64 on disk) as f32 values and its shape.
    pub fn get_f32(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>)> {
        let t = self.get(name, DType::F32, Device::Cpu)?;
        Ok((t.to_vec_f32(), t.dims().to_vec()))
    }

    /// An integer tensor (i64, i32 or u8 on disk).
    pub fn get_ints(&self, name: &str) -> Result<Vec<i64>> {
        let st = self.parsed();
        let v = st
            .tensor(name)
            .map_err(|_| Error::file(&self.path, format!("missing tensor '{name}'")))?;
        let raw = v.data();
        Ok(match v.dtype() {
            Dtype::I64 => raw
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::I32 => raw
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()) as i64)
                .collect(),
            Dtype::U8 => raw.iter().map(|&b| b as i64).collect(),
            other => {
                return Err(Error::file(
                    &self.path,
                    format!("tensor '{name}' has dtype {other:?}, expected integers"),
                ))
            }
        })
    }

    /// Writes the same tensors, byte for byte, to `path` (atomically), with the metadata
    /// entries in `changes` set (a run started from another run's checkpoint names its own
    /// variant).
    pub fn copy_with_metadata(&self, path: &Path, changes: &[(&str, String)]) -> Result<()> {
        let raw: Vec<RawTensor> = self
            .parsed()
            .tensors()
            .into_iter()
            .map(|(name, v)| RawTensor {
                name,
                dtype: v.dtype(),
                dims: v.shape().to_vec(),
                bytes: v.data().to_vec(),
            })
            .collect();
        let mut meta = self.metadata();
        for (k, v) in changes {
            meta.insert(k.to_string(), v.clone());
        }
        save_raw(path, &raw, &meta)
    }

    /// An integer metadata entry (training position, label count, ...).
    pub fn meta_usize(&self, key: &str) -> Result<usize> {
        self.metadata()
            .get(key)
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| Error::file(self.path(), format!("checkpoint metadata has no '{key}'")))
    }

    /// Assigns every named tensor from the checkpoint (names and shapes must match).
    pub fn load_into(&self, tensors: &[(String, Tensor)]) -> Result<()> {
        for (name, t) in tensors {
            let v = self.get(name, t.dtype(), t.device())?;
            if v.shape() != t.shape() {
                return Err(Error::file(
                    self.path(),
                    format!(
                        "tensor '{name}' has shape {:?}, the model expects {:?}",
                        v.shape(),
                        t.shape()
                    ),
                ));
            }
            t.assign(&v)?;
        }
        Ok(())
    }

    pub fn get(&self, name: &str, dtype: DType, device: Device) -> Result<Tensor> {
        let st = self.parsed();
        let v = st
            .tensor(name)
            .map_err(|_| Error::file(&self.path, format!("missing tensor '{name}'")))?;
        let raw = v.data();
        let vals: Vec<f64> = match v.dtype() {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64)
                .collect(),
            Dtype::F64 => raw
                .chunks_exact(8)
                .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|c| f16_to_f32(u16::from_le_bytes([c[0], c[1]])) as f64)
                .collect(),
            other => {
                return Err(Error::file(
                    &self.path,
                    format!("tensor '{name}' has unsupported dtype {other:?}"),
                ))
            }
        };
        Tensor::from_f64(&vals, v.shape().to_vec(), dtype, device)
    }
}

/// IEEE half → single (exact), so float16 maps written by later stages can be read back.
pub(crate) fn f16_to_f32(h: u16) -> f32 {
    let sign = ((h >> 15) as u32) << 31;
    let exp = ((h >> 10) & 0x1f) as u32;
    let man = (h & 0x3ff) as u32;
    let bits = match (exp, man) {
        (0, 0) => sign,
        (0, m) => {
            // subnormal: normalise
            let shift = m.leading_zeros() - 21;
            sign | ((127 - 15 + 1 - shift) << 23) | ((m << shift) & 0x3ff) << 13
        }
        (31, 0) => sign | 0x7f80_0000,
        (31, m) => sign | 0x7f80_0000 | (m << 13),
        (e, m) => sign | ((e + 127 - 15) << 23) | (m << 13),
    };
    f32::from_bits(bits)
}

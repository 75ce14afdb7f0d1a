//! ImageNet weights for the backbone: torchvision's `vgg16-397923af.pth` read natively (a
//! zip holding a pickled state dict and raw storages), or the same tensors in safetensors.
use crate::error::{Error, Result};
use crate::io::Checkpoint;
use crate::tensor::Tensor;
use std::path::Path;

/// Named f32 tensors of a weight file (.pth / .pt via the torch reader, else safetensors).
pub fn read_named_tensors(path: &Path, want: &[String]) -> Result<Vec<(String, Tensor)>> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "pth" || ext == "pt" {
        let all = crate::io::torch::read_state_dict(path)?;
        return want
            .iter()
            .map(|n| {
                all.iter()
                    .find(|(k, _)| k == n)
                    .cloned()
                    .ok_or_else(|| Error::file(path, format!("missing tensor '{n}'")))
            })
            .collect();
    }
    let ck = Checkpoint::open(path)?;
    want.iter()
        .map(|n| Ok((n.clone(), ck.get(n, crate::DType::F32, crate::Device::Cpu)?)))
        .collect()
}

/// Whether a weight file holds a tensor of that name. torchvision `.pth` files are only read
/// whole, so there the answer is no without reading them: their VGG16 carries no batch norm.
pub fn holds_tensor(path: &Path, name: &str) -> Result<bool> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if ext == "pth" || ext == "pt" {
        return Ok(false);
    }
    Ok(Checkpoint::open(path)?.contains(name))
}

/// Copies named tensors of a weight file into `params` (each must be present with the
/// model's shape); returns how many were loaded.
pub fn load_named_into(path: &Path, params: &[(String, Tensor)]) -> Result<usize> {
    let names: Vec<String> = params.iter().map(|(n, _)| n.clone()).collect();
    let loaded = read_named_tensors(path, &names)?;
    for ((name, dst), (_, src)) in params.iter().zip(&loaded) {
        if src.shape() != dst.shape() {
            return Err(Error::file(
                path,
                format!(
                    "'{name}' has shape {:?}, the backbone expects {:?}",
                    src.shape(),
                    dst.shape()
                ),
            ));
        }
        dst.assign(src)?;
    }
    Ok(loaded.len())
}

//! What made an output folder: a JSON record of the inputs and options of the command that
//! writes it (`OUT/<name>.json`). A rerun into the same folder with the same record resumes
//! (outputs already there are kept); with another record it stops with an error naming what
//! differs, so outputs of two runs are never mixed.
use crate::error::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// The keys whose values differ between two records (top-level keys of JSON objects).
pub fn differences(old: &Value, new: &Value) -> Vec<String> {
    match (old.as_object(), new.as_object()) {
        (Some(a), Some(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            keys.into_iter()
                .filter(|k| a.get(*k) != b.get(*k))
                .map(|k| {
                    format!(
                        "{k}: {} → {}",
                        a.get(k).map_or("(none)".into(), Value::to_string),
                        b.get(k).map_or("(none)".into(), Value::to_string)
                    )
                })
                .collect()
        }
        _ if old == new => Vec::new(),
        _ => vec![format!("{old} → {new}")],
    }
}

/// Writes `dir/<name>.json` when absent; when present it must hold the same record.
pub fn check_or_write(dir: &Path, name: &str, record: &Value) -> Result<()> {
    let path = dir.join(format!("{name}.json"));
    if path.exists() {
        let s = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let old: Value = serde_json::from_str(&s)
            .map_err(|e| Error::file(&path, format!("corrupt record ({e})")))?;
        let diff = differences(&old, record);
        if !diff.is_empty() {
            return Err(Error::file(
                &path,
                format!(
                    "this folder holds outputs made with other inputs or options ({}); use another --out, or delete the folder to redo it",
                    diff.join("; ")
                ),
            ));
        }
        return Ok(());
    }
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let s = serde_json::to_string_pretty(record).map_err(|e| Error::Msg(e.to_string()))?;
    super::write_atomic(&path, s.as_bytes())
}

/// A short fingerprint of a file (size and FNV-1a of its bytes), for records that name a
/// checkpoint: the same path with other weights is another input.
pub fn file_fingerprint(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(fingerprint(&bytes))
}

/// Length and 64-bit FNV-1a hash of some bytes (the same on every machine and run).
pub fn fingerprint(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{}:{h:016x}", bytes.len())
}

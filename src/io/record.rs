//! What made an output folder: a JSON record of the inputs and options of the command that
//! writes it (`OUT/<name>.json`). A rerun into the same folder with the same record resumes
//! (outputs already there are kept); with another record it stops with an error naming what
//! differs, so outputs of two runs are never mixed.
use crate::error::{Error, Result};
use serde_json::Value;
use std::path::Path;

/// The values that differ between two records, by key path (`config.affinity: "dot" →
/// "cosine"`): nested objects are compared key by key, so a changed option is named alone
/// rather than with the whole table it sits in.
pub fn differences(old: &Value, new: &Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_into("", old, new, &mut out);
    out
}

fn diff_into(path: &str, old: &Value, new: &Value, out: &mut Vec<String>) {
    if old == new {
        return;
    }
    match (old.as_object(), new.as_object()) {
        (Some(a), Some(b)) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff_into(&p, x, y, out),
                    (x, y) => out.push(format!(
                        "{p}: {} → {}",
                        x.map_or("(none)".into(), Value::to_string),
                        y.map_or("(none)".into(), Value::to_string)
                    )),
                }
            }
        }
        _ if path.is_empty() => out.push(format!("{old} → {new}")),
        _ => out.push(format!("{path}: {old} → {new}")),
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

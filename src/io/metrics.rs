//! Append-only JSONL metrics (one JSON object per line).
use crate::error::{Error, Result};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct MetricsWriter {
    path: PathBuf,
    file: File,
}

impl MetricsWriter {
    pub fn append(path: &Path) -> Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::io(path, e))?;
        Ok(MetricsWriter {
            path: path.to_path_buf(),
            file,
        })
    }
    pub fn write(&mut self, v: &serde_json::Value) -> Result<()> {
        writeln!(self.file, "{v}").map_err(|e| Error::io(&self.path, e))
    }
}

/// Reads every line of a JSONL file (a missing file reads as empty; bad lines are errors).
pub fn read_jsonl(path: &Path) -> Result<Vec<serde_json::Value>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let s = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    s.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::file(path, format!("line {}: {e}", i + 1)))
        })
        .collect()
}

/// Keeps only the lines for which `keep` holds (used when resuming from a checkpoint
/// older than the last logged iteration).
pub fn retain_jsonl(path: &Path, keep: impl Fn(&serde_json::Value) -> bool) -> Result<()> {
    let kept: String = read_jsonl(path)?
        .into_iter()
        .filter(|v| keep(v))
        .map(|v| format!("{v}\n"))
        .collect();
    crate::io::write_atomic(path, kept.as_bytes())
}

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
    /// A new, empty file (replacing rows of a run that never reached a checkpoint).
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| Error::io(path, e))?;
        Ok(MetricsWriter {
            path: path.to_path_buf(),
            file,
        })
    }

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
    /// One row, written with a single write call (a kill can cut it short only at its end,
    /// which `retain_jsonl` drops on resume).
    pub fn write(&mut self, v: &serde_json::Value) -> Result<()> {
        let line = format!("{v}\n");
        super::faults::FaultyWriter(&mut self.file)
            .write_all(line.as_bytes())
            .map_err(|e| Error::io(&self.path, e))
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

/// [`read_jsonl`] for a run being resumed: a last line cut short by a kill or a full disk (no
/// newline, not valid JSON) is dropped; a bad line before it is still an error.
pub fn read_jsonl_for_resume(path: &Path) -> Result<Vec<serde_json::Value>> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let s = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let complete = match s.rfind('\n') {
        Some(i) if i + 1 < s.len() => {
            let tail = &s[i + 1..];
            if serde_json::from_str::<serde_json::Value>(tail).is_ok() {
                s.as_str()
            } else {
                &s[..=i]
            }
        }
        Some(_) => s.as_str(),
        None if serde_json::from_str::<serde_json::Value>(&s).is_ok() => s.as_str(),
        None => "",
    };
    complete
        .lines()
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
    let kept: String = read_jsonl_for_resume(path)?
        .into_iter()
        .filter(|v| keep(v))
        .map(|v| format!("{v}\n"))
        .collect();
    crate::io::write_atomic(path, kept.as_bytes())
}

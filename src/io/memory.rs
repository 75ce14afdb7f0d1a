//! A coarse check that a run's activations fit in memory before training starts, so a huge
//! `--input-size` or `--crop` is a clear error instead of an abort on a failed allocation.
use crate::error::{Error, Result};

/// Bytes of memory available (Linux: MemAvailable of /proc/meminfo); None where unknown.
pub fn available_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Errors when `bytes` (an estimate of what `what` needs) exceed the available memory.
pub fn check_fits(bytes: f64, what: &str) -> Result<()> {
    let Some(avail) = available_bytes() else {
        return Ok(());
    };
    if bytes > avail as f64 {
        return Err(Error::Msg(format!(
            "{what} would need about {:.1} GB of memory for its activations; this machine has {:.1} GB available (lower the input size, crop or batch)",
            bytes / 1e9,
            avail as f64 / 1e9
        )));
    }
    Ok(())
}

//! An exclusive lock on an output folder: two coatt processes writing into one folder would
//! mix their files (one run's config.toml, the other's checkpoint, interleaved metrics). The
//! lock is the operating system's advisory file lock on `<dir>/.coatt.lock`, so it is released
//! when the process ends, however it ends (no stale lock after a kill -9); the file holds the
//! holder's pid for the error message.
use crate::error::{Error, Result};
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Held while a command writes into its folder; dropping it releases the lock.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
    pub dir: PathBuf,
}

pub const LOCK_FILE: &str = ".coatt.lock";

/// Locks `dir` (created if missing) for this process, or fails naming the holder's pid.
pub fn lock_dir(dir: &Path) -> Result<DirLock> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let path = dir.join(LOCK_FILE);
    let mut f = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io(&path, e))?;
    match f.try_lock() {
        Ok(()) => {
            let pid = std::process::id().to_string();
            (|| -> std::io::Result<()> {
                f.set_len(0)?;
                f.rewind()?;
                f.write_all(pid.as_bytes())?;
                f.flush()
            })()
            .map_err(|e| Error::io(&path, e))?;
            remove_stale_temp_files(dir);
            Ok(DirLock {
                _file: f,
                dir: dir.to_path_buf(),
            })
        }
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = f.read_to_string(&mut holder);
            Err(Error::file(
                dir,
                format!(
                    "another coatt process (pid {}) is writing into this folder; wait for it to finish or use another output folder",
                    if holder.trim().is_empty() { "unknown" } else { holder.trim() }
                ),
            ))
        }
        Err(TryLockError::Error(e)) => Err(Error::io(&path, e)),
    }
}

/// Temp files of `write_atomic` (`.<name>.tmp<pid>`) left by a killed writer: with the lock
/// held no other coatt process writes here, so every one of them is stale. The folder and its
/// direct subfolders (checkpoints/, overlay/) are cleaned.
fn remove_stale_temp_files(dir: &Path) {
    let is_temp = |n: &str| {
        n.starts_with('.')
            && n.rsplit_once(".tmp")
                .is_some_and(|(_, pid)| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
    };
    let clean = |d: &Path| {
        if let Ok(rd) = std::fs::read_dir(d) {
            for e in rd.flatten() {
                if is_temp(&e.file_name().to_string_lossy()) && e.path().is_file() {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    };
    clean(dir);
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.path().is_dir() {
                clean(&e.path());
            }
        }
    }
}

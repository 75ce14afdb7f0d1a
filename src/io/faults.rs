//! Every file the program writes goes through `FaultyWriter`, which a test can make fail after
//! a given number of bytes on the current thread: the faults a test cannot cause directly (a
//! full disk, a write cut short by a kill) are then reproducible (docs/reliability.md).
use std::cell::Cell;
use std::io::{Error, ErrorKind, Result, Write};

thread_local! {
    /// Bytes this thread may still write; None: no limit.
    static BUDGET: Cell<Option<u64>> = const { Cell::new(None) };
}

/// From now on, this thread's writes fail ("no space left on device") once `bytes` more have
/// been written. For tests.
pub fn fail_after(bytes: u64) {
    BUDGET.with(|b| b.set(Some(bytes)));
}

/// Lifts the limit of [`fail_after`].
pub fn clear() {
    BUDGET.with(|b| b.set(None));
}

/// A writer that honours the thread's byte budget (writes what fits, then fails).
pub struct FaultyWriter<W: Write>(pub W);

impl<W: Write> Write for FaultyWriter<W> {
    fn write(&mut self, buf: &[u8]) -> Result<usize> {
        let allowed = BUDGET.with(|b| match b.get() {
            None => buf.len(),
            Some(left) => {
                let n = (left as usize).min(buf.len());
                b.set(Some(left - n as u64));
                n
            }
        });
        if allowed == 0 && !buf.is_empty() {
            return Err(Error::new(
                ErrorKind::StorageFull,
                "no space left on device (simulated)",
            ));
        }
        self.0.write(&buf[..allowed])
    }
    fn flush(&mut self) -> Result<()> {
        self.0.flush()
    }
}

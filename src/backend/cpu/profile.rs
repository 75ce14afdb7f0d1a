//! Wall time per CPU op, for `bench --train-step` with `COATT_CPU_PROFILE=1`: the dispatch in
//! `Storage` times each op by name while profiling is on (one relaxed atomic load otherwise).
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static ON: AtomicBool = AtomicBool::new(false);
static TABLE: Mutex<Option<HashMap<String, (usize, f64)>>> = Mutex::new(None);

/// Turns timing on (and clears the table) or off.
pub fn set_profiling(on: bool) {
    *TABLE.lock().unwrap_or_else(|e| e.into_inner()) = on.then(HashMap::new);
    ON.store(on, Ordering::Relaxed);
}

/// The ops timed since profiling was turned on: (name, calls, ms), the most time first.
pub fn profile_report() -> Vec<(String, usize, f64)> {
    let t = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    let mut v: Vec<_> = t
        .iter()
        .flatten()
        .map(|(k, (n, ms))| (k.clone(), *n, *ms))
        .collect();
    v.sort_by(|a, b| b.2.total_cmp(&a.2));
    v
}

/// Runs `f`, adding its wall time to `op`'s row when profiling is on.
#[inline]
pub(crate) fn timed<R>(op: &'static str, f: impl FnOnce() -> R) -> R {
    timed_as(|| op.to_string(), f)
}

/// [`timed`] under a name made only when profiling is on (an op and its sizes).
#[inline]
pub(crate) fn timed_as<R>(name: impl FnOnce() -> String, f: impl FnOnce() -> R) -> R {
    if !ON.load(Ordering::Relaxed) {
        return f();
    }
    let t = Instant::now();
    let r = f();
    let ms = t.elapsed().as_secs_f64() * 1e3;
    if let Some(table) = TABLE.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
        let e = table.entry(name()).or_insert((0, 0.0));
        e.0 += 1;
        e.1 += ms;
    }
    r
}

//! A caching device allocator: freed buffers go to a free list per size class and are handed
//! out again, so a training step after the first calls cuMemAlloc not at all. Size classes
//! round a request up to a multiple of an eighth of its power of two (at most 12.5% waste).
//! Reuse is safe without events because every op runs on one stream (see runtime.rs). When
//! cuMemAlloc fails, the cache is released and the allocation tried once more.
use super::runtime::rt;
use cudarc::driver::{result, sys};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

#[derive(Default)]
pub(crate) struct Allocator {
    free: Mutex<HashMap<usize, Vec<sys::CUdeviceptr>>>,
    mallocs: AtomicU64,
    reuses: AtomicU64,
    bytes_in_use: AtomicU64,
    bytes_cached: AtomicU64,
}

/// Counters of the caching allocator (for tests and reports).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MemoryStats {
    /// cuMemAlloc calls so far
    pub device_mallocs: u64,
    /// allocations served from the cache
    pub reuses: u64,
    pub bytes_in_use: u64,
    pub bytes_cached: u64,
}

pub(crate) fn size_class(bytes: usize) -> usize {
    // granularity: an eighth of the largest power of two not above the request
    let floor_pow2 = 1usize << (usize::BITS - 1 - bytes.max(1).leading_zeros());
    let g = (floor_pow2 / 8).max(512);
    bytes.div_ceil(g) * g
}

impl Allocator {
    pub(crate) fn alloc(&self, bytes: usize) -> (sys::CUdeviceptr, usize) {
        let class = size_class(bytes);
        let hit = self.free.lock().unwrap().get_mut(&class).and_then(Vec::pop);
        let ptr = match hit {
            Some(p) => {
                self.reuses.fetch_add(1, Ordering::Relaxed);
                self.bytes_cached.fetch_sub(class as u64, Ordering::Relaxed);
                p
            }
            None => {
                self.mallocs.fetch_add(1, Ordering::Relaxed);
                // SAFETY: plain device allocation with the context bound (rt()).
                match unsafe { result::malloc_sync(class) } {
                    Ok(p) => p,
                    Err(_) => {
                        let released = self.release_cache();
                        unsafe { result::malloc_sync(class) }.unwrap_or_else(|e| {
                            panic!(
                                "CUDA out of memory: {:.1} MiB requested, {:.1} MiB in use, \
                                 {:.1} MiB of cache released first ({e:?})",
                                class as f64 / 1048576.0,
                                self.bytes_in_use.load(Ordering::Relaxed) as f64 / 1048576.0,
                                released as f64 / 1048576.0
                            )
                        })
                    }
                }
            }
        };
        self.bytes_in_use.fetch_add(class as u64, Ordering::Relaxed);
        (ptr, class)
    }

    pub(crate) fn free(&self, ptr: sys::CUdeviceptr, class: usize) {
        self.bytes_in_use.fetch_sub(class as u64, Ordering::Relaxed);
        self.bytes_cached.fetch_add(class as u64, Ordering::Relaxed);
        self.free
            .lock()
            .unwrap()
            .entry(class)
            .or_default()
            .push(ptr);
    }

    /// Frees every cached buffer (after the stream drains); returns the bytes released.
    pub(crate) fn release_cache(&self) -> usize {
        rt().sync("releasing the allocator cache");
        let mut free = self.free.lock().unwrap();
        let mut total = 0;
        for (class, ptrs) in free.drain() {
            for p in ptrs {
                // SAFETY: pointers from malloc_sync, no longer referenced by any buffer.
                let _ = unsafe { result::free_sync(p) };
                total += class;
            }
        }
        self.bytes_cached.fetch_sub(total as u64, Ordering::Relaxed);
        total
    }

    pub(crate) fn stats(&self) -> MemoryStats {
        MemoryStats {
            device_mallocs: self.mallocs.load(Ordering::Relaxed),
            reuses: self.reuses.load(Ordering::Relaxed),
            bytes_in_use: self.bytes_in_use.load(Ordering::Relaxed),
            bytes_cached: self.bytes_cached.load(Ordering::Relaxed),
        }
    }
}

/// `len` f32 values on the device (uninitialised until written); returned to the cache on drop.
pub struct DeviceBuffer {
    pub(crate) ptr: sys::CUdeviceptr,
    pub(crate) len: usize,
    class: usize,
}

impl DeviceBuffer {
    pub(crate) fn uninit(len: usize) -> DeviceBuffer {
        if len == 0 {
            return DeviceBuffer {
                ptr: 0,
                len: 0,
                class: 0,
            };
        }
        let (ptr, class) = rt().alloc.alloc(len * 4);
        DeviceBuffer { ptr, len, class }
    }
    /// Device address of element `i`.
    pub(crate) fn at(&self, i: usize) -> u64 {
        self.ptr + 4 * i as u64
    }
}

impl Drop for DeviceBuffer {
    fn drop(&mut self) {
        if self.len > 0 {
            if let Some(Ok(_)) = super::runtime::runtime_if_started() {
                rt().alloc.free(self.ptr, self.class);
            }
        }
    }
}

/// The caching allocator's counters, or None before the runtime started.
pub fn memory_stats() -> Option<MemoryStats> {
    match super::runtime::runtime_if_started() {
        Some(Ok(_)) => Some(rt().alloc.stats()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::size_class;
    #[test]
    fn size_classes_waste_at_most_an_eighth() {
        for b in [
            1usize,
            4,
            511,
            512,
            513,
            4096,
            5000,
            1 << 20,
            (1 << 20) + 1,
            3 << 27,
        ] {
            let c = size_class(b);
            assert!(c >= b && c.is_multiple_of(512), "{b} -> {c}");
            assert!(c <= 512.max(b + b / 8 + 512), "{b} -> {c}");
        }
    }
}

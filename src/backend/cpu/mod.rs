//! The CPU backend: rayon for data parallelism, the `gemm` crate for matrix products.
//! Every kernel is generic over f32/f64; it is the numerical reference for the CUDA backend.
//! Each family file holds its kernels as free functions on slices and, at its end, that
//! family's trait of `backend::interface` implemented for [`CpuStorage`].
pub mod coattention;
pub mod conv;
pub mod conv_direct;
pub mod elementwise;
pub mod layout;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod profile;
pub mod reduce;
pub mod resize;
pub mod sgd;
pub mod softmax;

use super::interface::BackendStorage;
use crate::tensor::{DType, Float};

/// Host storage, one variant per dtype.
#[derive(Clone, Debug)]
pub enum CpuStorage {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

/// Runs `$body` with `T` bound to the Rust type of `$dtype`.
macro_rules! with_dtype {
    ($dtype:expr, $body:block) => {
        match $dtype {
            $crate::tensor::DType::F32 => {
                #[allow(dead_code)]
                type T = f32;
                $body
            }
            $crate::tensor::DType::F64 => {
                #[allow(dead_code)]
                type T = f64;
                $body
            }
        }
    };
}
pub(crate) use with_dtype;

impl CpuStorage {
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
        }
    }
    pub fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Typed view; the caller has checked the dtype (ops check dtypes before dispatch).
    pub fn slice<T: Float>(&self) -> &[T] {
        match self {
            CpuStorage::F32(v) => bytemuck::cast_slice(v),
            CpuStorage::F64(v) => bytemuck::cast_slice(v),
        }
    }
    pub fn slice_mut<T: Float>(&mut self) -> &mut [T] {
        match self {
            CpuStorage::F32(v) => bytemuck::cast_slice_mut(v),
            CpuStorage::F64(v) => bytemuck::cast_slice_mut(v),
        }
    }
    pub fn from_vec<T: Float>(v: Vec<T>) -> Self {
        match T::DTYPE {
            DType::F32 => CpuStorage::F32(bytemuck::allocation::cast_vec(v)),
            DType::F64 => CpuStorage::F64(bytemuck::allocation::cast_vec(v)),
        }
    }
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            CpuStorage::F32(v) => v.iter().map(|&x| x as f64).collect(),
            CpuStorage::F64(v) => v.clone(),
        }
    }
}

impl BackendStorage for CpuStorage {
    fn dtype(&self) -> DType {
        CpuStorage::dtype(self)
    }
    fn len(&self) -> usize {
        CpuStorage::len(self)
    }
}

/// Runs `f(p, chunk)` over the `plane`-sized chunks of `out`: in parallel above
/// [`elementwise::PAR_MIN`] values, at least 8K values per task (the deep layers' planes are
/// 36-256 values).
pub(crate) fn for_each_plane<E: Send>(
    out: &mut [E],
    plane: usize,
    f: impl Fn(usize, &mut [E]) + Sync + Send,
) {
    use rayon::prelude::*;
    let plane = plane.max(1);
    if out.len() >= elementwise::PAR_MIN {
        out.par_chunks_mut(plane)
            .with_min_len((8192 / plane).max(1))
            .enumerate()
            .for_each(|(p, o)| f(p, o));
    } else {
        out.chunks_mut(plane).enumerate().for_each(|(p, o)| f(p, o));
    }
}

/// A vector of `len` values that `fill` writes whole, `plane` values at a time
/// ([`for_each_plane`]): no zero-fill first for outputs that are written everywhere.
pub(crate) fn written_by_planes<T: Float>(
    len: usize,
    plane: usize,
    fill: impl Fn(usize, &mut [std::mem::MaybeUninit<T>]) + Sync + Send,
) -> Vec<T> {
    let mut v = Vec::with_capacity(len);
    for_each_plane(&mut v.spare_capacity_mut()[..len], plane, fill);
    // SAFETY: every caller's `fill` writes each element of its chunk, and the chunks cover
    // all `len` elements.
    unsafe { v.set_len(len) };
    v
}

/// Runs `f` on one of rayon's worker threads (the global pool, whose workers get a main
/// thread's 8 MiB stack). Called from a thread outside the pool, every parallel kernel hands
/// its work to the pool and puts the caller to sleep until it is done: two thread switches per
/// op, a few hundred per training step. Called from a worker, the kernel splits its work with
/// the other workers and the caller does its share. With one worker `f` runs where it is
/// called: a command that waits for a loader thread whose parallel decoding needs a free
/// worker must not take the only one.
pub fn run_on_workers<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    // an error means the pool exists already (a test harness, a second call): use it as it is
    let _ = rayon::ThreadPoolBuilder::new()
        .stack_size(8 << 20)
        .build_global();
    if rayon::current_num_threads() < 2 {
        return f();
    }
    rayon::scope(|_| f())
}

thread_local! {
    /// Per-thread scratch memory for the conv's column matrices (8-byte words).
    static SCRATCH: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Scratch buffers above this many bytes are not kept for the next call.
const SCRATCH_KEEP: usize = 64 << 20;

/// Runs `f` on a scratch slice of `len` values, reused across calls on this thread instead of
/// allocated and zero-filled each time. Its contents are stale: `f` must write before it
/// reads. A nested call on the same thread (rayon may run another task inside `f`) gets a
/// fresh buffer.
pub(crate) fn with_scratch<T: Float, R>(len: usize, f: impl FnOnce(&mut [T]) -> R) -> R {
    let words = (len * std::mem::size_of::<T>()).div_ceil(8);
    let mut buf = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if buf.len() < words {
        buf = vec![0u64; words];
    }
    let r = f(&mut bytemuck::cast_slice_mut::<u64, T>(&mut buf[..words])[..len]);
    if buf.len() * 8 <= SCRATCH_KEEP {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            if s.len() < buf.len() {
                *s = buf;
            }
        });
    }
    r
}

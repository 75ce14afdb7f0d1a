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

/// Runs `f` compiled for AVX2 + FMA when the CPU has them, else as plain x86-64 (SSE2).
/// The crate is built for the baseline x86-64 so that the binary runs anywhere; inlined into
/// this function, the element-wise loops of a kernel's task vectorise 8 f32 wide instead
/// of 4. `f` must be the innermost work of a task (what rayon calls is not inlined here).
#[inline(always)]
pub(crate) fn wide<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has the features `avx2` was compiled for.
            return unsafe { avx2(f) };
        }
    }
    f()
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

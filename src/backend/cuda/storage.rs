//! The CUDA storage: a contiguous f32 buffer in device memory, its allocation and host
//! transfers. The ops on it live in one file per op family (`elementwise.rs`, `reduce.rs`,
//! `matmul.rs`, `softmax.rs`, `pool.rs`, `resize.rs`, `layout.rs`, `norm.rs`, `loss.rs`,
//! `sgd.rs`, beside `conv.rs`, `coattention.rs` and `affinity.rs`), each calling the kernels
//! of `kernels/<family>.cu` or cuBLAS, as `backend/cpu/<family>.rs` holds the CPU reference
//! each one is tested against (tests/cuda_parity.rs).
use super::alloc::DeviceBuffer;
use super::runtime::{arg, rt};
use cudarc::driver::result;

/// A contiguous f32 tensor in device memory.
pub struct CudaStorage {
    pub(crate) buf: DeviceBuffer,
}

impl std::fmt::Debug for CudaStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CudaStorage(f32 × {})", self.buf.len)
    }
}

impl Clone for CudaStorage {
    /// A device-to-device copy on the stream.
    fn clone(&self) -> Self {
        let out = CudaStorage::uninit(self.len());
        if !self.is_empty() {
            // SAFETY: both buffers hold len floats.
            unsafe {
                result::memcpy_dtod_async(out.ptr(), self.ptr(), self.len() * 4, rt().stream())
            }
            .unwrap_or_else(|e| panic!("CUDA copy: {e:?}"));
        }
        out
    }
}

impl CudaStorage {
    pub(crate) fn uninit(len: usize) -> Self {
        CudaStorage {
            buf: DeviceBuffer::uninit(len),
        }
    }
    pub fn len(&self) -> usize {
        self.buf.len
    }
    pub fn is_empty(&self) -> bool {
        self.buf.len == 0
    }
    /// Device address of the first value.
    pub(crate) fn ptr(&self) -> u64 {
        self.buf.ptr
    }
    pub(crate) fn zeros(len: usize) -> Self {
        let s = Self::uninit(len);
        if len > 0 {
            // SAFETY: a live buffer of len floats.
            unsafe { result::memset_d8_async(s.ptr(), 0, len * 4, rt().stream()) }
                .unwrap_or_else(|e| panic!("CUDA memset: {e:?}"));
        }
        s
    }
    pub(crate) fn full(len: usize, v: f32) -> Self {
        if v == 0.0 {
            return Self::zeros(len);
        }
        let s = Self::uninit(len);
        let (p, n) = (s.ptr(), len as i64);
        rt().launch_n("elementwise.cu", "fill", len, &[arg(&p), arg(&v), arg(&n)]);
        s
    }
    pub(crate) fn from_host(v: &[f32]) -> Self {
        let s = Self::uninit(v.len());
        if !v.is_empty() {
            // SAFETY: the buffer holds v.len() floats; a pageable source is staged by the
            // driver before the call returns.
            unsafe { result::memcpy_htod_async(s.ptr(), v, rt().stream()) }
                .unwrap_or_else(|e| panic!("CUDA upload: {e:?}"));
        }
        s
    }
    pub(crate) fn to_host(&self) -> Vec<f32> {
        let mut v = vec![0f32; self.len()];
        if !v.is_empty() {
            let r = rt();
            // SAFETY: v holds len floats; the stream is synchronised before v is read.
            unsafe { result::memcpy_dtoh_async(&mut v, self.ptr(), r.stream()) }
                .unwrap_or_else(|e| panic!("CUDA download: {e:?}"));
            r.sync("download");
        }
        v
    }
}

impl crate::backend::BackendStorage for CudaStorage {
    /// The CUDA backend stores f32 only (its kernels are f32).
    fn dtype(&self) -> crate::tensor::DType {
        crate::tensor::DType::F32
    }
    fn len(&self) -> usize {
        CudaStorage::len(self)
    }
}

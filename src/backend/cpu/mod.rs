//! The CPU backend: rayon for data parallelism, the `gemm` crate for matrix products.
//! Every kernel is generic over f32/f64; it is the numerical reference for the CUDA backend.
pub mod affinity;
pub mod coattention;
pub mod conv;
pub mod elementwise;
pub mod layout;
pub mod loss;
pub mod matmul;
pub mod norm;
pub mod pool;
pub mod reduce;
pub mod resize;
pub mod sgd;
pub mod softmax;

/// Host storage, one variant per dtype.
#[derive(Clone, Debug)]
pub enum CpuStorage {
    F32(Vec<f32>),
    F64(Vec<f64>),
}

//! Row-major (batched) GEMMs through cuBLAS's column-major `cublasGemmStridedBatchedEx`, TF32
//! tensor cores when the runtime's switch is on.
use super::runtime::rt;
use cudarc::cublas::{result as cublas_result, sys as cublas_sys};
use cudarc::driver::result;

/// A (batched) row-major GEMM: C[i] = op(A[i]) · op(B[i]) (+ C[i] when accumulating), with
/// op(A) m×k, op(B) k×n, batch strides in elements (0 = shared). Runs as the column-major
/// product Cᵀ = op(B)ᵀ·op(A)ᵀ, so no data is transposed.
pub(crate) struct Gm {
    pub batch: usize,
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub a: u64,
    pub ta: bool,
    pub a_bs: usize,
    pub b: u64,
    pub tb: bool,
    pub b_bs: usize,
    pub c: u64,
    pub c_bs: usize,
}

pub(crate) fn gemm(g: Gm, accumulate: bool) {
    if g.batch == 0 || g.m == 0 || g.n == 0 {
        return;
    }
    let r = rt();
    use cublas_sys::cublasOperation_t::{CUBLAS_OP_N, CUBLAS_OP_T};
    let (op_b, ldb_cm) = if g.tb {
        (CUBLAS_OP_T, g.k)
    } else {
        (CUBLAS_OP_N, g.n)
    };
    let (op_a, lda_cm) = if g.ta {
        (CUBLAS_OP_T, g.m)
    } else {
        (CUBLAS_OP_N, g.k)
    };
    let alpha = 1.0f32;
    let beta = if accumulate { 1.0f32 } else { 0.0 };
    let compute = if r.tf32() {
        cublas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F_FAST_TF32
    } else {
        cublas_sys::cublasComputeType_t::CUBLAS_COMPUTE_32F
    };
    let f32t = cublas_sys::cudaDataType_t::CUDA_R_32F;
    if g.k == 0 {
        if !accumulate {
            // SAFETY: C holds batch·m·n floats at stride m·n (our outputs are contiguous)
            unsafe { result::memset_d8_async(g.c, 0, g.batch * g.m * g.n * 4, r.stream()) }
                .unwrap_or_else(|e| panic!("CUDA memset: {e:?}"));
        }
        return;
    }
    // SAFETY: pointers and strides describe live device buffers of the sizes above.
    r.profiled("cublas_gemm", || unsafe {
        cublas_result::gemm_strided_batched_ex(
            r.cublas(),
            op_b,
            op_a,
            g.n as i32,
            g.m as i32,
            g.k as i32,
            &alpha as *const f32 as *const _,
            g.b as *const _,
            f32t,
            ldb_cm.max(1) as i32,
            g.b_bs as i64,
            g.a as *const _,
            f32t,
            lda_cm.max(1) as i32,
            g.a_bs as i64,
            &beta as *const f32 as *const _,
            g.c as *mut _,
            f32t,
            g.n as i32,
            g.c_bs as i64,
            g.batch as i32,
            compute,
            cublas_sys::cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
        )
        .unwrap_or_else(|e| {
            panic!(
                "cublasGemmStridedBatchedEx ({}×{}×{} ×{}): {e:?}",
                g.m, g.n, g.k, g.batch
            )
        })
    });
    r.sync_if_asked("gemm");
}

/// `Gm` with C contiguous per batch (stride m·n): operands as (pointer, transposed, batch
/// stride), the batch stride 0 for an operand shared by every product.
#[allow(clippy::too_many_arguments)]
pub(crate) fn gm(
    batch: usize,
    m: usize,
    n: usize,
    k: usize,
    a: u64,
    ta: bool,
    a_bs: usize,
    b: u64,
    tb: bool,
    b_bs: usize,
    c: u64,
) -> Gm {
    Gm {
        batch,
        m,
        n,
        k,
        a,
        ta,
        a_bs,
        b,
        tb,
        b_bs,
        c,
        c_bs: m * n,
    }
}

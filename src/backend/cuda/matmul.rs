//! Batched matrix products through cuBLAS (`gemm.rs`).
use super::gemm::{gemm, gm};
use super::storage::CudaStorage;

impl CudaStorage {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn matmul(
        &self,
        rhs: &CudaStorage,
        batch: usize,
        m: usize,
        k: usize,
        n: usize,
        ta: bool,
        tb: bool,
        a_bs: usize,
        b_bs: usize,
    ) -> Self {
        let c = Self::uninit(batch * m * n);
        gemm(
            gm(
                batch,
                m,
                n,
                k,
                self.ptr(),
                ta,
                a_bs,
                rhs.ptr(),
                tb,
                b_bs,
                c.ptr(),
            ),
            false,
        );
        c
    }
}

//! Batched matrix products through cuBLAS (`gemm.rs`).
use super::gemm::{gemm, gm};
use super::storage::CudaStorage;

impl crate::backend::MatmulOps for CudaStorage {
    fn matmul(&self, rhs: &CudaStorage, g: &crate::backend::MatmulGeom) -> Self {
        let crate::backend::MatmulGeom {
            batch,
            m,
            k,
            n,
            ta,
            tb,
            a_batch_stride: a_bs,
            b_batch_stride: b_bs,
        } = *g;
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

//! Bilinear resize (align_corners = false), forward and backward (kernels/resize.cu).
use super::runtime::{arg, rt};
use super::storage::CudaStorage;

impl CudaStorage {
    pub(crate) fn resize_bilinear(
        &self,
        planes: usize,
        h: usize,
        w: usize,
        ho: usize,
        wo: usize,
    ) -> Self {
        let y = Self::uninit(planes * ho * wo);
        resize(self, &y, "resize_bilinear_fwd", [planes, h, w, ho, wo]);
        y
    }
    /// self = dy (planes × ho × wo); atomics into a zeroed dx
    pub(crate) fn resize_bilinear_backward(
        &self,
        planes: usize,
        h: usize,
        w: usize,
        ho: usize,
        wo: usize,
    ) -> Self {
        let dx = Self::zeros(planes * h * w);
        resize(self, &dx, "resize_bilinear_bwd", [planes, h, w, ho, wo]);
        dx
    }
}

/// resize.cu's kernels: one thread per output-size pixel (planes·ho·wo) either way.
pub(super) fn resize(src: &CudaStorage, dst: &CudaStorage, name: &'static str, dims: [usize; 5]) {
    let (sp, dp) = (src.ptr(), dst.ptr());
    let d = dims.map(|v| v as i32);
    rt().launch_n(
        "resize.cu",
        name,
        dims[0] * dims[3] * dims[4],
        &[
            arg(&sp),
            arg(&dp),
            arg(&d[0]),
            arg(&d[1]),
            arg(&d[2]),
            arg(&d[3]),
            arg(&d[4]),
        ],
    );
}

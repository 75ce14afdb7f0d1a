//! Bilinear resize (align_corners = false), forward and backward (kernels/resize.cu).
use super::runtime::{arg, rt};
use super::storage::CudaStorage;
use crate::backend::ResizeGeom;

impl crate::backend::ResizeOps for CudaStorage {
    fn resize_bilinear(&self, g: &ResizeGeom) -> Self {
        let y = Self::uninit(g.planes * g.ho * g.wo);
        resize(self, &y, "resize_bilinear_fwd", g);
        y
    }
    /// self = dy (planes × ho × wo); atomics into a zeroed dx
    fn resize_bilinear_backward(&self, g: &ResizeGeom) -> Self {
        let dx = Self::zeros(g.planes * g.h * g.w);
        resize(self, &dx, "resize_bilinear_bwd", g);
        dx
    }
}

/// resize.cu's kernels: one thread per output-size pixel (planes·ho·wo) either way.
pub(super) fn resize(src: &CudaStorage, dst: &CudaStorage, name: &'static str, g: &ResizeGeom) {
    let (sp, dp) = (src.ptr(), dst.ptr());
    let d = [g.planes, g.h, g.w, g.ho, g.wo].map(|v| v as i32);
    rt().launch_n(
        "resize.cu",
        name,
        g.planes * g.ho * g.wo,
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

//! Max and average pooling, forward and backward (kernels/pool.cu).
use super::runtime::{arg, rt};
use super::storage::CudaStorage;
use crate::backend::Pool2dGeom;

impl crate::backend::PoolOps for CudaStorage {
    fn max_pool2d(&self, g: &Pool2dGeom) -> Self {
        pool(self, None, g, "max_pool_fwd", g.planes * g.ho * g.wo)
    }
    /// self = x
    fn max_pool2d_backward(&self, dy: &CudaStorage, g: &Pool2dGeom) -> Self {
        // the windows' arg-max indices (i32 in a buffer of as many 4-byte values), then the gather
        let idx = pool(self, None, g, "max_pool_argmax", g.planes * g.ho * g.wo);
        pool(&idx, Some(dy), g, "max_pool_bwd", g.planes * g.h * g.w)
    }
    fn avg_pool2d(&self, g: &Pool2dGeom) -> Self {
        pool(self, None, g, "avg_pool_fwd", g.planes * g.ho * g.wo)
    }
    /// self = dy
    fn avg_pool2d_backward(&self, g: &Pool2dGeom) -> Self {
        pool(self, None, g, "avg_pool_bwd", g.planes * g.h * g.w)
    }
}

super::mirrored!(
    /// pool.cu `PoolGeom`
    PoolGeomC = "pool.cu"::"PoolGeom" { planes, h, w, kh, kw, sh, sw, ph, pw, ho, wo }
    from Pool2dGeom
);

pub(super) fn pool(
    x: &CudaStorage,
    dy: Option<&CudaStorage>,
    g: &Pool2dGeom,
    name: &'static str,
    out_len: usize,
) -> CudaStorage {
    let geom = PoolGeomC::from(g);
    let out = CudaStorage::uninit(out_len);
    let (xp, op) = (x.ptr(), out.ptr());
    match dy {
        None => rt().launch_n("pool.cu", name, out_len, &[arg(&xp), arg(&op), arg(&geom)]),
        Some(d) => {
            let dp = d.ptr();
            rt().launch_n(
                "pool.cu",
                name,
                out_len,
                &[arg(&xp), arg(&dp), arg(&op), arg(&geom)],
            )
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_geometry_struct_mirrors_the_kernel_struct() {
        super::super::check_mirror(super::PoolGeomC::MIRROR).unwrap();
    }
}

//! Permute, narrow, concat, flip and the strided copies they share with conv (kernels/layout.cu).
use super::runtime::{arg, rt};
use super::storage::CudaStorage;
use crate::tensor::Shape;

impl crate::backend::LayoutOps for CudaStorage {
    fn permute(&self, shape: &Shape, perm: &[usize]) -> Self {
        let dims = shape.dims();
        let st = shape.strides();
        let out_dims: Vec<usize> = perm.iter().map(|&p| dims[p]).collect();
        let src_st: Vec<i64> = perm.iter().map(|&p| st[p] as i64).collect();
        let dst_st: Vec<i64> = Shape::new(out_dims.clone())
            .strides()
            .iter()
            .map(|&s| s as i64)
            .collect();
        let out = Self::uninit(shape.numel());
        strided_copy(self.ptr(), out.ptr(), &out_dims, &src_st, &dst_st, 0, 0);
        out
    }
    fn narrow(&self, shape: &Shape, axis: usize, start: usize, len: usize) -> Self {
        let (outer, alen, inner) = shape.split_at_axis(axis);
        let out = Self::uninit(outer * len * inner);
        let src = [(alen * inner) as i64, inner as i64, 1];
        let dst = [(len * inner) as i64, inner as i64, 1];
        strided_copy(
            self.ptr(),
            out.ptr(),
            &[outer, len, inner],
            &src,
            &dst,
            (start * inner) as i64,
            0,
        );
        out
    }
    fn concat(parts: &[(&CudaStorage, &Shape)], axis: usize) -> Self {
        let (outer, _, inner) = parts[0].1.split_at_axis(axis);
        let total_axis: usize = parts.iter().map(|(_, s)| s.dim(axis)).sum();
        let out = Self::uninit(outer * total_axis * inner);
        let mut at = 0;
        for (p, s) in parts {
            let l = s.dim(axis);
            let src = [(l * inner) as i64, inner as i64, 1];
            let dst = [(total_axis * inner) as i64, inner as i64, 1];
            strided_copy(
                p.ptr(),
                out.ptr(),
                &[outer, l, inner],
                &src,
                &dst,
                0,
                (at * inner) as i64,
            );
            at += l;
        }
        out
    }
    fn flip(&self, shape: &Shape, axis: usize) -> Self {
        let (outer, alen, inner) = shape.split_at_axis(axis);
        let out = Self::uninit(self.len());
        let src = [(alen * inner) as i64, -(inner as i64), 1];
        let dst = [(alen * inner) as i64, inner as i64, 1];
        let off = (alen.saturating_sub(1) * inner) as i64;
        strided_copy(
            self.ptr(),
            out.ptr(),
            &[outer, alen, inner],
            &src,
            &dst,
            off,
            0,
        );
        out
    }
}

/// layout.cu `Box`
#[repr(C)]
#[derive(Clone, Copy)]
struct LayoutBox {
    dims: [i64; 8],
    src_st: [i64; 8],
    dst_st: [i64; 8],
    rank: i32,
}

/// dst[dst_off + Σ i_k·dst_st_k] = src[src_off + Σ i_k·src_st_k] over the box `dims`
/// (raw device addresses: the layout ops and conv's permutes).
pub(crate) fn strided_copy(
    src: u64,
    dst: u64,
    dims: &[usize],
    src_st: &[i64],
    dst_st: &[i64],
    src_off: i64,
    dst_off: i64,
) {
    assert!(dims.len() <= 8, "CUDA layout op: rank {} > 8", dims.len());
    let mut b = LayoutBox {
        dims: [1; 8],
        src_st: [0; 8],
        dst_st: [0; 8],
        rank: dims.len() as i32,
    };
    for i in 0..dims.len() {
        b.dims[i] = dims[i] as i64;
        b.src_st[i] = src_st[i];
        b.dst_st[i] = dst_st[i];
    }
    let total: usize = dims.iter().product();
    let (s, d, t, acc) = (src, dst, total as i64, 0i32);
    rt().launch_n(
        "layout.cu",
        "strided_copy",
        total,
        &[
            arg(&s),
            arg(&d),
            arg(&b),
            arg(&src_off),
            arg(&dst_off),
            arg(&t),
            arg(&acc),
        ],
    );
}

/// (outer, a, b) → (outer, b, a), tiled through shared memory.
pub(crate) fn swap_last2(x: &CudaStorage, outer: usize, a: usize, b: usize) -> CudaStorage {
    let out = CudaStorage::uninit(x.len());
    if x.is_empty() {
        return out;
    }
    assert!(
        outer < 65_536 && a < (1 << 31) && b < (1 << 31),
        "transpose of {outer}×{a}×{b}"
    );
    let (xp, yp, rows, cols) = (x.ptr(), out.ptr(), a as i32, b as i32);
    let grid = (b.div_ceil(32) as u32, a.div_ceil(32) as u32, outer as u32);
    rt().launch_3d(
        "layout.cu",
        "transpose_tiles",
        grid,
        (32, 8, 1),
        0,
        &[arg(&xp), arg(&yp), arg(&rows), arg(&cols)],
    );
    out
}

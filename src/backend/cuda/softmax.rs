//! Softmax along an axis and its backward (kernels/softmax.cu).
use super::layout::swap_last2;
use super::runtime::{arg, rt};
use super::storage::CudaStorage;

impl crate::backend::SoftmaxOps for CudaStorage {
    fn softmax(&self, outer: usize, len: usize, inner: usize) -> Self {
        if inner == 1 {
            return softmax_rows(self, None, outer, len);
        }
        let t = swap_last2(self, outer, len, inner);
        let y = softmax_rows(&t, None, outer * inner, len);
        swap_last2(&y, outer, inner, len)
    }
    /// self = y
    fn softmax_backward(&self, dy: &CudaStorage, outer: usize, len: usize, inner: usize) -> Self {
        if inner == 1 {
            return softmax_rows(self, Some(dy), outer, len);
        }
        let (y, g) = (
            swap_last2(self, outer, len, inner),
            swap_last2(dy, outer, len, inner),
        );
        let dx = softmax_rows(&y, Some(&g), outer * inner, len);
        swap_last2(&dx, outer, inner, len)
    }
}

/// Row softmax (dy = None) or its backward (self = y, dy given) over `rows × cols`.
pub(crate) fn softmax_rows(
    x: &CudaStorage,
    dy: Option<&CudaStorage>,
    rows: usize,
    cols: usize,
) -> CudaStorage {
    let out = CudaStorage::uninit(rows * cols);
    if rows == 0 || cols == 0 {
        return out;
    }
    let threads = cols.next_power_of_two().clamp(32, 1024) as u32;
    let c32 = cols as i32;
    let (xp, op) = (x.ptr(), out.ptr());
    let r = rt();
    let grid = (rows as u32, 1, 1);
    match dy {
        None => r.launch(
            "softmax.cu",
            "softmax_fwd",
            grid,
            threads,
            threads * 4,
            &[arg(&xp), arg(&op), arg(&c32)],
        ),
        Some(g) => {
            let gp = g.ptr();
            r.launch(
                "softmax.cu",
                "softmax_bwd",
                grid,
                threads,
                threads * 4,
                &[arg(&xp), arg(&gp), arg(&op), arg(&c32)],
            )
        }
    }
    out
}

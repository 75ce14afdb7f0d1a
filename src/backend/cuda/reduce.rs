//! Sums over chosen axes (kernels/reduce.cu).
use super::runtime::{arg, rt};
use super::storage::CudaStorage;
use crate::tensor::Shape;

impl crate::backend::ReduceOps for CudaStorage {
    fn sum_axes(&self, shape: &Shape, axes: &[usize]) -> Self {
        // Reduce one maximal run of adjacent reduced axes at a time, as an (outer, len, inner)
        // view; the dims of a reduced run become 1.
        let mut dims = shape.dims().to_vec();
        let mut red: Vec<bool> = (0..dims.len()).map(|i| axes.contains(&i)).collect();
        let mut cur: Option<CudaStorage> = None;
        while let Some(start) = (0..dims.len()).find(|&i| red[i] && dims[i] > 1) {
            let mut end = start;
            while end + 1 < dims.len() && red[end + 1] {
                end += 1;
            }
            let outer: usize = dims[..start].iter().product();
            let len: usize = dims[start..=end].iter().product();
            let inner: usize = dims[end + 1..].iter().product();
            let src = cur.as_ref().unwrap_or(self);
            cur = Some(sum_middle(src, outer, len, inner));
            for i in start..=end {
                dims[i] = 1;
                red[i] = false;
            }
        }
        cur.unwrap_or_else(|| self.clone())
    }
}

pub(super) fn sum_middle(x: &CudaStorage, outer: usize, len: usize, inner: usize) -> CudaStorage {
    if inner == 1 {
        return sum_rows(x, outer, len);
    }
    let y = CudaStorage::uninit(outer * inner);
    let (xp, yp, o, l, i) = (x.ptr(), y.ptr(), outer as i64, len as i64, inner as i64);
    rt().launch_n(
        "reduce.cu",
        "sum_middle",
        outer * inner,
        &[arg(&xp), arg(&yp), arg(&o), arg(&l), arg(&i)],
    );
    y
}

pub(super) fn sum_rows(x: &CudaStorage, rows: usize, len: usize) -> CudaStorage {
    // Few long rows (a loss over a whole batch, a bias gradient of a wide layer) would leave
    // the GPU nearly idle with one block per row: sum chunks of each row first.
    const CHUNK: usize = 16_384;
    if rows < 1024 && len > 2 * CHUNK && rows < 65_536 {
        let parts = len.div_ceil(CHUNK);
        let part = CudaStorage::uninit(rows * parts);
        let (xp, pp, l, ch) = (x.ptr(), part.ptr(), len as i64, CHUNK as i64);
        rt().launch(
            "reduce.cu",
            "sum_row_chunks",
            (parts as u32, rows as u32, 1),
            256,
            0,
            &[arg(&xp), arg(&pp), arg(&l), arg(&ch)],
        );
        return sum_rows(&part, rows, parts);
    }
    let y = CudaStorage::uninit(rows);
    let (xp, yp, l) = (x.ptr(), y.ptr(), len as i64);
    // one block per row; rows beyond the grid limit are not expected (sums are over outputs)
    assert!(rows < (1 << 31), "sum_rows: {rows} rows");
    rt().launch(
        "reduce.cu",
        "sum_rows",
        (rows as u32, 1, 1),
        256,
        0,
        &[arg(&xp), arg(&yp), arg(&l)],
    );
    y
}

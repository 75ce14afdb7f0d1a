//! Sum over a set of axes (keepdim layout). Accumulates in f64 so the f32 reference is accurate.
use crate::tensor::{Float, Shape};
use rayon::prelude::*;

pub fn sum_axes<T: Float>(x: &[T], shape: &Shape, axes: &[usize]) -> Vec<T> {
    let dims = shape.dims();
    let strides = shape.strides();
    let mut out_dims = dims.to_vec();
    for &a in axes {
        out_dims[a] = 1;
    }
    let out_shape = Shape::new(out_dims.clone());
    let kept: Vec<usize> = (0..dims.len()).filter(|a| !axes.contains(a)).collect();
    let red_dims: Vec<usize> = axes.iter().map(|&a| dims[a]).collect();
    let red_strides: Vec<usize> = axes.iter().map(|&a| strides[a]).collect();
    let red_count: usize = red_dims.iter().product();
    let n_out = out_shape.numel();
    let one = |o: usize| -> T {
        // base offset of this output element in the input
        let mut rem = o;
        let mut base = 0;
        for &ax in kept.iter().rev() {
            let idx = rem % out_dims[ax];
            rem /= out_dims[ax];
            base += idx * strides[ax];
        }
        let mut acc = 0f64;
        let mut idx = vec![0usize; red_dims.len()];
        for _ in 0..red_count {
            let off: usize = idx.iter().zip(&red_strides).map(|(i, s)| i * s).sum();
            acc += x[base + off].as_f64();
            for k in (0..idx.len()).rev() {
                idx[k] += 1;
                if idx[k] < red_dims[k] {
                    break;
                }
                idx[k] = 0;
            }
        }
        T::of(acc)
    };
    if n_out * red_count >= super::elementwise::PAR_MIN {
        (0..n_out).into_par_iter().map(one).collect()
    } else {
        (0..n_out).map(one).collect()
    }
}

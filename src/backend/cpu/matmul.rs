//! Matrix products through the `gemm` crate; transposes are expressed as strides.
use crate::tensor::Float;
use gemm::Parallelism;
use rayon::prelude::*;

/// Work below which one gemm call runs on one thread.
const PAR_FLOPS: usize = 1 << 21;

pub fn parallelism(m: usize, n: usize, k: usize) -> Parallelism {
    if m * n * k >= PAR_FLOPS {
        Parallelism::Rayon(rayon::current_num_threads())
    } else {
        Parallelism::None
    }
}

/// out (m×n, row-major) = [out +] op(a) · op(b), where op(a) is m×k and op(b) is k×n.
/// `ta`: a is stored k×m; `tb`: b is stored n×k.
pub fn gemm_into<T: Float>(
    out: &mut [T],
    a: &[T],
    b: &[T],
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
    accumulate: bool,
    par: Parallelism,
) {
    debug_assert!(out.len() >= m * n && a.len() >= m * k && b.len() >= k * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out[..m * n].fill(T::zero());
        }
        return;
    }
    let (a_rs, a_cs) = if ta { (1, m as isize) } else { (k as isize, 1) };
    let (b_rs, b_cs) = if tb { (1, k as isize) } else { (n as isize, 1) };
    // SAFETY: the slices hold at least m×k, k×n and m×n elements (checked above), and the
    // strides describe exactly those row-major layouts.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            par,
        );
    }
}

/// Batched product; a batch stride of 0 broadcasts that operand over the batch.
pub fn batched<T: Float>(
    a: &[T],
    b: &[T],
    batch: usize,
    m: usize,
    k: usize,
    n: usize,
    ta: bool,
    tb: bool,
    a_bs: usize,
    b_bs: usize,
) -> Vec<T> {
    let mut out = vec![T::zero(); batch * m * n];
    if m * n == 0 {
        return out;
    }
    let one = |(i, o): (usize, &mut [T]), par| {
        gemm_into(
            o,
            &a[i * a_bs..],
            &b[i * b_bs..],
            m,
            k,
            n,
            ta,
            tb,
            false,
            par,
        )
    };
    if batch > 1 && m * n * k < PAR_FLOPS {
        out.par_chunks_mut(m * n)
            .enumerate()
            .for_each(|x| one(x, Parallelism::None));
    } else {
        let par = parallelism(m, n, k);
        out.chunks_mut(m * n).enumerate().for_each(|x| one(x, par));
    }
    out
}

impl crate::backend::MatmulOps for super::CpuStorage {
    fn matmul(&self, rhs: &Self, g: &crate::backend::MatmulGeom) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(batched(
                self.slice::<T>(),
                rhs.slice::<T>(),
                g.batch,
                g.m,
                g.k,
                g.n,
                g.ta,
                g.tb,
                g.a_batch_stride,
                g.b_batch_stride,
            ))
        })
    }
}

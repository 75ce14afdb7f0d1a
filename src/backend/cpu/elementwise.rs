//! Unary and broadcasting binary element-wise kernels.
use crate::backend::{BinaryOp, UnaryOp};
use crate::tensor::{Float, Shape};
use rayon::prelude::*;

/// Below this many elements the rayon split costs more than it saves.
pub(crate) const PAR_MIN: usize = 1 << 14;

#[inline]
fn unary_one<T: Float>(op: UnaryOp, x: T) -> T {
    match op {
        UnaryOp::Neg => -x,
        // NaN passes through, as PyTorch's ReLU (max(x, 0) would hide it as 0)
        UnaryOp::Relu => {
            if x < T::zero() {
                T::zero()
            } else {
                x
            }
        }
        UnaryOp::Sigmoid => sigmoid(x),
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Sqr => x * x,
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Recip => x.recip(),
        UnaryOp::Abs => x.abs(),
        UnaryOp::Affine { mul, add } => x * T::of(mul) + T::of(add),
        UnaryOp::Powf(p) => x.powf(T::of(p)),
    }
}

/// Numerically stable logistic function (no overflow for large |x|).
#[inline]
pub(crate) fn sigmoid<T: Float>(x: T) -> T {
    if x >= T::zero() {
        T::one() / (T::one() + (-x).exp())
    } else {
        let e = x.exp();
        e / (T::one() + e)
    }
}

#[inline]
fn binary_one<T: Float>(op: BinaryOp, a: T, b: T) -> T {
    match op {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Maximum => a.max(b),
        BinaryOp::Minimum => a.min(b),
        BinaryOp::ReluGrad => {
            if b > T::zero() {
                a
            } else {
                T::zero()
            }
        }
        BinaryOp::SigmoidGrad => a * b * (T::one() - b),
    }
}

pub fn unary<T: Float>(op: UnaryOp, x: &[T]) -> Vec<T> {
    if x.len() >= PAR_MIN {
        x.par_iter().map(|&v| unary_one(op, v)).collect()
    } else {
        x.iter().map(|&v| unary_one(op, v)).collect()
    }
}

/// out[i] = op(a[bcast i], b[bcast i]) over `out_shape` (NumPy broadcasting).
pub fn binary<T: Float>(
    op: BinaryOp,
    a: &[T],
    sa: &Shape,
    b: &[T],
    sb: &Shape,
    out: &Shape,
) -> Vec<T> {
    let n = out.numel();
    if sa == out && sb == out {
        return if n >= PAR_MIN {
            a.par_iter()
                .zip(b.par_iter())
                .map(|(&x, &y)| binary_one(op, x, y))
                .collect()
        } else {
            a.iter()
                .zip(b)
                .map(|(&x, &y)| binary_one(op, x, y))
                .collect()
        };
    }
    if n == 0 {
        return Vec::new();
    }
    // General case: rows over the last axis, each row walks a and b with their own strides.
    let r = out.rank();
    let stra = sa.broadcast_strides(out);
    let strb = sb.broadcast_strides(out);
    let last = if r == 0 { 1 } else { out.dims()[r - 1] };
    let (la, lb) = if r == 0 {
        (0, 0)
    } else {
        (stra[r - 1], strb[r - 1])
    };
    let rows = n / last;
    let outer_dims = if r == 0 {
        &[][..]
    } else {
        &out.dims()[..r - 1]
    };
    let mut res = vec![T::zero(); n];
    let row = |(ri, dst): (usize, &mut [T])| {
        let (mut oa, mut ob, mut rem) = (0usize, 0usize, ri);
        for ax in (0..outer_dims.len()).rev() {
            let idx = rem % outer_dims[ax];
            rem /= outer_dims[ax];
            oa += idx * stra[ax];
            ob += idx * strb[ax];
        }
        for (j, d) in dst.iter_mut().enumerate() {
            *d = binary_one(op, a[oa + j * la], b[ob + j * lb]);
        }
    };
    if n >= PAR_MIN {
        res.par_chunks_mut(last).enumerate().for_each(row);
    } else {
        res.chunks_mut(last).enumerate().for_each(row);
    }
    let _ = rows;
    res
}

impl crate::backend::ElementwiseOps for super::CpuStorage {
    fn unary(&self, op: UnaryOp) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(unary(op, self.slice::<T>()))
        })
    }
    fn binary(&self, op: BinaryOp, sa: &Shape, rhs: &Self, sb: &Shape, out: &Shape) -> Self {
        super::with_dtype!(self.dtype(), {
            Self::from_vec(binary(op, self.slice::<T>(), sa, rhs.slice::<T>(), sb, out))
        })
    }
}

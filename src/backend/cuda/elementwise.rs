//! Element-wise unary and broadcasting binary ops (kernels/elementwise.cu).
use super::runtime::{arg, rt};
use super::storage::CudaStorage;
use crate::backend::{BinaryOp, UnaryOp};
use crate::tensor::Shape;

impl crate::backend::ElementwiseOps for CudaStorage {
    fn unary(&self, op: UnaryOp) -> Self {
        let out = Self::uninit(self.len());
        let (x, y, n) = (self.ptr(), out.ptr(), self.len() as i64);
        let r = rt();
        let simple = |name| {
            r.launch_n(
                "elementwise.cu",
                name,
                self.len(),
                &[arg(&x), arg(&y), arg(&n)],
            )
        };
        let affine = |mul: f64, add: f64| {
            let (m, a) = (mul as f32, add as f32);
            r.launch_n(
                "elementwise.cu",
                "affine_fwd",
                self.len(),
                &[arg(&x), arg(&y), arg(&m), arg(&a), arg(&n)],
            )
        };
        match op {
            UnaryOp::Neg => affine(-1.0, 0.0),
            UnaryOp::Relu => simple("relu_fwd"),
            UnaryOp::Sigmoid => simple("sigmoid_fwd"),
            UnaryOp::Exp => simple("exp_fwd"),
            UnaryOp::Log => simple("log_fwd"),
            UnaryOp::Sqr => simple("sqr_fwd"),
            UnaryOp::Sqrt => simple("sqrt_fwd"),
            UnaryOp::Recip => simple("recip_fwd"),
            UnaryOp::Abs => simple("abs_fwd"),
            UnaryOp::Affine { mul, add } => affine(mul, add),
            UnaryOp::Powf(p) => {
                let p = p as f32;
                r.launch_n(
                    "elementwise.cu",
                    "powf_fwd",
                    self.len(),
                    &[arg(&x), arg(&y), arg(&p), arg(&n)],
                )
            }
        }
        out
    }

    fn binary(&self, op: BinaryOp, sa: &Shape, rhs: &CudaStorage, sb: &Shape, out: &Shape) -> Self {
        let name = match op {
            BinaryOp::Add => "add_fwd",
            BinaryOp::Sub => "sub_fwd",
            BinaryOp::Mul => "mul_fwd",
            BinaryOp::Div => "div_fwd",
            BinaryOp::Maximum => "maximum_fwd",
            BinaryOp::Minimum => "minimum_fwd",
            BinaryOp::ReluGrad => "relu_grad",
            BinaryOp::SigmoidGrad => "sigmoid_grad",
        };
        let o = Self::uninit(out.numel());
        let bc = Bcast::new(sa, sb, out);
        let (a, b, y, n) = (self.ptr(), rhs.ptr(), o.ptr(), out.numel() as i64);
        rt().launch_n(
            "elementwise.cu",
            name,
            out.numel(),
            &[arg(&a), arg(&b), arg(&y), arg(&bc), arg(&n)],
        );
        o
    }
}

/// The kernels' broadcast description (elementwise.cu `Bcast`): output dims and the operands'
/// strides over at most 6 axes, after dropping size-1 axes and merging axes that stay
/// contiguous in both operands.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
struct Bcast {
    d: [i64; BCAST_RANK],
    sa: [i64; BCAST_RANK],
    sb: [i64; BCAST_RANK],
    nd: i32,
}
const BCAST_RANK: usize = 6;

impl Bcast {
    fn new(sa: &Shape, sb: &Shape, out: &Shape) -> Bcast {
        let (a_st, b_st) = (sa.broadcast_strides(out), sb.broadcast_strides(out));
        let mut axes: Vec<(i64, i64, i64)> = Vec::new();
        for (i, &d) in out.dims().iter().enumerate() {
            if d == 1 {
                continue;
            }
            let (x, y) = (a_st[i] as i64, b_st[i] as i64);
            if let Some(last) = axes.last_mut() {
                // merge with the previous axis when both operands step through them as one
                if last.1 == x * d as i64 && last.2 == y * d as i64 {
                    *last = (last.0 * d as i64, x, y);
                    continue;
                }
            }
            axes.push((d as i64, x, y));
        }
        assert!(
            axes.len() <= BCAST_RANK,
            "CUDA binary op: broadcast {sa:?} with {sb:?} needs {} axes (at most {BCAST_RANK})",
            axes.len()
        );
        let mut bc = Bcast {
            d: [1; BCAST_RANK],
            sa: [0; BCAST_RANK],
            sb: [0; BCAST_RANK],
            nd: axes.len() as i32,
        };
        let off = BCAST_RANK - axes.len();
        for (j, (d, x, y)) in axes.into_iter().enumerate() {
            bc.d[off + j] = d;
            bc.sa[off + j] = x;
            bc.sb[off + j] = y;
        }
        bc
    }
}

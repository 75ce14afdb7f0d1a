//! Element-wise ops with NumPy broadcasting.
use super::{finish, plain};
use crate::backend::{check_same, BinaryOp, UnaryOp};
use crate::error::Result;
use crate::tensor::{Shape, Tensor};

impl Tensor {
    fn unary(
        &self,
        op: UnaryOp,
        bw: impl FnOnce(&Tensor, &Tensor, &Tensor) -> Result<Tensor> + 'static,
    ) -> Tensor {
        // one operand: nothing to mismatch, and the unary kernels cannot fail
        let s = self
            .storage()
            .unary(op)
            .expect("a unary op has one operand");
        let x = self.clone();
        finish(s, self.shape().clone(), &[self], move |g, y, _| {
            Ok(vec![Some(bw(&x, y, g)?)])
        })
    }
    pub fn relu(&self) -> Tensor {
        self.unary(UnaryOp::Relu, |x, _, g| g.binary_raw(BinaryOp::ReluGrad, x))
    }
    pub fn sigmoid(&self) -> Tensor {
        self.unary(UnaryOp::Sigmoid, |_, y, g| {
            g.binary_raw(BinaryOp::SigmoidGrad, y)
        })
    }
    pub fn exp(&self) -> Tensor {
        self.unary(UnaryOp::Exp, |_, y, g| g.mul(y))
    }
    pub fn log(&self) -> Tensor {
        self.unary(UnaryOp::Log, |x, _, g| g.div(x))
    }
    pub fn neg(&self) -> Tensor {
        self.unary(UnaryOp::Neg, |_, _, g| Ok(g.neg()))
    }
    pub fn sqr(&self) -> Tensor {
        self.unary(UnaryOp::Sqr, |x, _, g| g.mul(&x.affine(2.0, 0.0)))
    }
    pub fn sqrt(&self) -> Tensor {
        self.unary(UnaryOp::Sqrt, |_, y, g| g.div(&y.affine(2.0, 0.0)))
    }
    pub fn recip(&self) -> Tensor {
        self.unary(UnaryOp::Recip, |_, y, g| Ok(g.mul(&y.sqr())?.neg()))
    }
    pub fn powf(&self, p: f64) -> Tensor {
        self.unary(UnaryOp::Powf(p), move |x, _, g| {
            g.mul(&x.powf(p - 1.0).affine(p, 0.0))
        })
    }
    /// x·mul + add
    pub fn affine(&self, mul: f64, add: f64) -> Tensor {
        self.unary(UnaryOp::Affine { mul, add }, move |_, _, g| {
            Ok(g.affine(mul, 0.0))
        })
    }
    pub fn mul_scalar(&self, s: f64) -> Tensor {
        self.affine(s, 0.0)
    }
    pub fn add_scalar(&self, s: f64) -> Tensor {
        self.affine(1.0, s)
    }

    /// Broadcasting binary op without recording (backward passes and non-differentiable uses).
    pub(crate) fn binary_raw(&self, op: BinaryOp, rhs: &Tensor) -> Result<Tensor> {
        check_same("binary", &[&self.storage(), &rhs.storage()])?;
        let out = Shape::broadcast(self.shape(), rhs.shape(), "binary")?;
        let s = self
            .storage()
            .binary(op, self.shape(), &rhs.storage(), rhs.shape(), &out)?;
        Ok(plain(s, out))
    }

    fn binary(
        &self,
        op: BinaryOp,
        rhs: &Tensor,
        bw: impl FnOnce(&Tensor, &Tensor, &Tensor, &[bool]) -> Result<(Option<Tensor>, Option<Tensor>)>
            + 'static,
    ) -> Result<Tensor> {
        check_same("binary", &[&self.storage(), &rhs.storage()])?;
        let out = Shape::broadcast(self.shape(), rhs.shape(), "binary")?;
        let s = self
            .storage()
            .binary(op, self.shape(), &rhs.storage(), rhs.shape(), &out)?;
        let (a, b) = (self.clone(), rhs.clone());
        Ok(finish(s, out, &[self, rhs], move |g, _, needs| {
            let (ga, gb) = bw(&a, &b, g, needs)?;
            let ga = ga.map(|t| t.sum_to(a.shape())).transpose()?;
            let gb = gb.map(|t| t.sum_to(b.shape())).transpose()?;
            Ok(vec![ga, gb])
        }))
    }
    pub fn add(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Add, rhs, |_, _, g, n| {
            Ok((n[0].then(|| g.clone()), n[1].then(|| g.clone())))
        })
    }
    pub fn sub(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Sub, rhs, |_, _, g, n| {
            Ok((n[0].then(|| g.clone()), n[1].then(|| g.neg())))
        })
    }
    pub fn mul(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Mul, rhs, |a, b, g, n| {
            Ok((
                if n[0] { Some(g.mul(b)?) } else { None },
                if n[1] { Some(g.mul(a)?) } else { None },
            ))
        })
    }
    pub fn div(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary(BinaryOp::Div, rhs, |a, b, g, n| {
            let ga = if n[0] { Some(g.div(b)?) } else { None };
            let gb = if n[1] {
                Some(g.mul(a)?.div(&b.sqr())?.neg())
            } else {
                None
            };
            Ok((ga, gb))
        })
    }
    /// Element-wise maximum (not differentiable: used for clamping in inference code).
    pub fn maximum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary_raw(BinaryOp::Maximum, rhs)
    }
    pub fn minimum(&self, rhs: &Tensor) -> Result<Tensor> {
        self.binary_raw(BinaryOp::Minimum, rhs)
    }

    /// Sums a broadcast gradient back down to `shape` (the inverse of broadcasting).
    pub(crate) fn sum_to(&self, shape: &Shape) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        let r = self.rank();
        let lead = r - shape.rank();
        let axes: Vec<usize> = (0..r)
            .filter(|&i| i < lead || (shape.dim(i - lead) == 1 && self.dims()[i] != 1))
            .collect();
        self.sum_axes(&axes, true)?.reshape(shape.dims())
    }
}

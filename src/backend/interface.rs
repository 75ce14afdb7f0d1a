//! The op interface every backend storage implements, one trait per op family (candle's
//! `BackendStorage`, split so that `kernels/<family>.cu`, `cpu/<family>.rs` and
//! `cuda/<family>.rs` line up: each backend implements a family's trait in its family file).
//! The kernels behind these traits cannot fail on valid input: `crate::ops` checks shapes,
//! dtypes and devices first, and `Storage` (mod.rs) turns a device mismatch into an error.
//! A CUDA launch failure panics with the kernel's name, as a driver fault would.
use super::{BinaryOp, CoattSaved, Conv2dGeom, Pool2dGeom, SgdHyper, UnaryOp};
use crate::tensor::{DType, Shape};

/// Element-wise unary ops and broadcasting binary ops.
pub trait ElementwiseOps: Sized {
    fn unary(&self, op: UnaryOp) -> Self;
    /// `self` of shape `sa` with `rhs` of shape `sb`, broadcast to `out`.
    fn binary(&self, op: BinaryOp, sa: &Shape, rhs: &Self, sb: &Shape, out: &Shape) -> Self;
}

pub trait ReduceOps: Sized {
    /// The sum over `axes` of a tensor of `shape` (the axes kept with size 1 in the layout).
    fn sum_axes(&self, shape: &Shape, axes: &[usize]) -> Self;
}

/// The sizes of one batched matrix product C = op(A)·op(B): `batch` products of (m × k)·(k × n),
/// A transposed when `ta` (then stored k × m), B when `tb`; a batch stride of 0 broadcasts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MatmulGeom {
    pub batch: usize,
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub ta: bool,
    pub tb: bool,
    pub a_batch_stride: usize,
    pub b_batch_stride: usize,
}

pub trait MatmulOps: Sized {
    /// self = A.
    fn matmul(&self, rhs: &Self, g: &MatmulGeom) -> Self;
}

/// Softmax over the middle axis of an (outer, len, inner) layout.
pub trait SoftmaxOps: Sized {
    fn softmax(&self, outer: usize, len: usize, inner: usize) -> Self;
    /// self = y (the forward's output).
    fn softmax_backward(&self, dy: &Self, outer: usize, len: usize, inner: usize) -> Self;
}

pub trait ConvOps: Sized {
    /// The conv's output, with a ReLU applied when `relu` (NaN passes through, as PyTorch's).
    fn conv2d(&self, w: &Self, bias: Option<&Self>, g: &Conv2dGeom, relu: bool) -> Self;
    /// self = dy.
    fn conv2d_backward_input(&self, w: &Self, g: &Conv2dGeom) -> Self;
    /// self = dy.
    fn conv2d_backward_weight(&self, x: &Self, g: &Conv2dGeom) -> Self;
}

pub trait PoolOps: Sized {
    fn max_pool2d(&self, g: &Pool2dGeom) -> Self;
    /// self = x (the arg-max is recomputed, not stored).
    fn max_pool2d_backward(&self, dy: &Self, g: &Pool2dGeom) -> Self;
    fn avg_pool2d(&self, g: &Pool2dGeom) -> Self;
    /// self = dy.
    fn avg_pool2d_backward(&self, g: &Pool2dGeom) -> Self;
}

/// Bilinear resizing of `planes` planes h × w → ho × wo (align_corners = false).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ResizeGeom {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub ho: usize,
    pub wo: usize,
}

pub trait ResizeOps: Sized {
    fn resize_bilinear(&self, g: &ResizeGeom) -> Self;
    /// self = dy.
    fn resize_bilinear_backward(&self, g: &ResizeGeom) -> Self;
}

pub trait LayoutOps: Sized {
    fn permute(&self, shape: &Shape, perm: &[usize]) -> Self;
    fn narrow(&self, shape: &Shape, axis: usize, start: usize, len: usize) -> Self;
    fn concat(parts: &[(&Self, &Shape)], axis: usize) -> Self;
    fn flip(&self, shape: &Shape, axis: usize) -> Self;
}

/// The layout of one batch norm: `n` images of `c` channels of `hw` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BatchNormGeom {
    pub n: usize,
    pub c: usize,
    pub hw: usize,
}

/// Batch norm in training mode, with the ReLU that follows it fused in when asked.
pub trait NormOps: Sized {
    /// Returns (y, mean, invstd, biased var), the statistics per channel; y = max(bn(x), 0)
    /// when `relu` (NaN passes through).
    fn batch_norm_train(
        &self,
        gamma: &Self,
        beta: &Self,
        g: &BatchNormGeom,
        eps: f64,
        relu: bool,
    ) -> (Self, Self, Self, Self);
    /// self = x; returns (dx, dγ, dβ). `relu_out`: the forward's output when it applied the
    /// ReLU (dy counts only where it is > 0).
    fn batch_norm_backward(
        &self,
        dy: &Self,
        gamma: &Self,
        mean: &Self,
        invstd: &Self,
        relu_out: Option<&Self>,
        g: &BatchNormGeom,
    ) -> (Self, Self, Self);
}

/// The size of one pixel-wise cross entropy: `b` images, `k` classes, `hw` pixels, the label
/// `ignore` left out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CrossEntropyGeom {
    pub b: usize,
    pub k: usize,
    pub hw: usize,
    pub ignore: usize,
}

pub trait LossOps: Sized {
    /// The mean binary cross entropy of logits self against targets (a one-value storage).
    fn bce_logits_mean(&self, target: &Self) -> Self;
    /// self = logits; `g` is the upstream gradient of the scalar loss (one value).
    fn bce_logits_mean_backward(&self, target: &Self, g: &Self) -> Self;
    /// Returns (loss sum, counted pixels); Err(label) for a label outside 0..k that is not
    /// `ignore`.
    fn cross_entropy(
        &self,
        labels: &Self,
        g: &CrossEntropyGeom,
    ) -> std::result::Result<(f64, usize), f64>;
    /// self = logits; the mean over `count` pixels, times the upstream gradient `grad`.
    fn cross_entropy_backward(
        &self,
        labels: &Self,
        g: &CrossEntropyGeom,
        count: usize,
        grad: &Self,
    ) -> Self;
}

/// The sizes of one co-attention: `b` pairs of features Fm (c × n) and Fn (c × m).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoattGeom {
    pub b: usize,
    pub c: usize,
    pub n: usize,
    pub m: usize,
}

pub trait CoattentionOps: Sized {
    /// self = Fm; returns (Fm∩, Fn∩) and, when `keep` asks for it and the backend keeps any,
    /// what the backward can reuse instead of recomputing (the GPU keeps Q and both softmaxes;
    /// the CPU recomputes, to hold no N×M matrix between the passes).
    fn coattention(
        &self,
        fnn: &Self,
        w: &Self,
        g: &CoattGeom,
        keep: bool,
    ) -> (Self, Self, Option<CoattSaved>);
    /// self = Fm; returns (dFm, dFn, dW).
    #[allow(clippy::too_many_arguments)]
    fn coattention_backward(
        &self,
        fnn: &Self,
        w: &Self,
        g_fm: &Self,
        g_fn: &Self,
        g: &CoattGeom,
        saved: Option<&CoattSaved>,
    ) -> (Self, Self, Self);
}

pub trait SgdOps: Sized {
    /// In-place SGD step on self (the parameter) with PyTorch's semantics.
    fn sgd_step(&mut self, grad: &Self, buf: &mut Self, h: &SgdHyper, first: bool);
}

/// Everything one backend's storage does: its families of ops, its dtype and length.
pub trait BackendStorage:
    Clone
    + std::fmt::Debug
    + ElementwiseOps
    + ReduceOps
    + MatmulOps
    + SoftmaxOps
    + ConvOps
    + PoolOps
    + ResizeOps
    + LayoutOps
    + NormOps
    + LossOps
    + CoattentionOps
    + SgdOps
{
    fn dtype(&self) -> DType;
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// An op that brings its own kernels (candle's `CustomOp`): its CPU code, its CUDA launches
/// and its backward live in one file under `crate::ops`, its kernels in `kernels/<name>.cu`
/// (embedded by build.rs), so a new op family touches no file of the backend.
/// `Storage::apply_custom` checks that the inputs share a device and calls one of the two.
pub trait CustomOp {
    fn name(&self) -> &'static str;
    fn cpu_fwd(&self, inputs: &[&super::CpuStorage]) -> super::CpuStorage;
    fn cuda_fwd(&self, inputs: &[&super::CudaStorage]) -> super::CudaStorage;
}

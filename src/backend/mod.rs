//! The backends and the one storage type the layers above hold. The op interface is
//! `interface.rs` (one trait per op family, implemented by [`CpuStorage`] in `cpu/` and by
//! [`CudaStorage`] in `cuda/`); [`Storage`] holds either and dispatches each op to the backend
//! its operands live on, a device mismatch being an error. Ops that bring their own kernels
//! implement [`CustomOp`] instead (`crate::ops::affinity`). The CPU backend is the numerical
//! reference.
pub mod cpu;
pub mod cuda;
mod interface;

pub use interface::*;

use crate::error::{Error, Result};
use crate::tensor::{DType, Float, Shape};
pub use cpu::CpuStorage;
pub use cuda::CudaStorage;

/// Hyper-parameters of one SGD update (one parameter group at one step), as the backends'
/// update kernels take them (`optim` builds them).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdHyper {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

/// What a backend keeps from the co-attention forward for its backward: opaque to the layers
/// above, and only the backend that made it knows its type (the CUDA backend keeps its
/// softmax rows; the CPU one keeps nothing).
pub struct CoattSaved(Box<dyn std::any::Any>);

impl CoattSaved {
    pub fn new<T: 'static>(kept: T) -> Self {
        CoattSaved(Box::new(kept))
    }
    pub fn downcast_ref<T: 'static>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }
}

/// Where a tensor lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    /// GPU 0 through the CUDA backend (f32 only); start it with `cuda::init()` first.
    Cuda,
}

impl Device {
    /// Waits until the device has finished the queued work (GPU work is asynchronous: a host
    /// clock read right after queueing a step would time the launches, not the step).
    pub fn synchronize(self) {
        if self == Device::Cuda {
            cuda::synchronize();
        }
    }
}

/// Backend storage of one tensor (contiguous, row-major).
#[derive(Clone, Debug)]
pub enum Storage {
    Cpu(CpuStorage),
    Cuda(CudaStorage),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryOp {
    Neg,
    Relu,
    Sigmoid,
    Exp,
    Log,
    Sqr,
    Sqrt,
    Recip,
    Abs,
    /// x·mul + add
    Affine {
        mul: f64,
        add: f64,
    },
    Powf(f64),
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Maximum,
    Minimum,
    /// lhs where rhs > 0, else 0 (ReLU backward: lhs = dy, rhs = x)
    ReluGrad,
    /// lhs·rhs·(1 − rhs) (sigmoid backward: lhs = dy, rhs = y)
    SigmoidGrad,
}

/// Every size of one conv2d call (NCHW input, OIHW weight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dGeom {
    pub n: usize,
    pub cin: usize,
    pub h: usize,
    pub w: usize,
    pub cout: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub dh: usize,
    pub dw: usize,
    pub ho: usize,
    pub wo: usize,
}

/// Every size of one pooling call over `planes` = N·C independent planes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool2dGeom {
    pub planes: usize,
    pub h: usize,
    pub w: usize,
    pub kh: usize,
    pub kw: usize,
    pub sh: usize,
    pub sw: usize,
    pub ph: usize,
    pub pw: usize,
    pub ho: usize,
    pub wo: usize,
}

/// Runs one op on the backend `$s` lives on: `$body` is written once and compiled for each
/// backend (it calls the family traits of `interface.rs`); every storage named in `[..]` is
/// rebound to the same backend's storage, or the op fails with a device mismatch.
/// `$wrap => $body` hands the body the variant's constructor for ops with several outputs.
macro_rules! dispatch {
    ($op:literal, $s:ident = $self:expr, [$($o:ident),*], $wrap:ident => $body:expr) => {
        match $self {
            Storage::Cpu($s) => {
                $(let $o = $o.cpu_of($op)?;)*
                let $wrap = Storage::Cpu;
                Ok(cpu::profile::timed($op, || $body))
            }
            Storage::Cuda($s) => {
                $(let $o = $o.cuda_of($op)?;)*
                let $wrap = Storage::Cuda;
                Ok($body)
            }
        }
    };
    ($op:literal, $s:ident = $self:expr, [$($o:ident),*], $body:expr) => {
        dispatch!($op, $s = $self, [$($o),*], wrap => wrap($body))
    };
}

impl Storage {
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Cuda(_) => Device::Cuda,
        }
    }
    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(s) => s.dtype(),
            Storage::Cuda(s) => BackendStorage::dtype(s),
        }
    }
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(s) => s.len(),
            Storage::Cuda(s) => s.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// This storage as an operand of a CPU op.
    fn cpu_of(&self, op: &'static str) -> Result<&CpuStorage> {
        match self {
            Storage::Cpu(s) => Ok(s),
            Storage::Cuda(_) => Err(Error::device(op, Device::Cpu, Device::Cuda)),
        }
    }
    /// This storage as an operand of a CUDA op.
    fn cuda_of(&self, op: &'static str) -> Result<&CudaStorage> {
        match self {
            Storage::Cuda(s) => Ok(s),
            Storage::Cpu(_) => Err(Error::device(op, Device::Cuda, Device::Cpu)),
        }
    }

    pub fn zeros(n: usize, dtype: DType, device: Device) -> Storage {
        Self::full(n, 0.0, dtype, device)
    }
    pub fn full(n: usize, v: f64, dtype: DType, device: Device) -> Storage {
        match device {
            Device::Cpu => cpu::with_dtype!(dtype, {
                Storage::Cpu(CpuStorage::from_vec(vec![T::of(v); n]))
            }),
            Device::Cuda => {
                cuda_f32_only(dtype);
                Storage::Cuda(CudaStorage::full(n, v as f32))
            }
        }
    }
    pub fn from_host<T: Float>(v: Vec<T>, device: Device) -> Storage {
        match device {
            Device::Cpu => Storage::Cpu(CpuStorage::from_vec(v)),
            Device::Cuda => {
                cuda_f32_only(T::DTYPE);
                Storage::Cuda(CudaStorage::from_host(bytemuck::cast_slice::<T, f32>(&v)))
            }
        }
    }
    pub fn to_host_f64(&self) -> Vec<f64> {
        match self {
            Storage::Cpu(s) => s.to_f64_vec(),
            Storage::Cuda(s) => s.to_host().into_iter().map(f64::from).collect(),
        }
    }
    /// A copy on another device (the same storage when it is already there).
    pub fn to_device(&self, device: Device) -> Storage {
        match (self, device) {
            (Storage::Cpu(_), Device::Cpu) | (Storage::Cuda(_), Device::Cuda) => self.clone(),
            (Storage::Cuda(s), Device::Cpu) => Storage::Cpu(CpuStorage::from_vec(s.to_host())),
            (Storage::Cpu(s), Device::Cuda) => {
                cuda_f32_only(s.dtype());
                Storage::Cuda(CudaStorage::from_host(s.slice::<f32>()))
            }
        }
    }
    /// The raw values, little-endian, in the storage's own dtype (what safetensors stores).
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            Storage::Cpu(CpuStorage::F32(v)) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Storage::Cpu(CpuStorage::F64(v)) => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
            Storage::Cuda(s) => s.to_host().iter().flat_map(|x| x.to_le_bytes()).collect(),
        }
    }
    pub fn to_dtype(&self, dtype: DType) -> Storage {
        if dtype == self.dtype() {
            return self.clone();
        }
        let v = self.to_host_f64();
        cpu::with_dtype!(dtype, {
            Self::from_host(v.into_iter().map(T::of).collect::<Vec<T>>(), self.device())
        })
    }

    pub fn unary(&self, op: UnaryOp) -> Result<Storage> {
        dispatch!("unary", s = self, [], s.unary(op))
    }
    pub fn binary(
        &self,
        op: BinaryOp,
        sa: &Shape,
        rhs: &Storage,
        sb: &Shape,
        out: &Shape,
    ) -> Result<Storage> {
        dispatch!("binary", s = self, [rhs], s.binary(op, sa, rhs, sb, out))
    }
    pub fn sum_axes(&self, shape: &Shape, axes: &[usize]) -> Result<Storage> {
        dispatch!("sum_axes", s = self, [], s.sum_axes(shape, axes))
    }
    pub fn matmul(&self, rhs: &Storage, g: &MatmulGeom) -> Result<Storage> {
        dispatch!("matmul", s = self, [rhs], s.matmul(rhs, g))
    }
    pub fn softmax(&self, outer: usize, len: usize, inner: usize) -> Result<Storage> {
        dispatch!("softmax", s = self, [], s.softmax(outer, len, inner))
    }
    /// self = y.
    pub fn softmax_backward(
        &self,
        dy: &Storage,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> Result<Storage> {
        dispatch!(
            "softmax_backward",
            s = self,
            [dy],
            s.softmax_backward(dy, outer, len, inner)
        )
    }
    /// The conv's output, with a ReLU applied when `relu`.
    pub fn conv2d(
        &self,
        w: &Storage,
        bias: Option<&Storage>,
        g: &Conv2dGeom,
        relu: bool,
    ) -> Result<Storage> {
        match bias {
            None => dispatch!("conv2d", s = self, [w], s.conv2d(w, None, g, relu)),
            Some(b) => dispatch!("conv2d", s = self, [w, b], s.conv2d(w, Some(b), g, relu)),
        }
    }
    /// self = dy.
    pub fn conv2d_backward_input(&self, w: &Storage, g: &Conv2dGeom) -> Result<Storage> {
        dispatch!(
            "conv2d_backward_input",
            s = self,
            [w],
            s.conv2d_backward_input(w, g)
        )
    }
    /// self = dy.
    pub fn conv2d_backward_weight(&self, x: &Storage, g: &Conv2dGeom) -> Result<Storage> {
        dispatch!(
            "conv2d_backward_weight",
            s = self,
            [x],
            s.conv2d_backward_weight(x, g)
        )
    }
    pub fn max_pool2d(&self, g: &Pool2dGeom) -> Result<Storage> {
        dispatch!("max_pool2d", s = self, [], s.max_pool2d(g))
    }
    /// self = x.
    pub fn max_pool2d_backward(&self, dy: &Storage, g: &Pool2dGeom) -> Result<Storage> {
        dispatch!(
            "max_pool2d_backward",
            s = self,
            [dy],
            s.max_pool2d_backward(dy, g)
        )
    }
    pub fn avg_pool2d(&self, g: &Pool2dGeom) -> Result<Storage> {
        dispatch!("avg_pool2d", s = self, [], s.avg_pool2d(g))
    }
    /// self = dy.
    pub fn avg_pool2d_backward(&self, g: &Pool2dGeom) -> Result<Storage> {
        dispatch!(
            "avg_pool2d_backward",
            s = self,
            [],
            s.avg_pool2d_backward(g)
        )
    }
    pub fn resize_bilinear(&self, g: &ResizeGeom) -> Result<Storage> {
        dispatch!("resize_bilinear", s = self, [], s.resize_bilinear(g))
    }
    /// self = dy.
    pub fn resize_bilinear_backward(&self, g: &ResizeGeom) -> Result<Storage> {
        dispatch!(
            "resize_bilinear_backward",
            s = self,
            [],
            s.resize_bilinear_backward(g)
        )
    }
    pub fn permute(&self, shape: &Shape, perm: &[usize]) -> Result<Storage> {
        dispatch!("permute", s = self, [], s.permute(shape, perm))
    }
    pub fn narrow(&self, shape: &Shape, axis: usize, start: usize, len: usize) -> Result<Storage> {
        dispatch!("narrow", s = self, [], s.narrow(shape, axis, start, len))
    }
    pub fn concat(parts: &[(&Storage, &Shape)], axis: usize) -> Result<Storage> {
        match parts[0].0 {
            Storage::Cpu(_) => {
                let p = parts
                    .iter()
                    .map(|(s, sh)| Ok((s.cpu_of("concat")?, *sh)))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Storage::Cpu(cpu::profile::timed("concat", || {
                    CpuStorage::concat(&p, axis)
                })))
            }
            Storage::Cuda(_) => {
                let p = parts
                    .iter()
                    .map(|(s, sh)| Ok((s.cuda_of("concat")?, *sh)))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Storage::Cuda(CudaStorage::concat(&p, axis)))
            }
        }
    }
    pub fn flip(&self, shape: &Shape, axis: usize) -> Result<Storage> {
        dispatch!("flip", s = self, [], s.flip(shape, axis))
    }
    /// Returns (y, mean, invstd, biased var), the statistics per channel.
    pub fn batch_norm_train(
        &self,
        gamma: &Storage,
        beta: &Storage,
        g: &BatchNormGeom,
        eps: f64,
        relu: bool,
    ) -> Result<(Storage, Storage, Storage, Storage)> {
        dispatch!("batch_norm_train", s = self, [gamma, beta], w => {
            let (y, m, i, v) = s.batch_norm_train(gamma, beta, g, eps, relu);
            (w(y), w(m), w(i), w(v))
        })
    }
    /// self = x; returns (dx, dγ, dβ); `relu_out` as in [`NormOps::batch_norm_backward`].
    pub fn batch_norm_backward(
        &self,
        dy: &Storage,
        gamma: &Storage,
        mean: &Storage,
        invstd: &Storage,
        relu_out: Option<&Storage>,
        g: &BatchNormGeom,
    ) -> Result<(Storage, Storage, Storage)> {
        match relu_out {
            None => dispatch!("batch_norm_backward", s = self, [dy, gamma, mean, invstd], w => {
                let (dx, dg, db) = s.batch_norm_backward(dy, gamma, mean, invstd, None, g);
                (w(dx), w(dg), w(db))
            }),
            Some(y) => {
                dispatch!("batch_norm_backward", s = self, [dy, gamma, mean, invstd, y], w => {
                    let (dx, dg, db) = s.batch_norm_backward(dy, gamma, mean, invstd, Some(y), g);
                    (w(dx), w(dg), w(db))
                })
            }
        }
    }
    pub fn bce_logits_mean(&self, target: &Storage) -> Result<Storage> {
        dispatch!(
            "bce_logits_mean",
            s = self,
            [target],
            s.bce_logits_mean(target)
        )
    }
    /// self = logits; `g` is the upstream gradient of the scalar loss.
    pub fn bce_logits_mean_backward(&self, target: &Storage, g: &Storage) -> Result<Storage> {
        dispatch!(
            "bce_logits_mean_backward",
            s = self,
            [target, g],
            s.bce_logits_mean_backward(target, g)
        )
    }
    /// Returns (loss sum, counted pixels), or Err(label) inside for a label outside 0..k that
    /// is not `ignore`.
    pub fn cross_entropy(
        &self,
        labels: &Storage,
        g: &CrossEntropyGeom,
    ) -> Result<std::result::Result<(f64, usize), f64>> {
        dispatch!("cross_entropy", s = self, [labels], _w => s.cross_entropy(labels, g))
    }
    pub fn cross_entropy_backward(
        &self,
        labels: &Storage,
        g: &CrossEntropyGeom,
        count: usize,
        grad: &Storage,
    ) -> Result<Storage> {
        dispatch!(
            "cross_entropy_backward",
            s = self,
            [labels, grad],
            s.cross_entropy_backward(labels, g, count, grad)
        )
    }
    /// self = Fm; returns (Fm∩, Fn∩) and what the backend keeps for the backward when `keep`.
    pub fn coattention(
        &self,
        fnn: &Storage,
        w: &Storage,
        g: &CoattGeom,
        keep: bool,
    ) -> Result<(Storage, Storage, Option<CoattSaved>)> {
        dispatch!("coattention", s = self, [fnn, w], wrap => {
            let (a, b, saved) = s.coattention(fnn, w, g, keep);
            (wrap(a), wrap(b), saved)
        })
    }
    /// self = Fm; returns (dFm, dFn, dW).
    pub fn coattention_backward(
        &self,
        fnn: &Storage,
        w: &Storage,
        g_fm: &Storage,
        g_fn: &Storage,
        g: &CoattGeom,
        saved: Option<&CoattSaved>,
    ) -> Result<(Storage, Storage, Storage)> {
        dispatch!("coattention_backward", s = self, [fnn, w, g_fm, g_fn], wrap => {
            let (a, b, c) = s.coattention_backward(fnn, w, g_fm, g_fn, g, saved);
            (wrap(a), wrap(b), wrap(c))
        })
    }
    /// In-place SGD step on self (the parameter).
    pub fn sgd_step(
        &mut self,
        grad: &Storage,
        buf: &mut Storage,
        h: &SgdHyper,
        first: bool,
    ) -> Result<()> {
        match (self, buf) {
            (Storage::Cpu(p), Storage::Cpu(b)) => {
                let g = grad.cpu_of("sgd_step")?;
                cpu::profile::timed("sgd_step", || p.sgd_step(g, b, h, first));
                Ok(())
            }
            (Storage::Cuda(p), Storage::Cuda(b)) => {
                p.sgd_step(grad.cuda_of("sgd_step")?, b, h, first);
                Ok(())
            }
            (p, b) => Err(Error::device("sgd_step", p.device(), b.device())),
        }
    }
    /// Runs an op that brings its own kernels on the device of its inputs (which must share
    /// it).
    pub fn apply_custom(op: &dyn CustomOp, inputs: &[&Storage]) -> Result<Storage> {
        match inputs[0] {
            Storage::Cpu(_) => {
                let xs = inputs
                    .iter()
                    .map(|s| s.cpu_of(op.name()))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Storage::Cpu(cpu::profile::timed(op.name(), || {
                    op.cpu_fwd(&xs)
                })))
            }
            Storage::Cuda(_) => {
                let xs = inputs
                    .iter()
                    .map(|s| s.cuda_of(op.name()))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Storage::Cuda(op.cuda_fwd(&xs)))
            }
        }
    }
}

/// Checks that every storage has the same dtype and device as the first.
pub(crate) fn check_same(op: &'static str, xs: &[&Storage]) -> Result<()> {
    let (d0, dev0) = (xs[0].dtype(), xs[0].device());
    for x in &xs[1..] {
        if x.dtype() != d0 {
            return Err(Error::DType {
                op,
                lhs: d0,
                rhs: x.dtype(),
            });
        }
        if x.device() != dev0 {
            return Err(Error::device(op, dev0, x.device()));
        }
    }
    Ok(())
}

/// The CUDA backend stores f32 only (its kernels are f32); f64 is for the CPU's gradient checks.
fn cuda_f32_only(dtype: DType) {
    assert!(
        dtype == DType::F32,
        "the CUDA backend stores f32 only ({dtype:?} asked for); use the CPU for f64"
    );
}

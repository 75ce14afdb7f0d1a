//! The op interface every backend implements. Ops in `crate::ops` call these methods on
//! `Storage`; each method matches on the storage variant and runs that backend's kernel.
//! The CPU backend (`cpu/`) is the numerical reference.
pub mod cpu;
pub mod cuda;

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

/// Every size of one local-affinity call (AffinityNet, DESIGN §8): features (b, c, h, w) and
/// the radius of the half disc of pairs (`cpu::affinity::half_disc_offsets`). Mirrored as
/// `AffinityGeom` in kernels/affinity.cu.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AffinityGeom {
    pub b: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub radius: usize,
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

impl CpuStorage {
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
        }
    }
    pub fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Typed view; the caller has checked the dtype (ops check dtypes before dispatch).
    pub fn slice<T: Float>(&self) -> &[T] {
        match self {
            CpuStorage::F32(v) => bytemuck::cast_slice(v),
            CpuStorage::F64(v) => bytemuck::cast_slice(v),
        }
    }
    pub fn slice_mut<T: Float>(&mut self) -> &mut [T] {
        match self {
            CpuStorage::F32(v) => bytemuck::cast_slice_mut(v),
            CpuStorage::F64(v) => bytemuck::cast_slice_mut(v),
        }
    }
    pub fn from_vec<T: Float>(v: Vec<T>) -> Self {
        match T::DTYPE {
            DType::F32 => CpuStorage::F32(bytemuck::allocation::cast_vec(v)),
            DType::F64 => CpuStorage::F64(bytemuck::allocation::cast_vec(v)),
        }
    }
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            CpuStorage::F32(v) => v.iter().map(|&x| x as f64).collect(),
            CpuStorage::F64(v) => v.clone(),
        }
    }
}

/// Runs `$body` with `T` bound to the Rust type of `$dtype`.
macro_rules! with_dtype {
    ($dtype:expr, $body:block) => {
        match $dtype {
            DType::F32 => {
                #[allow(dead_code)]
                type T = f32;
                $body
            }
            DType::F64 => {
                #[allow(dead_code)]
                type T = f64;
                $body
            }
        }
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
            Storage::Cuda(_) => DType::F32,
        }
    }
    fn cpu(&self) -> &CpuStorage {
        match self {
            Storage::Cpu(s) => s,
            Storage::Cuda(_) => {
                panic!("a CUDA tensor met a CPU one in one op (ops check devices first)")
            }
        }
    }
    pub(crate) fn cpu_mut(&mut self) -> &mut CpuStorage {
        match self {
            Storage::Cpu(s) => s,
            Storage::Cuda(_) => {
                panic!("a CUDA tensor met a CPU one in one op (ops check devices first)")
            }
        }
    }
    fn cu(&self) -> &CudaStorage {
        match self {
            Storage::Cuda(s) => s,
            Storage::Cpu(_) => {
                panic!("a CPU tensor met a CUDA one in one op (ops check devices first)")
            }
        }
    }
    fn cu_mut(&mut self) -> &mut CudaStorage {
        match self {
            Storage::Cuda(s) => s,
            Storage::Cpu(_) => {
                panic!("a CPU tensor met a CUDA one in one op (ops check devices first)")
            }
        }
    }
    fn wrap<T: Float>(v: Vec<T>) -> Storage {
        Storage::Cpu(CpuStorage::from_vec(v))
    }

    pub fn zeros(n: usize, dtype: DType, device: Device) -> Storage {
        Self::full(n, 0.0, dtype, device)
    }
    pub fn full(n: usize, v: f64, dtype: DType, device: Device) -> Storage {
        match device {
            Device::Cpu => with_dtype!(dtype, { Self::wrap(vec![T::of(v); n]) }),
            Device::Cuda => {
                cuda_f32_only(dtype);
                Storage::Cuda(CudaStorage::full(n, v as f32))
            }
        }
    }
    pub fn from_host<T: Float>(v: Vec<T>, device: Device) -> Storage {
        match device {
            Device::Cpu => Self::wrap(v),
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
            (Storage::Cuda(s), Device::Cpu) => Self::wrap(s.to_host()),
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
        with_dtype!(dtype, {
            Self::from_host(v.into_iter().map(T::of).collect::<Vec<T>>(), self.device())
        })
    }

    pub fn unary(&self, op: UnaryOp) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.unary(op));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(cpu::elementwise::unary(op, self.cpu().slice::<T>()))
        })
    }
    pub fn binary(
        &self,
        op: BinaryOp,
        sa: &Shape,
        rhs: &Storage,
        sb: &Shape,
        out: &Shape,
    ) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.binary(op, sa, rhs.cu(), sb, out));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(cpu::elementwise::binary(
                op,
                self.cpu().slice::<T>(),
                sa,
                rhs.cpu().slice::<T>(),
                sb,
                out,
            ))
        })
    }
    pub fn sum_axes(&self, shape: &Shape, axes: &[usize]) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.sum_axes(shape, axes));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(cpu::reduce::sum_axes(self.cpu().slice::<T>(), shape, axes))
        })
    }
    pub fn matmul(
        &self,
        rhs: &Storage,
        batch: usize,
        m: usize,
        k: usize,
        n: usize,
        ta: bool,
        tb: bool,
        a_bs: usize,
        b_bs: usize,
    ) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.matmul(rhs.cu(), batch, m, k, n, ta, tb, a_bs, b_bs));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(cpu::matmul::batched(
                self.cpu().slice::<T>(),
                rhs.cpu().slice::<T>(),
                batch,
                m,
                k,
                n,
                ta,
                tb,
                a_bs,
                b_bs,
            ))
        })
    }
    pub fn softmax(&self, outer: usize, len: usize, inner: usize) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.softmax(outer, len, inner));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(cpu::softmax::softmax(
                self.cpu().slice::<T>(),
                outer,
                len,
                inner,
            ))
        })
    }
    pub fn softmax_backward(
        &self,
        dy: &Storage,
        outer: usize,
        len: usize,
        inner: usize,
    ) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.softmax_backward(dy.cu(), outer, len, inner));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(cpu::softmax::softmax_backward(
                self.cpu().slice::<T>(),
                dy.cpu().slice::<T>(),
                outer,
                len,
                inner,
            ))
        })
    }
    /// The conv's output, with a ReLU applied when `relu`.
    pub fn conv2d(
        &self,
        w: &Storage,
        bias: Option<&Storage>,
        g: &Conv2dGeom,
        relu: bool,
    ) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.conv2d(w.cu(), bias.map(|b| b.cu()), g, relu));
        }
        with_dtype!(self.dtype(), {
            let b = bias.map(|b| b.cpu().slice::<T>());
            let mut y = cpu::conv::forward(self.cpu().slice::<T>(), w.cpu().slice::<T>(), b, g);
            if relu {
                // NaN passes through, as the ReLU op and PyTorch's (max would hide it as 0)
                y.iter_mut().for_each(|v| {
                    if *v < T::default() {
                        *v = T::default()
                    }
                });
            }
            Self::wrap(y)
        })
    }
    /// self = dy
    pub fn conv2d_backward_input(&self, w: &Storage, g: &Conv2dGeom) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.conv2d_backward_input(w.cu(), g));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(cpu::conv::backward_input(
                self.cpu().slice::<T>(),
                w.cpu().slice::<T>(),
                g,
            ))
        })
    }
    /// self = dy
    pub fn conv2d_backward_weight(&self, x: &Storage, g: &Conv2dGeom) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.conv2d_backward_weight(x.cu(), g));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(cpu::conv::backward_weight(
                self.cpu().slice::<T>(),
                x.cpu().slice::<T>(),
                g,
            ))
        })
    }
    pub fn max_pool2d(&self, g: &Pool2dGeom) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.max_pool2d(g));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(cpu::pool::max_forward(self.cpu().slice::<T>(), g))
        })
    }
    /// self = x
    pub fn max_pool2d_backward(&self, dy: &Storage, g: &Pool2dGeom) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.max_pool2d_backward(dy.cu(), g));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(cpu::pool::max_backward(
                self.cpu().slice::<T>(),
                dy.cpu().slice::<T>(),
                g,
            ))
        })
    }
    pub fn avg_pool2d(&self, g: &Pool2dGeom) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.avg_pool2d(g));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(cpu::pool::avg_forward(self.cpu().slice::<T>(), g))
        })
    }
    /// self = dy
    pub fn avg_pool2d_backward(&self, g: &Pool2dGeom) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.avg_pool2d_backward(g));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(cpu::pool::avg_backward(self.cpu().slice::<T>(), g))
        })
    }
    pub fn resize_bilinear(
        &self,
        planes: usize,
        h: usize,
        w: usize,
        ho: usize,
        wo: usize,
    ) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.resize_bilinear(planes, h, w, ho, wo));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(cpu::resize::forward(
                self.cpu().slice::<T>(),
                planes,
                h,
                w,
                ho,
                wo,
            ))
        })
    }
    /// self = dy
    pub fn resize_bilinear_backward(
        &self,
        planes: usize,
        h: usize,
        w: usize,
        ho: usize,
        wo: usize,
    ) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.resize_bilinear_backward(planes, h, w, ho, wo));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(cpu::resize::backward(
                self.cpu().slice::<T>(),
                planes,
                h,
                w,
                ho,
                wo,
            ))
        })
    }

    /// AffinityNet's affinities of features self (B,C,H,W) → (B,P,H,W).
    pub fn local_affinity(&self, g: &AffinityGeom) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.local_affinity(g));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(cpu::affinity::forward(self.cpu().slice::<T>(), g))
        })
    }
    /// self = f; a = the forward's output, da its gradient.
    pub fn local_affinity_backward(&self, a: &Storage, da: &Storage, g: &AffinityGeom) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.local_affinity_backward(a.cu(), da.cu(), g));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(cpu::affinity::backward(
                self.cpu().slice::<T>(),
                a.cpu().slice::<T>(),
                da.cpu().slice::<T>(),
                g,
            ))
        })
    }
    /// The random walk of maps self (B,K,H,W) over affinities a (B,P,H,W).
    pub fn random_walk(
        &self,
        a: &Storage,
        g: &AffinityGeom,
        k: usize,
        beta: f64,
        steps: usize,
    ) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.random_walk(a.cu(), g, k, beta, steps));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(cpu::affinity::walk(
                self.cpu().slice::<T>(),
                a.cpu().slice::<T>(),
                g,
                k,
                beta,
                steps,
            ))
        })
    }
    pub fn permute(&self, shape: &Shape, perm: &[usize]) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.permute(shape, perm));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(cpu::layout::permute(self.cpu().slice::<T>(), shape, perm))
        })
    }
    pub fn narrow(&self, shape: &Shape, axis: usize, start: usize, len: usize) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.narrow(shape, axis, start, len));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(cpu::layout::narrow(
                self.cpu().slice::<T>(),
                shape,
                axis,
                start,
                len,
            ))
        })
    }
    pub fn concat(parts: &[(&Storage, &Shape)], axis: usize) -> Storage {
        if let Storage::Cuda(_) = parts[0].0 {
            let p: Vec<(&CudaStorage, &Shape)> =
                parts.iter().map(|(s, sh)| (s.cu(), *sh)).collect();
            return Storage::Cuda(CudaStorage::concat(&p, axis));
        }
        with_dtype!(parts[0].0.dtype(), {
            let p: Vec<(&[T], &Shape)> = parts
                .iter()
                .map(|(s, sh)| (s.cpu().slice::<T>(), *sh))
                .collect();
            Self::wrap(cpu::layout::concat(&p, axis))
        })
    }
    pub fn flip(&self, shape: &Shape, axis: usize) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.flip(shape, axis));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(cpu::layout::flip(self.cpu().slice::<T>(), shape, axis))
        })
    }
    /// Returns (y, mean, invstd, biased var), the statistics per channel.
    pub fn batch_norm_train(
        &self,
        gamma: &Storage,
        beta: &Storage,
        n: usize,
        c: usize,
        hw: usize,
        eps: f64,
    ) -> (Storage, Storage, Storage, Storage) {
        if let Storage::Cuda(s) = self {
            let (y, m, i, v) = s.batch_norm_train(gamma.cu(), beta.cu(), n, c, hw, eps);
            return (
                Storage::Cuda(y),
                Storage::Cuda(m),
                Storage::Cuda(i),
                Storage::Cuda(v),
            );
        }
        with_dtype!(self.dtype(), {
            let (y, m, i, v) = cpu::norm::forward(
                self.cpu().slice::<T>(),
                gamma.cpu().slice::<T>(),
                beta.cpu().slice::<T>(),
                n,
                c,
                hw,
                eps,
            );
            (Self::wrap(y), Self::wrap(m), Self::wrap(i), Self::wrap(v))
        })
    }
    /// self = x; returns (dx, dγ, dβ)
    pub fn batch_norm_backward(
        &self,
        dy: &Storage,
        gamma: &Storage,
        mean: &Storage,
        invstd: &Storage,
        n: usize,
        c: usize,
        hw: usize,
    ) -> (Storage, Storage, Storage) {
        if let Storage::Cuda(s) = self {
            let (dx, dg, db) =
                s.batch_norm_backward(dy.cu(), gamma.cu(), mean.cu(), invstd.cu(), n, c, hw);
            return (Storage::Cuda(dx), Storage::Cuda(dg), Storage::Cuda(db));
        }
        with_dtype!(self.dtype(), {
            let s = sl::<T>;
            let (dx, dg, db) =
                cpu::norm::backward(s(self), s(dy), s(gamma), s(mean), s(invstd), n, c, hw);
            (Self::wrap(dx), Self::wrap(dg), Self::wrap(db))
        })
    }
    pub fn bce_logits_mean(&self, target: &Storage) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.bce_logits_mean(target.cu()));
        }
        with_dtype!(self.dtype(), {
            Self::wrap(vec![cpu::loss::bce_logits_mean(
                self.cpu().slice::<T>(),
                target.cpu().slice::<T>(),
            )])
        })
    }
    /// self = logits; `g` is the upstream gradient of the scalar loss.
    pub fn bce_logits_mean_backward(&self, target: &Storage, g: &Storage) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.bce_logits_mean_backward(target.cu(), g.cu()));
        }
        with_dtype!(self.dtype(), {
            let g = g.cpu().slice::<T>()[0];
            Self::wrap(cpu::loss::bce_logits_mean_backward(
                self.cpu().slice::<T>(),
                target.cpu().slice::<T>(),
                g,
            ))
        })
    }
    /// Returns (loss sum, counted pixels); Err(label) for a label outside 0..k that is not `ignore`.
    pub fn cross_entropy(
        &self,
        labels: &Storage,
        b: usize,
        k: usize,
        hw: usize,
        ignore: usize,
    ) -> std::result::Result<(f64, usize), f64> {
        if let Storage::Cuda(s) = self {
            return s.cross_entropy(labels.cu(), b, k, hw, ignore);
        }
        with_dtype!(self.dtype(), {
            cpu::loss::cross_entropy(
                self.cpu().slice::<T>(),
                labels.cpu().slice::<T>(),
                b,
                k,
                hw,
                ignore,
            )
        })
    }
    pub fn cross_entropy_backward(
        &self,
        labels: &Storage,
        b: usize,
        k: usize,
        hw: usize,
        ignore: usize,
        count: usize,
        g: &Storage,
    ) -> Storage {
        if let Storage::Cuda(s) = self {
            return Storage::Cuda(s.cross_entropy_backward(
                labels.cu(),
                b,
                k,
                hw,
                ignore,
                count,
                g.cu(),
            ));
        }
        with_dtype!(self.dtype(), {
            let g = g.cpu().slice::<T>()[0];
            Self::wrap(cpu::loss::cross_entropy_backward(
                self.cpu().slice::<T>(),
                labels.cpu().slice::<T>(),
                b,
                k,
                hw,
                ignore,
                count,
                g,
            ))
        })
    }
    /// self = Fm; returns (Fm∩, Fn∩) and, when `keep` asks for it and the backend keeps any,
    /// what the backward can reuse instead of recomputing (the GPU keeps Q and both softmaxes;
    /// the CPU recomputes, to hold no N×M matrix between the passes).
    #[allow(clippy::too_many_arguments)]
    pub fn coattention(
        &self,
        fnn: &Storage,
        w: &Storage,
        b: usize,
        c: usize,
        n: usize,
        m: usize,
        keep: bool,
    ) -> (Storage, Storage, Option<CoattSaved>) {
        if let Storage::Cuda(s) = self {
            let (a, b2, saved) = cuda::coattention_forward(s, fnn.cu(), w.cu(), b, c, n, m, keep);
            let saved = saved.map(|k| CoattSaved(Box::new(k)));
            return (Storage::Cuda(a), Storage::Cuda(b2), saved);
        }
        with_dtype!(self.dtype(), {
            let s = sl::<T>;
            let (a, bb) = cpu::coattention::forward(s(self), s(fnn), s(w), b, c, n, m);
            (Self::wrap(a), Self::wrap(bb), None)
        })
    }
    /// self = Fm; returns (dFm, dFn, dW).
    pub fn coattention_backward(
        &self,
        fnn: &Storage,
        w: &Storage,
        g_fm: &Storage,
        g_fn: &Storage,
        b: usize,
        c: usize,
        n: usize,
        m: usize,
        saved: Option<&CoattSaved>,
    ) -> (Storage, Storage, Storage) {
        if let Storage::Cuda(s) = self {
            let (a, b2, c2) = cuda::coattention_backward(
                s,
                fnn.cu(),
                w.cu(),
                g_fm.cu(),
                g_fn.cu(),
                b,
                c,
                n,
                m,
                saved.and_then(|x| x.0.downcast_ref::<cuda::CoattKept>()),
            );
            return (Storage::Cuda(a), Storage::Cuda(b2), Storage::Cuda(c2));
        }
        with_dtype!(self.dtype(), {
            let s = sl::<T>;
            let (a, bb, cc) =
                cpu::coattention::backward(s(self), s(fnn), s(w), s(g_fm), s(g_fn), b, c, n, m);
            (Self::wrap(a), Self::wrap(bb), Self::wrap(cc))
        })
    }
    /// In-place SGD step on self (the parameter).
    pub fn sgd_step(&mut self, grad: &Storage, buf: &mut Storage, h: &SgdHyper, first: bool) {
        if let Storage::Cuda(_) = self {
            let g = grad.cu();
            let b = buf.cu_mut();
            self.cu_mut().sgd_step(g, b, h, first);
            return;
        }
        with_dtype!(self.dtype(), {
            let g = grad.cpu().slice::<T>();
            let b = buf.cpu_mut().slice_mut::<T>();
            cpu::sgd::step(self.cpu_mut().slice_mut::<T>(), g, b, h, first)
        })
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
            return Err(Error::Msg(format!(
                "{op}: tensors on different devices ({dev0:?} vs {:?})",
                x.device()
            )));
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

/// Typed host slice of a CPU storage (a fn, not a closure, so lifetimes elide).
fn sl<T: Float>(x: &Storage) -> &[T] {
    x.cpu().slice::<T>()
}

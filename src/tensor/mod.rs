//! The tensor handle: an id (what the autograd keys gradients by), a shape and shared storage.
mod dtype;
mod shape;

pub use dtype::{DType, Float};
pub use shape::Shape;

use crate::backend::{Device, Storage};
use crate::error::{shape_err, Error, Result};
use rand::Rng;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorId(u64);

impl TensorId {
    fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        TensorId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

struct Inner {
    id: TensorId,
    shape: Shape,
    dtype: DType,
    device: Device,
    /// Shared with reshaped views; written in place only by optimizers.
    storage: Arc<RwLock<Storage>>,
    /// A parameter, or computed from one while gradients were recorded.
    tracked: bool,
}

/// A cheap-to-clone handle to an immutable-shape, contiguous tensor.
#[derive(Clone)]
pub struct Tensor(Arc<Inner>);

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Tensor({:?}, {:?}, {:?}{})",
            self.0.id,
            self.0.shape,
            self.0.dtype,
            if self.0.tracked { ", tracked" } else { "" }
        )
    }
}

impl Tensor {
    pub(crate) fn from_storage(storage: Storage, shape: impl Into<Shape>, tracked: bool) -> Tensor {
        let shape = shape.into();
        Tensor(Arc::new(Inner {
            id: TensorId::fresh(),
            dtype: storage.dtype(),
            device: storage.device(),
            shape,
            storage: Arc::new(RwLock::new(storage)),
            tracked,
        }))
    }

    /// A tensor from host data; `data.len()` must equal the shape's element count.
    pub fn from_vec<T: Float>(
        data: Vec<T>,
        shape: impl Into<Shape>,
        device: Device,
    ) -> Result<Tensor> {
        let shape = shape.into();
        if data.len() != shape.numel() {
            shape_err!("from_vec", "{} values for shape {shape:?}", data.len());
        }
        if device == Device::Cuda && T::DTYPE != DType::F32 {
            return Err(Error::Msg(format!(
                "the CUDA backend stores f32 only ({:?} asked for)",
                T::DTYPE
            )));
        }
        Ok(Self::from_storage(
            Storage::from_host(data, device),
            shape,
            false,
        ))
    }
    pub fn from_f64(
        data: &[f64],
        shape: impl Into<Shape>,
        dtype: DType,
        device: Device,
    ) -> Result<Tensor> {
        match dtype {
            DType::F32 => Self::from_vec(data.iter().map(|&v| v as f32).collect(), shape, device),
            DType::F64 => Self::from_vec(data.to_vec(), shape, device),
        }
    }
    pub fn full(v: f64, shape: impl Into<Shape>, dtype: DType, device: Device) -> Tensor {
        let shape = shape.into();
        Self::from_storage(Storage::full(shape.numel(), v, dtype, device), shape, false)
    }
    pub fn zeros(shape: impl Into<Shape>, dtype: DType, device: Device) -> Tensor {
        Self::full(0.0, shape, dtype, device)
    }
    pub fn ones(shape: impl Into<Shape>, dtype: DType, device: Device) -> Tensor {
        Self::full(1.0, shape, dtype, device)
    }
    pub fn zeros_like(&self) -> Tensor {
        Self::zeros(self.shape().clone(), self.dtype(), self.device())
    }
    pub fn scalar(v: f64, dtype: DType, device: Device) -> Tensor {
        Self::full(v, [1], dtype, device)
    }
    /// Uniform in [lo, hi).
    pub fn rand_uniform(
        shape: impl Into<Shape>,
        lo: f64,
        hi: f64,
        dtype: DType,
        device: Device,
        rng: &mut impl Rng,
    ) -> Tensor {
        let shape = shape.into();
        let v: Vec<f64> = (0..shape.numel()).map(|_| rng.gen_range(lo..hi)).collect();
        Self::from_f64(&v, shape, dtype, device).expect("length matches shape")
    }
    /// Standard normal (Box-Muller), seeded by the caller's RNG.
    pub fn randn(
        shape: impl Into<Shape>,
        std: f64,
        dtype: DType,
        device: Device,
        rng: &mut impl Rng,
    ) -> Tensor {
        let shape = shape.into();
        let v: Vec<f64> = (0..shape.numel())
            .map(|_| {
                let u1: f64 = rng.gen_range(f64::EPSILON..1.0);
                let u2: f64 = rng.gen();
                std * (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
            })
            .collect();
        Self::from_f64(&v, shape, dtype, device).expect("length matches shape")
    }

    /// This tensor as a trainable leaf (a new id, same storage): its gradient is recorded.
    pub fn into_param(self) -> Tensor {
        Tensor(Arc::new(Inner {
            id: TensorId::fresh(),
            shape: self.0.shape.clone(),
            dtype: self.0.dtype,
            device: self.0.device,
            storage: self.0.storage.clone(),
            tracked: true,
        }))
    }
    /// Same data, cut off from the tape.
    pub fn detach(&self) -> Tensor {
        Tensor(Arc::new(Inner {
            id: TensorId::fresh(),
            shape: self.0.shape.clone(),
            dtype: self.0.dtype,
            device: self.0.device,
            storage: self.0.storage.clone(),
            tracked: false,
        }))
    }
    /// A view with another shape over the same storage (free: tensors are contiguous).
    pub(crate) fn view_as(&self, shape: Shape, tracked: bool) -> Tensor {
        Tensor(Arc::new(Inner {
            id: TensorId::fresh(),
            shape,
            dtype: self.0.dtype,
            device: self.0.device,
            storage: self.0.storage.clone(),
            tracked,
        }))
    }

    pub fn id(&self) -> TensorId {
        self.0.id
    }
    pub fn shape(&self) -> &Shape {
        &self.0.shape
    }
    pub fn dims(&self) -> &[usize] {
        self.0.shape.dims()
    }
    pub fn rank(&self) -> usize {
        self.0.shape.rank()
    }
    pub fn numel(&self) -> usize {
        self.0.shape.numel()
    }
    pub fn dtype(&self) -> DType {
        self.0.dtype
    }
    pub fn device(&self) -> Device {
        self.0.device
    }
    pub fn is_tracked(&self) -> bool {
        self.0.tracked
    }
    pub fn storage(&self) -> RwLockReadGuard<'_, Storage> {
        self.0.storage.read().expect("tensor storage lock poisoned")
    }
    pub(crate) fn storage_mut(&self) -> RwLockWriteGuard<'_, Storage> {
        self.0
            .storage
            .write()
            .expect("tensor storage lock poisoned")
    }

    /// The values as f64 on the host (any dtype, any device).
    pub fn to_vec_f64(&self) -> Vec<f64> {
        self.storage().to_host_f64()
    }
    pub fn to_vec_f32(&self) -> Vec<f32> {
        self.to_vec_f64().into_iter().map(|v| v as f32).collect()
    }
    /// The single value of a one-element tensor.
    pub fn to_scalar(&self) -> Result<f64> {
        if self.numel() != 1 {
            shape_err!(
                "to_scalar",
                "tensor of shape {:?} is not a scalar",
                self.shape()
            );
        }
        Ok(self.to_vec_f64()[0])
    }
    /// A copy on another device (not tracked; the same values).
    pub fn to_device(&self, device: Device) -> Tensor {
        Self::from_storage(
            self.storage().to_device(device),
            self.shape().clone(),
            false,
        )
    }
    /// A copy in another dtype (not tracked).
    pub fn to_dtype(&self, dtype: DType) -> Tensor {
        Self::from_storage(self.storage().to_dtype(dtype), self.shape().clone(), false)
    }
    /// Overwrites the values in place (shape and dtype kept); used to load weights.
    pub fn assign(&self, src: &Tensor) -> Result<()> {
        if src.shape() != self.shape() {
            shape_err!("assign", "source {:?} into {:?}", src.shape(), self.shape());
        }
        // convert the dtype where the value is f64-capable (the CPU), then move
        let converted = match self.device() {
            Device::Cpu => src.storage().to_device(Device::Cpu).to_dtype(self.dtype()),
            Device::Cuda => src.storage().to_dtype(self.dtype()).to_device(Device::Cuda),
        };
        *self.storage_mut() = converted;
        Ok(())
    }
    /// Checks that every value is finite; names `what` in the error.
    pub fn check_finite(&self, what: &str) -> Result<()> {
        if self.to_vec_f64().iter().any(|v| !v.is_finite()) {
            return Err(Error::NonFinite(format!("{what} contains NaN or inf")));
        }
        Ok(())
    }
}

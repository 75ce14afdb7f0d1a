//! coatt: weakly supervised semantic segmentation (the MCIS co-attention classifier and the
//! pipeline after it) on its own small deep-learning engine.
//!
//! The engine: [`Tensor`] handles over backend [`backend::Storage`], differentiable ops in
//! [`ops`] (each with a hand-written backward), a tape-based [`autograd`], [`optim`] and
//! safetensors checkpoints in [`io`].
pub mod affinity;
pub mod autograd;
pub mod backend;
pub mod cam;
pub mod cli;
pub mod cls;
pub mod crf;
pub mod data;
mod error;
pub mod eval;
pub mod io;
pub mod nn;
pub mod ops;
pub mod optim;
pub mod pipeline;
pub mod progress;
pub mod report;
pub mod seed;
pub mod seg;
pub mod tensor;
pub mod testing;

pub use autograd::{backward, backward_from, no_grad, Gradients};
pub use backend::cpu::run_on_workers;
pub use backend::Device;
pub use error::{Error, Result};
pub use ops::{coattention, Conv2dParams, Pool2dParams};
pub use tensor::{DType, Shape, Tensor};

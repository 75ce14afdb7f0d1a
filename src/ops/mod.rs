//! Differentiable ops, one module per family. Each op checks its inputs, runs the backend
//! kernel, and (when an input is tracked) records a hand-written backward closure.
mod affinity;
mod coattention;
mod conv;
mod elementwise;
mod layout;
mod loss;
mod matmul;
mod norm;
mod pool;
mod reduce;
mod resize;
mod softmax;

pub use affinity::half_disc_offsets;
pub use coattention::coattention;
pub use conv::Conv2dParams;
pub use pool::Pool2dParams;

use crate::autograd::{record, should_track};
use crate::backend::Storage;
use crate::error::Result;
use crate::tensor::{Shape, Tensor};

/// Wraps a single-output op's result and records its backward, which receives the output
/// gradient, the output itself (untracked) and which inputs need a gradient.
pub(crate) fn finish(
    storage: Storage,
    shape: Shape,
    inputs: &[&Tensor],
    backward: impl FnOnce(&Tensor, &Tensor, &[bool]) -> Result<Vec<Option<Tensor>>> + 'static,
) -> Tensor {
    let track = should_track(inputs);
    let out = Tensor::from_storage(storage, shape, track);
    if track {
        let y = out.detach();
        record(
            &[&out],
            inputs,
            Box::new(move |g, needs| {
                backward(
                    g[0].as_ref().expect("single-output node has its gradient"),
                    &y,
                    needs,
                )
            }),
        );
    }
    out
}

/// An untracked tensor from a backward kernel's storage.
pub(crate) fn plain(storage: Storage, shape: impl Into<Shape>) -> Tensor {
    Tensor::from_storage(storage, shape, false)
}

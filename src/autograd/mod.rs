//! Reverse-mode autograd: a thread-local tape of backward closures (dfdx style), gradients
//! keyed by tensor id. Each op records one node: its output ids, its tracked inputs and a
//! hand-written closure mapping output gradients to input gradients.
use crate::error::{Error, Result};
use crate::tensor::{Tensor, TensorId};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;

/// Output gradients in (None where that output got no gradient), input gradients out (None
/// where the input needs none). `needs[i]` says whether input i is tracked.
pub(crate) type BackwardFn =
    Box<dyn FnOnce(&[Option<Tensor>], &[bool]) -> Result<Vec<Option<Tensor>>>>;

struct Node {
    outputs: Vec<TensorId>,
    inputs: Vec<Option<TensorId>>,
    backward: BackwardFn,
}

thread_local! {
    static TAPE: RefCell<Vec<Node>> = const { RefCell::new(Vec::new()) };
    static ENABLED: Cell<bool> = const { Cell::new(true) };
}

pub fn is_grad_enabled() -> bool {
    ENABLED.with(|e| e.get())
}

/// Runs `f` without recording (inference, the backward pass itself, optimizer updates).
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ENABLED.with(|e| e.set(self.0));
        }
    }
    let _restore = Restore(ENABLED.with(|e| e.replace(false)));
    f()
}

/// Drops every recorded node (e.g. after a forward pass whose loss is not differentiated).
pub fn clear_tape() {
    TAPE.with(|t| t.borrow_mut().clear());
}

/// Number of recorded nodes (for tests and leak checks).
pub fn tape_len() -> usize {
    TAPE.with(|t| t.borrow().len())
}

/// Whether an op over these inputs must be recorded.
pub(crate) fn should_track(inputs: &[&Tensor]) -> bool {
    is_grad_enabled() && inputs.iter().any(|t| t.is_tracked())
}

/// Records one op. Call only when `should_track(inputs)` was true.
pub(crate) fn record(outputs: &[&Tensor], inputs: &[&Tensor], backward: BackwardFn) {
    let node = Node {
        outputs: outputs.iter().map(|t| t.id()).collect(),
        inputs: inputs
            .iter()
            .map(|t| t.is_tracked().then(|| t.id()))
            .collect(),
        backward,
    };
    TAPE.with(|t| t.borrow_mut().push(node));
}

/// Gradients of one backward pass, by tensor id.
#[derive(Default)]
pub struct Gradients(HashMap<TensorId, Tensor>);

impl Gradients {
    pub fn get(&self, t: &Tensor) -> Option<&Tensor> {
        self.0.get(&t.id())
    }
    pub fn remove(&mut self, t: &Tensor) -> Option<Tensor> {
        self.0.remove(&t.id())
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn accumulate(&mut self, id: TensorId, g: Tensor) -> Result<()> {
        match self.0.remove(&id) {
            None => {
                self.0.insert(id, g);
            }
            Some(prev) => {
                if prev.shape() != g.shape() {
                    return Err(Error::Autograd(format!(
                        "gradient shapes disagree: {:?} vs {:?}",
                        prev.shape(),
                        g.shape()
                    )));
                }
                self.0.insert(id, prev.add(&g)?);
            }
        }
        Ok(())
    }
}

/// Differentiates `loss` (summed if it has several elements) with respect to every tracked
/// tensor it depends on, consuming the tape.
pub fn backward(loss: &Tensor) -> Result<Gradients> {
    let ones = Tensor::ones(loss.shape().clone(), loss.dtype(), loss.device());
    backward_from(&[(loss, &ones)])
}

/// Backward from several outputs at once, each with its given upstream gradient (PyTorch's
/// `torch.autograd.backward(outputs, grads)`), consuming the tape.
pub fn backward_from(seeds: &[(&Tensor, &Tensor)]) -> Result<Gradients> {
    for (y, g) in seeds {
        if !y.is_tracked() {
            return Err(Error::Autograd(
                "backward on a tensor that depends on no parameter".into(),
            ));
        }
        if y.shape() != g.shape() {
            return Err(Error::Autograd(format!(
                "backward: gradient {:?} for an output {:?}",
                g.shape(),
                y.shape()
            )));
        }
    }
    let nodes = TAPE.with(|t| std::mem::take(&mut *t.borrow_mut()));
    no_grad(|| {
        let mut grads = Gradients::default();
        for (y, g) in seeds {
            grads.accumulate(y.id(), g.detach())?;
        }
        for node in nodes.into_iter().rev() {
            let gouts: Vec<Option<Tensor>> =
                node.outputs.iter().map(|id| grads.0.remove(id)).collect();
            if gouts.iter().all(Option::is_none) {
                continue;
            }
            let needs: Vec<bool> = node.inputs.iter().map(Option::is_some).collect();
            let gins = (node.backward)(&gouts, &needs)?;
            for (inp, g) in node.inputs.iter().zip(gins) {
                if let (Some(id), Some(g)) = (inp, g) {
                    grads.accumulate(*id, g)?;
                }
            }
        }
        Ok(grads)
    })
}

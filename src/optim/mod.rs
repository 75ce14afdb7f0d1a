//! SGD with momentum / nesterov / weight decay and parameter groups, and lr schedules.
mod schedule;
pub use schedule::LrSchedule;

use crate::autograd::{no_grad, Gradients};
use crate::backend::Storage;
use crate::error::{shape_err, Error, Result};
use crate::tensor::Tensor;

/// Defined in `backend`, whose update kernels take it (a lower layer imports nothing above).
pub use crate::backend::SgdHyper;

/// Parameters sharing a base learning rate and weight decay.
#[derive(Clone, Debug)]
pub struct ParamGroup {
    pub name: String,
    pub params: Vec<Tensor>,
    pub lr: f64,
    pub weight_decay: f64,
}

/// PyTorch's SGD: d = g + wd·p; buf = d on the first step, else μ·buf + (1−dampening)·d;
/// d = d + μ·buf (nesterov) or buf; p −= lr·d.
pub struct Sgd {
    pub groups: Vec<ParamGroup>,
    pub momentum: f64,
    pub dampening: f64,
    pub nesterov: bool,
    buffers: Vec<Vec<Option<Storage>>>,
}

impl Sgd {
    pub fn new(groups: Vec<ParamGroup>, momentum: f64, nesterov: bool) -> Result<Sgd> {
        if nesterov && momentum <= 0.0 {
            return Err(Error::Msg("nesterov momentum needs momentum > 0".into()));
        }
        if let Some(p) = groups
            .iter()
            .flat_map(|g| &g.params)
            .find(|p| !p.is_tracked())
        {
            return Err(Error::Msg(format!(
                "optimizer given an untracked tensor {p:?}; use into_param()"
            )));
        }
        let buffers = groups.iter().map(|g| vec![None; g.params.len()]).collect();
        Ok(Sgd {
            groups,
            momentum,
            dampening: 0.0,
            nesterov,
            buffers,
        })
    }

    /// One update of every parameter that has a gradient; `lr_factor` scales each group's lr
    /// (the schedule's value at this iteration).
    pub fn step(&mut self, grads: &Gradients, lr_factor: f64) -> Result<()> {
        no_grad(|| {
            for (gi, group) in self.groups.iter().enumerate() {
                let h = SgdHyper {
                    lr: group.lr * lr_factor,
                    momentum: self.momentum,
                    dampening: self.dampening,
                    weight_decay: group.weight_decay,
                    nesterov: self.nesterov,
                };
                for (pi, p) in group.params.iter().enumerate() {
                    let Some(g) = grads.get(p) else { continue };
                    if g.shape() != p.shape() || g.dtype() != p.dtype() {
                        shape_err!("sgd", "gradient {g:?} for parameter {p:?}");
                    }
                    let slot = &mut self.buffers[gi][pi];
                    let first = slot.is_none();
                    let buf = slot
                        .get_or_insert_with(|| Storage::zeros(p.numel(), p.dtype(), p.device()));
                    p.storage_mut().sgd_step(&g.storage(), buf, &h, first)?;
                }
            }
            Ok(())
        })
    }

    /// Momentum buffers as named tensors, for checkpoints (`sgd.<group>.<index>`).
    pub fn state(&self) -> Vec<(String, Tensor)> {
        let mut out = Vec::new();
        for (gi, group) in self.groups.iter().enumerate() {
            for (pi, b) in self.buffers[gi].iter().enumerate() {
                if let Some(b) = b {
                    out.push((
                        format!("sgd.{}.{pi}", group.name),
                        Tensor::from_storage(b.clone(), group.params[pi].shape().clone(), false),
                    ));
                }
            }
        }
        out
    }

    /// Restores the momentum buffers saved in a training checkpoint (absent or unreadable
    /// ones start fresh).
    pub fn load_checkpoint(
        &mut self,
        ck: &crate::io::Checkpoint,
        device: crate::Device,
    ) -> Result<()> {
        self.load_state(|n| {
            ck.contains(n)
                .then(|| ck.get(n, crate::DType::F32, device))
                .transpose()
                .ok()
                .flatten()
        })
    }

    /// Restores momentum buffers written by `state` (absent ones start fresh).
    pub fn load_state(&mut self, get: impl Fn(&str) -> Option<Tensor>) -> Result<()> {
        for (gi, group) in self.groups.iter().enumerate() {
            for (pi, p) in group.params.iter().enumerate() {
                let name = format!("sgd.{}.{pi}", group.name);
                self.buffers[gi][pi] = match get(&name) {
                    Some(t) if t.shape() == p.shape() => {
                        Some(t.to_dtype(p.dtype()).storage().clone())
                    }
                    Some(t) => shape_err!(
                        "sgd state",
                        "{name} has shape {:?}, parameter {:?}",
                        t.shape(),
                        p.shape()
                    ),
                    None => None,
                };
            }
        }
        Ok(())
    }
}

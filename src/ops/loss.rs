//! Losses with hand-written backward passes.
use super::{finish, plain};
use crate::backend::{check_same, CrossEntropyGeom};
use crate::error::{shape_err, Error, Result};
use crate::tensor::Tensor;

impl Tensor {
    /// Multilabel soft margin loss (PyTorch's MultiLabelSoftMarginLoss): mean over classes and
    /// batch of BCE with logits, computed stably. `targets` has the logits' shape, values in [0,1].
    pub fn multilabel_soft_margin(&self, targets: &Tensor) -> Result<Tensor> {
        if self.shape() != targets.shape() || self.numel() == 0 {
            shape_err!(
                "multilabel_soft_margin",
                "logits {:?} vs targets {:?}",
                self.shape(),
                targets.shape()
            );
        }
        check_same(
            "multilabel_soft_margin",
            &[&self.storage(), &targets.storage()],
        )?;
        let s = self.storage().bce_logits_mean(&targets.storage())?;
        let (x, t) = (self.clone(), targets.clone());
        Ok(finish(
            s,
            [1].into(),
            &[self, targets],
            move |g, _, needs| {
                if needs[1] {
                    return Err(Error::Autograd(
                        "multilabel_soft_margin: targets must not require gradients".into(),
                    ));
                }
                Ok(vec![
                    Some(plain(
                        x.storage()
                            .bce_logits_mean_backward(&t.storage(), &g.storage())?,
                        x.shape().clone(),
                    )),
                    None,
                ])
            },
        ))
    }

    /// Softmax cross-entropy over the channel axis of logits (B,K,...) against integer labels
    /// (B,...) stored as floats; pixels labelled `ignore` (255) are skipped; the mean is over
    /// the counted pixels (0 when none counts).
    pub fn cross_entropy_ignore(&self, labels: &Tensor, ignore: usize) -> Result<Tensor> {
        let d = self.dims();
        if self.rank() < 2
            || labels.rank() != self.rank() - 1
            || labels.dims()[0] != d[0]
            || labels.dims()[1..] != d[2..]
        {
            shape_err!(
                "cross_entropy",
                "logits {:?} vs labels {:?}",
                self.shape(),
                labels.shape()
            );
        }
        check_same("cross_entropy", &[&self.storage(), &labels.storage()])?;
        let (b, k, hw) = (d[0], d[1], d[2..].iter().product::<usize>());
        let geom = CrossEntropyGeom { b, k, hw, ignore };
        let (sum, count) = self
            .storage()
            .cross_entropy(&labels.storage(), &geom)?
            .map_err(|l| {
                Error::shape(
                    "cross_entropy",
                    format!("label {l} is neither a class in 0..{k} nor the ignore label {ignore}"),
                )
            })?;
        let mean = if count > 0 { sum / count as f64 } else { 0.0 };
        let s = Tensor::scalar(mean, self.dtype(), self.device())
            .storage()
            .clone();
        let (x, l) = (self.clone(), labels.clone());
        Ok(finish(s, [1].into(), &[self, labels], move |g, _, _| {
            let dx =
                x.storage()
                    .cross_entropy_backward(&l.storage(), &geom, count, &g.storage())?;
            Ok(vec![Some(plain(dx, x.shape().clone())), None])
        }))
    }
}

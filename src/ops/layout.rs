//! Reshape (free), permute, narrow, concat, flip.
use super::{finish, plain};
use crate::autograd::{record, should_track};
use crate::backend::{check_same, Storage};
use crate::error::{shape_err, Result};
use crate::tensor::{Shape, Tensor};

impl Tensor {
    /// Same data, new dims (same element count). Free: shares the storage.
    pub fn reshape(&self, dims: &[usize]) -> Result<Tensor> {
        let shape = Shape::new(dims.to_vec());
        if shape.numel() != self.numel() {
            shape_err!("reshape", "{:?} into {:?}", self.shape(), shape);
        }
        let track = should_track(&[self]);
        let out = self.view_as(shape, track);
        if track {
            let back = self.dims().to_vec();
            record(
                &[&out],
                &[self],
                Box::new(move |g, _| {
                    Ok(vec![Some(g[0].as_ref().expect("gradient").reshape(&back)?)])
                }),
            );
        }
        Ok(out)
    }
    /// Reorders the axes: output axis i is input axis perm[i].
    pub fn permute(&self, perm: &[usize]) -> Result<Tensor> {
        let mut seen = perm.to_vec();
        seen.sort_unstable();
        if seen != (0..self.rank()).collect::<Vec<_>>() {
            shape_err!(
                "permute",
                "{perm:?} is not a permutation of the axes of {:?}",
                self.shape()
            );
        }
        let dims: Vec<usize> = perm.iter().map(|&p| self.dims()[p]).collect();
        let s = self.storage().permute(self.shape(), perm)?;
        let mut inv = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inv[p] = i;
        }
        Ok(finish(s, dims.into(), &[self], move |g, _, _| {
            Ok(vec![Some(g.permute(&inv)?)])
        }))
    }
    pub fn transpose(&self, a: usize, b: usize) -> Result<Tensor> {
        let mut perm: Vec<usize> = (0..self.rank()).collect();
        if a >= perm.len() || b >= perm.len() {
            shape_err!(
                "transpose",
                "axes {a},{b} out of range for {:?}",
                self.shape()
            );
        }
        perm.swap(a, b);
        self.permute(&perm)
    }
    /// Elements [start, start+len) along `axis`.
    pub fn narrow(&self, axis: usize, start: usize, len: usize) -> Result<Tensor> {
        if axis >= self.rank() || start + len > self.dims()[axis] {
            shape_err!(
                "narrow",
                "[{start}, {}) on axis {axis} of {:?}",
                start + len,
                self.shape()
            );
        }
        let mut dims = self.dims().to_vec();
        dims[axis] = len;
        let s = self.storage().narrow(self.shape(), axis, start, len)?;
        let full = self.dims().to_vec();
        Ok(finish(s, dims.into(), &[self], move |g, _, _| {
            // Pad the gradient with zeros back to the full extent.
            let zeros = |n: usize| {
                let mut d = full.clone();
                d[axis] = n;
                Tensor::zeros(d, g.dtype(), g.device())
            };
            let (before, after) = (zeros(start), zeros(full[axis] - start - len));
            Ok(vec![Some(Tensor::concat(&[&before, g, &after], axis)?)])
        }))
    }
    /// Joins tensors along `axis`; all other dims must agree.
    pub fn concat(parts: &[&Tensor], axis: usize) -> Result<Tensor> {
        let Some(first) = parts.first() else {
            shape_err!("concat", "no tensors given")
        };
        let mut dims = first.dims().to_vec();
        if axis >= dims.len() {
            shape_err!("concat", "axis {axis} out of range for {:?}", first.shape());
        }
        dims[axis] = 0;
        for p in parts {
            let ok = p.rank() == first.rank()
                && p.dims()
                    .iter()
                    .zip(first.dims())
                    .enumerate()
                    .all(|(i, (a, b))| i == axis || a == b);
            if !ok {
                shape_err!(
                    "concat",
                    "{:?} does not match {:?} off axis {axis}",
                    p.shape(),
                    first.shape()
                );
            }
            dims[axis] += p.dims()[axis];
        }
        let guards: Vec<_> = parts.iter().map(|p| p.storage()).collect();
        let refs: Vec<&Storage> = guards.iter().map(|g| &**g).collect();
        check_same("concat", &refs)?;
        let s = Storage::concat(
            &refs
                .iter()
                .zip(parts)
                .map(|(s, p)| (*s, p.shape()))
                .collect::<Vec<_>>(),
            axis,
        )?;
        drop(guards);
        let lens: Vec<usize> = parts.iter().map(|p| p.dims()[axis]).collect();
        Ok(finish(s, dims.into(), parts, move |g, _, needs| {
            let mut start = 0;
            let mut out = Vec::with_capacity(lens.len());
            for (&l, &need) in lens.iter().zip(needs) {
                out.push(if need {
                    Some(g.narrow(axis, start, l)?)
                } else {
                    None
                });
                start += l;
            }
            Ok(out)
        }))
    }
    /// Reverses the order along `axis` (axis 3 of NCHW is the horizontal flip).
    pub fn flip(&self, axis: usize) -> Result<Tensor> {
        if axis >= self.rank() {
            shape_err!("flip", "axis {axis} out of range for {:?}", self.shape());
        }
        let s = self.storage().flip(self.shape(), axis)?;
        Ok(finish(s, self.shape().clone(), &[self], move |g, _, _| {
            Ok(vec![Some(g.flip(axis)?)])
        }))
    }
    /// An untracked copy (fresh storage).
    pub fn copy(&self) -> Tensor {
        plain(self.storage().clone(), self.shape().clone())
    }
}

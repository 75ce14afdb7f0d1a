use crate::error::{shape_err, Result};

/// Dimensions of a contiguous row-major tensor.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Shape(Vec<usize>);

impl Shape {
    pub fn new(dims: impl Into<Vec<usize>>) -> Self {
        Shape(dims.into())
    }
    pub fn dims(&self) -> &[usize] {
        &self.0
    }
    pub fn rank(&self) -> usize {
        self.0.len()
    }
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }
    pub fn dim(&self, axis: usize) -> usize {
        self.0[axis]
    }
    /// Row-major strides in elements.
    pub fn strides(&self) -> Vec<usize> {
        let mut s = vec![1; self.0.len()];
        for i in (0..self.0.len().saturating_sub(1)).rev() {
            s[i] = s[i + 1] * self.0[i + 1];
        }
        s
    }
    /// (outer, axis length, inner) split used by every per-axis kernel.
    pub fn split_at_axis(&self, axis: usize) -> (usize, usize, usize) {
        let outer = self.0[..axis].iter().product();
        let inner = self.0[axis + 1..].iter().product();
        (outer, self.0[axis], inner)
    }
    /// NumPy broadcasting of two shapes (right-aligned).
    pub fn broadcast(a: &Shape, b: &Shape, op: &'static str) -> Result<Shape> {
        let r = a.rank().max(b.rank());
        let mut out = vec![0; r];
        for (i, o) in out.iter_mut().enumerate() {
            let da = if i + a.rank() >= r {
                a.0[i + a.rank() - r]
            } else {
                1
            };
            let db = if i + b.rank() >= r {
                b.0[i + b.rank() - r]
            } else {
                1
            };
            *o = match (da, db) {
                (x, y) if x == y => x,
                (1, y) => y,
                (x, 1) => x,
                _ => shape_err!(op, "cannot broadcast {a:?} with {b:?}"),
            };
        }
        Ok(Shape(out))
    }
    /// Strides of `self` seen through a broadcast to `target` (0 on broadcast axes).
    pub fn broadcast_strides(&self, target: &Shape) -> Vec<usize> {
        let r = target.rank();
        let own = self.strides();
        (0..r)
            .map(|i| {
                if i + self.rank() < r {
                    0
                } else {
                    let j = i + self.rank() - r;
                    if self.0[j] == 1 && target.0[i] != 1 {
                        0
                    } else {
                        own[j]
                    }
                }
            })
            .collect()
    }
}

impl std::fmt::Debug for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

impl From<&[usize]> for Shape {
    fn from(d: &[usize]) -> Self {
        Shape(d.to_vec())
    }
}
impl<const N: usize> From<[usize; N]> for Shape {
    fn from(d: [usize; N]) -> Self {
        Shape(d.to_vec())
    }
}
impl From<Vec<usize>> for Shape {
    fn from(d: Vec<usize>) -> Self {
        Shape(d)
    }
}
impl From<&Shape> for Shape {
    fn from(s: &Shape) -> Self {
        s.clone()
    }
}

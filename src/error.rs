//! One error type for the library. A user's bad input (missing file, corrupt checkpoint, wrong
//! shape, no GPU) becomes one of these, with the path and the reason, never a panic.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("shape mismatch in {op}: {detail}")]
    Shape { op: &'static str, detail: String },
    #[error("dtype mismatch in {op}: {lhs:?} vs {rhs:?}")]
    DType {
        op: &'static str,
        lhs: crate::DType,
        rhs: crate::DType,
    },
    #[error("{op}: operands on different devices ({lhs:?} and {rhs:?}); move one with to_device")]
    Device {
        op: &'static str,
        lhs: crate::backend::Device,
        rhs: crate::backend::Device,
    },
    #[error("{path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("autograd: {0}")]
    Autograd(String),
    #[error("non-finite value: {0}")]
    NonFinite(String),
    #[error("{0}")]
    Msg(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn shape(op: &'static str, detail: impl Into<String>) -> Self {
        Error::Shape {
            op,
            detail: detail.into(),
        }
    }
    pub fn device(
        op: &'static str,
        lhs: crate::backend::Device,
        rhs: crate::backend::Device,
    ) -> Self {
        Error::Device { op, lhs, rhs }
    }
    pub fn file(path: impl Into<PathBuf>, reason: impl std::fmt::Display) -> Self {
        Error::File {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// `bail!`-style helper for shape errors.
macro_rules! shape_err {
    ($op:expr, $($arg:tt)*) => { return Err($crate::Error::shape($op, format!($($arg)*))) };
}
pub(crate) use shape_err;

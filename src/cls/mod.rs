//! The co-attention classifier: configuration, model, training, evaluation.
pub mod config;
pub mod eval;
pub mod fork;
pub mod model;
pub mod train;

pub use config::{ClsConfig, Variant};
pub use fork::shared_epochs;
pub use model::{load_classifier, Classifier};
pub use train::{train_cls, TrainClsOptions, TrainSummary};

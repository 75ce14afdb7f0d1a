//! The segmentation stage: DeepLab-LargeFOV (ResNet-101 or VGG16) trained on pseudo labels,
//! multi-scale + flip inference with the dense CRF.
pub mod config;
pub mod data;
pub mod infer;
pub mod model;
pub mod train;

pub use config::{SegBackbone, SegConfig};
pub use data::LabelSource;
pub use infer::{predict_probs, run_infer, run_infer_many, InferOptions};
pub use model::SegNet;
pub use train::{evaluate_split, load_segnet, train_seg, SegSummary, TrainSegOptions};

//! File formats: safetensors checkpoints, palette PNG label maps.
pub mod checkpoint;
pub mod metrics;
pub mod plot;
pub mod png;
pub mod torch;
pub mod weights;
pub use checkpoint::{save_checkpoint, write_atomic, Checkpoint};
pub use png::{read_label_png, write_label_png, LabelMap};

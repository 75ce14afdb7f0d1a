//! File formats: safetensors checkpoints.
pub mod checkpoint;
pub use checkpoint::{save_checkpoint, write_atomic, Checkpoint};

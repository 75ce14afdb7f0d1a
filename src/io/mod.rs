//! File formats: safetensors checkpoints, palette PNG label maps.
pub mod checkpoint;
pub mod faults;
pub mod lock;
pub mod memory;
pub mod metrics;
pub mod plot;
pub mod png;
pub mod record;
pub mod run;
pub mod torch;
pub mod weights;
pub use checkpoint::{
    load_toml, overlay_toml, run_config, save_checkpoint, save_raw, save_toml, write_atomic,
    Checkpoint, RawTensor,
};
pub use png::{read_label_png, write_label_png, LabelMap};

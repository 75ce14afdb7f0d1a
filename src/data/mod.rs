//! Data: the VOC-layout reader, the synthetic generator, augmentation, the pair sampler and
//! the loader threads.
pub mod augment;
pub mod check;
pub mod extra;
pub mod loader;
pub mod sampler;
pub mod synth;
pub mod voc;

pub use extra::{ExtraKind, ExtraSpec};
pub use voc::{Domain, Item, VocDataset};

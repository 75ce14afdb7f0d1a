//! Pseudo-label refinement with AffinityNet (Ahn & Kwak, CVPR 2018; the paper's §4.4 route
//! without saliency; DESIGN §8): `train-affinity` learns which neighbouring positions belong
//! together from the confident parts of the localization maps, `refine` propagates the maps
//! by a random walk over those affinities.
pub mod config;
pub mod labels;
pub mod model;
pub mod refine;
pub mod train;

pub use config::{AffBackbone, AffConfig};
pub use labels::{affinity_labels, affinity_loss, grid_labels, PairTargets};
pub use model::AffinityNet;
pub use refine::{run_refine, RefineOptions, RefineSummary};
pub use train::{train_affinity, AffSummary, TrainAffOptions};

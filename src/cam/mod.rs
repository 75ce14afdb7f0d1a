//! Localization maps and pseudo labels: CAMs from the trained classifier (single or
//! co-attention inference), the official fusion rules, threshold / saliency pseudo labels and
//! the threshold sweep that scores the maps.
pub mod aggregate;
pub mod fusion;
pub mod infer;
pub mod pseudo;
pub mod store;
pub mod sweep;
pub mod threshold;

pub use infer::{run_cams, Affinity, CamMode, CamOptions, CamSummary};
pub use pseudo::{run_pseudo, LabelFilters, PseudoRule, PseudoStats};
pub use store::{read_cam, write_cam, CamFile};
pub use sweep::{default_thresholds, sweep_thresholds, thresholds_up_to, CamSweep};
pub use threshold::auto_threshold;

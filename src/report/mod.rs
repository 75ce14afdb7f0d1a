//! What people look at: `OUT/report.html`, a static page over a pipeline folder (the summary
//! tables, the charts, and galleries of train images with their maps and pseudo labels and of
//! val images with their predictions), and one image's strip as a PNG (`coatt-train show`).
pub mod html;
pub mod strip;

pub use html::{write_html_report, ReportOptions, ReportSummary};

use crate::data::VocDataset;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use strip::ImageSources;

/// Where a pipeline folder's parts are: its data set and which map sets made the labels.
pub struct PipelineFolder {
    pub out: PathBuf,
    pub data: PathBuf,
    pub names: Vec<String>,
    /// The raw maps the pseudo labels came from, and their refinement (when refined).
    pub label_maps: Option<(String, PathBuf)>,
    pub refined_maps: Option<(String, PathBuf)>,
}

impl PipelineFolder {
    /// Reads the stage records of a pipeline folder (`OUT/stages/`).
    pub fn open(out: &Path) -> Result<PipelineFolder> {
        let rec = |stage: &str| -> Option<serde_json::Value> {
            let s =
                std::fs::read_to_string(out.join("stages").join(format!("{stage}.json"))).ok()?;
            serde_json::from_str(&s).ok()
        };
        let Some(cls) = rec("train-cls") else {
            return Err(Error::file(
                out,
                "not a pipeline folder (no stages/train-cls.json): run `coatt-train pipeline --out` first",
            ));
        };
        let data = cls["options"]["data"]
            .as_str()
            .map(|d| out.join(d))
            .unwrap_or_else(|| out.join("data"));
        let names = crate::data::voc::read_class_names(&data)?;
        // the pseudo labels' maps: refined-X (refined from cams-X) or cams-X (raw)
        let (mut label_maps, mut refined_maps) = (None, None);
        if let Some(maps) =
            rec("pseudo").and_then(|p| p["options"]["maps"].as_str().map(String::from))
        {
            if let Some(suffix) = maps.strip_prefix("refined") {
                refined_maps = Some(("refined".to_string(), out.join(&maps)));
                label_maps = Some(("map".to_string(), out.join(format!("cams{suffix}"))));
            } else {
                label_maps = Some(("map".to_string(), out.join(&maps)));
            }
        }
        Ok(PipelineFolder {
            out: out.to_path_buf(),
            data,
            names,
            label_maps,
            refined_maps,
        })
    }

    /// What to show for an image of `split` (train: maps and pseudo label; val: predictions).
    pub fn sources(&self, split: &str, item: &crate::data::voc::Item) -> ImageSources {
        let mut s = ImageSources {
            image: item.image.clone(),
            mask: item.mask.clone(),
            ..Default::default()
        };
        if split == "train" {
            s.maps.extend(self.label_maps.clone());
            s.maps.extend(self.refined_maps.clone());
            s.labels
                .push(("pseudo label".into(), self.out.join("pseudo")));
        } else {
            s.labels.push(("prediction".into(), self.out.join("pred")));
            s.labels
                .push(("prediction + CRF".into(), self.out.join("pred-crf")));
        }
        s
    }
}

/// `coatt-train show ID OUT`: image `id` of a pipeline folder (train or val) as one PNG strip
/// at `dest`.
pub fn show(out: &Path, id: &str, dest: &Path) -> Result<()> {
    let folder = PipelineFolder::open(out)?;
    for split in ["train", "val"] {
        let Ok(ds) = VocDataset::open(&folder.data, split) else {
            continue;
        };
        if let Some(item) = ds.items.iter().find(|it| it.id == id) {
            let tiles = strip::tiles(id, &folder.sources(split, item), &folder.names)?;
            return strip::write_png(dest, &strip::strip(&tiles)?);
        }
    }
    Err(Error::file(
        &folder.data,
        format!("no image '{id}' in the train or val split"),
    ))
}

//! `coatt-train check-data`: what is present, missing, corrupt or inconsistent, file by file.
use super::voc::{load_rgb, resolve_root, VocDataset};
use crate::error::Result;
use crate::io::read_label_png;
use rayon::prelude::*;
use std::path::Path;

#[derive(Debug, Default)]
pub struct SplitReport {
    pub split: String,
    pub images: usize,
    pub problems: Vec<String>,
    pub usable: usize,
    pub with_masks: usize,
    pub class_counts: Vec<usize>,
    pub unlabelled: usize,
}

#[derive(Debug)]
pub struct DataReport {
    pub root: String,
    pub class_names: Vec<String>,
    pub label_source: String,
    pub splits: Vec<SplitReport>,
    /// Why training is impossible, if it is.
    pub fatal: Vec<String>,
}

impl DataReport {
    pub fn trainable(&self) -> bool {
        self.fatal.is_empty()
    }
    pub fn render(&self) -> String {
        let mut s = format!(
            "dataset {}\nclasses: {} ({})\nlabels from: {}\n",
            self.root,
            self.class_names.len() - 1,
            self.class_names[1..].join(", "),
            self.label_source
        );
        for sp in &self.splits {
            s += &format!(
                "\n[{}] {} listed, {} usable, {} with masks, {} with no class\n",
                sp.split, sp.images, sp.usable, sp.with_masks, sp.unlabelled
            );
            s += "  class histogram (images):\n";
            for (c, n) in sp.class_counts.iter().enumerate() {
                s += &format!("    {:>3} {:<20} {n}\n", c, self.class_names[c + 1]);
            }
            for p in &sp.problems {
                s += &format!("  problem: {p}\n");
            }
        }
        if self.fatal.is_empty() {
            s += "\nOK: the train split can be trained on.\n";
        } else {
            for f in &self.fatal {
                s += &format!("\ncannot train: {f}\n");
            }
        }
        s
    }
}

/// Checks the given splits (every image decoded, every mask read and compared in size).
pub fn check(dir: &Path, splits: &[&str]) -> Result<DataReport> {
    let root = resolve_root(dir)?;
    let mut rep = DataReport {
        root: root.display().to_string(),
        class_names: super::voc::read_class_names(&root)?,
        label_source: String::new(),
        splits: Vec::new(),
        fatal: Vec::new(),
    };
    for &split in splits {
        let ds = match VocDataset::open(&root, split) {
            Ok(d) => d,
            Err(e) => {
                if split == splits[0] {
                    rep.fatal.push(format!("split '{split}': {e}"));
                }
                rep.splits.push(SplitReport {
                    split: split.into(),
                    problems: vec![e.to_string()],
                    ..Default::default()
                });
                continue;
            }
        };
        rep.label_source = ds.label_source.to_string();
        let k = ds.num_classes();
        let per: Vec<(bool, bool, Vec<String>)> = ds
            .items
            .par_iter()
            .map(|it| {
                let mut probs = Vec::new();
                let img = match load_rgb(&it.image) {
                    Ok(i) => Some(i),
                    Err(e) => {
                        probs.push(if it.image.exists() {
                            format!("corrupt image: {e}")
                        } else {
                            format!("missing image: {}", it.image.display())
                        });
                        None
                    }
                };
                let mut has_mask = false;
                if let Some(m) = &it.mask {
                    match read_label_png(m) {
                        Ok(mask) => {
                            has_mask = true;
                            if let Some(i) = &img {
                                if (i.width() as usize, i.height() as usize)
                                    != (mask.width, mask.height)
                                {
                                    probs.push(format!(
                                        "size mismatch: {} is {}×{}, {} is {}×{}",
                                        it.image.display(),
                                        i.width(),
                                        i.height(),
                                        m.display(),
                                        mask.width,
                                        mask.height
                                    ));
                                }
                            }
                            if let Some(v) = mask.data.iter().find(|&&v| v as usize > k && v != 255)
                            {
                                probs.push(format!(
                                    "{}: mask value {v} is not a class (1..={k}) or 255",
                                    m.display()
                                ));
                            }
                        }
                        Err(e) => probs.push(format!("corrupt mask: {e}")),
                    }
                }
                (img.is_some(), has_mask, probs)
            })
            .collect();
        let mut sp = SplitReport {
            split: split.into(),
            images: ds.items.len(),
            class_counts: vec![0; k],
            ..Default::default()
        };
        let mut usable_labelled = 0;
        for (it, (ok, has_mask, probs)) in ds.items.iter().zip(per) {
            sp.usable += ok as usize;
            usable_labelled += (ok && !it.labels.is_empty()) as usize;
            sp.with_masks += has_mask as usize;
            sp.problems.extend(probs);
            if it.labels.is_empty() {
                sp.unlabelled += 1;
            }
            for &c in &it.labels {
                sp.class_counts[c] += 1;
            }
        }
        if split == splits[0] {
            if sp.usable == 0 {
                rep.fatal
                    .push(format!("split '{split}' has no usable image"));
            } else if usable_labelled == 0 {
                rep.fatal
                    .push(format!("split '{split}' has no image with a class label"));
            }
        }
        rep.splits.push(sp);
    }
    Ok(rep)
}

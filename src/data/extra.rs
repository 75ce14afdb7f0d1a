//! Extra classifier training data (paper §3.2, §4.2-4.3): simple single-label images from
//! another domain, or web images whose labels may be wrong. An extra set is a VOC-layout
//! folder (its `train` list, or every id of its `cls_labels.txt`; no masks needed) or an
//! image list, one `path class [class ...]` per line (paths relative to the list, classes by
//! name or 0-based id). Every image is decoded once when the set is opened: unreadable files
//! (broken or truncated JPEGs, unknown formats) are reported one by one and left out, so a
//! real web folder trains without crashing; greyscale and CMYK files are converted to RGB.
use super::voc::{read_class_names, read_cls_labels, resolve_root, Domain, Item, VocDataset};
use crate::error::{Error, Result};
use rayon::prelude::*;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// What an extra set is, which decides the W_P its pairs use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ExtraKind {
    /// Single-label images of another domain: three W_P (target, extra, mixed pairs).
    Single,
    /// Web images (noisy labels): paired like target images, one shared W_P.
    Web,
}

impl ExtraKind {
    pub fn domain(self) -> Domain {
        match self {
            ExtraKind::Single => Domain::SingleLabel,
            ExtraKind::Web => Domain::Web,
        }
    }
}

/// `DIR`, `DIR:single` or `DIR:web` (a bare path is web data: no domain-specific W_P).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ExtraSpec {
    pub path: PathBuf,
    pub kind: ExtraKind,
}

impl FromStr for ExtraSpec {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (path, kind) = match s.rsplit_once(':') {
            Some((p, "single")) => (p, ExtraKind::Single),
            Some((p, "web")) => (p, ExtraKind::Web),
            Some((_, k)) if !k.contains('/') && !k.is_empty() => {
                return Err(format!("unknown extra data kind '{k}' (single or web)"))
            }
            _ => (s, ExtraKind::Web),
        };
        if path.is_empty() {
            return Err("empty path".into());
        }
        Ok(ExtraSpec {
            path: PathBuf::from(path),
            kind,
        })
    }
}

/// What opening an extra set found.
#[derive(Clone, Debug)]
pub struct ExtraReport {
    pub path: PathBuf,
    pub kind: ExtraKind,
    /// Images kept.
    pub images: usize,
    /// Images left out, each with its reason.
    pub skipped: Vec<String>,
    /// Kept images per class.
    pub per_class: Vec<usize>,
    /// Kept images with more than one label (unexpected in single-label data, kept).
    pub multi_label: usize,
}

impl ExtraReport {
    pub fn render(&self, class_names: &[String]) -> String {
        let kind = match self.kind {
            ExtraKind::Single => "single-label, own W_P",
            ExtraKind::Web => "web, target W_P",
        };
        let mut s = format!(
            "extra data {} ({kind}): {} images, {} skipped",
            self.path.display(),
            self.images,
            self.skipped.len()
        );
        let per: Vec<String> = self
            .per_class
            .iter()
            .zip(class_names.iter().skip(1))
            .map(|(n, c)| format!("{c} {n}"))
            .collect();
        s += &format!("; per class: {}", per.join(", "));
        if self.kind == ExtraKind::Single && self.multi_label > 0 {
            s += &format!(
                "; warning: {} images carry several labels",
                self.multi_label
            );
        }
        for why in self.skipped.iter().take(20) {
            s += &format!("\n  skipped {why}");
        }
        if self.skipped.len() > 20 {
            s += &format!("\n  ... and {} more", self.skipped.len() - 20);
        }
        s
    }
}

/// Reads an image list: `path class [class ...]` per line, `#` comments.
fn read_list(list: &Path, class_names: &[String]) -> Result<Vec<(String, PathBuf, Vec<usize>)>> {
    let text = std::fs::read_to_string(list).map_err(|e| Error::io(list, e))?;
    let base = list.parent().unwrap_or(Path::new("."));
    let k = class_names.len() - 1;
    let mut out = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut it = line.split_whitespace();
        let Some(path) = it.next() else { continue };
        let mut labels = Vec::new();
        for tok in it {
            let c = match tok.parse::<usize>() {
                Ok(c) if c < k => c,
                _ => class_names
                    .iter()
                    .skip(1)
                    .position(|n| n == tok)
                    .ok_or_else(|| {
                        Error::file(
                            list,
                            format!("line {}: unknown class '{tok}' (names or 0..{k})", ln + 1),
                        )
                    })?,
            };
            labels.push(c);
        }
        if labels.is_empty() {
            return Err(Error::file(
                list,
                format!("line {}: no class for '{path}'", ln + 1),
            ));
        }
        labels.sort_unstable();
        labels.dedup();
        out.push((path.to_string(), base.join(path), labels));
    }
    Ok(out)
}

/// The (id, image, labels) of a VOC-layout extra folder: its train list when it has one,
/// else every id of its cls_labels.txt. Its class names must be the target's.
fn read_folder(dir: &Path, class_names: &[String]) -> Result<Vec<(String, PathBuf, Vec<usize>)>> {
    let root = resolve_root(dir)?;
    let names = read_class_names(&root)?;
    if names != class_names {
        return Err(Error::file(
            &root,
            format!(
                "extra data has other classes than the target set ({} vs {})",
                names[1..].join(","),
                class_names[1..].join(",")
            ),
        ));
    }
    let cls = root.join("cls_labels.txt");
    let listed = root.join("ImageSets/Segmentation/train.txt");
    if listed.exists() {
        let ds = VocDataset::open(&root, "train")?;
        return Ok(ds
            .items
            .into_iter()
            .map(|it| (it.id, it.image, it.labels))
            .collect());
    }
    let table = read_cls_labels(&cls, names.len() - 1)?;
    let mut ids: Vec<(String, Vec<usize>)> = table.into_iter().collect();
    ids.sort();
    Ok(ids
        .into_iter()
        .map(|(id, l)| {
            let img = root.join("JPEGImages").join(format!("{id}.jpg"));
            (id, img, l)
        })
        .collect())
}

/// Opens extra set number `index` (its ids become `extra<index>:<id>`), decoding every image
/// once; unreadable ones and unlabelled ones are reported and left out.
pub fn open_extra(
    spec: &ExtraSpec,
    class_names: &[String],
    index: usize,
) -> Result<(Vec<Item>, ExtraReport)> {
    let entries = if spec.path.is_dir() {
        read_folder(&spec.path, class_names)?
    } else if spec.path.is_file() {
        read_list(&spec.path, class_names)?
    } else {
        return Err(Error::file(
            &spec.path,
            "extra data: no such folder or image list",
        ));
    };
    let checked: Vec<std::result::Result<Item, String>> = entries
        .into_par_iter()
        .map(|(id, image, labels)| {
            if labels.is_empty() {
                return Err(format!("{}: no labels", image.display()));
            }
            match super::voc::load_rgb(&image) {
                Ok(im) if im.width() >= 8 && im.height() >= 8 => Ok(Item {
                    id: format!("extra{index}:{id}"),
                    image,
                    mask: None,
                    labels,
                    domain: spec.kind.domain(),
                }),
                Ok(im) => Err(format!(
                    "{}: image too small ({}×{})",
                    image.display(),
                    im.width(),
                    im.height()
                )),
                Err(e) => Err(e.to_string().trim_end().to_string()),
            }
        })
        .collect();
    let k = class_names.len() - 1;
    let mut report = ExtraReport {
        path: spec.path.clone(),
        kind: spec.kind,
        images: 0,
        skipped: Vec::new(),
        per_class: vec![0; k],
        multi_label: 0,
    };
    let mut items = Vec::new();
    for r in checked {
        match r {
            Ok(it) => {
                for &c in &it.labels {
                    report.per_class[c] += 1;
                }
                report.multi_label += (it.labels.len() > 1) as usize;
                items.push(it);
            }
            Err(why) => report.skipped.push(why),
        }
    }
    report.images = items.len();
    if items.is_empty() {
        return Err(Error::file(
            &spec.path,
            format!(
                "extra data: no usable image ({} skipped{})",
                report.skipped.len(),
                report
                    .skipped
                    .first()
                    .map(|s| format!(", first: {s}"))
                    .unwrap_or_default()
            ),
        ));
    }
    Ok((items, report))
}

/// The classifier's training set: the target's train split followed by every extra set.
pub fn training_set(
    target: VocDataset,
    extra: &[ExtraSpec],
) -> Result<(VocDataset, Vec<ExtraReport>)> {
    let mut ds = target;
    let mut reports = Vec::new();
    for (i, spec) in extra.iter().enumerate() {
        let (items, rep) = open_extra(spec, &ds.class_names, i)?;
        ds.items.extend(items);
        reports.push(rep);
    }
    Ok((ds, reports))
}

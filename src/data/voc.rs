//! A VOC-layout dataset: `JPEGImages/`, `SegmentationClass[Aug]/`, `ImageSets/Segmentation/
//! <split>.txt`, image-level labels from `cls_labels.txt`, else from the masks, else from
//! `Annotations/*.xml`. Serves both `coatt-train synth` output and a real `VOCdevkit/VOC2012`.
use crate::error::{Error, Result};
use crate::io::read_label_png;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub const VOC_CLASSES: [&str; 20] = [
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
];

/// Where a training image comes from; it picks the co-attention's W_P (paper §3.2).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
pub enum Domain {
    /// The segmentation data set itself.
    #[default]
    Target,
    /// Extra simple single-label images from another domain (own W_P, and one for mixed pairs).
    SingleLabel,
    /// Extra web images with possibly wrong labels: paired like target images, same W_P.
    Web,
}

impl Domain {
    /// The W_P a pair of images uses: 0 when neither is single-label data (the target's, also
    /// the one CAM inference uses), 1 when both are, 2 for a mixed pair.
    pub fn wp_index(a: Domain, b: Domain) -> usize {
        match (a == Domain::SingleLabel, b == Domain::SingleLabel) {
            (false, false) => 0,
            (true, true) => 1,
            _ => 2,
        }
    }
}

/// One image of a split.
#[derive(Clone, Debug)]
pub struct Item {
    pub id: String,
    pub image: PathBuf,
    /// The mask path where one exists on disk.
    pub mask: Option<PathBuf>,
    /// 0-based class ids present in the image.
    pub labels: Vec<usize>,
    pub domain: Domain,
}

#[derive(Clone, Debug)]
pub struct VocDataset {
    pub root: PathBuf,
    pub split: String,
    /// Names including "background" at index 0.
    pub class_names: Vec<String>,
    pub items: Vec<Item>,
    /// Where the labels came from: "cls_labels.txt", "masks" or "Annotations".
    pub label_source: &'static str,
}

/// Accepts the dataset folder itself, or a `VOCdevkit` holding `VOC2012`.
pub fn resolve_root(dir: &Path) -> Result<PathBuf> {
    for cand in [
        dir.to_path_buf(),
        dir.join("VOC2012"),
        dir.join("VOCdevkit/VOC2012"),
    ] {
        if cand.join("JPEGImages").is_dir() {
            return Ok(cand);
        }
    }
    if !dir.exists() {
        return Err(Error::file(dir, "dataset folder does not exist"));
    }
    Err(Error::file(
        dir,
        "not a VOC-layout dataset (no JPEGImages/ here, in VOC2012/ or in VOCdevkit/VOC2012/)",
    ))
}

pub fn read_class_names(root: &Path) -> Result<Vec<String>> {
    let p = root.join("class_names.txt");
    if p.exists() {
        let s = std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e))?;
        let names: Vec<String> = s
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if names.len() < 2 || names[0] != "background" {
            return Err(Error::file(
                &p,
                "expected 'background' then one class name per line",
            ));
        }
        return Ok(names);
    }
    Ok(std::iter::once("background")
        .chain(VOC_CLASSES)
        .map(String::from)
        .collect())
}

/// `id c1 c2 ...` per line, 0-based class ids.
pub fn read_cls_labels(path: &Path, num_classes: usize) -> Result<HashMap<String, Vec<usize>>> {
    let s = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = HashMap::new();
    for (ln, line) in s.lines().enumerate() {
        let mut it = line.split_whitespace();
        let Some(id) = it.next() else { continue };
        let mut labels = Vec::new();
        for t in it {
            let c: usize = t.parse().map_err(|_| {
                Error::file(path, format!("line {}: '{t}' is not a class id", ln + 1))
            })?;
            if c >= num_classes {
                return Err(Error::file(
                    path,
                    format!("line {}: class {c} out of range 0..{num_classes}", ln + 1),
                ));
            }
            labels.push(c);
        }
        labels.sort_unstable();
        labels.dedup();
        out.insert(id.to_string(), labels);
    }
    Ok(out)
}

/// Classes present in a mask (values 1..=K; 0 and 255 skipped), 0-based.
pub fn labels_from_mask(path: &Path, num_classes: usize) -> Result<Vec<usize>> {
    let m = read_label_png(path)?;
    let mut seen = vec![false; 256];
    for &v in &m.data {
        seen[v as usize] = true;
    }
    let bad: Vec<usize> = (num_classes + 1..255).filter(|&v| seen[v]).collect();
    if !bad.is_empty() {
        return Err(Error::file(
            path,
            format!("mask values {bad:?} are neither classes 1..={num_classes} nor 255"),
        ));
    }
    Ok((1..=num_classes)
        .filter(|&v| seen[v])
        .map(|v| v - 1)
        .collect())
}

/// Object names from a VOC Annotations XML (a minimal scan of `<object><name>`).
pub fn labels_from_xml(path: &Path, class_names: &[String]) -> Result<Vec<usize>> {
    let s = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    for obj in s.split("<object>").skip(1) {
        let name = obj
            .split("<name>")
            .nth(1)
            .and_then(|r| r.split("</name>").next())
            .map(str::trim);
        let Some(name) = name else {
            return Err(Error::file(path, "an <object> without <name>"));
        };
        let c = class_names
            .iter()
            .skip(1)
            .position(|n| n == name)
            .ok_or_else(|| Error::file(path, format!("unknown class '{name}'")))?;
        out.push(c);
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// An image id names files inside the data set and inside output folders (`<out>/<id>.png`):
/// it must not reach outside them.
pub fn check_id(id: &str) -> std::result::Result<(), String> {
    if id.is_empty()
        || id == "."
        || id.contains("..")
        || id.contains(['/', '\\', '\0'])
        || id.starts_with('-')
    {
        return Err(format!(
            "image id '{}' is not a plain file name (no path separators, '..' or leading '-')",
            id.escape_default()
        ));
    }
    Ok(())
}

impl VocDataset {
    /// Opens `split` (train, val, train_aug, ...). Every listed id gets labels or an error.
    pub fn open(dir: &Path, split: &str) -> Result<VocDataset> {
        let root = resolve_root(dir)?;
        let class_names = read_class_names(&root)?;
        let k = class_names.len() - 1;
        let list = root
            .join("ImageSets/Segmentation")
            .join(format!("{split}.txt"));
        let text = std::fs::read_to_string(&list).map_err(|e| Error::io(&list, e))?;
        let mut ids: Vec<String> = Vec::new();
        for (n, l) in text.lines().enumerate() {
            let Some(id) = l.split_whitespace().next() else {
                continue;
            };
            check_id(id).map_err(|why| Error::file(&list, format!("line {}: {why}", n + 1)))?;
            ids.push(id.to_string());
        }
        let mask_dir = ["SegmentationClassAug", "SegmentationClass"]
            .iter()
            .map(|d| root.join(d))
            .find(|d| d.is_dir());
        let cls_path = root.join("cls_labels.txt");
        let table = if cls_path.exists() {
            Some(read_cls_labels(&cls_path, k)?)
        } else {
            None
        };
        let mut source = "cls_labels.txt";
        let mut items = Vec::with_capacity(ids.len());
        for id in ids {
            let image = root.join("JPEGImages").join(format!("{id}.jpg"));
            let mask = mask_dir
                .as_ref()
                .map(|d| d.join(format!("{id}.png")))
                .filter(|p| p.exists());
            let labels = match (&table, &mask) {
                (Some(t), _) => t.get(&id).cloned().ok_or_else(|| {
                    Error::file(
                        &cls_path,
                        format!("no labels for image '{id}' of {}", list.display()),
                    )
                })?,
                (None, Some(m)) => {
                    source = "masks";
                    labels_from_mask(m, k)?
                }
                (None, None) => {
                    source = "Annotations";
                    let xml = root.join("Annotations").join(format!("{id}.xml"));
                    if !xml.exists() {
                        return Err(Error::file(&xml, format!("no labels for '{id}': no cls_labels.txt, no mask and no annotation")));
                    }
                    labels_from_xml(&xml, &class_names)?
                }
            };
            items.push(Item {
                id,
                image,
                mask,
                labels,
                domain: Domain::Target,
            });
        }
        Ok(VocDataset {
            root,
            split: split.to_string(),
            class_names,
            items,
            label_source: source,
        })
    }

    pub fn num_classes(&self) -> usize {
        self.class_names.len() - 1
    }

    /// For each class, the indices of the items that contain it (for the pair sampler).
    pub fn by_class(&self) -> Vec<Vec<usize>> {
        let mut v = vec![Vec::new(); self.num_classes()];
        for (i, it) in self.items.iter().enumerate() {
            for &c in &it.labels {
                v[c].push(i);
            }
        }
        v
    }
}

/// Decodes an image file to RGB8 (greyscale and CMYK are converted); the error names the file.
pub fn load_rgb(path: &Path) -> Result<image::RgbImage> {
    let r = image::ImageReader::open(path).map_err(|e| Error::io(path, e))?;
    let r = r.with_guessed_format().map_err(|e| Error::io(path, e))?;
    let img = r
        .decode()
        .map_err(|e| Error::file(path, format!("cannot decode image ({e})")))?;
    Ok(img.to_rgb8())
}

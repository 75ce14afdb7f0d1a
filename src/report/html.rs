//! `OUT/report.html`: one static page (no server, no network; images by relative path) with
//! the pipeline's summary tables, its charts, a legend of the label colours and two galleries:
//! train images (input, ground truth, maps per labelled class, refined maps, pseudo label;
//! per-image pseudo-label IoU) and val images (input, ground truth, prediction with and without
//! CRF; per-image IoU). Rows are strips written to `OUT/gallery/<split>/<id>.png`; a few lines
//! of script sort them (worst first by default) and filter them by class.
use super::strip::{self, Tile};
use super::PipelineFolder;
use crate::data::VocDataset;
use crate::error::Result;
use crate::eval::Confusion;
use crate::io::read_label_png;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug)]
pub struct ReportOptions {
    pub out: PathBuf,
    /// Images per gallery (spread evenly over the split); ignored with `all`.
    pub sample: usize,
    pub all: bool,
    pub quiet: bool,
}

impl ReportOptions {
    pub fn new(out: &Path) -> ReportOptions {
        ReportOptions {
            out: out.to_path_buf(),
            sample: 48,
            all: false,
            quiet: true,
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct ReportSummary {
    pub page: PathBuf,
    /// Rows of the train and val galleries.
    pub train_rows: usize,
    pub val_rows: usize,
    /// Bytes of the page and its gallery strips.
    pub bytes: u64,
}

struct Row {
    id: String,
    classes: Vec<String>,
    /// The per-image IoU the gallery sorts by, and its text.
    iou: Option<f64>,
    note: String,
    strip: String,
}

/// Mean IoU of one label map against a mask (pixels at 255 in either are left out), or None
/// when either is missing, they differ in size, or no pixel is labelled (an image whose
/// pseudo label is all ignored has no IoU, not an IoU of 0).
fn image_iou(pred: &Path, mask: Option<&PathBuf>, classes: usize) -> Option<f64> {
    let (p, g) = (read_label_png(pred).ok()?, read_label_png(mask?).ok()?);
    if (p.width, p.height) != (g.width, g.height) {
        return None;
    }
    let mut c = Confusion::new(classes);
    c.add_partial(&g.data, &p.data).ok()?;
    (c.coverage() > 0.0).then(|| c.miou())
}

/// Evenly spread indices: `n` of `len` (all when n ≥ len).
fn spread(len: usize, n: usize) -> Vec<usize> {
    if n >= len {
        return (0..len).collect();
    }
    (0..n).map(|i| i * len / n).collect()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn gallery(folder: &PipelineFolder, split: &str, o: &ReportOptions) -> Result<Vec<Row>> {
    let Ok(ds) = VocDataset::open(&folder.data, split) else {
        return Ok(Vec::new());
    };
    let dir = o.out.join("gallery").join(split);
    // the strips of an earlier report (another sample) are not this page's
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| crate::Error::io(&dir, e))?;
    }
    std::fs::create_dir_all(&dir).map_err(|e| crate::Error::io(&dir, e))?;
    let picks = if o.all {
        (0..ds.items.len()).collect()
    } else {
        spread(ds.items.len(), o.sample)
    };
    let k = folder.names.len();
    let bar = crate::progress::bar(picks.len() as u64, &format!("report {split}"));
    if o.quiet {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut rows = Vec::new();
    for i in picks {
        bar.inc(1);
        let item = &ds.items[i];
        let tiles: Vec<Tile> = strip::tiles(&item.id, &folder.sources(split, item), &folder.names)?;
        let png = dir.join(format!("{}.png", item.id));
        strip::write_png(&png, &strip::strip(&tiles)?)?;
        let scored = |folder_name: &str| {
            image_iou(
                &folder
                    .out
                    .join(folder_name)
                    .join(format!("{}.png", item.id)),
                item.mask.as_ref(),
                k,
            )
        };
        let pct = |v: Option<f64>| {
            v.map_or("- (no pixel labelled)".to_string(), |x| {
                format!("{:.1}", 100.0 * x)
            })
        };
        let (iou, note) = if split == "train" {
            let v = scored("pseudo");
            (v, format!("pseudo-label IoU {}", pct(v)))
        } else {
            let (v, c) = (scored("pred"), scored("pred-crf"));
            (v, format!("IoU {} (CRF {})", pct(v), pct(c)))
        };
        rows.push(Row {
            id: item.id.clone(),
            classes: item
                .labels
                .iter()
                .map(|&c| {
                    folder
                        .names
                        .get(c + 1)
                        .cloned()
                        .unwrap_or_else(|| c.to_string())
                })
                .collect(),
            iou,
            note,
            strip: format!("gallery/{split}/{}.png", item.id),
        });
    }
    bar.finish_and_clear();
    Ok(rows)
}

/// Markdown tables of report.md as HTML tables (other lines are left out: the page has its own
/// headings).
fn tables_from_markdown(md: &str) -> String {
    let mut html = String::new();
    let mut in_table = false;
    for line in md.lines() {
        let t = line.trim();
        if t.starts_with('|') {
            let cells: Vec<&str> = t.trim_matches('|').split('|').map(str::trim).collect();
            if cells
                .iter()
                .all(|c| c.chars().all(|ch| matches!(ch, '-' | ':')))
            {
                continue;
            }
            if !in_table {
                html += "<table class=\"summary\">\n";
                in_table = true;
            }
            html += "<tr>";
            for c in cells {
                let _ = write!(html, "<td>{}</td>", escape(&c.replace("**", "")));
            }
            html += "</tr>\n";
        } else if in_table {
            html += "</table>\n";
            in_table = false;
        }
    }
    if in_table {
        html += "</table>\n";
    }
    html
}

fn gallery_html(split: &str, title: &str, rows: &[Row], names: &[String]) -> String {
    let mut h = format!("<h2>{}</h2>\n", escape(title));
    let _ = write!(
        h,
        "<p class=\"controls\">class <select id=\"{split}-class\" onchange=\"update('{split}')\"><option value=\"\">all</option>"
    );
    for n in names.iter().skip(1) {
        let _ = write!(h, "<option>{}</option>", escape(n));
    }
    let _ = write!(
        h,
        "</select> sort <select id=\"{split}-sort\" onchange=\"update('{split}')\"><option value=\"worst\">worst IoU first</option><option value=\"best\">best IoU first</option><option value=\"id\">by id</option></select> <span id=\"{split}-count\"></span></p>\n<table class=\"gallery\" id=\"{split}\">\n"
    );
    for r in rows {
        let _ = writeln!(
            h,
            "<tr class=\"row\" data-id=\"{id}\" data-iou=\"{iou}\" data-classes=\"{classes}\"><td class=\"meta\"><b>{id}</b><br>{cls}<br>{note}</td><td><img src=\"{src}\" alt=\"{id}\"></td></tr>",
            id = escape(&r.id),
            iou = r.iou.map_or("-1".to_string(), |v| format!("{v:.4}")),
            classes = escape(&r.classes.join("|")),
            cls = escape(&r.classes.join(", ")),
            note = escape(&r.note),
            src = escape(&r.strip),
        );
    }
    h += "</table>\n";
    h
}

const STYLE: &str = "body{font-family:sans-serif;margin:1.5em;color:#222}table{border-collapse:collapse;margin:.5em 0}td{border:1px solid #ccc;padding:3px 8px;vertical-align:top}table.gallery td.meta{width:13em;font-size:90%}.legend span{display:inline-block;margin:0 1em .3em 0}.legend i{display:inline-block;width:1em;height:1em;margin-right:.3em;vertical-align:middle;border:1px solid #888}img.chart{max-width:720px;margin:0 1em 1em 0}";

const SCRIPT: &str = r#"
function update(split){
  const t=document.getElementById(split); if(!t) return;
  const cls=document.getElementById(split+'-class').value;
  const how=document.getElementById(split+'-sort').value;
  const rows=[...t.querySelectorAll('tr.row')];
  rows.sort((a,b)=>{
    if(how==='id') return a.dataset.id.localeCompare(b.dataset.id);
    const d=parseFloat(a.dataset.iou)-parseFloat(b.dataset.iou);
    return how==='best'?-d:d;
  });
  let shown=0;
  for(const r of rows){
    const ok=!cls||r.dataset.classes.split('|').includes(cls);
    r.style.display=ok?'':'none'; if(ok) shown++;
    t.appendChild(r);
  }
  document.getElementById(split+'-count').textContent=shown+' of '+rows.length+' images';
}
// after every image has loaded or failed: how many did not resolve (read by the browser test)
window.addEventListener('load',()=>{
  update('train'); update('val');
  const imgs=[...document.images];
  document.body.dataset.images=imgs.length;
  document.body.dataset.broken=imgs.filter(i=>!i.complete||i.naturalWidth===0).length;
});
"#;

/// Writes `OUT/report.html` and its gallery strips.
pub fn write_html_report(o: &ReportOptions) -> Result<ReportSummary> {
    let folder = PipelineFolder::open(&o.out)?;
    let _lock = crate::io::lock::lock_dir(&o.out.join("gallery"))?;
    let train = gallery(&folder, "train", o)?;
    let val = gallery(&folder, "val", o)?;
    let mut h = String::from(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>coatt pipeline report</title>",
    );
    let _ = write!(
        h,
        "<style>{STYLE}</style></head><body>\n<h1>coatt pipeline report</h1>\n"
    );
    if let Ok(md) = std::fs::read_to_string(o.out.join("report.md")) {
        h += "<h2>Summary</h2>\n";
        h += &tables_from_markdown(&md);
    }
    let charts = [
        ("maps-vs-t.png", "map sets against the background threshold"),
        ("cls/loss.png", "classifier loss"),
        ("cls/val.png", "classifier val mAP"),
        ("pseudo/iou.png", "pseudo labels: IoU per class"),
        ("pred/iou.png", "segmentation: IoU per class"),
        ("seg/loss.png", "segmentation loss"),
    ];
    h += "<h2>Charts</h2>\n<p>";
    for (file, alt) in charts {
        if o.out.join(file).exists() {
            let _ = write!(
                h,
                "<img class=\"chart\" src=\"{file}\" alt=\"{}\">",
                escape(alt)
            );
        }
    }
    h += "</p>\n<h2>Label colours</h2>\n<p class=\"legend\">";
    let pal = crate::io::png::voc_palette();
    for (c, n) in folder.names.iter().enumerate() {
        let _ = write!(
            h,
            "<span><i style=\"background:rgb({},{},{})\"></i>{}</span>",
            pal[3 * c],
            pal[3 * c + 1],
            pal[3 * c + 2],
            escape(n)
        );
    }
    h += "<span><i style=\"background:#fff\"></i>ignored (255)</span></p>\n";
    h += &gallery_html(
        "train",
        "Train: maps and pseudo labels",
        &train,
        &folder.names,
    );
    h += &gallery_html("val", "Val: predictions", &val, &folder.names);
    let _ = write!(h, "<script>{SCRIPT}</script>\n</body></html>\n");
    let page = o.out.join("report.html");
    crate::io::write_atomic(&page, h.as_bytes())?;
    let mut bytes = h.len() as u64;
    for split in ["train", "val"] {
        if let Ok(rd) = std::fs::read_dir(o.out.join("gallery").join(split)) {
            bytes += rd
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum::<u64>();
        }
    }
    Ok(ReportSummary {
        page,
        train_rows: train.len(),
        val_rows: val.len(),
        bytes,
    })
}

//! The outline every trainer shares (train-cls, train-seg, train-affinity): the run folder's
//! lock, its config (the given one for a fresh run, the run's own config.toml on `--resume`),
//! the checkpoint to continue from, metrics.jsonl trimmed to that checkpoint, and the loss plot
//! at the end. What differs between trainers (the model, the loop, the checkpoint's position
//! fields) stays with them.
use super::lock::{lock_dir, DirLock};
use super::metrics::{read_jsonl, retain_jsonl, MetricsWriter};
use super::plot::{smooth, write_line_chart, Chart, Series};
use super::{run_config, Checkpoint};
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// The newest checkpoint of a run (written atomically at every checkpoint).
pub const LAST: &str = "last.safetensors";

/// A training run's folder, locked for this process while the value lives.
#[derive(Debug)]
pub struct TrainingRun<C> {
    pub dir: PathBuf,
    pub config: C,
    pub resume: bool,
    _lock: DirLock,
}

impl<C> TrainingRun<C> {
    /// Locks `dir` and settles the config: `fresh` for a new run (refused if the folder already
    /// holds one), the folder's config.toml (read by `load`) on resume (refused if there is no
    /// checkpoint). Nothing is written but the lock file.
    pub fn open(
        dir: &Path,
        resume: bool,
        fresh: &C,
        load: impl FnOnce(&Path) -> Result<C>,
    ) -> Result<Self>
    where
        C: Clone,
    {
        let lock = lock_dir(dir)?;
        let config = run_config(dir, &dir.join(LAST), resume, fresh, load)?;
        Ok(TrainingRun {
            dir: dir.to_path_buf(),
            config,
            resume,
            _lock: lock,
        })
    }

    pub fn last(&self) -> PathBuf {
        self.dir.join(LAST)
    }

    /// Writes config.toml with `save`: call it once the config and the inputs are checked, so
    /// a refused run leaves nothing behind but the lock file.
    pub fn create(&self, save: impl FnOnce(&C, &Path) -> Result<()>) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        save(&self.config, &self.dir.join("config.toml"))
    }

    /// The checkpoint to continue from: Some on resume.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>> {
        if self.resume {
            Checkpoint::open(self.last()).map(Some)
        } else {
            Ok(None)
        }
    }

    /// metrics.jsonl for writing. On resume, the rows for which `keep` is false (those the
    /// interrupted run logged after its checkpoint, and a torn last row) are dropped and new
    /// rows appended; a fresh run starts a new file (a run killed before its first checkpoint
    /// left rows that belong to no checkpoint).
    pub fn metrics(&self, keep: impl Fn(&serde_json::Value) -> bool) -> Result<MetricsWriter> {
        let path = self.metrics_path();
        if self.resume {
            retain_jsonl(&path, keep)?;
            MetricsWriter::append(&path)
        } else {
            MetricsWriter::create(&path)
        }
    }

    pub fn metrics_path(&self) -> PathBuf {
        self.dir.join("metrics.jsonl")
    }

    /// Ends the run: the loss plot from metrics.jsonl.
    pub fn finish(&self) -> Result<()> {
        write_loss_plot(&self.dir)
    }
}

/// `metrics.jsonl` rows whose `iteration` is below `n` (the checkpoint's position) are kept.
pub fn before_iteration(v: &serde_json::Value, n: usize) -> bool {
    v.get("iteration")
        .and_then(|i| i.as_u64())
        .is_none_or(|i| (i as usize) < n)
}

/// `loss.png` (and `.svg`) of a run folder: every iteration's loss and its running mean over
/// 25; and `val.png` when the run logs a validation score per epoch (`val_map` of the
/// classifier, `val_miou` of the segmentation network).
pub fn write_loss_plot(run: &Path) -> Result<()> {
    let rows = read_jsonl(&run.join("metrics.jsonl"))?;
    let pts: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| Some((r.get("iteration")?.as_f64()?, r.get("loss")?.as_f64()?)))
        .collect();
    let sm = smooth(&pts, 25);
    write_line_chart(
        &run.join("loss.png"),
        &Chart {
            title: "Training loss",
            x_label: "iteration",
            y_label: "loss (sum of the loss terms)",
            series: &[
                Series {
                    name: "each iteration",
                    points: &pts,
                    color: [170, 185, 230],
                },
                Series {
                    name: "running mean over 25",
                    points: &sm,
                    color: [20, 60, 200],
                },
            ],
        },
    )?;
    for (key, title, y_label) in [
        ("val_map", "Validation mAP of the classifier", "val mAP (%)"),
        (
            "val_miou",
            "Validation mIoU of the segmentation",
            "val mIoU (%)",
        ),
    ] {
        // per epoch where the run logs its score at epoch ends (the classifier), else per
        // iteration: one x axis per chart
        let per_epoch = rows
            .iter()
            .any(|r| r.get("epoch_end").is_some() && r.get(key).is_some());
        let (x_key, x_label) = if per_epoch {
            ("epoch_end", "epoch")
        } else {
            ("iteration", "iteration")
        };
        let val: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|r| Some((r.get(x_key)?.as_f64()?, 100.0 * r.get(key)?.as_f64()?)))
            .collect();
        if !val.is_empty() {
            write_line_chart(
                &run.join("val.png"),
                &Chart {
                    title,
                    x_label,
                    y_label,
                    series: &[Series {
                        name: "",
                        points: &val,
                        color: [200, 40, 40],
                    }],
                },
            )?;
        }
    }
    Ok(())
}

//! Starting a classifier run from another run's first epochs. Two configs that differ only in
//! the variant (and in settings the co-attention terms alone use) train their first epochs bit
//! for bit alike: every variant builds the same weights from the seed (W_P and φ∩ included),
//! draws the same pairs and, until the co-attention terms join at `coattention_from`, trains
//! the single-image loss alone. So a run (the pipeline's baseline, or `train-cls --start-from`:
//! a full classifier continued from a basic run's epoch 3, as docs/quality.md's ablations do)
//! can take the other run's checkpoint at that epoch instead of training those epochs again;
//! tests/train_cls.rs checks that the result equals a run trained from the start.
use super::config::ClsConfig;
use super::train::{epoch_checkpoint, logged_before, LAST};
use crate::data::VocDataset;
use crate::error::{Error, Result};
use crate::io::metrics::read_jsonl;
use crate::io::record::{differences, fingerprint};
use crate::io::{write_atomic, Checkpoint};
use std::path::Path;

/// The file in a run folder that names its training set (`training_set_fingerprint`).
pub const TRAINING_SET: &str = "training-set.txt";

/// A fingerprint of what a run trains on: every training image's id, labels, domain and file
/// size, in order. The config does not hold the data's path, so this is what tells a source
/// run trained on another set (another synth seed has the same ids) from one that can be
/// started from.
pub fn training_set_fingerprint(train: &VocDataset) -> String {
    let mut text = train.class_names.join(",");
    for it in &train.items {
        let size = std::fs::metadata(&it.image).map_or(0, |m| m.len());
        text.push_str(&format!(
            "\n{} {:?} {:?} {size}",
            it.id, it.labels, it.domain
        ));
    }
    fingerprint(text.as_bytes())
}

/// How many leading epochs a run of `b` trains exactly like a run of `a`: all of them when the
/// configs are equal; those before the first co-attention epoch when they differ only in the
/// variant, the preset's name and the settings that act only while the co-attention terms are
/// in the loss (the affinity, a fixed τ, the scorer, when the contrastive term joins, the lr
/// factor); None when they differ in anything else (a learned τ or W_P's init or lr
/// multiplier change the parameters or their optimizer groups from the start, negative pairs
/// the pairs).
pub fn shared_epochs(a: &ClsConfig, b: &ClsConfig) -> Option<usize> {
    if a == b {
        return Some(a.epochs);
    }
    (as_seen_by(a, b) == *a).then_some(a.coattention_from.min(a.epochs))
}

/// `b` with the settings it may differ from `a` in set to `a`'s.
fn as_seen_by(a: &ClsConfig, b: &ClsConfig) -> ClsConfig {
    let fixed_tau = !a.learn_temperature && !b.learn_temperature;
    ClsConfig {
        // a name only: `--preset tiny --config F` and a preset holding F's fields are the same
        preset: a.preset.clone(),
        variant: a.variant,
        affinity: a.affinity,
        temperature: if fixed_tau {
            a.temperature
        } else {
            b.temperature
        },
        scorer: a.scorer,
        contrastive_from: a.contrastive_from,
        coattention_lr_factor: a.coattention_lr_factor,
        ..b.clone()
    }
}

/// Seeds the run folder `dst` (its config.toml written, nothing trained yet) with the epoch
/// checkpoints and metrics of `src` up to the newest epoch both runs share, and makes that
/// epoch its last checkpoint. Returns the epoch (0: nothing to take, the run trains from the
/// start). A `src` whose first epochs are not this run's (`shared_epochs`) is an error naming
/// it and what differs, and so is one trained on another training set (`training_set`: this
/// run's `training_set_fingerprint`).
pub fn start_from(src: &Path, dst: &Path, cfg: &ClsConfig, training_set: &str) -> Result<usize> {
    let src_cfg_path = src.join("config.toml");
    if !src_cfg_path.exists() {
        return Err(Error::file(
            src,
            "cannot start from this folder: it holds no classifier run (no config.toml)",
        ));
    }
    let src_cfg = ClsConfig::load(&src_cfg_path)?;
    let Some(shared) = shared_epochs(&src_cfg, cfg) else {
        let json = |c: &ClsConfig| serde_json::to_value(c).map_err(|e| Error::Msg(e.to_string()));
        let diff = differences(&json(&src_cfg)?, &json(&as_seen_by(&src_cfg, cfg))?);
        return Err(Error::file(
            &src_cfg_path,
            format!(
                "cannot start from this run: its config differs from this one in more than the variant and the co-attention settings ({}), so their first epochs are not the same training",
                diff.join("; ")
            ),
        ));
    };
    match std::fs::read_to_string(src.join(TRAINING_SET)) {
        Ok(theirs) if theirs.trim() != training_set => {
            return Err(Error::file(
                src,
                "cannot start from this run: it was trained on another training set (its training-set.txt differs from this run's data)",
            ))
        }
        Ok(_) => {}
        // runs made before the file existed
        Err(_) => eprintln!(
            "warning: {} does not name its training set (made by an older coatt); its first epochs are taken on trust that it trained on this run's data",
            src.display()
        ),
    }
    // the newest shared epoch the source has finished (it may still be training)
    let Some(epoch) = (1..=shared)
        .rev()
        .find(|&e| epoch_checkpoint(src, e).exists())
    else {
        return Ok(0);
    };
    let variant = format!("{:?}", cfg.variant);
    for e in 1..=epoch {
        Checkpoint::open(epoch_checkpoint(src, e))?
            .copy_with_metadata(&epoch_checkpoint(dst, e), &[("variant", variant.clone())])?;
    }
    let at = Checkpoint::open(epoch_checkpoint(dst, epoch))?;
    let iterations = at.meta_usize("iteration")?;
    // the source's rows of those epochs (their val mAP included)
    let rows: String = read_jsonl(&src.join("metrics.jsonl"))?
        .into_iter()
        .filter(|v| logged_before(v, epoch, iterations))
        .map(|v| format!("{v}\n"))
        .collect();
    write_atomic(&dst.join("metrics.jsonl"), rows.as_bytes())?;
    // last: written after the metrics, so a folder with a last checkpoint is complete
    at.copy_with_metadata(&dst.join(LAST), &[])?;
    Ok(epoch)
}

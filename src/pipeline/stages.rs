//! The pipeline's stage runner. Each stage writes OUT/stages/<name>.json when it completes:
//! the options and inputs it ran with, its result and its time. A rerun skips a stage whose
//! record holds the same options; a stage recorded with other options stops the pipeline
//! with an error naming what differs, unless `force` is set, which reruns that stage and
//! every stage after it (their outputs removed first). A stage without a record (never run,
//! or killed half way) runs, resuming from what it left.
//!
//! Each record also holds `after`, a hash chained over the names and options of every stage
//! before it in this run: a record left by an earlier invocation whose earlier stages have
//! since been redone with other options (a forced rerun killed half way) no longer matches,
//! so it is redone (with `force`) or reported, never taken as complete.
use crate::error::{Error, Result};
use crate::io::record::{differences, fingerprint};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::time::Instant;

pub struct Stages {
    pub dir: PathBuf,
    /// The recorded time of every stage met so far, run now or by an earlier invocation, in
    /// order (the report's time table).
    pub times: Vec<(String, f64)>,
    pub ran: Vec<String>,
    pub skipped: Vec<String>,
    pub quiet: bool,
    pub force: bool,
    /// Set once a stage reran over a different record: every later stage reruns too.
    invalidated: bool,
    /// The hash chain over the names and options of the stages run or skipped so far.
    chain: String,
}

impl Stages {
    pub fn new(dir: &Path, quiet: bool, force: bool) -> Result<Stages> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        Ok(Stages {
            dir: dir.to_path_buf(),
            times: Vec::new(),
            ran: Vec::new(),
            skipped: Vec::new(),
            quiet,
            force,
            invalidated: false,
            chain: String::new(),
        })
    }

    fn say(&self, s: &str) {
        if !self.quiet {
            eprintln!("[pipeline] {s}");
        }
    }

    /// Runs `f` unless the stage's record holds the same `options`; returns the stage's
    /// result. `outputs` are removed before a forced rerun.
    pub fn run(
        &mut self,
        name: &str,
        options: Value,
        outputs: &[PathBuf],
        f: impl FnOnce() -> Result<Value>,
    ) -> Result<Value> {
        let marker = self.dir.join(format!("{name}.json"));
        let after = self.chain.clone();
        self.chain = fingerprint(format!("{after}|{name}|{options}").as_bytes());
        if marker.exists() {
            let s = std::fs::read_to_string(&marker).map_err(|e| Error::io(&marker, e))?;
            let rec: Value = serde_json::from_str(&s)
                .map_err(|e| Error::file(&marker, format!("corrupt stage record ({e})")))?;
            let old = rec.get("options").cloned().unwrap_or(Value::Null);
            let mut diff = differences(&old, &options);
            // records written before the chain existed carry no `after` and are not checked
            if rec
                .get("after")
                .is_some_and(|a| a.as_str() != Some(after.as_str()))
            {
                diff.push("an earlier stage was redone with other options since".into());
            }
            if diff.is_empty() && !self.invalidated {
                self.skipped.push(name.to_string());
                if let Some(t) = rec.get("secs").and_then(Value::as_f64) {
                    self.times.push((name.to_string(), t));
                }
                self.say(&format!("{name}: already complete, skipped"));
                return Ok(rec.get("result").cloned().unwrap_or(Value::Null));
            }
            if !self.force && !self.invalidated {
                return Err(Error::file(
                    &marker,
                    format!(
                        "stage {name} was completed with other inputs or options ({}); rerun with --force to redo it and the stages after it, or use another --out",
                        if diff.is_empty() { "an earlier stage changed".to_string() } else { diff.join("; ") }
                    ),
                ));
            }
            self.say(&format!("{name}: redone (options changed)"));
            self.invalidated = true;
            std::fs::remove_file(&marker).map_err(|e| Error::io(&marker, e))?;
            for o in outputs {
                if o.is_dir() {
                    std::fs::remove_dir_all(o).map_err(|e| Error::io(o, e))?;
                } else if o.exists() {
                    std::fs::remove_file(o).map_err(|e| Error::io(o, e))?;
                }
            }
        } else if self.invalidated {
            for o in outputs {
                if o.is_dir() {
                    std::fs::remove_dir_all(o).map_err(|e| Error::io(o, e))?;
                }
            }
        }
        self.say(&format!("{name} …"));
        let t0 = Instant::now();
        let result = f()?;
        let dt = t0.elapsed().as_secs_f64();
        let rec = json!({"options": options, "after": after, "result": result, "secs": dt});
        let s = serde_json::to_string_pretty(&rec).map_err(|e| Error::Msg(e.to_string()))?;
        crate::io::write_atomic(&marker, s.as_bytes())?;
        self.ran.push(name.to_string());
        self.times.push((name.to_string(), dt));
        self.say(&format!("{name}: done in {dt:.0} s"));
        Ok(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs stages a, b, c; `b_fails` stands for a kill during b. Returns which closures ran.
    fn run_abc(dir: &Path, a: u32, force: bool, b_fails: bool) -> Result<Vec<&'static str>> {
        let mut st = Stages::new(dir, true, force)?;
        let mut ran = Vec::new();
        st.run("a", json!({ "x": a }), &[], || {
            ran.push("a");
            Ok(json!(a))
        })?;
        st.run("b", json!({}), &[], || {
            ran.push("b");
            if b_fails {
                Err(Error::Msg("killed".into()))
            } else {
                Ok(json!(null))
            }
        })?;
        st.run("c", json!({}), &[], || {
            ran.push("c");
            Ok(json!(null))
        })?;
        Ok(ran)
    }

    #[test]
    fn a_forced_rerun_killed_half_way_does_not_leave_later_stages_looking_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        assert_eq!(run_abc(dir, 1, false, false).unwrap(), ["a", "b", "c"]);
        assert!(
            run_abc(dir, 1, false, false).unwrap().is_empty(),
            "all complete"
        );
        // a changes: refused without --force, names the option
        let e = run_abc(dir, 2, false, false).unwrap_err().to_string();
        assert!(e.contains("stage a") && e.contains('x'), "{e}");
        // --force redoes a, and is killed during b (b's record was removed, c's is still there)
        assert!(run_abc(dir, 2, true, true).is_err());
        // the next plain rerun: a is complete, b resumes, and c's record, made after the old
        // a, is not taken as complete
        let e = run_abc(dir, 2, false, false).unwrap_err().to_string();
        assert!(e.contains("stage c") && e.contains("earlier stage"), "{e}");
        // --force redoes c only
        assert_eq!(run_abc(dir, 2, true, false).unwrap(), ["c"]);
        assert!(run_abc(dir, 2, false, false).unwrap().is_empty());
    }
}

//! `coatt-train report` and `coatt-train show`.
use crate::error::Result;
use crate::report::{self, ReportOptions};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// A pipeline folder (`pipeline --out`).
    pub out: PathBuf,
    /// Images per gallery, spread evenly over the split.
    #[arg(long, default_value_t = 48)]
    pub sample: usize,
    /// Every image of both splits (large for big data sets).
    #[arg(long)]
    pub all: bool,
}

pub fn report_cmd(a: &ReportArgs) -> Result<()> {
    let s = report::write_html_report(&ReportOptions {
        out: a.out.clone(),
        sample: a.sample,
        all: a.all,
        quiet: false,
    })?;
    println!(
        "report: {} ({} train and {} val images, {:.1} MB with its strips)",
        s.page.display(),
        s.train_rows,
        s.val_rows,
        s.bytes as f64 / 1e6
    );
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// The image's id (train or val split).
    pub id: String,
    /// A pipeline folder (`pipeline --out`).
    pub out: PathBuf,
    /// Where to write the strip (default: OUT/show/<id>.png).
    #[arg(long)]
    pub png: Option<PathBuf>,
}

pub fn show_cmd(a: &ShowArgs) -> Result<()> {
    let dest = a
        .png
        .clone()
        .unwrap_or_else(|| a.out.join("show").join(format!("{}.png", a.id)));
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
    }
    report::show(&a.out, &a.id, &dest)?;
    println!("{}", dest.display());
    Ok(())
}

//! Progress bars for long work (hidden when stderr is not a terminal, e.g. in tests and CI).
use indicatif::{ProgressBar, ProgressStyle};

pub fn bar(len: u64, what: &str) -> ProgressBar {
    let b = ProgressBar::new(len);
    b.set_style(
        ProgressStyle::with_template(
            "{prefix:>10} [{elapsed_precise}] {wide_bar} {pos}/{len} {msg}",
        )
        .expect("valid template"),
    );
    b.set_prefix(what.to_string());
    b
}

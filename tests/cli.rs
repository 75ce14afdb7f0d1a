//! The binary: help lists the subcommands, version prints, bad arguments fail cleanly.
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_coatt-train"))
}

#[test]
fn no_arguments_prints_help_with_subcommands() {
    let out = bin().output().unwrap();
    assert!(out.status.success());
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(s.contains("bench"), "{s}");
}

#[test]
fn version_and_unknown_subcommand() {
    let out = bin().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = bin().arg("no-such-stage").output().unwrap();
    assert!(!out.status.success());
}

#[test]
fn bench_runs_on_small_sizes() {
    let out = bin()
        .args(["bench", "--reps", "1", "--channels", "8", "--side", "4"])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{s}");
    assert!(s.contains("GFLOP/s") && s.contains("co-attention"), "{s}");
}

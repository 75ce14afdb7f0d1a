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

#[test]
fn synth_check_data_train_cls_end_to_end() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    let out = bin()
        .args(["synth", "--out"])
        .arg(&data)
        .args([
            "--train",
            "12",
            "--val",
            "4",
            "--size",
            "40",
            "--classes",
            "3",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = bin().arg("check-data").arg(&data).output().unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && s.contains("OK"), "{s}");
    let run = d.path().join("run");
    let out = bin()
        .args(["train-cls", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&run)
        .args([
            "--preset",
            "micro",
            "--epochs",
            "1",
            "--max-iters-per-epoch",
            "2",
            "--device",
            "cpu",
        ])
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{s}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.contains("val mAP"), "{s}");
    assert!(
        run.join("config.toml").exists()
            && run.join("metrics.jsonl").exists()
            && run.join("loss.png").exists()
    );
    // a second run into the same folder is refused; --resume of a finished run is a no-op
    let out = bin()
        .args(["train-cls", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&run)
        .args(["--preset", "micro", "--device", "cpu"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--resume"));
    // --resume with a training flag would silently ignore it: refused, naming the flag
    let out = bin()
        .args(["train-cls", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(&run)
        .args(["--resume", "--epochs", "4", "--device", "cpu"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("--epochs"), "{e}");
    // no val split: said so, rather than a val mAP of 0
    std::fs::remove_file(data.join("ImageSets/Segmentation/val.txt")).unwrap();
    let out = bin()
        .args(["train-cls", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(d.path().join("run-noval"))
        .args([
            "--preset",
            "micro",
            "--epochs",
            "1",
            "--max-iters-per-epoch",
            "1",
            "--device",
            "cpu",
        ])
        .output()
        .unwrap();
    let (o, e) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{o}{e}");
    assert!(e.contains("val mAP not evaluated"), "{e}");
    assert!(!o.contains("val mAP 0.0000"), "{o}");
    // an output folder that cannot be made (a file is in the way; root ignores permissions,
    // so this is the fault every user can meet): an error naming the path, nothing trained
    let blocker = d.path().join("a-file");
    std::fs::write(&blocker, b"x").unwrap();
    let out = bin()
        .args(["train-cls", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(blocker.join("run"))
        .args(["--preset", "micro", "--epochs", "1", "--device", "cpu"])
        .output()
        .unwrap();
    let e = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && e.contains("a-file"), "{e}");
}

#[test]
fn numeric_options_are_checked_when_the_command_line_is_parsed() {
    // every case fails before any file is read: the folders do not exist
    for (args, option) in [
        (
            &[
                "pseudo",
                "--cams",
                "c",
                "--out",
                "o",
                "--bg-threshold",
                "1.5",
            ][..],
            "--bg-threshold",
        ),
        (
            &[
                "pseudo",
                "--cams",
                "c",
                "--out",
                "o",
                "--bg-threshold",
                "nan",
            ],
            "--bg-threshold",
        ),
        (
            &["pseudo", "--cams", "c", "--out", "o", "--bg-threshold=-0.5"],
            "--bg-threshold",
        ),
        (
            &["pseudo", "--cams", "c", "--out", "o", "--min-fg", "2"],
            "--min-fg",
        ),
        (
            &[
                "pseudo",
                "--cams",
                "c",
                "--out",
                "o",
                "--ignore-margin",
                "inf",
            ],
            "--ignore-margin",
        ),
        (
            &[
                "pseudo",
                "--cams",
                "c",
                "--out",
                "o",
                "--border-connectivity",
                "nan",
            ],
            "--border-connectivity",
        ),
        (
            &["eval-cam", "--cams", "c", "--data", "d", "--t-max", "nan"],
            "--t-max",
        ),
        (
            &["train-cls", "--data", "d", "--out", "o", "--lr", "nan"],
            "--lr",
        ),
        (
            &["train-cls", "--data", "d", "--out", "o", "--lr", "inf"],
            "--lr",
        ),
        (
            &["train-cls", "--data", "d", "--out", "o", "--lr=-1"],
            "--lr",
        ),
        (
            &[
                "train-seg",
                "--data",
                "d",
                "--labels",
                "l",
                "--out",
                "o",
                "--lr",
                "0",
            ],
            "--lr",
        ),
        (
            &[
                "cams", "--run", "r", "--data", "d", "--out", "o", "--scales", "1,-2",
            ],
            "--scales",
        ),
        (
            &["synth", "--out", "o", "--label-noise", "1.5"],
            "--label-noise",
        ),
    ] {
        let out = bin().args(args).output().unwrap();
        let e = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {e}");
        assert!(
            e.contains(option) && e.contains("expected"),
            "{args:?}: {e}"
        );
    }
}

#[test]
fn bad_inputs_fail_with_clear_messages() {
    let d = tempfile::tempdir().unwrap();
    let out = bin()
        .arg("check-data")
        .arg(d.path().join("missing"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing"));
    let out = bin()
        .args(["train-cls", "--data", "x", "--out", "y", "--device", "cuda"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("CUDA"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // an empty dataset folder cannot be trained on: check-data exits 1
    std::fs::create_dir_all(d.path().join("empty/JPEGImages")).unwrap();
    let out = bin()
        .arg("check-data")
        .arg(d.path().join("empty"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn eval_scores_a_prediction_folder() {
    let d = tempfile::tempdir().unwrap();
    let data = d.path().join("data");
    assert!(bin()
        .args(["synth", "--out"])
        .arg(&data)
        .args([
            "--train",
            "2",
            "--val",
            "3",
            "--size",
            "40",
            "--classes",
            "3"
        ])
        .status()
        .unwrap()
        .success());
    // predictions = the GT with its ignore pixels turned into background; ignored pixels do
    // not count, so mIoU is exactly 100
    let pred = d.path().join("pred");
    std::fs::create_dir_all(&pred).unwrap();
    for id in std::fs::read_to_string(data.join("ImageSets/Segmentation/val.txt"))
        .unwrap()
        .lines()
    {
        let mut m =
            coatt::io::read_label_png(&data.join(format!("SegmentationClass/{id}.png"))).unwrap();
        m.data
            .iter_mut()
            .filter(|v| **v == 255)
            .for_each(|v| *v = 0);
        coatt::io::write_label_png(&pred.join(format!("{id}.png")), &m).unwrap();
    }
    let out = bin()
        .args(["eval", "--pred"])
        .arg(&pred)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let s = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{s}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.contains("**100.0**"), "{s}");
    let j: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(pred.join("eval.json")).unwrap()).unwrap();
    assert_eq!(j["miou"].as_f64(), Some(1.0));
    // a missing prediction is an error naming the file
    let first = std::fs::read_dir(&pred)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "png"))
        .unwrap();
    std::fs::remove_file(&first).unwrap();
    let out = bin()
        .args(["eval", "--pred"])
        .arg(&pred)
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains(&*first.file_name().unwrap().to_string_lossy()));
}

#[test]
fn config_file_values_survive_unless_a_flag_overrides_them() {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct W {
        #[command(flatten)]
        a: coatt::cli::TrainClsArgs,
    }
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("c.toml");
    let cfg = coatt::cls::ClsConfig {
        variant: coatt::cls::Variant::Basic,
        lr: 0.123,
        ..coatt::cls::ClsConfig::preset("micro").unwrap()
    };
    cfg.save(&p).unwrap();
    let parse = |extra: &[&str]| {
        let mut args = vec![
            "x",
            "--data",
            "d",
            "--out",
            "o",
            "--config",
            p.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        coatt::cli::build_cls_config(&W::parse_from(args).a)
    };
    let c = parse(&[]).unwrap();
    assert_eq!((c.variant, c.lr), (coatt::cls::Variant::Basic, 0.123));
    let c = parse(&["--variant", "coatt", "--lr", "0.5"]).unwrap();
    assert_eq!((c.variant, c.lr), (coatt::cls::Variant::Coatt, 0.5));
    // the co-attention scorer: the official code's separate φ unless the file or a flag says
    assert_eq!(c.scorer, coatt::nn::Scorer::Separate);
    let c = parse(&["--scorer", "shared"]).unwrap();
    assert_eq!(c.scorer, coatt::nn::Scorer::Shared);
    std::fs::write(&p, "scorer = \"shared\"\n").unwrap();
    assert_eq!(parse(&[]).unwrap().scorer, coatt::nn::Scorer::Shared);
    assert_eq!(
        parse(&["--scorer", "separate"]).unwrap().scorer,
        coatt::nn::Scorer::Separate
    );
    // saved and read back; the default is not written, so records made before the option match
    coatt::cls::ClsConfig {
        scorer: coatt::nn::Scorer::Shared,
        ..cfg.clone()
    }
    .save(&p)
    .unwrap();
    assert_eq!(parse(&[]).unwrap().scorer, coatt::nn::Scorer::Shared);
    cfg.save(&p).unwrap();
    assert!(!std::fs::read_to_string(&p).unwrap().contains("scorer"));
    // a partial file lies over the preset: only its keys change (tables merge key by key)
    std::fs::write(&p, "epochs = 8\nlr_steps = [6]\n[backbone]\nextra = 32\n").unwrap();
    let c = parse(&["--preset", "tiny"]).unwrap();
    let tiny = coatt::cls::ClsConfig::preset("tiny").unwrap();
    assert_eq!(
        (c.epochs, c.lr_steps.clone(), c.backbone.extra),
        (8, vec![6], 32)
    );
    assert_eq!(
        (c.lr, c.backbone.widths.clone()),
        (tiny.lr, tiny.backbone.widths)
    );
    // a misspelt key is an error naming the file, not silently ignored
    for (text, key) in [
        ("epoch = 8\n", "epoch"),
        ("[backbone]\nextr = 3\n", "backbone.extr"),
    ] {
        std::fs::write(&p, text).unwrap();
        let e = parse(&[]).unwrap_err();
        assert!(
            e.to_string().contains("c.toml") && e.to_string().contains(key),
            "{e}"
        );
    }
}

/// `coatt-train synth --out OUT` with 3 + 1 images of 40 px, and `extra`.
fn small_synth(out: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let out = out.to_str().unwrap();
    let base = [
        "synth", "--out", out, "--train", "3", "--val", "1", "--size", "40",
    ];
    bin().args(base).args(extra).output().unwrap()
}

#[test]
fn synth_refuses_a_folder_it_did_not_make_unless_forced() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("set");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("cls_labels.txt"), "mine 1\n").unwrap();
    let r = small_synth(&out, &[]);
    assert!(!r.status.success());
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(e.contains("not empty") && e.contains("--force"), "{e}");
    assert_eq!(
        std::fs::read_to_string(out.join("cls_labels.txt")).unwrap(),
        "mine 1\n"
    );
    // --force writes; the same options again are fine (same bytes); other options are refused
    assert!(small_synth(&out, &["--force"]).status.success());
    assert!(small_synth(&out, &[]).status.success());
    let r = small_synth(&out, &["--seed", "2"]);
    assert!(!r.status.success());
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(e.contains("other options") && e.contains("seed"), "{e}");
}

#[test]
fn synth_records_a_scenes_context_share_other_than_the_default_and_refuses_a_bad_one() {
    let d = tempfile::tempdir().unwrap();
    let out = d.path().join("scenes");
    let run = |extra: &[&str]| small_synth(&out, &[&["--kind", "scenes"], extra].concat());
    assert!(run(&[]).status.success());
    let record = std::fs::read_to_string(out.join("synth.json")).unwrap();
    assert!(!record.contains("context_share"), "{record}");
    // the default given explicitly is the same set; another share is another set
    assert!(run(&["--context-share", "0.7"]).status.success());
    let r = run(&["--context-share", "0"]);
    assert!(!r.status.success());
    let e = String::from_utf8_lossy(&r.stderr);
    assert!(
        e.contains("other options") && e.contains("context_share"),
        "{e}"
    );
    let other = d.path().join("no-context");
    let r = small_synth(&other, &["--kind", "scenes", "--context-share", "0"]);
    assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
    let record = std::fs::read_to_string(other.join("synth.json")).unwrap();
    assert!(record.contains("\"context_share\": 0.0"), "{record}");
    let r = run(&["--context-share", "1.5"]);
    assert!(!r.status.success());
    assert!(String::from_utf8_lossy(&r.stderr).contains("1.5"));
}

/// The pipeline's preset for `pipeline --preset tiny EXTRA...`, as the command builds it.
fn tiny_pipeline_preset(extra: &[&str]) -> coatt::Result<coatt::pipeline::PipelinePreset> {
    use clap::Parser;
    #[derive(clap::Parser)]
    struct W {
        #[command(flatten)]
        a: coatt::cli::PipelineArgs,
    }
    let mut args = vec!["x", "--preset", "tiny"];
    args.extend_from_slice(extra);
    coatt::cli::build_pipeline_preset(&W::parse_from(args).a)
}

#[test]
fn pipeline_classifier_settings_come_from_a_config_file_under_the_flags() {
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("cls.toml");
    let build = tiny_pipeline_preset;
    let tiny = build(&[]).unwrap().cls;
    assert_eq!(tiny.affinity, coatt::nn::Affinity::Cosine);
    // the paper's affinity and shared ϕ, one file away; untouched fields keep the preset's
    std::fs::write(
        &p,
        "affinity = \"dot\"\nscorer = \"shared\"\ntemperature = 0.1\nseed = 4\n",
    )
    .unwrap();
    let c = build(&["--cls-config", p.to_str().unwrap()]).unwrap().cls;
    assert_eq!(
        (c.affinity, c.scorer, c.temperature, c.seed),
        (coatt::nn::Affinity::Dot, coatt::nn::Scorer::Shared, 0.1, 4)
    );
    assert_eq!(
        (c.epochs, c.lr, c.variant),
        (tiny.epochs, tiny.lr, tiny.variant)
    );
    // --seed overrides the file's
    let c = build(&["--cls-config", p.to_str().unwrap(), "--seed", "9"])
        .unwrap()
        .cls;
    assert_eq!((c.seed, c.affinity), (9, coatt::nn::Affinity::Dot));
    // a misspelt key or an invalid value is an error naming the file
    for (text, what) in [
        ("affinty = \"dot\"\n", "affinty"),
        ("temperature = -1.0\n", "temperature"),
    ] {
        std::fs::write(&p, text).unwrap();
        let e = build(&["--cls-config", p.to_str().unwrap()]).unwrap_err();
        assert!(
            e.to_string().contains("cls.toml") && e.to_string().contains(what),
            "{e}"
        );
    }
    let e = build(&["--cls-config", "/nonexistent/cls.toml"]).unwrap_err();
    assert!(e.to_string().contains("/nonexistent/cls.toml"), "{e}");
}

#[test]
fn the_pipelines_classifier_is_tiny_at_twice_the_widths_and_nothing_else() {
    let tiny = coatt::cls::ClsConfig::preset("tiny").unwrap();
    let wide = tiny_pipeline_preset(&[]).unwrap().cls;
    assert_eq!(wide, coatt::cls::ClsConfig::preset("tiny-wide").unwrap());
    let doubled: Vec<usize> = tiny.backbone.widths.iter().map(|w| 2 * w).collect();
    assert_eq!(wide.backbone.widths, doubled);
    assert_eq!(wide.backbone.extra, 2 * tiny.backbone.extra);
    assert_eq!(wide.feature_channels(), 2 * tiny.feature_channels());
    // everything but the widths (and the preset's name) stays `tiny`'s: docs/quality.md
    // compares the two at one schedule, input size and co-attention setting
    let mut same = wide.clone();
    same.backbone = tiny.backbone.clone();
    same.preset = tiny.preset.clone();
    assert_eq!(same, tiny);
}

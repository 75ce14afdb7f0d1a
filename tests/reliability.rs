//! Faults a user can cause: two processes writing into one folder, reruns into a folder made
//! with other options. (docs/reliability.md lists every case and its test.)
use coatt::cam::{run_cams, CamOptions};
use coatt::cls::{train_cls, ClsConfig, TrainClsOptions};
use coatt::data::synth::{generate, SynthConfig};
use coatt::io::lock::lock_dir;
use coatt::Device;
use std::path::Path;

fn micro_data(dir: &Path) {
    generate(&SynthConfig {
        out: dir.to_path_buf(),
        train: 6,
        val: 2,
        size: 40,
        classes: 3,
        seed: 4,
        kind: Default::default(),
        context_share: coatt::data::synth::DEFAULT_CONTEXT_SHARE,
    })
    .unwrap();
}

fn micro_cls(data: &Path, out: &Path) -> TrainClsOptions {
    TrainClsOptions {
        data: data.to_path_buf(),
        out: out.to_path_buf(),
        config: ClsConfig {
            epochs: 1,
            max_iters_per_epoch: 1,
            batch: 2,
            workers: 1,
            ..ClsConfig::preset("micro").unwrap()
        },
        device: Device::Cpu,
        resume: false,
        start_from: None,
        stop_after: None,
        quiet: true,
    }
}

#[test]
fn a_second_writer_into_a_locked_folder_is_refused_naming_the_holder() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, run) = (tmp.path().join("data"), tmp.path().join("run"));
    micro_data(&data);
    // another process holds the run folder (the lock is per open file, so one held here
    // conflicts like one held by another process)
    let held = lock_dir(&run).unwrap();
    let e = train_cls(&micro_cls(&data, &run)).unwrap_err().to_string();
    assert!(
        e.contains(&format!("pid {}", std::process::id())) && e.contains("run"),
        "{e}"
    );
    assert!(!run.join("config.toml").exists(), "nothing written");
    // synth and cams into locked folders are refused the same way
    let e = generate(&SynthConfig {
        out: run.clone(),
        train: 2,
        val: 1,
        size: 40,
        classes: 3,
        seed: 1,
        kind: Default::default(),
        context_share: coatt::data::synth::DEFAULT_CONTEXT_SHARE,
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("another coatt process"), "{e}");
    drop(held);
    // released: the run goes ahead, and a finished run leaves the folder unlocked
    train_cls(&micro_cls(&data, &run)).unwrap();
    let cams = tmp.path().join("cams");
    let held = lock_dir(&cams).unwrap();
    let e = run_cams(&CamOptions::new(&run, &data, &cams))
        .unwrap_err()
        .to_string();
    assert!(e.contains("another coatt process"), "{e}");
    drop(held);
    run_cams(&CamOptions::new(&run, &data, &cams)).unwrap();
    assert!(lock_dir(&run).is_ok() && lock_dir(&cams).is_ok());
}

#[test]
fn cams_into_a_folder_made_with_other_options_is_an_error_not_stale_maps() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, run) = (tmp.path().join("data"), tmp.path().join("run"));
    micro_data(&data);
    train_cls(&micro_cls(&data, &run)).unwrap();
    let cams = tmp.path().join("cams");
    let mut o = CamOptions::new(&run, &data, &cams);
    o.overlays = false;
    let first = run_cams(&o).unwrap();
    assert!(first.written > 0);
    // same options: resumes (everything already there)
    assert_eq!(run_cams(&o).unwrap().written, 0);
    // other options: named, nothing written
    for change in [
        |o: &mut CamOptions| o.mode = coatt::cam::CamMode::Single,
        |o: &mut CamOptions| o.scales = vec![2.0],
        |o: &mut CamOptions| o.related = 1,
        |o: &mut CamOptions| o.flip = true,
    ] {
        let mut other = o.clone();
        change(&mut other);
        let e = run_cams(&other).unwrap_err().to_string();
        assert!(e.contains("cams.json") && e.contains("other"), "{e}");
    }
}

#[test]
fn split_ids_that_leave_the_folder_are_rejected_naming_the_list_and_line() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    micro_data(&data);
    let list = data.join("ImageSets/Segmentation/val.txt");
    for bad in ["../../x", "a/b", "..", "-rf"] {
        let mut text = std::fs::read_to_string(&list).unwrap();
        text.push_str(bad);
        text.push('\n');
        let copy = tmp.path().join("copy");
        let _ = std::fs::remove_dir_all(&copy);
        copy_dir(&data, &copy);
        std::fs::write(copy.join("ImageSets/Segmentation/val.txt"), text).unwrap();
        let e = coatt::data::VocDataset::open(&copy, "val")
            .unwrap_err()
            .to_string();
        assert!(e.contains("val.txt") && e.contains("line 3"), "{bad}: {e}");
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn a_torn_last_metrics_row_does_not_block_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, run) = (tmp.path().join("data"), tmp.path().join("run"));
    micro_data(&data);
    let mut o = micro_cls(&data, &run);
    o.config.epochs = 2;
    o.stop_after = Some(1);
    train_cls(&o).unwrap();
    // a kill in the middle of a row: half a JSON object, no newline
    let m = run.join("metrics.jsonl");
    let mut f = std::fs::OpenOptions::new().append(true).open(&m).unwrap();
    std::io::Write::write_all(&mut f, b"{\"iteration\": 7, \"loss\": 0.5").unwrap();
    drop(f);
    o.stop_after = None;
    o.resume = true;
    train_cls(&o).unwrap();
    let rows = coatt::io::metrics::read_jsonl(&m).unwrap();
    assert!(rows.iter().any(|r| r.get("epoch_end").is_some()));
}

#[test]
fn training_that_would_train_nothing_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    micro_data(&data);
    for (what, change) in [
        (
            "epochs",
            (|c: &mut ClsConfig| c.epochs = 0) as fn(&mut ClsConfig),
        ),
        ("batch", |c: &mut ClsConfig| c.batch = 0),
        ("input_size", |c: &mut ClsConfig| c.input_size = 0),
        ("input_size", |c: &mut ClsConfig| c.input_size = 100_000),
        ("lr", |c: &mut ClsConfig| c.lr = f64::NAN),
        ("lr", |c: &mut ClsConfig| c.lr = -1.0),
        ("momentum", |c: &mut ClsConfig| c.momentum = 5.0),
        ("temperature", |c: &mut ClsConfig| c.temperature = 0.0),
    ] {
        let run = tmp.path().join(format!("run-{what}"));
        let mut o = micro_cls(&data, &run);
        change(&mut o.config);
        let e = train_cls(&o).unwrap_err().to_string();
        assert!(e.contains(what), "{what}: {e}");
        assert!(!run.join("last.safetensors").exists());
    }
    // a size that passes the range checks but not this machine's memory: a clear error, not
    // an abort on a failed allocation
    let mut o = micro_cls(&data, &tmp.path().join("run-huge"));
    o.config.input_size = 2048;
    o.config.batch = 1024;
    let e = train_cls(&o).unwrap_err().to_string();
    assert!(e.contains("GB of memory"), "{e}");
    // an empty train split
    std::fs::write(data.join("ImageSets/Segmentation/train.txt"), "").unwrap();
    let e = train_cls(&micro_cls(&data, &tmp.path().join("run-empty")))
        .unwrap_err()
        .to_string();
    assert!(e.contains("empty"), "{e}");
}

#[test]
fn an_unreadable_related_image_is_skipped_and_counted_in_coattention_maps() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, run) = (tmp.path().join("data"), tmp.path().join("run"));
    micro_data(&data);
    train_cls(&micro_cls(&data, &run)).unwrap();
    let ds = coatt::data::VocDataset::open(&data, "train").unwrap();
    let broken = &ds.items[0];
    std::fs::write(&broken.image, b"<html>404</html>").unwrap();
    let mut o = CamOptions::new(&run, &data, &tmp.path().join("cams"));
    o.related = 5; // every other image of a class is related to each image
    o.overlays = false;
    let s = run_cams(&o).unwrap();
    assert!(
        s.failed.iter().any(|(id, _)| id == &broken.id),
        "{:?}",
        s.failed
    );
    assert_eq!(s.failed.len(), 1, "counted once: {:?}", s.failed);
    assert_eq!(
        s.written,
        ds.items.iter().filter(|i| !i.labels.is_empty()).count() - 1
    );
}

#[test]
fn relu_and_the_fused_conv_relu_pass_nan_through() {
    use coatt::{Conv2dParams, DType, Tensor};
    let x = Tensor::from_f64(&[f64::NAN, -1.0, 2.0], [3], DType::F64, Device::Cpu).unwrap();
    let y = x.relu().to_vec_f64();
    assert!(y[0].is_nan() && y[1] == 0.0 && y[2] == 2.0, "{y:?}");
    // a NaN input pixel reaches the output of conv + ReLU (it was hidden as 0)
    let mut v = vec![0.5f64; 16];
    v[5] = f64::NAN;
    let x = Tensor::from_f64(&v, [1, 1, 4, 4], DType::F64, Device::Cpu).unwrap();
    let w = Tensor::from_f64(&[1.0; 9], [1, 1, 3, 3], DType::F64, Device::Cpu).unwrap();
    let y = x
        .conv2d_relu(&w, None, Conv2dParams::same(1, 1))
        .unwrap()
        .to_vec_f64();
    assert!(y.iter().any(|v| v.is_nan()));
}

#[test]
fn a_diverging_run_stops_with_an_error_and_never_writes_non_finite_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, run) = (tmp.path().join("data"), tmp.path().join("run"));
    micro_data(&data);
    let mut o = micro_cls(&data, &run);
    o.config.lr = 10.0;
    o.config.epochs = 3;
    o.config.max_iters_per_epoch = 3;
    let e = train_cls(&o).unwrap_err().to_string();
    assert!(e.contains("NaN") || e.contains("inf"), "{e}");
    for f in std::fs::read_dir(&run)
        .unwrap()
        .chain(std::fs::read_dir(run.join("checkpoints")).unwrap())
    {
        let p = f.unwrap().path();
        if p.extension().is_some_and(|x| x == "safetensors") {
            let ck = coatt::io::Checkpoint::open(&p).unwrap();
            for n in ck.names() {
                let (v, _) = ck.get_f32(&n).unwrap();
                assert!(v.iter().all(|x| x.is_finite()), "{} {n}", p.display());
            }
        }
    }
    // and writing a checkpoint with a NaN is refused outright
    let t = coatt::Tensor::from_vec(vec![1.0f32, f32::NAN], [2], Device::Cpu).unwrap();
    let e = coatt::io::save_checkpoint(
        &tmp.path().join("x.safetensors"),
        &[("w".into(), t)],
        &Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("w holds NaN"), "{e}");
    assert!(!tmp.path().join("x.safetensors").exists());
}

/// A micro segmentation network trained 2 iterations on micro data, with the val images.
fn micro_seg_model() -> (
    tempfile::TempDir,
    std::path::PathBuf,
    coatt::seg::SegNet,
    Vec<(String, std::path::PathBuf)>,
) {
    use coatt::seg::{load_segnet, train_seg, LabelSource, SegConfig, TrainSegOptions};
    let tmp = tempfile::tempdir().unwrap();
    let (data, run) = (tmp.path().join("data"), tmp.path().join("seg"));
    micro_data(&data);
    train_seg(&TrainSegOptions {
        data: data.clone(),
        labels: LabelSource::GroundTruth,
        out: run.clone(),
        config: SegConfig {
            iterations: 2,
            ..SegConfig::preset("micro").unwrap()
        },
        device: Device::Cpu,
        resume: false,
        stop_after: None,
        quiet: true,
    })
    .unwrap();
    let model = load_segnet(&run, Device::Cpu).unwrap();
    let ds = coatt::data::VocDataset::open(&data, "val").unwrap();
    let images: Vec<_> = ds
        .items
        .iter()
        .map(|i| (i.id.clone(), i.image.clone()))
        .collect();
    (tmp, run, model, images)
}

#[test]
fn infer_into_a_folder_made_with_other_options_is_an_error_not_stale_predictions() {
    use coatt::seg::{run_infer, InferOptions};
    let (tmp, run, model, images) = micro_seg_model();
    let pred = tmp.path().join("pred");
    let mut o = InferOptions {
        scales: vec![1.0],
        flip: false,
        crf: None,
        run: Some(run.clone()),
    };
    assert_eq!(
        run_infer(&model, &images, &pred, &o, Device::Cpu, true)
            .unwrap()
            .written,
        images.len()
    );
    assert_eq!(
        run_infer(&model, &images, &pred, &o, Device::Cpu, true)
            .unwrap()
            .existing,
        images.len()
    );
    o.flip = true;
    let e = run_infer(&model, &images, &pred, &o, Device::Cpu, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("infer.json") && e.contains("flip"), "{e}");
    o.flip = false;
    o.scales = vec![0.0];
    let e = run_infer(&model, &images, &pred, &o, Device::Cpu, true)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--scales"), "{e}");
}

#[test]
fn one_inference_pass_into_two_folders_writes_what_two_runs_write() {
    use coatt::seg::{run_infer, run_infer_many, InferOptions};
    let (tmp, run, model, images) = micro_seg_model();
    let crf = coatt::crf::CrfPreset::Mcis.params();
    let opts = |crf| InferOptions {
        scales: vec![1.0, 1.5],
        flip: true,
        crf,
        run: Some(run.clone()),
    };
    let p = |name: &str| tmp.path().join(name);
    run_infer(&model, &images, &p("plain"), &opts(None), Device::Cpu, true).unwrap();
    run_infer(&model, &images, &p("crf"), &opts(crf), Device::Cpu, true).unwrap();
    // the CRF folder half done, as after a kill
    run_infer(
        &model,
        &images[..1],
        &p("both-crf"),
        &opts(crf),
        Device::Cpu,
        true,
    )
    .unwrap();
    let s = run_infer_many(
        &model,
        &images,
        &[(&p("both-plain"), None), (&p("both-crf"), crf)],
        &opts(None),
        Device::Cpu,
        true,
    )
    .unwrap();
    assert_eq!((s[0].written, s[0].existing), (images.len(), 0));
    assert_eq!((s[1].written, s[1].existing), (images.len() - 1, 1));
    let files = |dir: &std::path::Path| -> Vec<Vec<u8>> {
        images
            .iter()
            .map(|(id, _)| std::fs::read(dir.join(format!("{id}.png"))).unwrap())
            .collect()
    };
    // (the CRF changes the labels here, so a swap of the folders would show)
    assert!(files(&p("plain")) != files(&p("crf")));
    assert!(files(&p("both-plain")) == files(&p("plain")));
    assert!(files(&p("both-crf")) == files(&p("crf")));
    // a folder given twice is refused, not locked against itself
    let e = run_infer_many(
        &model,
        &images,
        &[(&p("x"), None), (&p("x"), crf)],
        &opts(None),
        Device::Cpu,
        true,
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("twice"), "{e}");
}

#[test]
fn leftovers_of_killed_writers_are_cleaned_and_a_fresh_run_starts_its_own_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, run) = (tmp.path().join("data"), tmp.path().join("run"));
    micro_data(&data);
    // a run killed before its first checkpoint: rows, a temp file of a cut-off write
    std::fs::create_dir_all(run.join("checkpoints")).unwrap();
    std::fs::write(
        run.join("metrics.jsonl"),
        "{\"iteration\":0,\"loss\":9.0}\n",
    )
    .unwrap();
    std::fs::write(run.join(".last.safetensors.tmp99999"), b"partial").unwrap();
    std::fs::write(
        run.join("checkpoints/.epoch_001.safetensors.tmp4242"),
        b"partial",
    )
    .unwrap();
    let e = train_cls(&TrainClsOptions {
        resume: true,
        ..micro_cls(&data, &run)
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("nothing to resume"), "{e}");
    train_cls(&micro_cls(&data, &run)).unwrap();
    assert!(!run.join(".last.safetensors.tmp99999").exists());
    assert!(!run
        .join("checkpoints/.epoch_001.safetensors.tmp4242")
        .exists());
    let rows = coatt::io::metrics::read_jsonl(&run.join("metrics.jsonl")).unwrap();
    assert!(
        !rows
            .iter()
            .any(|r| r.get("loss").and_then(|v| v.as_f64()) == Some(9.0)),
        "the old run's rows are gone"
    );
}

#[test]
fn an_overlay_is_complete_whenever_its_map_file_exists() {
    // overlays are written (atomically) before the map file that marks an image as done: a
    // writer stopped while writing an overlay leaves no map file, so the rerun redoes the image
    // (written the other way round, the map existed and the torn overlay was never rewritten)
    let tmp = tempfile::tempdir().unwrap();
    let (data, run) = (tmp.path().join("data"), tmp.path().join("run"));
    micro_data(&data);
    train_cls(&micro_cls(&data, &run)).unwrap();
    let ds = coatt::data::VocDataset::open(&data, "train").unwrap();
    let first = ds.items.iter().find(|i| !i.labels.is_empty()).unwrap();
    let name = &ds.class_names[first.labels[0] + 1];
    let cams = tmp.path().join("cams");
    // the overlay cannot be written (a folder in its place): the write fails part way
    let blocked = cams
        .join("overlay")
        .join(format!("{}_{name}.png", first.id));
    std::fs::create_dir_all(blocked.join("x")).unwrap();
    let mut o = CamOptions::new(&run, &data, &cams);
    o.mode = coatt::cam::CamMode::Single;
    o.batch = 1;
    assert!(run_cams(&o).is_err());
    assert!(
        !cams.join(format!("{}.safetensors", first.id)).exists(),
        "no map file without its overlay"
    );
    std::fs::remove_dir_all(&blocked).unwrap();
    run_cams(&o).unwrap();
    for e in std::fs::read_dir(cams.join("overlay")).unwrap() {
        let p = e.unwrap().path();
        assert!(image::open(&p).is_ok(), "{}", p.display());
    }
}

#[test]
fn bad_label_maps_are_named_before_training_and_eval_blames_the_right_file() {
    use coatt::io::{read_label_png, write_label_png};
    use coatt::seg::{train_seg, LabelSource, SegConfig, TrainSegOptions};
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    micro_data(&data);
    let seg = |out: &str| TrainSegOptions {
        data: data.clone(),
        labels: LabelSource::GroundTruth,
        out: tmp.path().join(out),
        config: SegConfig {
            iterations: 2,
            ..SegConfig::preset("micro").unwrap()
        },
        device: Device::Cpu,
        resume: false,
        stop_after: None,
        quiet: true,
    };
    let train = coatt::data::VocDataset::open(&data, "train").unwrap();
    let val = coatt::data::VocDataset::open(&data, "val").unwrap();
    // class 17 in a train mask of a 3-class set
    let m = train.items[1].mask.clone().unwrap();
    let good = read_label_png(&m).unwrap();
    let mut bad = good.clone();
    bad.data[10] = 17;
    write_label_png(&m, &bad).unwrap();
    let e = train_seg(&seg("a")).unwrap_err().to_string();
    assert!(e.contains(&train.items[1].id) && e.contains("17"), "{e}");
    assert!(
        !tmp.path().join("a/last.safetensors").exists(),
        "refused before training"
    );
    write_label_png(&m, &good).unwrap();
    // a val mask of the wrong size: found before training, not after it
    let vm = val.items[0].mask.clone().unwrap();
    let vgood = read_label_png(&vm).unwrap();
    write_label_png(
        &vm,
        &coatt::io::LabelMap {
            width: 10,
            height: 10,
            data: vec![0; 100],
        },
    )
    .unwrap();
    let e = train_seg(&seg("b")).unwrap_err().to_string();
    assert!(e.contains(&val.items[0].id) && e.contains("10×10"), "{e}");
    assert!(!tmp.path().join("b/last.safetensors").exists());
    write_label_png(&vm, &vgood).unwrap();
    // eval: a bad ground-truth value is the ground truth's fault, not the prediction's
    let pred = tmp.path().join("pred");
    std::fs::create_dir_all(&pred).unwrap();
    for it in &val.items {
        let g = read_label_png(it.mask.as_ref().unwrap()).unwrap();
        write_label_png(&pred.join(format!("{}.png", it.id)), &g).unwrap();
    }
    let mut badv = vgood.clone();
    badv.data[0] = 9;
    write_label_png(&vm, &badv).unwrap();
    let e = coatt::eval::evaluate_folder(&pred, &data, "val", false)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("SegmentationClass") && e.contains("ground-truth label 9"),
        "{e}"
    );
}

#[test]
fn a_full_disk_during_a_checkpoint_or_metrics_write_loses_nothing_and_resumes_exactly() {
    use coatt::io::faults;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    micro_data(&data);
    let opts = |out: &str| {
        let mut o = micro_cls(&data, &tmp.path().join(out));
        o.config.epochs = 2;
        o.config.max_iters_per_epoch = 2;
        o.config.checkpoint_every = 1;
        o
    };
    // the uninterrupted reference
    train_cls(&opts("whole")).unwrap();
    // two iterations, then the disk fills up during the next writes (a metrics row or the
    // checkpoint itself, whichever comes first)
    for budget in [10u64, 300, 5000] {
        let run = format!("full-{budget}");
        let mut o = opts(&run);
        o.stop_after = Some(2);
        train_cls(&o).unwrap();
        let last = tmp.path().join(&run).join("last.safetensors");
        o.stop_after = None;
        o.resume = true;
        faults::fail_after(budget);
        let e = train_cls(&o).unwrap_err().to_string();
        faults::clear();
        assert!(e.contains("no space left"), "{budget}: {e}");
        // the last checkpoint is a whole one (the old or a newer complete file), no temp file
        let ck = coatt::io::Checkpoint::open(&last).unwrap();
        assert!(!ck.names().is_empty());
        let leftovers: Vec<_> = std::fs::read_dir(tmp.path().join(&run))
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .contains(".tmp")
            })
            .collect();
        assert!(leftovers.is_empty(), "{budget}: {leftovers:?}");
        // space freed: the run resumes and ends with the uninterrupted run's weights
        train_cls(&o).unwrap();
        let (a, b) = (
            coatt::io::Checkpoint::open(tmp.path().join("whole/last.safetensors")).unwrap(),
            coatt::io::Checkpoint::open(&last).unwrap(),
        );
        for n in a.names() {
            assert_eq!(
                a.get_f32(&n).unwrap(),
                b.get_f32(&n).unwrap(),
                "{budget}: {n}"
            );
        }
    }
}

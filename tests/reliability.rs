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

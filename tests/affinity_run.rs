//! train-affinity and refine end to end on a micro set: bit-exact resume, refined maps that
//! round-trip through `pseudo` and `eval-cam`, and the bad inputs (maps of another size, a
//! missing map, an image whose confident regions are empty, maps of another run on resume).
use coatt::affinity::{run_refine, train_affinity, AffConfig, RefineOptions, TrainAffOptions};
use coatt::cam::threshold::RawMaps;
use coatt::cam::{read_cam, run_cams, write_cam, CamFile, CamMode, CamOptions, PseudoRule};

use coatt::cls::{train_cls, ClsConfig, TrainClsOptions};
use coatt::data::synth::{generate, SetKind, SynthConfig};
use coatt::data::VocDataset;
use coatt::io::{read_label_png, Checkpoint};
use coatt::Device;
use std::path::{Path, PathBuf};

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    data: PathBuf,
    cls: PathBuf,
    cams: PathBuf,
}

fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_path_buf();
    let (data, cls, cams) = (root.join("data"), root.join("cls"), root.join("cams"));
    generate(&SynthConfig {
        out: data.clone(),
        train: 8,
        val: 2,
        size: 40,
        classes: 3,
        seed: 3,
        kind: SetKind::Scenes,
        context_share: coatt::data::synth::DEFAULT_CONTEXT_SHARE,
    })
    .unwrap();
    train_cls(&TrainClsOptions {
        data: data.clone(),
        out: cls.clone(),
        config: ClsConfig {
            epochs: 1,
            max_iters_per_epoch: 2,
            batch: 2,
            workers: 1,
            ..ClsConfig::preset("micro").unwrap()
        },
        device: Device::Cpu,
        resume: false,
        start_from: None,
        stop_after: None,
        quiet: true,
    })
    .unwrap();
    let mut o = CamOptions::new(&cls, &data, &cams);
    o.mode = CamMode::Single;
    o.overlays = false;
    run_cams(&o).unwrap();
    Fixture {
        _tmp: tmp,
        root,
        data,
        cls,
        cams,
    }
}

fn aff_opts(f: &Fixture, out: &Path) -> TrainAffOptions {
    TrainAffOptions {
        cams: f.cams.clone(),
        data: f.data.clone(),
        out: out.to_path_buf(),
        config: AffConfig {
            epochs: 2,
            init_from: Some(f.cls.display().to_string()),
            ..AffConfig::preset("micro").unwrap()
        },
        device: Device::Cpu,
        resume: false,
        stop_after: None,
        quiet: true,
    }
}

#[test]
fn affinity_training_resumes_bit_exactly_and_refined_maps_round_trip() {
    let f = fixture();
    let whole = f.root.join("aff");
    let s = train_affinity(&aff_opts(&f, &whole)).unwrap();
    assert_eq!(s.iterations, 2 * 8usize.div_ceil(2));
    assert!(whole.join("loss.png").exists() && whole.join("labels.json").exists());
    // interrupted after 3 iterations, then resumed: the same weights, bit for bit
    let part = f.root.join("aff-part");
    let mut o = aff_opts(&f, &part);
    o.stop_after = Some(3);
    train_affinity(&o).unwrap();
    o.stop_after = None;
    o.resume = true;
    train_affinity(&o).unwrap();
    let (a, b) = (
        Checkpoint::open(whole.join("last.safetensors")).unwrap(),
        Checkpoint::open(part.join("last.safetensors")).unwrap(),
    );
    for n in a.names() {
        assert_eq!(a.get_f32(&n).unwrap(), b.get_f32(&n).unwrap(), "{n}");
    }
    // refine: map files with a background channel, at image size
    let refined = f.root.join("refined");
    let mut r = RefineOptions::new(&whole, &f.cams, &f.data, &refined);
    r.overlays = true;
    r.quiet = true;
    let rs = run_refine(&r).unwrap();
    let ds = VocDataset::open(&f.data, "train").unwrap();
    let labelled = ds.items.iter().filter(|it| !it.labels.is_empty()).count();
    assert_eq!(rs.written, labelled);
    for it in ds.items.iter().filter(|it| !it.labels.is_empty()) {
        let c = read_cam(&refined, &it.id).unwrap();
        assert_eq!((c.height, c.width), (40, 40));
        assert_eq!(c.classes, it.labels);
        let bg = c
            .background
            .as_ref()
            .expect("refined maps carry a background");
        assert!(bg.iter().chain(&c.maps).all(|v| v.is_finite() && *v >= 0.0));
    }
    // rerun with the same options keeps the files; other options into the same folder stop
    assert_eq!(run_refine(&r).unwrap().existing, labelled);
    let mut other = r.clone();
    other.beta = 4.0;
    let e = run_refine(&other).unwrap_err().to_string();
    assert!(e.contains("refine.json") && e.contains("beta"), "{e}");
    // pseudo with every pixel labelled (`off`): the argmax over the background channel
    let rule = coatt::cam::threshold::choose_rule(&refined, "auto", 0.0, &RawMaps::Off).unwrap();
    assert!(matches!(
        rule,
        PseudoRule::Argmax {
            confident: None,
            ..
        }
    ));
    let labels = f.root.join("labels");
    coatt::cam::run_pseudo(
        &refined,
        &labels,
        &rule,
        &coatt::cam::LabelFilters::min_fg(0.0),
        4,
    )
    .unwrap();
    for it in ds.items.iter().filter(|it| !it.labels.is_empty()) {
        let c = read_cam(&refined, &it.id).unwrap();
        let want = coatt::cam::pseudo::argmax_labels(&c, 0.0).unwrap();
        assert_eq!(
            read_label_png(&labels.join(format!("{}.png", it.id)))
                .unwrap()
                .data,
            want
        );
    }
    // `--confident-background auto`: the raw maps come from refine.json, t is their Otsu threshold,
    // and exactly the background pixels where a scaled raw map reaches t become 255 (on this
    // fixture the CRF leaves no such pixel; tests/cam.rs has a hand-made map that has them)
    let rule =
        coatt::cam::threshold::choose_rule(&refined, "auto", 0.0, &RawMaps::Recorded).unwrap();
    let PseudoRule::Argmax {
        confident: Some(c), ..
    } = &rule
    else {
        panic!("refined maps with recorded raw maps take the confident-background rule: {rule:?}");
    };
    assert_eq!(c.raw, f.cams);
    assert_eq!(
        c.t,
        coatt::cam::threshold::auto_threshold_normalised(&f.cams).unwrap()
    );
    let confident = f.root.join("labels-confident");
    coatt::cam::run_pseudo(
        &refined,
        &confident,
        &rule,
        &coatt::cam::LabelFilters::min_fg(0.0),
        4,
    )
    .unwrap();
    for it in ds.items.iter().filter(|it| !it.labels.is_empty()) {
        let all = read_label_png(&labels.join(format!("{}.png", it.id)))
            .unwrap()
            .data;
        let got = read_label_png(&confident.join(format!("{}.png", it.id)))
            .unwrap()
            .data;
        let raw = read_cam(&f.cams, &it.id).unwrap();
        let hw = raw.height * raw.width;
        let peaks: Vec<f32> = (0..raw.classes.len())
            .map(|j| {
                raw.maps[j * hw..(j + 1) * hw]
                    .iter()
                    .cloned()
                    .fold(0f32, f32::max)
            })
            .collect();
        for p in 0..hw {
            let object = (0..raw.classes.len())
                .any(|j| peaks[j] > 0.0 && raw.maps[j * hw + p].max(0.0) / peaks[j] >= c.t);
            let want = if all[p] == 0 && object { 255 } else { all[p] };
            assert_eq!(got[p], want, "{} pixel {p}", it.id);
        }
    }
    // a record naming raw maps that are gone is an error that says what to pass
    let moved = f.root.join("cams-moved");
    std::fs::rename(&f.cams, &moved).unwrap();
    let e = coatt::cam::threshold::choose_rule(&refined, "auto", 0.0, &RawMaps::Recorded)
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("refine.json") && e.contains("--confident-background"),
        "{e}"
    );
    let with_dir =
        coatt::cam::threshold::choose_rule(&refined, "auto", 0.0, &RawMaps::Folder(moved.clone()))
            .unwrap();
    assert_eq!(
        with_dir,
        PseudoRule::Argmax {
            ignore_margin: 0.0,
            confident: Some(coatt::cam::pseudo::ConfidentBackground {
                raw: moved.clone(),
                t: c.t
            })
        }
    );
    std::fs::rename(&moved, &f.cams).unwrap();
    // eval-cam: the sweep over t still works (a diagnostic), and the argmax is scored
    let sweep = coatt::cam::sweep_thresholds(&refined, &f.data, "train", &[0.1, 0.3]).unwrap();
    assert_eq!(sweep.miou.len(), 2);
    let conf = coatt::cam::sweep::argmax_confusion(&refined, &f.data, "train")
        .unwrap()
        .expect("refined maps have a background channel");
    let (direct, _) = coatt::eval::evaluate_folder(&labels, &f.data, "train", false).unwrap();
    assert_eq!(conf.miou(), direct.miou());
    // raw maps have no background channel: no argmax score, and `auto` is Otsu's threshold
    assert!(
        coatt::cam::sweep::argmax_confusion(&f.cams, &f.data, "train")
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        coatt::cam::threshold::choose_rule(&f.cams, "auto", 0.0, &RawMaps::Off).unwrap(),
        PseudoRule::Threshold { .. }
    ));
    // the confident background needs refined maps: asked of raw ones, an error says so
    let e = coatt::cam::threshold::choose_rule(&f.cams, "auto", 0.0, &RawMaps::Recorded)
        .unwrap_err()
        .to_string();
    assert!(e.contains("--confident-background"), "{e}");
}

#[test]
fn bad_maps_are_named_and_empty_confident_regions_are_skipped_and_counted() {
    let f = fixture();
    let ds = VocDataset::open(&f.data, "train").unwrap();
    let first = ds.items.iter().find(|it| !it.labels.is_empty()).unwrap();
    let path = f.cams.join(format!("{}.safetensors", first.id));
    let good = read_cam(&f.cams, &first.id).unwrap();
    // maps of another size
    write_cam(
        &f.cams,
        &CamFile {
            height: 20,
            width: 20,
            maps: vec![0.5; good.classes.len() * 400],
            ..good.clone()
        },
    )
    .unwrap();
    let e = train_affinity(&aff_opts(&f, &f.root.join("a1")))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&first.id) && e.contains("20×20"), "{e}");
    // a missing map
    std::fs::remove_file(&path).unwrap();
    let e = train_affinity(&aff_opts(&f, &f.root.join("a2")))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&first.id) && e.contains("missing"), "{e}");
    // a map with a NaN: an error naming the file, not a NaN loss
    let mut nan = good.clone();
    nan.maps[5] = f32::NAN;
    write_cam(&f.cams, &nan).unwrap();
    let e = train_affinity(&aff_opts(&f, &f.root.join("a4")))
        .unwrap_err()
        .to_string();
    assert!(e.contains(&first.id) && e.contains("finite"), "{e}");
    write_cam(&f.cams, &good).unwrap();
    // an image whose confident regions are empty (its label map all ignored, as the CRF
    // leaves a small weak peak): left out of training and counted, no NaN
    let a3 = f.root.join("a3");
    std::fs::create_dir_all(a3.join("labels")).unwrap();
    coatt::io::write_label_png(
        &a3.join("labels").join(format!("{}.png", first.id)),
        &coatt::io::LabelMap {
            width: 40,
            height: 40,
            data: vec![255; 1600],
        },
    )
    .unwrap();
    let s = train_affinity(&aff_opts(&f, &a3)).unwrap();
    assert_eq!(s.labels.empty, 1, "{:?}", s.labels);
    assert!(s.labels.ignored > 0.0);
    // resuming a run with the maps of another folder is an error naming what differs
    let mut o = aff_opts(&f, &f.root.join("a3"));
    o.cams = f.root.join("other-cams");
    o.resume = true;
    let e = train_affinity(&o).unwrap_err().to_string();
    assert!(e.contains("inputs.json") && e.contains("cams"), "{e}");
}

/// The map files of a refine folder, by name (the lock file left out).
fn map_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .map(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&p).unwrap())
        })
        .collect();
    v.sort();
    v
}

#[test]
fn crf_refine_is_the_same_on_one_thread_and_on_several_and_after_a_partial_run() {
    let f = fixture();
    let run = |out: &Path, threads: usize| {
        let mut r = RefineOptions::new(&f.cls, &f.cams, &f.data, out);
        r.run = None;
        r.alpha = None;
        r.crf = coatt::crf::CrfPreset::Psa.params();
        r.overlays = false;
        r.quiet = true;
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap()
            .install(|| run_refine(&r).unwrap())
    };
    let (one, three) = (f.root.join("crf-1"), f.root.join("crf-3"));
    let s1 = run(&one, 1);
    let s3 = run(&three, 3);
    assert!(s1.written > 4, "{s1:?}"); // more than one chunk on one thread
    assert_eq!((s1.written, s3.written), (s3.written, s1.written));
    let (a, b) = (map_files(&one), map_files(&three));
    assert_eq!(a.len(), s1.written);
    assert!(a == b, "refined maps differ between 1 and 3 threads");
    // some outputs removed (an interrupted run): the rerun writes them again, the same bytes
    for (name, _) in a.iter().step_by(2) {
        std::fs::remove_file(three.join(name)).unwrap();
    }
    let again = run(&three, 2);
    assert_eq!(again.written, a.len().div_ceil(2));
    assert_eq!(again.existing, a.len() / 2);
    assert!(map_files(&three) == a, "a partial rerun changed the maps");
}

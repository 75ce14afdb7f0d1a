//! The readers of untrusted files under seeded mutations of real files: a torch checkpoint
//! from a model zoo, safetensors checkpoints and map files, label PNGs, JPEGs, TOML configs,
//! split and label lists. Each case must end in Ok or a clear Err: no panic, no allocation sized
//! by an unchecked field (an abort would end the test run). Fixed case counts that fit CI;
//! the counts and what they found are in docs/reliability.md.
use coatt::testing::rng;
use rand::Rng;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

const CASES: usize = 1000;

/// One seeded mutation of `good`: flipped bits, extreme bytes, a cut, a repeated or an
/// inserted run, or several of them.
fn mutate(good: &[u8], case: usize) -> Vec<u8> {
    let mut r = rng(0xF022 ^ case as u64);
    let mut v = good.to_vec();
    for _ in 0..r.gen_range(1..4) {
        if v.is_empty() {
            v.push(r.gen());
            continue;
        }
        let at = r.gen_range(0..v.len());
        match r.gen_range(0..6) {
            0 => v[at] ^= 1 << r.gen_range(0..8),
            1 => v[at] = [0x00, 0xFF, 0x7F, 0x80][r.gen_range(0..4)],
            2 => {
                // a little-endian field overwritten with a huge value
                for k in 0..8.min(v.len() - at) {
                    v[at + k] = 0xFF ^ (k as u8 * r.gen_range(0..2));
                }
            }
            3 => v.truncate(at),
            4 => {
                let end = (at + r.gen_range(1..64)).min(v.len());
                let run = v[at..end].to_vec();
                v.splice(at..at, run);
            }
            _ => {
                let run: Vec<u8> = (0..r.gen_range(1..16)).map(|_| r.gen()).collect();
                v.splice(at..at, run);
            }
        }
    }
    v
}

/// Runs `read` on CASES mutations of `good` written to `path`; returns how many were
/// accepted (Ok) and rejected (Err). A panic fails the test naming the case.
fn fuzz(name: &str, good: &[u8], path: &Path, read: impl Fn(&Path) -> bool) -> (usize, usize) {
    let (mut ok, mut err) = (0, 0);
    for case in 0..CASES {
        std::fs::write(path, mutate(good, case)).unwrap();
        match catch_unwind(AssertUnwindSafe(|| read(path))) {
            Ok(true) => ok += 1,
            Ok(false) => err += 1,
            Err(e) => {
                let _ = std::panic::take_hook(); // the default hook again, to show this one
                let why = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                panic!("{name}: case {case} panicked: {why} (mutate(good, {case}) reproduces it)")
            }
        }
    }
    println!("fuzz {name}: {CASES} cases, {ok} read, {err} refused with an error");
    (ok, err)
}

fn quiet_panics() {
    std::panic::set_hook(Box::new(|_| {}));
}

#[test]
fn torch_checkpoints() {
    quiet_panics();
    let dir = tempfile::tempdir().unwrap();
    for f in ["torch_zip_format.pth", "torch_legacy_format.pth"] {
        let good = std::fs::read(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/data")
                .join(f),
        )
        .unwrap();
        let (_, refused) = fuzz(f, &good, &dir.path().join(f), |p| {
            coatt::io::torch::read_state_dict(p).is_ok()
        });
        assert!(refused > 0, "{f}: mutations must be noticed");
    }
}

#[test]
fn safetensors_checkpoints_and_map_files() {
    quiet_panics();
    let dir = tempfile::tempdir().unwrap();
    let t = coatt::Tensor::from_vec(
        (0..60).map(|i| i as f32).collect::<Vec<_>>(),
        [3, 4, 5],
        coatt::Device::Cpu,
    )
    .unwrap();
    let good_path = dir.path().join("good.safetensors");
    coatt::io::save_checkpoint(&good_path, &[("w".into(), t.clone())], &Default::default())
        .unwrap();
    let good = std::fs::read(&good_path).unwrap();
    fuzz(
        "checkpoint",
        &good,
        &dir.path().join("c.safetensors"),
        |p| {
            let Ok(ck) = coatt::io::Checkpoint::open(p) else {
                return false;
            };
            let target = coatt::Tensor::zeros([3, 4, 5], coatt::DType::F32, coatt::Device::Cpu);
            ck.load_into(&[("w".into(), target)]).is_ok()
        },
    );
    let cam = coatt::cam::CamFile {
        id: "m".into(),
        height: 4,
        width: 5,
        classes: vec![0, 2],
        maps: vec![0.5; 40],
        background: Some(vec![0.1; 20]),
    };
    coatt::cam::write_cam(dir.path(), &cam).unwrap();
    let good = std::fs::read(dir.path().join("m.safetensors")).unwrap();
    let maps = dir.path().join("maps");
    std::fs::create_dir_all(&maps).unwrap();
    fuzz("map file", &good, &maps.join("x.safetensors"), |p| {
        coatt::cam::read_cam(p.parent().unwrap(), "x").is_ok()
    });
}

#[test]
fn label_pngs_and_jpegs() {
    quiet_panics();
    let dir = tempfile::tempdir().unwrap();
    let l = coatt::io::LabelMap {
        width: 9,
        height: 7,
        data: (0..63).map(|i| [0u8, 1, 2, 255][i % 4]).collect(),
    };
    let good_png = dir.path().join("good.png");
    coatt::io::write_label_png(&good_png, &l).unwrap();
    fuzz(
        "label png",
        &std::fs::read(&good_png).unwrap(),
        &dir.path().join("l.png"),
        |p| coatt::io::read_label_png(p).is_ok(),
    );
    let img = image::RgbImage::from_fn(16, 12, |x, y| image::Rgb([x as u8 * 9, y as u8 * 13, 77]));
    let good_jpg = dir.path().join("good.jpg");
    img.save(&good_jpg).unwrap();
    fuzz(
        "jpeg",
        &std::fs::read(&good_jpg).unwrap(),
        &dir.path().join("i.jpg"),
        |p| coatt::data::voc::load_rgb(p).is_ok(),
    );
}

#[test]
fn configs_and_lists() {
    quiet_panics();
    let dir = tempfile::tempdir().unwrap();
    let good_cfg = dir.path().join("good.toml");
    coatt::cls::ClsConfig::preset("tiny")
        .unwrap()
        .save(&good_cfg)
        .unwrap();
    fuzz(
        "classifier config",
        &std::fs::read(&good_cfg).unwrap(),
        &dir.path().join("c.toml"),
        |p| {
            coatt::cls::ClsConfig::load(p)
                .and_then(|c| c.validate())
                .is_ok()
        },
    );
    // a data set whose split list and label list are mutated
    let data = dir.path().join("data");
    coatt::data::synth::generate(&coatt::data::synth::SynthConfig {
        out: data.clone(),
        train: 4,
        val: 1,
        size: 32,
        classes: 3,
        seed: 1,
        kind: Default::default(),
        context_share: coatt::data::synth::DEFAULT_CONTEXT_SHARE,
    })
    .unwrap();
    for f in [
        "ImageSets/Segmentation/train.txt",
        "cls_labels.txt",
        "class_names.txt",
    ] {
        let path = data.join(f);
        let good = std::fs::read(&path).unwrap();
        fuzz(f, &good, &path, |_| {
            match coatt::data::VocDataset::open(&data, "train") {
                Ok(ds) => {
                    // whatever it accepts stays inside the data set
                    assert!(ds
                        .items
                        .iter()
                        .all(|it| coatt::data::voc::check_id(&it.id).is_ok()));
                    true
                }
                Err(_) => false,
            }
        });
        std::fs::write(&path, good).unwrap();
    }
}

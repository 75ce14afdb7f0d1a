//! Datasets: synth determinism and invariants, the VOC reader on hand-made folders,
//! check-data on broken folders, the pair sampler and the loader threads.
use coatt::data::check::check;
use coatt::data::loader::{LoaderConfig, PairLoader};
use coatt::data::sampler::{epoch_pairs, epoch_pairs_with_negatives};
use coatt::data::synth::{generate, SetKind, SynthConfig};
use coatt::data::voc::{labels_from_mask, VocDataset};
use coatt::io::{read_label_png, write_label_png, LabelMap};
use std::path::Path;
use std::sync::Arc;

fn synth(dir: &Path, seed: u64) -> SynthConfig {
    synth_kind(dir, seed, SetKind::Target)
}

fn synth_kind(dir: &Path, seed: u64, kind: SetKind) -> SynthConfig {
    let cfg = SynthConfig {
        out: dir.to_path_buf(),
        train: 10,
        val: 4,
        size: 48,
        classes: 4,
        seed,
        kind,
        context_share: coatt::data::synth::DEFAULT_CONTEXT_SHARE,
    };
    generate(&cfg).unwrap();
    cfg
}

fn all_files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for sub in [
        "JPEGImages",
        "SegmentationClass",
        "ImageSets/Segmentation",
        ".",
    ] {
        let mut names: Vec<_> = std::fs::read_dir(dir.join(sub))
            .unwrap()
            .map(|e| e.unwrap().path())
            // the folder's lock file is bookkeeping (it holds the writer's pid), not data
            .filter(|p| p.is_file() && !p.ends_with(coatt::io::lock::LOCK_FILE))
            .collect();
        names.sort();
        for p in names {
            out.push((
                p.strip_prefix(dir).unwrap().display().to_string(),
                std::fs::read(&p).unwrap(),
            ));
        }
    }
    out
}

#[test]
fn synth_same_seed_same_bytes_other_seed_other_bytes() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    synth(a.path(), 7);
    synth(b.path(), 7);
    synth(c.path(), 8);
    let (fa, fb, fc) = (
        all_files(a.path()),
        all_files(b.path()),
        all_files(c.path()),
    );
    assert_eq!(
        fa.len(),
        14 * 2 + 2 + 2,
        "images, masks, two split lists, labels, class names"
    );
    assert!(fa == fb, "same seed must give the same bytes");
    assert!(fa != fc, "another seed must give other images");
}

#[test]
fn synth_scenes_same_seed_same_bytes_and_not_the_target_set() {
    let (a, b, c, t) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    synth_kind(a.path(), 7, SetKind::Scenes);
    synth_kind(b.path(), 7, SetKind::Scenes);
    synth_kind(c.path(), 8, SetKind::Scenes);
    synth_kind(t.path(), 7, SetKind::Target);
    let (fa, fb, fc, ft) = (
        all_files(a.path()),
        all_files(b.path()),
        all_files(c.path()),
        all_files(t.path()),
    );
    assert_eq!(fa.len(), 14 * 2 + 2 + 2);
    assert!(fa == fb, "same seed must give the same bytes");
    assert!(fa != fc, "another seed must give other images");
    assert!(fa != ft, "scenes and target are different sets");
    let names = std::fs::read_to_string(a.path().join("class_names.txt")).unwrap();
    assert!(names.starts_with("background\nred\n"), "{names}");
}

#[test]
fn synth_scenes_labels_agree_with_masks_objects_are_large_and_context_is_background() {
    let d = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        out: d.path().to_path_buf(),
        train: 40,
        val: 4,
        size: 64,
        classes: 6,
        seed: 5,
        kind: SetKind::Scenes,
        context_share: coatt::data::synth::DEFAULT_CONTEXT_SHARE,
    };
    generate(&cfg).unwrap();
    let ds = VocDataset::open(d.path(), "train").unwrap();
    let (mut fg, mut all, mut multi) = (0usize, 0usize, 0usize);
    for it in &ds.items {
        let from_mask = labels_from_mask(it.mask.as_ref().unwrap(), 6).unwrap();
        assert_eq!(from_mask, it.labels, "{}", it.id);
        assert!((1..=3).contains(&it.labels.len()), "1-3 classes per image");
        multi += (it.labels.len() > 1) as usize;
        let m = read_label_png(it.mask.as_ref().unwrap()).unwrap();
        assert!(m.data.contains(&255), "object borders are ignore (255)");
        assert!(m.data.contains(&0), "every scene has background");
        fg += m.data.iter().filter(|&&l| l != 0 && l != 255).count();
        all += m.data.len();
    }
    // whole objects (body and limbs, not only heads) are labelled: several % of the pixels
    let share = fg as f64 / all as f64;
    assert!((0.06..0.5).contains(&share), "object share {share}");
    assert!(multi >= 8, "several classes per image in {multi} of 40");
}

/// The class whose context hue ((c + 0.5) / k) is nearest the ground's: the saturation-weighted
/// circular mean hue of the background pixels in the bottom eighth of a scenes image (always
/// below the horizon).
fn ground_class(img: &coatt::data::synth::SynthImage, size: usize, k: usize) -> usize {
    let (mut sx, mut sy) = (0f64, 0f64);
    for y in size - size / 8..size {
        for x in 0..size {
            if img.mask.data[y * size + x] != 0 {
                continue;
            }
            let p = &img.rgb[(y * size + x) * 3..(y * size + x) * 3 + 3];
            let [r, g, b] = [p[0], p[1], p[2]].map(|v| v as f64 / 255.0);
            let (mx, mn) = (r.max(g).max(b), r.min(g).min(b));
            if mx - mn < 1e-6 {
                continue;
            }
            let h = if mx == r {
                ((g - b) / (mx - mn)).rem_euclid(6.0)
            } else if mx == g {
                (b - r) / (mx - mn) + 2.0
            } else {
                (r - g) / (mx - mn) + 4.0
            } / 6.0;
            let w = (mx - mn) / mx;
            sx += w * (h * std::f64::consts::TAU).cos();
            sy += w * (h * std::f64::consts::TAU).sin();
        }
    }
    let hue = sy.atan2(sx).rem_euclid(std::f64::consts::TAU) / std::f64::consts::TAU;
    let dist = |c: usize| {
        let d = (hue - (c as f64 + 0.5) / k as f64).rem_euclid(1.0);
        d.min(1.0 - d)
    };
    (0..k).min_by(|&a, &b| dist(a).total_cmp(&dist(b))).unwrap()
}

#[test]
fn scenes_context_share_decides_whether_the_ground_goes_with_the_classes() {
    let (size, k, n) = (64, 6, 120);
    let with_context = |share: f64| {
        let cfg = SynthConfig {
            out: std::path::PathBuf::new(),
            train: n,
            val: 0,
            size,
            classes: k,
            seed: 7,
            kind: SetKind::Scenes,
            context_share: share,
        };
        (0..n)
            .filter(|&i| {
                let img = coatt::data::synth::draw_scene(&cfg, i);
                img.classes.contains(&ground_class(&img, size, k))
            })
            .count() as f64
            / n as f64
    };
    let (always, default, never) = (with_context(1.0), with_context(0.7), with_context(0.0));
    // the hue read from the pixels finds the context class of nearly every image at share 1;
    // at share 0 only the chance that a random class is one of the image's 1-3 (about 0.3)
    assert!(
        always > 0.9,
        "share 1: ground goes with a class in {always}"
    );
    assert!(never < 0.5, "share 0: ground goes with a class in {never}");
    assert!(
        default > never + 0.2 && default < always,
        "share 0.7: {default} (1: {always}, 0: {never})"
    );
    let d = tempfile::tempdir().unwrap();
    let e = generate(&SynthConfig {
        out: d.path().to_path_buf(),
        train: 2,
        val: 0,
        size,
        classes: k,
        seed: 7,
        kind: SetKind::Scenes,
        context_share: 1.5,
    })
    .unwrap_err();
    assert!(e.to_string().contains("context share"), "{e}");
}

#[test]
fn synth_labels_agree_with_masks_and_borders_are_ignored() {
    let d = tempfile::tempdir().unwrap();
    synth(d.path(), 3);
    let ds = VocDataset::open(d.path(), "train").unwrap();
    assert_eq!(ds.items.len(), 10);
    assert_eq!(ds.num_classes(), 4);
    assert_eq!(ds.label_source, "cls_labels.txt");
    for it in &ds.items {
        let from_mask = labels_from_mask(it.mask.as_ref().unwrap(), 4).unwrap();
        assert_eq!(from_mask, it.labels, "{}", it.id);
        assert!((1..=3).contains(&it.labels.len()), "1-3 classes per image");
        let m = read_label_png(it.mask.as_ref().unwrap()).unwrap();
        assert!(m.data.contains(&255), "object borders are ignore (255)");
    }
    let val = VocDataset::open(d.path(), "val").unwrap();
    assert_eq!(val.items.len(), 4);
}

/// A hand-made VOC folder: two images, palette masks with 255, optional cls_labels/XML.
fn tiny_voc(root: &Path, with_cls_labels: bool) {
    for d in [
        "JPEGImages",
        "SegmentationClass",
        "ImageSets/Segmentation",
        "Annotations",
    ] {
        std::fs::create_dir_all(root.join(d)).unwrap();
    }
    for (id, cls) in [("a", 3u8), ("b", 20u8)] {
        image::RgbImage::from_pixel(6, 4, image::Rgb([10, 200, 30]))
            .save(root.join(format!("JPEGImages/{id}.jpg")))
            .unwrap();
        let mut data = vec![0u8; 24];
        data[7] = cls;
        data[8] = cls;
        data[9] = 255;
        write_label_png(
            &root.join(format!("SegmentationClass/{id}.png")),
            &LabelMap {
                width: 6,
                height: 4,
                data,
            },
        )
        .unwrap();
    }
    std::fs::write(root.join("ImageSets/Segmentation/train.txt"), "a\nb\n").unwrap();
    std::fs::write(root.join("Annotations/a.xml"), "<annotation><object><name>bird</name></object><object><name>dog</name></object></annotation>").unwrap();
    if with_cls_labels {
        std::fs::write(root.join("cls_labels.txt"), "a 2 11\nb 19\n").unwrap();
    }
}

#[test]
fn voc_reader_labels_from_file_then_masks_then_xml() {
    let d = tempfile::tempdir().unwrap();
    tiny_voc(d.path(), true);
    let ds = VocDataset::open(d.path(), "train").unwrap();
    assert_eq!(
        ds.num_classes(),
        20,
        "VOC class names when no class_names.txt"
    );
    assert_eq!(ds.items[0].labels, vec![2, 11]);
    // no cls_labels.txt: from the palette masks (raw indices; 255 ignored)
    std::fs::remove_file(d.path().join("cls_labels.txt")).unwrap();
    let ds = VocDataset::open(d.path(), "train").unwrap();
    assert_eq!(ds.label_source, "masks");
    assert_eq!(ds.items[0].labels, vec![2]);
    assert_eq!(ds.items[1].labels, vec![19]);
    let m = read_label_png(&d.path().join("SegmentationClass/a.png")).unwrap();
    assert_eq!(
        (m.data[7], m.data[9]),
        (3, 255),
        "palette PNG read as indices"
    );
    // no masks either: from Annotations XML
    std::fs::remove_dir_all(d.path().join("SegmentationClass")).unwrap();
    std::fs::write(d.path().join("ImageSets/Segmentation/train.txt"), "a\n").unwrap();
    let ds = VocDataset::open(d.path(), "train").unwrap();
    assert_eq!(ds.label_source, "Annotations");
    assert_eq!(ds.items[0].labels, vec![2, 11]);
    // a VOCdevkit parent works too
    let dev = tempfile::tempdir().unwrap();
    tiny_voc(&dev.path().join("VOC2012"), true);
    assert_eq!(
        VocDataset::open(dev.path(), "train").unwrap().items.len(),
        2
    );
}

#[test]
fn voc_reader_prefers_segmentation_class_aug() {
    let d = tempfile::tempdir().unwrap();
    tiny_voc(d.path(), false);
    std::fs::create_dir_all(d.path().join("SegmentationClassAug")).unwrap();
    for id in ["a", "b"] {
        let mut data = vec![0u8; 24];
        data[0] = 5;
        write_label_png(
            &d.path().join(format!("SegmentationClassAug/{id}.png")),
            &LabelMap {
                width: 6,
                height: 4,
                data,
            },
        )
        .unwrap();
    }
    std::fs::write(
        d.path().join("ImageSets/Segmentation/train_aug.txt"),
        "a\nb\n",
    )
    .unwrap();
    let ds = VocDataset::open(d.path(), "train_aug").unwrap();
    assert!(ds.items[0]
        .mask
        .as_ref()
        .unwrap()
        .to_string_lossy()
        .contains("SegmentationClassAug"));
    assert_eq!(ds.items[0].labels, vec![4]);
}

#[test]
fn voc_reader_errors_name_the_file() {
    let d = tempfile::tempdir().unwrap();
    tiny_voc(d.path(), true);
    std::fs::write(d.path().join("cls_labels.txt"), "a 2 99\n").unwrap();
    let e = VocDataset::open(d.path(), "train").unwrap_err().to_string();
    assert!(e.contains("cls_labels.txt") && e.contains("99"), "{e}");
    let e = VocDataset::open(d.path(), "nosuchsplit")
        .unwrap_err()
        .to_string();
    assert!(e.contains("nosuchsplit.txt"), "{e}");
    let e = VocDataset::open(&d.path().join("absent"), "train")
        .unwrap_err()
        .to_string();
    assert!(e.contains("absent"), "{e}");
}

#[test]
fn check_data_names_broken_files_and_decides_trainability() {
    let d = tempfile::tempdir().unwrap();
    tiny_voc(d.path(), true);
    let rep = check(d.path(), &["train"]).unwrap();
    assert!(rep.trainable(), "{}", rep.render());
    assert!(rep.splits[0].problems.is_empty(), "{}", rep.render());
    // corrupt image, missing image, mask of another size, mask value out of range
    std::fs::write(d.path().join("JPEGImages/a.jpg"), b"not a jpeg").unwrap();
    let mut data = vec![0u8; 9];
    data[0] = 77;
    write_label_png(
        &d.path().join("SegmentationClass/b.png"),
        &LabelMap {
            width: 3,
            height: 3,
            data,
        },
    )
    .unwrap();
    std::fs::write(
        d.path().join("ImageSets/Segmentation/train.txt"),
        "a\nb\nc\n",
    )
    .unwrap();
    std::fs::write(d.path().join("cls_labels.txt"), "a 2\nb 19\nc 1\n").unwrap();
    let rep = check(d.path(), &["train"]).unwrap();
    let text = rep.render();
    assert!(
        text.contains("corrupt image") && text.contains("a.jpg"),
        "{text}"
    );
    assert!(
        text.contains("missing image") && text.contains("c.jpg"),
        "{text}"
    );
    assert!(
        text.contains("size mismatch") && text.contains("b.png"),
        "{text}"
    );
    assert!(text.contains("mask value 77"), "{text}");
    assert!(
        rep.trainable(),
        "one usable image is enough to train: {text}"
    );
    // usable images exist but none has a label, while the labelled one is unreadable
    std::fs::write(d.path().join("cls_labels.txt"), "a 2\nb\nc 1\n").unwrap();
    let rep = check(d.path(), &["train"]).unwrap();
    assert!(!rep.trainable(), "{}", rep.render());
    assert!(rep.render().contains("no image with a class label"));
    // one usable labelled image (b) and a missing unlabelled one (c): trainable
    std::fs::write(d.path().join("cls_labels.txt"), "a 2\nb 19\nc\n").unwrap();
    assert!(check(d.path(), &["train"]).unwrap().trainable());
    std::fs::write(d.path().join("cls_labels.txt"), "a 2\nb 19\nc 1\n").unwrap();
    // nothing usable: cannot train
    std::fs::write(d.path().join("JPEGImages/b.jpg"), b"broken").unwrap();
    let rep = check(d.path(), &["train"]).unwrap();
    assert!(!rep.trainable());
    // no split list at all
    std::fs::remove_file(d.path().join("ImageSets/Segmentation/train.txt")).unwrap();
    assert!(!check(d.path(), &["train"]).unwrap().trainable());
}

#[test]
fn pairs_share_a_class_and_are_seeded() {
    let d = tempfile::tempdir().unwrap();
    synth(d.path(), 5);
    let ds = VocDataset::open(d.path(), "train").unwrap();
    let by = ds.by_class();
    let p = epoch_pairs(&ds, &by, 11, 0);
    assert_eq!(p.len(), 10);
    for pair in &p {
        assert!(ds.items[pair.first].labels.contains(&pair.class));
        assert!(ds.items[pair.second].labels.contains(&pair.class));
        if by[pair.class].len() > 1 {
            assert_ne!(pair.first, pair.second);
        }
    }
    let mut firsts: Vec<usize> = p.iter().map(|x| x.first).collect();
    firsts.sort();
    assert_eq!(
        firsts,
        (0..10).collect::<Vec<_>>(),
        "each image is image 1 once per epoch"
    );
    assert_eq!(
        p,
        epoch_pairs(&ds, &by, 11, 0),
        "same seed and epoch, same pairs"
    );
    assert_ne!(
        p,
        epoch_pairs(&ds, &by, 11, 1),
        "another epoch, another order"
    );
}

#[test]
fn negative_pairs_share_no_class_and_off_means_the_official_pairs() {
    let d = tempfile::tempdir().unwrap();
    generate(&SynthConfig {
        out: d.path().to_path_buf(),
        train: 120,
        val: 2,
        size: 32,
        classes: 6,
        seed: 3,
        kind: SetKind::Scenes,
        context_share: coatt::data::synth::DEFAULT_CONTEXT_SHARE,
    })
    .unwrap();
    let ds = VocDataset::open(d.path(), "train").unwrap();
    let by = ds.by_class();
    // off: the official sampler's pairs, draw for draw, as they were before negative pairs
    // existed (the first ten of this seed and epoch, as the sampler of commit 971417f drew them)
    let official: Vec<(usize, usize, usize)> = epoch_pairs_with_negatives(&ds, &by, 5, 2, 0.0)
        .iter()
        .take(10)
        .map(|p| (p.first, p.second, p.class))
        .collect();
    assert_eq!(
        official,
        [
            (12, 56, 3),
            (31, 110, 3),
            (1, 82, 2),
            (6, 104, 3),
            (8, 54, 4),
            (114, 49, 2),
            (5, 48, 0),
            (29, 31, 3),
            (101, 102, 4),
            (59, 46, 1)
        ]
    );
    assert_eq!(
        epoch_pairs(&ds, &by, 5, 2),
        epoch_pairs_with_negatives(&ds, &by, 5, 2, 0.0)
    );
    let p = epoch_pairs_with_negatives(&ds, &by, 5, 2, 0.5);
    let labels = |i: usize| &ds.items[i].labels;
    let mut firsts: Vec<usize> = p.iter().map(|x| x.first).collect();
    firsts.sort();
    let labelled: Vec<usize> = (0..120).filter(|&i| !labels(i).is_empty()).collect();
    assert!(labelled.len() > 100);
    assert_eq!(firsts, labelled, "each labelled image is image 1 once");
    for pair in &p {
        assert!(labels(pair.first).contains(&pair.class));
        if pair.negative {
            assert!(
                !labels(pair.second)
                    .iter()
                    .any(|c| labels(pair.first).contains(c)),
                "{pair:?} shares a class"
            );
        } else {
            assert!(labels(pair.second).contains(&pair.class), "{pair:?}");
        }
    }
    // about half of them (a few fall back to a positive pair when no partner is found)
    let neg = p.iter().filter(|x| x.negative).count();
    assert!(
        (35..=85).contains(&neg),
        "{neg} negative pairs of {}",
        p.len()
    );
    assert_eq!(p, epoch_pairs_with_negatives(&ds, &by, 5, 2, 0.5));
    // a config outside [0, 1) is refused by name; 0 is not written, so older records match
    let micro = coatt::cls::ClsConfig::preset("micro").unwrap();
    for bad in [1.0, -0.1, f64::NAN] {
        let e = coatt::cls::ClsConfig {
            negative_pairs: bad,
            ..micro.clone()
        }
        .validate()
        .unwrap_err();
        assert!(e.to_string().contains("negative_pairs"), "{e}");
    }
    let f = d.path().join("c.toml");
    micro.save(&f).unwrap();
    assert!(!std::fs::read_to_string(&f)
        .unwrap()
        .contains("negative_pairs"));
}

#[test]
fn loader_is_ordered_and_independent_of_thread_count_and_skips_corrupt_images() {
    let d = tempfile::tempdir().unwrap();
    synth(d.path(), 6);
    let ds = Arc::new(VocDataset::open(d.path(), "train").unwrap());
    let pairs = Arc::new(epoch_pairs(&ds, &ds.by_class(), 2, 0));
    let cfg = |workers| LoaderConfig {
        size: 32,
        batch: 3,
        workers,
        prefetch: 1,
        jitter: Some(Default::default()),
        seed: 2,
        epoch: 0,
    };
    let one: Vec<_> = PairLoader::start(ds.clone(), pairs.clone(), cfg(1), 0).collect();
    let three: Vec<_> = PairLoader::start(ds.clone(), pairs.clone(), cfg(3), 0).collect();
    assert_eq!(one.len(), 4, "10 pairs in batches of 3");
    for (a, b) in one.iter().zip(&three) {
        assert_eq!(a.img1, b.img1);
        assert_eq!(a.ids, b.ids);
    }
    assert_eq!(
        one.iter().map(|b| b.index).collect::<Vec<_>>(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(one[0].img1.len(), 3 * 3 * 32 * 32);
    // resuming at batch 2 yields exactly the tail
    let tail: Vec<_> = PairLoader::start(ds.clone(), pairs.clone(), cfg(2), 2).collect();
    assert_eq!(tail.len(), 2);
    assert_eq!(tail[0].img2, one[2].img2);
    // a corrupt image: its pairs are skipped and reported, the rest still load
    let victim = ds.items[pairs[0].first].image.clone();
    std::fs::write(&victim, b"garbage").unwrap();
    let after: Vec<_> = PairLoader::start(ds.clone(), pairs.clone(), cfg(2), 0).collect();
    let skipped: usize = after.iter().map(|b| b.skipped.len()).sum();
    assert!(skipped >= 1);
    assert!(after
        .iter()
        .flat_map(|b| &b.skipped)
        .all(|s| s.contains(&*victim.file_name().unwrap().to_string_lossy())));
    assert_eq!(
        after
            .iter()
            .map(|b| b.len() + b.skipped.len())
            .sum::<usize>(),
        10
    );
}

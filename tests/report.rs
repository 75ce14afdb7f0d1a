//! What people look at: the strip of one image (tile layout, palette colours), and the report
//! page of a micro pipeline (one gallery row per sampled image, every image resolves), checked
//! in a real headless browser where one is installed (required when CI=true).
use coatt::io::LabelMap;
use coatt::pipeline::{run_pipeline, PipelineOptions, PipelinePreset};
use coatt::report::strip::{colorize, strip, Tile, CAPTION, TILE};
use coatt::report::{show, write_html_report, ReportOptions};
use image::{Rgb, RgbImage};
use std::path::{Path, PathBuf};
use std::process::Command;

#[test]
fn label_maps_take_the_voc_colours_and_ignore_is_white() {
    let m = LabelMap {
        width: 4,
        height: 1,
        data: vec![0, 1, 2, 255],
    };
    let c = colorize(&m);
    let px: Vec<[u8; 3]> = (0..4).map(|x| c.get_pixel(x, 0).0).collect();
    assert_eq!(px, [[0, 0, 0], [128, 0, 0], [0, 128, 0], [255, 255, 255]]);
}

#[test]
fn a_strip_lays_tiles_side_by_side_under_their_captions() {
    let colours = [[200, 30, 30], [30, 200, 30], [30, 30, 200]];
    let tiles: Vec<Tile> = colours
        .iter()
        .enumerate()
        .map(|(i, &c)| Tile {
            caption: format!("tile {i}"),
            // tiles of other sizes are scaled to TILE × TILE
            image: RgbImage::from_pixel(40 + 10 * i as u32, 30, Rgb(c)),
        })
        .collect();
    let s = strip(&tiles).unwrap();
    assert_eq!((s.width(), s.height()), (3 * TILE, TILE + CAPTION));
    for (i, c) in colours.iter().enumerate() {
        let x = i as u32 * TILE;
        // the tile's area, inside its borders, is its colour
        for (dx, dy) in [(2, 2), (TILE / 2, TILE / 2), (TILE - 3, TILE - 3)] {
            assert_eq!(
                s.get_pixel(x + dx, CAPTION + dy).0,
                *c,
                "tile {i} at {dx},{dy}"
            );
        }
        // the caption band above it holds dark text on white
        let band: Vec<[u8; 3]> = (0..TILE.min(60))
            .flat_map(|dx| (0..CAPTION).map(move |dy| (dx, dy)))
            .map(|(dx, dy)| s.get_pixel(x + dx, dy).0)
            .collect();
        assert!(
            band.iter().any(|p| p.iter().all(|&v| v < 100)),
            "tile {i}: no caption"
        );
        assert!(band.iter().filter(|p| **p == [255, 255, 255]).count() > band.len() / 2);
    }
}

fn micro_pipeline(out: &Path) {
    run_pipeline(&PipelineOptions {
        quiet: true,
        ..PipelineOptions::new(out, PipelinePreset::named("micro").unwrap())
    })
    .unwrap();
}

/// The `src` of every `<img>` of a page.
fn image_sources(html: &str) -> Vec<String> {
    html.split("<img ")
        .skip(1)
        .map(|t| {
            t.split("src=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap()
                .to_string()
        })
        .collect()
}

fn chromium() -> Option<PathBuf> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.exists())
}

#[test]
fn the_report_page_shows_a_row_per_sampled_image_and_every_image_resolves() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("p");
    micro_pipeline(&out);
    // the pipeline wrote the page; a smaller sample rewrites it
    assert!(out.join("report.html").exists());
    let s = write_html_report(&ReportOptions {
        sample: 5,
        ..ReportOptions::new(&out)
    })
    .unwrap();
    let train = coatt::data::VocDataset::open(&out.join("data"), "train").unwrap();
    let val = coatt::data::VocDataset::open(&out.join("data"), "val").unwrap();
    assert_eq!(s.train_rows, 5.min(train.items.len()));
    assert_eq!(s.val_rows, 5.min(val.items.len()));
    let html = std::fs::read_to_string(&s.page).unwrap();
    assert_eq!(
        html.matches("<tr class=\"row\"").count(),
        s.train_rows + s.val_rows
    );
    let srcs = image_sources(&html);
    assert!(
        srcs.len() > s.train_rows + s.val_rows,
        "charts too: {srcs:?}"
    );
    for src in &srcs {
        assert!(out.join(src).is_file(), "{src} does not resolve");
    }
    // only this sample's strips are left in the gallery
    let strips = std::fs::read_dir(out.join("gallery/train"))
        .unwrap()
        .count();
    assert_eq!(strips, s.train_rows);
    // one image's strip: input, truth, maps of each labelled class, refined maps, pseudo label
    let id = &train.items[0].id;
    let png = tmp.path().join("strip.png");
    show(&out, id, &png).unwrap();
    let img = image::open(&png).unwrap();
    let k = train.items[0].labels.len() as u32;
    assert_eq!(img.height(), TILE + CAPTION);
    assert_eq!(
        img.width(),
        TILE * (3 + 2 * k),
        "input, truth, 2 maps per class, pseudo label"
    );
    let e = show(&out, "no-such-image", &png).unwrap_err().to_string();
    assert!(e.contains("no-such-image"), "{e}");

    // in a real browser: the page loads, its script runs, no image is broken
    let Some(browser) = chromium() else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("CI=true and no Chromium: .ci/run installs it (apt-get install chromium)");
        }
        eprintln!("skipped the browser check: no Chromium here (apt-get install chromium)");
        return;
    };
    let dom = Command::new(&browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--virtual-time-budget=10000",
        ])
        .arg(format!(
            "--user-data-dir={}",
            tmp.path().join("chromium").display()
        ))
        .arg("--dump-dom")
        .arg(format!("file://{}", s.page.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    let body = dom
        .split("<body")
        .nth(1)
        .and_then(|b| b.split('>').next())
        .unwrap_or("");
    assert!(
        body.contains(&format!("data-images=\"{}\"", srcs.len())),
        "page did not load: {body}"
    );
    assert!(body.contains("data-broken=\"0\""), "broken images: {body}");
    // the script sorted and counted each gallery
    assert!(
        dom.contains(&format!("{} of {} images", s.train_rows, s.train_rows)),
        "train count"
    );
    assert_eq!(
        dom.matches("class=\"row\"").count(),
        s.train_rows + s.val_rows
    );
}

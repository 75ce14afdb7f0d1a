//! Charts: the SVG beside each PNG holds the title, the axis names, the legend and one line per
//! series with all of its points; bar charts name their bars.
use coatt::io::plot::{smooth, write_bar_chart, write_line_chart, Chart, Series};

/// The `points` attributes of the SVG's polylines drawn in `color`.
fn polylines(svg: &str, color: &str) -> Vec<usize> {
    svg.split("<polyline")
        .skip(1)
        .filter(|p| p.contains(&format!("stroke=\"{color}\"")))
        .map(|p| {
            let pts = p
                .split("points=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            pts.split_whitespace().count()
        })
        .collect()
}

#[test]
fn a_line_chart_has_title_axis_names_legend_and_every_series() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("loss.png");
    let a: Vec<(f64, f64)> = (0..40).map(|i| (i as f64, 5.0 - 0.1 * i as f64)).collect();
    let b = smooth(&a, 5);
    let c: Vec<(f64, f64)> = (0..7)
        .map(|i| (i as f64 * 6.0, 1.0 + (i % 2) as f64))
        .collect();
    write_line_chart(
        &png,
        &Chart {
            title: "Training loss",
            x_label: "iteration",
            y_label: "loss (sum of terms)",
            series: &[
                Series {
                    name: "each iteration",
                    points: &a,
                    color: [0x11, 0x22, 0x33],
                },
                Series {
                    name: "running mean",
                    points: &b,
                    color: [0xaa, 0x10, 0x10],
                },
                Series {
                    name: "val",
                    points: &c,
                    color: [0x10, 0xaa, 0x10],
                },
            ],
        },
    )
    .unwrap();
    let img = image::open(&png).unwrap();
    assert_eq!((img.width(), img.height()), (720, 440));
    let svg = std::fs::read_to_string(png.with_extension("svg")).unwrap();
    for text in [
        "Training loss",
        "iteration",
        "loss (sum of terms)",
        "each iteration",
        "running mean",
        "val",
    ] {
        assert!(
            svg.contains(&format!(">\n{text}\n<")) || svg.contains(&format!(">{text}<")),
            "{text} missing"
        );
    }
    // each series is one polyline through all of its points (plus its legend sample)
    for (color, n) in [
        ("#112233", a.len()),
        ("#AA1010", b.len()),
        ("#10AA10", c.len()),
    ] {
        let lines = polylines(&svg, color);
        assert!(
            lines.contains(&n),
            "{color}: polylines of {lines:?} points, want one of {n}"
        );
    }
}

#[test]
fn a_bar_chart_names_each_bar() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("iou.png");
    let bars: Vec<(String, f64)> = ["background", "red", "green"]
        .iter()
        .zip([86.3, 49.8, 12.3])
        .map(|(n, v)| (n.to_string(), v))
        .collect();
    write_bar_chart(&png, "IoU per class", "class", "IoU (%)", &bars).unwrap();
    assert!(png.exists());
    let svg = std::fs::read_to_string(png.with_extension("svg")).unwrap();
    for text in [
        "IoU per class",
        "class",
        "IoU (%)",
        "background",
        "red",
        "green",
    ] {
        assert!(
            svg.contains(&format!(">\n{text}\n<")) || svg.contains(&format!(">{text}<")),
            "{text} missing"
        );
    }
    // three filled bars in the bar colour
    assert_eq!(svg.matches("fill=\"#3264BE\"").count(), 3, "{svg}");
}

#[test]
fn a_bar_chart_of_one_bar_draws() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("one.png");
    write_bar_chart(
        &png,
        "one",
        "class",
        "IoU (%)",
        &[("background".into(), 90.0)],
    )
    .unwrap();
    let svg = std::fs::read_to_string(png.with_extension("svg")).unwrap();
    assert_eq!(svg.matches("fill=\"#3264BE\"").count(), 1);
}

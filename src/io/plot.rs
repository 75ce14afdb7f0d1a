//! Charts people read without the code beside them: a title, axis names with units, a legend,
//! several series. Drawn by `plotters` with a bundled font (DejaVu Sans, `assets/fonts`, so no
//! system font is needed), written as PNG and as SVG beside it (same name, `.svg`), both
//! atomically through the program's writer.
use crate::error::{Error, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::Once;

/// One line of a chart.
pub struct Series<'a> {
    /// The legend's name for it.
    pub name: &'a str,
    pub points: &'a [(f64, f64)],
    pub color: [u8; 3],
}

/// A line chart.
pub struct Chart<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    pub y_label: &'a str,
    pub series: &'a [Series<'a>],
}

const SIZE: (u32, u32) = (720, 440);
const FONT: &str = "sans-serif";

/// Registers the bundled font once per process.
pub fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
        // a bundled, known-good font: failure is a build defect, not a user error
        if plotters::style::register_font(FONT, FontStyle::Normal, bytes).is_err() {
            panic!("the bundled font assets/fonts/DejaVuSans.ttf did not load");
        }
    });
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::file(path, format!("drawing the chart: {e}"))
}

/// The data range of the series, padded so flat or single-point series still get an axis.
fn ranges(series: &[Series]) -> ((f64, f64), (f64, f64)) {
    let pts = || {
        series
            .iter()
            .flat_map(|s| s.points.iter())
            .filter(|p| p.0.is_finite() && p.1.is_finite())
    };
    let fold = |f: fn(&(f64, f64)) -> f64| {
        pts()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            })
    };
    let pad = |(lo, hi): (f64, f64)| {
        if !lo.is_finite() {
            return (0.0, 1.0);
        }
        let span = (hi - lo).max(1e-9);
        (
            lo - 0.02 * span,
            hi + 0.05 * span + if hi == lo { 1.0 } else { 0.0 },
        )
    };
    (pad(fold(|p| p.0)), pad(fold(|p| p.1)))
}

fn draw_lines<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    chart: &Chart,
) -> std::result::Result<(), String> {
    let e = |e: &dyn std::fmt::Debug| format!("{e:?}");
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let ((x0, x1), (y0, y1)) = ranges(chart.series);
    let mut c = ChartBuilder::on(root)
        .caption(chart.title, (FONT, 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(64)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(|x| e(&x))?;
    c.configure_mesh()
        .x_desc(chart.x_label)
        .y_desc(chart.y_label)
        .label_style((FONT, 13))
        .axis_desc_style((FONT, 15))
        .light_line_style(RGBColor(238, 238, 238))
        .draw()
        .map_err(|x| e(&x))?;
    for s in chart.series {
        let color = RGBColor(s.color[0], s.color[1], s.color[2]);
        let pts = s
            .points
            .iter()
            .copied()
            .filter(|p| p.0.is_finite() && p.1.is_finite());
        c.draw_series(LineSeries::new(pts, color.stroke_width(2)))
            .map_err(|x| e(&x))?
            .label(s.name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 22, y)], color.stroke_width(2))
            });
    }
    if chart.series.len() > 1 || chart.series.iter().any(|s| !s.name.is_empty()) {
        c.configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font((FONT, 13))
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(160, 160, 160))
            .draw()
            .map_err(|x| e(&x))?;
    }
    root.present().map_err(|x| e(&x))
}

/// Writes `chart` as PNG at `png` and as SVG beside it.
pub fn write_line_chart(png: &Path, chart: &Chart) -> Result<()> {
    render(
        png,
        |root| draw_lines(root, chart),
        |root| draw_lines(root, chart),
    )
}

/// Bars with a name each (per-class IoU, say).
pub fn write_bar_chart(
    png: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    bars: &[(String, f64)],
) -> Result<()> {
    fn draw<DB: DrawingBackend>(
        root: &DrawingArea<DB, Shift>,
        (title, x_label, y_label, bars): (&str, &str, &str, &[(String, f64)]),
    ) -> std::result::Result<(), String> {
        let e = |e: &dyn std::fmt::Debug| format!("{e:?}");
        root.fill(&WHITE).map_err(|x| e(&x))?;
        let top = bars
            .iter()
            .map(|b| b.1)
            .filter(|v| v.is_finite())
            .fold(0.0f64, f64::max);
        let n = bars.len().max(1);
        let mut c = ChartBuilder::on(root)
            .caption(title, (FONT, 22))
            .margin(12)
            .x_label_area_size(60)
            .y_label_area_size(64)
            .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..(top * 1.1).max(1e-9))
            .map_err(|x| e(&x))?;
        c.configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style((FONT, 13))
            .axis_desc_style((FONT, 15))
            .disable_x_mesh()
            .x_labels(n)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => bars.get(*i).map(|b| b.0.clone()).unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .map_err(|x| e(&x))?;
        c.draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            let v = if v.is_finite() { *v } else { 0.0 };
            let mut r = Rectangle::new(
                [
                    (SegmentValue::Exact(i), 0.0),
                    (SegmentValue::Exact(i + 1), v),
                ],
                RGBColor(50, 100, 190).filled(),
            );
            r.set_margin(0, 0, 6, 6);
            r
        }))
        .map_err(|x| e(&x))?;
        root.present().map_err(|x| e(&x))
    }
    let args = (title, x_label, y_label, bars);
    render(png, |root| draw(root, args), |root| draw(root, args))
}

/// Renders with each backend in memory and writes both files atomically.
fn render(
    png: &Path,
    bitmap: impl FnOnce(&DrawingArea<BitMapBackend, Shift>) -> std::result::Result<(), String>,
    svg: impl FnOnce(&DrawingArea<SVGBackend, Shift>) -> std::result::Result<(), String>,
) -> Result<()> {
    register_font();
    let mut rgb = vec![0u8; (SIZE.0 * SIZE.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, SIZE).into_drawing_area();
        bitmap(&root).map_err(|e| plot_err(png, e))?;
    }
    let img = image::RgbImage::from_raw(SIZE.0, SIZE.1, rgb).expect("buffer of the chart's size");
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| plot_err(png, e))?;
    super::write_atomic(png, &bytes)?;
    let svg_path = png.with_extension("svg");
    let mut text = String::new();
    {
        let root = SVGBackend::with_string(&mut text, SIZE).into_drawing_area();
        svg(&root).map_err(|e| plot_err(&svg_path, e))?;
    }
    super::write_atomic(&svg_path, text.as_bytes())
}

/// Running mean over the last `win` points (the first ones over what there is).
pub fn smooth(points: &[(f64, f64)], win: usize) -> Vec<(f64, f64)> {
    let win = win.max(1);
    let mut out = Vec::with_capacity(points.len());
    let mut acc = 0.0;
    for (i, p) in points.iter().enumerate() {
        acc += p.1;
        if i >= win {
            acc -= points[i - win].1;
        }
        out.push((p.0, acc / (i + 1).min(win) as f64));
    }
    out
}

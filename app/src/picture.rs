//! Pictures of stored runs (`iolab runs chart`): a run's per-connection
//! throughput over time, its cells as grouped bars, or two runs' cells side
//! by side, as SVG or PNG (plotters).

use std::path::Path;

use anyhow::{Context, bail};
use iolab_lab_core::chart::{Metric, stored_plot};
use iolab_profiles::{Cell, CellKey, Run, compare};
use plotters::coord::Shift;
use plotters::prelude::*;

/// Fonts tried for text, first found wins (Debian's fonts-dejavu-core first).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// What a picture shows.
pub enum Picture<'a> {
    /// Per-connection MB/s over time, cell after cell.
    Series(&'a Run),
    /// Each cell's read and write MB/s.
    Cells(&'a Run),
    /// Two runs' cells side by side (read+write MB/s).
    Versus(&'a Run, &'a Run),
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Registers a TrueType font as "sans-serif" (once per process).
fn font() -> anyhow::Result<()> {
    static DONE: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    DONE.get_or_init(|| {
        let Some((path, bytes)) = FONTS
            .iter()
            .find_map(|p| std::fs::read(p).ok().map(|b| (p, b)))
        else {
            return Err(format!(
                "no TrueType font found for the picture's text (looked for {}); install fonts-dejavu-core",
                FONTS.join(", ")
            ));
        };
        // The font table wants 'static bytes; one font per process.
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| format!("{path}: not a usable TrueType font"))
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

/// Draws `what` into `out` (`.svg` or `.png`) of `size` pixels.
pub fn write(what: &Picture, out: &Path, size: (u32, u32)) -> anyhow::Result<()> {
    let ext = out
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    font()?;
    match ext.as_deref() {
        Some("svg") => {
            let root = SVGBackend::new(out, size).into_drawing_area();
            draw(&root, what).map_err(|e| anyhow::anyhow!("drawing the SVG: {e}"))?;
            root.present()
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))?;
        }
        Some("png") => {
            let root = BitMapBackend::new(out, size).into_drawing_area();
            draw(&root, what).map_err(|e| anyhow::anyhow!("drawing the PNG: {e}"))?;
            root.present()
                .map_err(|e| anyhow::anyhow!("writing {}: {e}", out.display()))?;
        }
        _ => bail!(
            "{}: the picture's file name must end in .svg or .png",
            out.display()
        ),
    }
    // plotters' SVG backend writes on drop without reporting errors: check.
    let len = std::fs::metadata(out)
        .with_context(|| format!("{} was not written", out.display()))?
        .len();
    if len == 0 {
        bail!("{} is empty", out.display());
    }
    Ok(())
}

type Drawn<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

fn draw<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, what: &Picture) -> Drawn<DB> {
    root.fill(&WHITE)?;
    match what {
        Picture::Series(run) => series(root, run),
        Picture::Cells(run) => {
            let rows: Vec<(String, Vec<f64>)> = run
                .cells
                .iter()
                .map(|c| (label(&c.key()), vec![c.read_mbps(), c.write_mbps()]))
                .collect();
            bars(
                root,
                &format!("Run #{} {}: MB/s per cell", id(run), run.profile_name),
                &["read", "write"],
                &rows,
            )
        }
        Picture::Versus(a, b) => {
            let total =
                |c: &Option<Cell>| c.as_ref().map_or(0.0, |c| c.read_mbps() + c.write_mbps());
            let rows: Vec<(String, Vec<f64>)> = compare(a, b)
                .iter()
                .map(|r| (label(&r.key), vec![total(&r.a), total(&r.b)]))
                .collect();
            let (na, nb) = (format!("run #{}", id(a)), format!("run #{}", id(b)));
            bars(
                root,
                &format!("Run #{} vs run #{}: MB/s read+write per cell", id(a), id(b)),
                &[&na, &nb],
                &rows,
            )
        }
    }
}

fn id(r: &Run) -> i64 {
    r.id.unwrap_or(0)
}

/// A cell as a bar group's label: "read 2c" (and the LUN when not 0).
fn label(k: &CellKey) -> String {
    let lun = if k.lun != 0 {
        format!(" L{}", k.lun)
    } else {
        String::new()
    };
    format!("{} {}c{lun}", k.mode, k.connections)
}

fn series<DB: DrawingBackend>(root: &DrawingArea<DB, Shift>, run: &Run) -> Drawn<DB> {
    let plot = stored_plot(run, Metric::Mbps);
    let x_max = plot.x[1].max(1.0);
    let mut chart = ChartBuilder::on(root)
        .caption(
            format!(
                "Run #{} {}: MB/s (10^6 B/s) read+write per connection, 4 Hz",
                id(run),
                run.profile_name
            ),
            ("sans-serif", 24),
        )
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(0.0..x_max, 0.0..plot.y_max)?;
    chart
        .configure_mesh()
        .x_desc("seconds (cells one after another)")
        .y_desc("MB/s")
        .draw()?;
    let mut labelled = Vec::new();
    for (i, line) in plot.lines.iter().enumerate() {
        let color = if line.label == "total" {
            BLACK
        } else {
            PALETTE[plot.color_of(i) % PALETTE.len()]
        };
        let drawn = chart.draw_series(LineSeries::new(
            line.points.iter().copied(),
            color.stroke_width(2),
        ))?;
        // One legend entry per connection, however many cells it ran in.
        if !labelled.contains(&line.label) {
            labelled.push(line.label.clone());
            drawn.label(line.label.clone()).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
            });
        }
    }
    legend(&mut chart)
}

/// The legend, top right, over a lightened background.
fn legend<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
) -> Drawn<DB> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()?;
    Ok(())
}

/// Grouped bars: one group per row, one bar per name.
fn bars<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    caption: &str,
    names: &[&str],
    rows: &[(String, Vec<f64>)],
) -> Drawn<DB> {
    let y_max = rows
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .fold(0.0, f64::max)
        .max(1.0)
        * 1.15;
    let n = rows.len().max(1);
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 24))
        .margin(16)
        .x_label_area_size(40)
        .y_label_area_size(64)
        .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..y_max)?;
    let labels: Vec<String> = rows.iter().map(|(l, _)| l.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 0.01 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc("MB/s (2^20 B/s, as disktest)")
        .draw()?;
    let width = 0.8 / names.len().max(1) as f64;
    for (k, name) in names.iter().enumerate() {
        let color = PALETTE[k % PALETTE.len()];
        chart
            .draw_series(rows.iter().enumerate().map(|(i, (_, v))| {
                let x0 = i as f64 - 0.4 + k as f64 * width;
                Rectangle::new(
                    [
                        (x0, 0.0),
                        (x0 + width * 0.92, v.get(k).copied().unwrap_or(0.0)),
                    ],
                    color.filled(),
                )
            }))?
            .label(name.to_string())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
    }
    legend(&mut chart)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iolab_profiles::SeriesPoint;

    fn run() -> Run {
        let cell = |mode: &str, c: u32| Cell {
            mode: mode.into(),
            connections: c,
            sessions: 1,
            block_bytes: 262_144,
            threads: 64,
            seconds: 2.0,
            read_bytes: if mode == "read" { 800 << 20 } else { 0 },
            write_bytes: if mode == "write" { 600 << 20 } else { 0 },
            ..Cell::default()
        };
        let mut r = Run {
            id: Some(7),
            profile_name: "quick".into(),
            cells: vec![cell("read", 1), cell("write", 2)],
            ..Run::default()
        };
        for (cell, cids) in [(0u32, 1u32), (1, 2)] {
            for cid in 0..cids {
                for seq in 0..8u32 {
                    r.series.push(SeriesPoint {
                        cell,
                        session: 0,
                        cid,
                        seq,
                        t_ms: (seq as u64 + 1) * 250,
                        read_bytes: 100_000_000,
                        write_bytes: 0,
                        ..SeriesPoint::default()
                    });
                }
            }
        }
        r
    }

    #[test]
    fn every_kind_draws_an_svg_and_a_png() {
        if font().is_err() {
            // The font is a peer the test command installs; say what is missing.
            assert!(
                std::env::var("IOLAB_ALLOW_MISSING_PEERS").is_ok(),
                "{}",
                font().unwrap_err()
            );
            return;
        }
        let dir = std::env::temp_dir().join(format!("iolab-picture-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, mut b) = (run(), run());
        b.id = Some(8);
        for (name, what) in [
            ("series", Picture::Series(&a)),
            ("cells", Picture::Cells(&a)),
            ("vs", Picture::Versus(&a, &b)),
        ] {
            let svg = dir.join(format!("{name}.svg"));
            write(&what, &svg, (800, 500)).unwrap();
            let text = std::fs::read_to_string(&svg).unwrap();
            assert!(
                text.starts_with("<svg"),
                "{name}: {}",
                &text[..40.min(text.len())]
            );
            assert!(text.contains("Run #7"), "{name}: caption");
            let png = dir.join(format!("{name}.png"));
            write(&what, &png, (800, 500)).unwrap();
            let bytes = std::fs::read(&png).unwrap();
            assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{name}");
            // IHDR: width and height, big-endian, at bytes 16..24.
            assert_eq!(
                &bytes[16..24],
                &[0, 0, 3, 32, 0, 0, 1, 244],
                "{name}: 800x500"
            );
        }
        let text = std::fs::read_to_string(dir.join("series.svg")).unwrap();
        assert!(
            text.contains("session 0 cid 1"),
            "legend names the connections"
        );
        let err = write(&Picture::Cells(&a), &dir.join("x.jpg"), (800, 500)).unwrap_err();
        assert!(
            err.to_string().contains("must end in .svg or .png"),
            "{err}"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

//! Line charts of `chart::Plot`s: one line per connection plus the total,
//! labelled axes and a legend. Pure: `render(frame, &plot, title, unit, area)`.

use iolab_lab_core::chart::Plot;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols::Marker;
use ratatui::text::{Line, Span};
use ratatui::widgets::{Axis, Block, Borders, Chart, Dataset, GraphType, Paragraph};

/// Line colours, in the order connections are listed; the total is white.
const COLORS: [Color; 8] = [
    Color::Cyan,
    Color::Yellow,
    Color::Magenta,
    Color::Green,
    Color::LightRed,
    Color::LightBlue,
    Color::LightGreen,
    Color::LightMagenta,
];

/// A short number for an axis label: 1234 → "1.2k".
fn short(v: f64) -> String {
    match v.abs() {
        a if a >= 1e6 => format!("{:.1}M", v / 1e6),
        a if a >= 1e4 => format!("{:.0}k", v / 1e3),
        a if a >= 1e3 => format!("{:.1}k", v / 1e3),
        a if a >= 10.0 => format!("{v:.0}"),
        _ => format!("{v:.1}"),
    }
}

/// Seconds as an axis label: "-30s", "-2m", "0".
fn secs(v: f64) -> String {
    if v == 0.0 {
        "0".into()
    } else if v.abs() >= 120.0 && (v / 60.0).fract() == 0.0 {
        format!("{:.0}m", v / 60.0)
    } else {
        format!("{v:.0}s")
    }
}

fn color(i: usize, label: &str) -> Color {
    if label == "total" {
        Color::White
    } else {
        COLORS[i % COLORS.len()]
    }
}

/// Draws `plot` in a bordered box titled `title`, the y axis in `unit`, and
/// a legend beside it (one coloured line per connection, never over the data).
pub fn render(f: &mut Frame, plot: &Plot, title: &str, unit: &str, area: Rect) {
    let block = Block::new().borders(Borders::ALL).title(title.to_string());
    if plot.lines.iter().all(|l| l.points.is_empty()) {
        f.render_widget(Paragraph::new("no samples yet").block(block), area);
        return;
    }
    let inner = block.inner(area);
    f.render_widget(block, area);
    let legend = plot.legend();
    let legend_width = legend
        .iter()
        .map(|l| l.chars().count() as u16 + 2)
        .max()
        .unwrap_or(0)
        .min(inner.width / 3);
    let [plot_area, legend_area] =
        Layout::horizontal([Constraint::Min(10), Constraint::Length(legend_width)]).areas(inner);
    let datasets: Vec<Dataset> = plot
        .lines
        .iter()
        .enumerate()
        .map(|(i, l)| {
            Dataset::default()
                .marker(Marker::Braille)
                .graph_type(GraphType::Line)
                .style(Style::new().fg(color(plot.color_of(i), &l.label)))
                .data(&l.points)
        })
        .collect();
    let [x0, x1] = plot.x;
    let x_labels = vec![
        Span::raw(secs(x0)),
        Span::raw(secs((x0 + x1) / 2.0)),
        Span::raw(secs(x1)),
    ];
    let y_labels = vec![
        Span::raw("0"),
        Span::raw(short(plot.y_max / 2.0)),
        Span::raw(short(plot.y_max)),
    ];
    let chart = Chart::new(datasets)
        .x_axis(Axis::default().bounds([x0, x1]).labels(x_labels))
        .y_axis(
            Axis::default()
                .title(unit.to_string())
                .bounds([0.0, plot.y_max])
                .labels(y_labels),
        )
        .legend_position(None);
    f.render_widget(chart, plot_area);
    let legend: Vec<Line> = legend
        .iter()
        .enumerate()
        .map(|(i, l)| {
            Line::from(vec![
                Span::styled("■ ", Style::new().fg(color(i, l))),
                Span::raw(l.to_string()),
            ])
        })
        .collect();
    f.render_widget(Paragraph::new(legend), legend_area);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_labels_are_short() {
        assert_eq!(short(1234.0), "1.2k");
        assert_eq!(short(56_000.0), "56k");
        assert_eq!(short(2_500_000.0), "2.5M");
        assert_eq!(short(5.25), "5.2");
        assert_eq!(secs(-30.0), "-30s");
        assert_eq!(secs(-600.0), "-10m");
        assert_eq!(secs(0.0), "0");
    }
}

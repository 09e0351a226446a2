//! The Profiles screen: saved set-ups, stored runs, and the selected run beside
//! the baseline with the change per cell and a bar chart.

use iolab_profiles::{Cell, CompareRow, compare};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Bar, BarChart, BarGroup, Block, Borders, Paragraph, Row};

use super::{boxed_table, header, selectable};
use crate::console::state::NotebookView;

pub fn render(f: &mut Frame, n: &NotebookView, area: Rect) {
    let [top, bottom] = Layout::vertical([Constraint::Length(9), Constraint::Min(4)]).areas(area);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(40), Constraint::Percentage(60)]).areas(top);
    profiles(f, n, left);
    runs(f, n, right);
    if let (true, Some(run)) = (n.chart, &n.shown) {
        let plot = iolab_lab_core::chart::stored_plot(run, iolab_lab_core::chart::Metric::Mbps);
        let title = if run.series.is_empty() {
            format!(
                "Run #{} has no per-connection series (c: cells)",
                run.id.unwrap_or(0)
            )
        } else {
            format!(
                "Run #{} per connection, cell after cell: MB/s read+write (c: cells)",
                run.id.unwrap_or(0)
            )
        };
        super::chart::render(f, &plot, &title, "MB/s", bottom);
        return;
    }
    let [table, chart] =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).areas(bottom);
    let rows = match (&n.baseline, &n.shown) {
        (Some(a), Some(b)) => compare(a, b),
        (None, Some(b)) => b
            .cells
            .iter()
            .map(|c| CompareRow {
                key: c.key(),
                a: None,
                b: Some(c.clone()),
            })
            .collect(),
        _ => Vec::new(),
    };
    cells(f, n, &rows, table);
    bars(f, n, &rows, chart);
}

fn profiles(f: &mut Frame, n: &NotebookView, area: Rect) {
    let rows = n.profiles.iter().enumerate().map(|(i, p)| {
        let row = Row::new(vec![
            p.name.clone(),
            if p.builtin { "built-in" } else { "saved" }.to_string(),
            p.description.clone(),
        ]);
        selectable(row, i == n.profile)
    });
    f.render_widget(
        boxed_table(
            rows,
            [
                Constraint::Length(16),
                Constraint::Length(8),
                Constraint::Min(10),
            ],
            header(&["name", "kind", "description"]),
            "Profiles (p next, Enter load into Run)".into(),
        ),
        area,
    );
}

fn runs(f: &mut Frame, n: &NotebookView, area: Rect) {
    let base = n.baseline.as_ref().and_then(|r| r.id);
    let rows = n.runs.iter().enumerate().map(|(i, r)| {
        let mark = if Some(r.id) == base { "A" } else { "" };
        let row = Row::new(vec![
            format!("{mark:>1}{:>4}", r.id),
            r.profile_name.clone(),
            iolab_profiles::time::utc_string(r.started_ms),
            r.cells.to_string(),
            r.kernel.clone(),
        ]);
        selectable(row, i == n.selected)
    });
    let title = format!("Runs in {} (Up/Down show, a baseline)", n.location);
    f.render_widget(
        boxed_table(
            rows,
            [
                Constraint::Length(5),
                Constraint::Length(14),
                Constraint::Length(19),
                Constraint::Length(5),
                Constraint::Min(6),
            ],
            header(&["   id", "profile", "started (UTC)", "cells", "kernel"]),
            title,
        ),
        area,
    );
}

fn label(r: &CompareRow) -> String {
    format!("{} {}c L{}", r.key.mode, r.key.connections, r.key.lun)
}

fn fmt(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "-".into())
}

fn cells(f: &mut Frame, n: &NotebookView, rows: &[CompareRow], area: Rect) {
    let (a, b) = (
        n.baseline.as_ref().and_then(|r| r.id),
        n.shown.as_ref().and_then(|r| r.id),
    );
    let id = |i: Option<i64>| i.map(|i| format!("#{i}")).unwrap_or_else(|| "-".into());
    if rows.is_empty() {
        f.render_widget(
            Paragraph::new(vec![
                Line::from("No run selected."),
                Line::from(
                    "Runs from the Run screen, `iolab run`, `bench` and `matrix` land here.",
                ),
            ])
            .block(Block::new().borders(Borders::ALL).title("Run")),
            area,
        );
        return;
    }
    let table_rows = rows.iter().map(|r| {
        Row::new(vec![
            label(r),
            fmt(r.a.as_ref().map(Cell::total_mbps)),
            fmt(r.b.as_ref().map(Cell::total_mbps)),
            r.mbps_change()
                .map(|c| format!("{c:+.1}%"))
                .unwrap_or_else(|| "-".into()),
            fmt(r.b.as_ref().map(Cell::total_iops)),
            fmt(r.b.as_ref().map(|c| c.p99_us)),
        ])
    });
    let title = format!("Run {} against baseline {} (MB/s)", id(b), id(a));
    f.render_widget(
        boxed_table(
            table_rows,
            [
                Constraint::Length(14),
                Constraint::Length(9),
                Constraint::Length(9),
                Constraint::Length(8),
                Constraint::Length(9),
                Constraint::Length(9),
            ],
            vec![
                "cell".to_string(),
                format!("A {}", id(a)),
                format!("B {}", id(b)),
                "change".into(),
                "B IOPS".into(),
                "B p99 us".into(),
            ],
            title,
        ),
        area,
    );
}

fn bars(f: &mut Frame, _n: &NotebookView, rows: &[CompareRow], area: Rect) {
    let groups: Vec<BarGroup> = rows
        .iter()
        .map(|r| {
            let mut bars = Vec::new();
            if let Some(a) = &r.a {
                bars.push(Bar::with_label("A", a.total_mbps().round() as u64).text_value(""));
            }
            if let Some(b) = &r.b {
                bars.push(
                    Bar::with_label("B", b.total_mbps().round() as u64)
                        .text_value("")
                        .style(Style::new().add_modifier(Modifier::BOLD)),
                );
            }
            BarGroup::new(bars).label(Line::from(format!(
                "{}{}",
                &r.key.mode[..1],
                r.key.connections
            )))
        })
        .collect();
    let mut chart = BarChart::default()
        .block(Block::new().borders(Borders::ALL).title("MB/s per cell"))
        .bar_width(1)
        .bar_gap(0)
        .group_gap(1);
    for g in groups {
        chart = chart.data(g);
    }
    f.render_widget(chart, area);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::state::ProfileEntry;
    use iolab_profiles::{Run, RunSummary};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn run(id: i64, scale: f64) -> Run {
        let cell = |mode: &str, c: u32, mib: f64| Cell {
            mode: mode.into(),
            connections: c,
            sessions: 1,
            block_bytes: 262_144,
            threads: 64,
            seconds: 10.0,
            read_bytes: (mib * scale * 10.0 * 1_048_576.0) as u64,
            read_transfers: (mib * scale * 40.0) as u64,
            p99_us: 5000.0,
            ..Cell::default()
        };
        Run {
            id: Some(id),
            profile_name: "seed-lio-kvm".into(),
            started_ms: 1_242_327_380_000 + id * 60_000,
            ended_ms: 1_242_327_440_000 + id * 60_000,
            cells: vec![
                cell("read", 1, 411.12),
                cell("read", 2, 737.30),
                cell("read", 3, 880.06),
                cell("read", 4, 810.25),
            ],
            ..Run::default()
        }
    }

    fn view() -> NotebookView {
        NotebookView {
            location: "/home/lab/.local/share/iolab/iolab.db".into(),
            profiles: vec![
                ProfileEntry {
                    name: "quick".into(),
                    builtin: true,
                    description: "Embedded 256 MiB RAMDISK".into(),
                },
                ProfileEntry {
                    name: "seed-lio-kvm".into(),
                    builtin: true,
                    description: "The seed page".into(),
                },
            ],
            runs: [1, 2]
                .map(|id| RunSummary {
                    id,
                    profile_name: "seed-lio-kvm".into(),
                    started_ms: 1_242_327_380_000 + id * 60_000,
                    ended_ms: 0,
                    cells: 4,
                    kernel: "2.6.29.2".into(),
                })
                .to_vec(),
            selected: 1,
            profile: 1,
            shown: Some(run(2, 1.25)),
            baseline: Some(run(1, 1.0)),
            chart: false,
        }
    }

    #[test]
    fn snapshot_a_stored_run_opened_later_as_a_chart() {
        use iolab_profiles::SeriesPoint;
        let mut n = view();
        n.chart = true;
        let shown = n.shown.as_mut().unwrap();
        // Two cells: one connection at ~400 MB/s, then two at ~300 each, 4 Hz.
        for (cell, cids) in [(0u32, 1u32), (1, 2)] {
            for cid in 0..cids {
                for seq in 0..40u32 {
                    let wobble = ((seq * 7 + cid * 3) % 5) as u64 * 2_000_000;
                    shown.series.push(SeriesPoint {
                        cell,
                        session: 0,
                        cid,
                        seq,
                        t_ms: (seq as u64 + 1) * 250,
                        read_bytes: if cell == 0 { 100_000_000 } else { 75_000_000 } + wobble,
                        write_bytes: 0,
                        ..SeriesPoint::default()
                    });
                }
            }
        }
        let mut t = Terminal::new(TestBackend::new(110, 26)).unwrap();
        t.draw(|f| render(f, &n, f.area())).unwrap();
        let text = format!("{:?}", t.backend());
        assert!(text.contains("session 0 cid 1"), "{text}");
        assert!(text.contains("Run #2 per connection"), "{text}");
        insta::assert_snapshot!(t.backend());
    }

    #[test]
    fn snapshot_profiles_screen_compares_with_the_baseline() {
        let mut t = Terminal::new(TestBackend::new(110, 26)).unwrap();
        let n = view();
        t.draw(|f| render(f, &n, f.area())).unwrap();
        let text = format!("{:?}", t.backend());
        assert!(text.contains("+25.0%"), "{text}");
        insta::assert_snapshot!(t.backend());
    }

    #[test]
    fn empty_notebook_says_where_runs_come_from() {
        let mut t = Terminal::new(TestBackend::new(110, 20)).unwrap();
        let n = NotebookView::default();
        t.draw(|f| render(f, &n, f.area())).unwrap();
        assert!(format!("{:?}", t.backend()).contains("No run selected"));
    }
}

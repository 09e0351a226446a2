//! Pure render functions: `render(frame, &state)` over a snapshot.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table, Tabs};

use iolab_lab_core::chart::ChartSettings;
use iolab_lab_core::workload::Mode;

use super::state::{ConsoleState, RunPhase, Tab};

mod chart;
mod devices;
mod guests;
mod network;
mod profiles;
mod sessions;
mod target;

pub fn render(f: &mut Frame, s: &ConsoleState) {
    let [tabs, body, status] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(1),
    ])
    .areas(f.area());
    let idx = Tab::ALL.iter().position(|t| *t == s.tab).unwrap_or(0);
    f.render_widget(
        Tabs::new(Tab::ALL.iter().map(|t| t.title()))
            .select(idx)
            .highlight_style(Style::new().add_modifier(Modifier::REVERSED)),
        tabs,
    );
    match s.tab {
        Tab::Target => target::render(f, s, body),
        Tab::Connections => connections(f, s, body),
        Tab::Run => run(f, s, body),
        Tab::Profiles => profiles::render(f, &s.notebook, body),
        Tab::Network => network::render(f, &s.network, &s.snapshot.host, body),
        Tab::Devices => devices::render(f, &s.devices, body),
        Tab::Guests => guests::render(f, &s.guests, body),
        Tab::Sessions => sessions::render(f, &s.sessions, body),
    }
    let lab = format!(
        "lab {}{}",
        s.lab.name,
        if s.unsaved() { " [unsaved]" } else { "" }
    );
    let line = if s.lab.quitting {
        format!(
            "{lab}: the changes are not saved. q quits without saving, S saves, any other key stays"
        )
    } else {
        format!("{lab} │ {}   S save  ? help  q quit", s.status)
    };
    f.render_widget(Paragraph::new(line), status);
    if let Some(form) = &s.lab.save {
        target::render_form(f, form, s.lab.pending_save.is_some(), f.area());
    }
    if s.help {
        help(f, f.area());
    }
}

/// A bordered table with a bold header row: the shape of every table on every screen.
pub(super) fn boxed_table<'a, const N: usize>(
    rows: impl IntoIterator<Item = Row<'a>>,
    widths: [Constraint; N],
    header: Vec<String>,
    title: String,
) -> Table<'a> {
    Table::new(rows, widths)
        .header(Row::new(header).style(Style::new().add_modifier(Modifier::BOLD)))
        .block(Block::new().borders(Borders::ALL).title(title))
}

/// A row shown reversed when it is the selected one.
pub(super) fn selectable(row: Row<'_>, selected: bool) -> Row<'_> {
    if selected {
        row.style(Style::new().add_modifier(Modifier::REVERSED))
    } else {
        row
    }
}

/// Header cells as owned strings.
pub(super) fn header(cells: &[&str]) -> Vec<String> {
    cells.iter().map(|c| c.to_string()).collect()
}

/// A chart's title: what it plots, over which window, and the keys that change them.
fn chart_title(what: &str, c: ChartSettings) -> String {
    format!("{what}: {}, last {}", c.metric.name(), c.window.name())
}

/// The Connections screen: the table of every connection, then their chart.
fn connections(f: &mut Frame, s: &ConsoleState, area: Rect) {
    let rows = s.snapshot.connections.len() as u16 + 3;
    let [table, plot] = Layout::vertical([
        Constraint::Length(rows.clamp(4, area.height / 2)),
        Constraint::Min(6),
    ])
    .areas(area);
    connection_table(f, s, table);
    chart::render(
        f,
        &s.live.plot(s.chart),
        &chart_title("Connections", s.chart),
        s.chart.metric.unit(),
        plot,
    );
}

fn connection_table(f: &mut Frame, s: &ConsoleState, area: Rect) {
    let mut params = std::collections::HashMap::new();
    for ss in &s.snapshot.sessions {
        for c in &ss.info.connections {
            params.insert((ss.info.tsih, c.cid), c.params.clone());
        }
    }
    let rows = s.snapshot.connections.iter().map(|c| {
        let p = params.get(&(c.tsih, c.cid));
        Row::new(vec![
            format!("{}/{}", c.tsih, c.cid),
            c.peer.clone(),
            c.mss.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
            p.map(|p| p.peer_max_recv_data_segment.to_string())
                .unwrap_or_default(),
            p.map(|p| format!("{}/{}", digest(p.header_digest), digest(p.data_digest)))
                .unwrap_or_default(),
            p.map(|p| if p.immediate_data { "Yes" } else { "No" }.to_string())
                .unwrap_or_default(),
            format!("{:.1}", c.read_mbps),
            format!("{:.1}", c.write_mbps),
            format!("{:.0}", c.iops),
            c.totals.in_flight.to_string(),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(8),
            Constraint::Min(21),
            Constraint::Length(6),
            Constraint::Length(8),
            Constraint::Length(13),
            Constraint::Length(5),
            Constraint::Length(9),
            Constraint::Length(9),
            Constraint::Length(8),
            Constraint::Length(6),
        ],
    )
    .header(
        Row::new(vec![
            "Sess/CID",
            "Peer",
            "MSS",
            "MRDSL",
            "Digest H/D",
            "Imm",
            "Read MB/s",
            "Write MB/s",
            "IOPS",
            "InFl",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .block(Block::new().borders(Borders::ALL).title(format!(
        "Connections ({}) — total {:.1} MB/s",
        s.snapshot.connections.len(),
        s.snapshot.total_mbps
    )));
    f.render_widget(table, area);
}

fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Read => "read",
        Mode::Write => "write",
        Mode::Rw => "rw (50:50)",
    }
}

fn mib(bytes: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        bytes as f64 / secs / 1_048_576.0
    } else {
        0.0
    }
}

/// The live connections of the current single run.
/// Which side's counters the Run screen shows, in words.
fn side(s: &ConsoleState) -> &'static str {
    match s.run.measured_by {
        super::state::MeasuredBy::Target => "measured by the target",
        super::state::MeasuredBy::Initiator => "measured by the initiator",
    }
}

fn live_connections(f: &mut Frame, s: &ConsoleState, area: Rect) {
    let live = s.run.live(&s.snapshot);
    let rows = live.iter().map(|c| {
        Row::new(vec![
            format!("{}/{}", c.tsih, c.cid),
            format!("{:.1}", c.read_mbps),
            format!("{:.1}", c.write_mbps),
            format!("{:.0}", c.iops),
            c.totals.in_flight.to_string(),
            c.peer.clone(),
        ])
    });
    // Rates of idle connections can come out as -0.0: never show a minus.
    let total_now: f64 = live
        .iter()
        .map(|c| c.read_mbps + c.write_mbps)
        .sum::<f64>()
        .max(0.0);
    let table = Table::new(
        rows,
        [
            Constraint::Length(10),
            Constraint::Length(12),
            Constraint::Length(12),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Min(16),
        ],
    )
    .header(
        Row::new(vec![
            "Sess/CID",
            "Read MB/s",
            "Write MB/s",
            "IOPS",
            "InFl",
            "Peer",
        ])
        .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .block(Block::new().borders(Borders::ALL).title(format!(
        "Run connections ({}) — now {total_now:.1} MB/s",
        side(s)
    )));
    f.render_widget(table, area);
}

/// The matrix table, filling like the seed page's as cells finish.
fn matrix(f: &mut Frame, m: &super::state::MatrixView, area: Rect) {
    let rows = m.cells.iter().enumerate().map(|(i, c)| {
        let fig =
            |v: Option<f64>, prec: usize| v.map(|x| format!("{x:.prec$}")).unwrap_or_default();
        let r = c.result.as_ref();
        let state = if r.is_some() {
            "done"
        } else if m.current == Some(i) && m.running() {
            "running"
        } else {
            ""
        };
        Row::new(vec![
            mode_name(c.mode).to_string(),
            r.map(|x| x.connections)
                .unwrap_or(c.connections)
                .to_string(),
            fig(r.map(|x| x.read_mbps()), 2),
            fig(r.map(|x| x.read_iops()), 1),
            fig(r.map(|x| x.write_mbps()), 2),
            fig(r.map(|x| x.write_iops()), 1),
            state.to_string(),
        ])
    });
    let title = match (&m.error, m.run_id, m.finished) {
        (Some(e), _, _) => format!("Matrix failed: {e}"),
        (None, Some(id), _) => format!("Matrix done, stored as run #{id}"),
        (None, None, true) => "Matrix done".to_string(),
        _ => "Matrix (MB = 2^20 bytes, as disktest)".to_string(),
    };
    f.render_widget(
        boxed_table(
            rows,
            [
                Constraint::Length(11),
                Constraint::Length(6),
                Constraint::Length(11),
                Constraint::Length(10),
                Constraint::Length(11),
                Constraint::Length(10),
                Constraint::Length(8),
            ],
            header(&[
                "mode",
                "conns",
                "read MB/s",
                "read IOPS",
                "write MB/s",
                "write IOPS",
                "",
            ]),
            title,
        ),
        area,
    );
}

/// The Run screen: the workload form, live per-connection throughput of the
/// run's connections, a chart of the total, and the engine's totals at the end.
fn run(f: &mut Frame, s: &ConsoleState, area: Rect) {
    let table_rows = match &s.run.matrix {
        Some(m) => m.cells.len() as u16 + 3,
        None => s.run.live(&s.snapshot).len() as u16 + 3,
    };
    let [form, conns, chart, totals] = Layout::vertical([
        Constraint::Length(5),
        Constraint::Length(table_rows.clamp(4, 16)),
        Constraint::Min(8),
        Constraint::Length(5),
    ])
    .areas(area);
    let fm = &s.run.form;
    let mut extra = String::new();
    if fm.sessions > 1 {
        extra.push_str(&format!("   sessions {}", fm.sessions));
    }
    if fm.verify {
        extra.push_str("   verify");
    }
    if fm.range_bytes > 0 {
        extra.push_str(&format!(
            "   range {}",
            super::editor::size_text(fm.range_bytes)
        ));
    }
    let lines = vec![
        Line::from(format!(
            "target {}",
            s.run.url(&s.target_urls).unwrap_or_else(|| "none".into())
        )),
        Line::from(format!(
            "mode {}   block {}   outstanding I/Os {}   time {} s   connections {}{extra}",
            mode_name(fm.mode),
            super::editor::size_text(fm.block_bytes as u64),
            fm.threads,
            fm.seconds,
            fm.connections
        )),
        Line::from(
            "e edit all   m mode   c connections   t time   r / Enter start   M the seed's matrix   v chart metric   w window",
        ),
    ];
    f.render_widget(
        Paragraph::new(lines).block(Block::new().borders(Borders::ALL).title("Workload")),
        form,
    );

    if let Some(m) = &s.run.matrix {
        matrix(f, m, conns);
    } else {
        live_connections(f, s, conns);
    }
    let [chart, host_area] =
        Layout::horizontal([Constraint::Min(30), Constraint::Percentage(35)]).areas(chart);
    host(f, s, host_area);
    chart::render(
        f,
        &s.run.history.plot(s.chart),
        &chart_title(&format!("Run, {}", side(s)), s.chart),
        s.chart.metric.unit(),
        chart,
    );

    if let Some(form) = &s.run.edit {
        target::render_form(f, form, false, area);
    }
    let text = match &s.run.phase {
        RunPhase::Idle => vec![Line::from("no run yet: press r")],
        RunPhase::Connecting => vec![Line::from("logging in...")],
        RunPhase::Running {
            started,
            progress,
            connections,
            ..
        } => vec![Line::from(format!(
            "running {:.0} s over {connections} connection(s): read {} B in {} transfers, written {} B in {} transfers",
            started.elapsed().as_secs_f64(),
            progress.read_bytes,
            progress.read_ios,
            progress.write_bytes,
            progress.write_ios
        ))],
        RunPhase::Done { report, .. } => {
            let r = report;
            vec![
                Line::from(format!(
                    "engine: read {} B in {} transfers ({:.2} MB/s, IOPS {:.1}); written {} B in {} transfers ({:.2} MB/s)",
                    r.read.bytes,
                    r.read.transfers,
                    mib(r.read.bytes, r.seconds),
                    r.read.transfers as f64 / r.seconds.max(1e-9),
                    r.write.bytes,
                    r.write.transfers,
                    mib(r.write.bytes, r.seconds)
                )),
                Line::from(format!(
                    "sampled by the console: {} B over the run's connections",
                    s.run.sampled_total()
                )),
                Line::from(format!(
                    "latency p50 {:.0} us  p99 {:.0} us  max {:.0} us   {}",
                    r.latency.percentile(0.5) as f64 / 1e3,
                    r.latency.percentile(0.99) as f64 / 1e3,
                    r.latency.max_ns as f64 / 1e3,
                    if r.passed() { "PASSED" } else { "FAILED" }
                )),
            ]
        }
        RunPhase::Failed(why) => vec![Line::from(format!("run failed: {why}"))],
    };
    f.render_widget(
        Paragraph::new(text).block(Block::new().borders(Borders::ALL).title("Totals")),
        totals,
    );
}

/// CPU per core and the busiest interface's traffic over the chart's window:
/// what the run costs the host.
fn host(f: &mut Frame, s: &ConsoleState, area: Rect) {
    let h = &s.snapshot.host;
    let [cpu, nic] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let mem = if h.mem_total > 0 {
        format!(
            " — mem {:.1}/{:.1} GiB",
            h.mem_used as f64 / (1u64 << 30) as f64,
            h.mem_total as f64 / (1u64 << 30) as f64
        )
    } else {
        String::new()
    };
    let w = s.chart.window;
    chart::render(
        f,
        &s.live.cpu_plot(w),
        &format!("CPU % per core{mem}"),
        "%",
        cpu,
    );
    chart::render(f, &s.live.nic_plot(w), "NIC MB/s", "MB/s", nic);
}

fn digest(on: bool) -> &'static str {
    if on { "CRC32C" } else { "None" }
}

fn help(f: &mut Frame, area: Rect) {
    let w = 52.min(area.width);
    let h = 20.min(area.height);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    f.render_widget(Clear, r);
    let text = vec![
        Line::from("1-8 / Tab    switch screen"),
        Line::from("Target: Up/Down, a add (portal/LUN/ACL), A ACL,"),
        Line::from("        T target, e edit, d delete"),
        Line::from("Run: e edit all, m mode, c connections, t time,"),
        Line::from("     r start, M matrix"),
        Line::from("Run, Connections: v chart metric, w window"),
        Line::from("Profiles: Up/Down run, a baseline, p profile,"),
        Line::from("          Enter load profile into Run, c chart"),
        Line::from("Network: p profile, Space MTU, a apply, u revert"),
        Line::from("Devices: Up/Down, b bind to vfio-pci, u give back"),
        Line::from("Guests: a add, e edit, d delete, s start, x stop"),
        Line::from("Sessions: e settings, d discover, l log in, o out"),
        Line::from("click a tab  switch screen"),
        Line::from("?            this help (Esc closes)"),
        Line::from("S            save the lab as a profile"),
        Line::from("q, Ctrl-C    quit (terminal is restored)"),
    ];
    f.render_widget(
        Paragraph::new(text).block(Block::new().borders(Borders::ALL).title("Keys")),
        r,
    );
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    #[test]
    fn target_screen_shows_urls_and_help_overlay() {
        let mut s = ConsoleState {
            target_urls: vec!["iscsi://127.0.0.1:3260/iqn.2026-11.io.iolab:target0/0".into()],
            portals: vec!["127.0.0.1:3260".into()],
            ..Default::default()
        };
        let mut t = Terminal::new(TestBackend::new(100, 20)).unwrap();
        t.draw(|f| render(f, &s)).unwrap();
        let text: String = t
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(text.contains("lun iscsi://127.0.0.1:3260/iqn.2026-11.io.iolab:target0/0"));
        assert!(text.contains("Sessions (0)"));
        s.help = true;
        t.draw(|f| render(f, &s)).unwrap();
        let text: String = t
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(text.contains("switch screen"));
    }

    #[test]
    fn run_screen_shows_form_and_engine_totals() {
        use iolab_lab_core::workload::{Report, Totals};
        let mut s = ConsoleState {
            tab: Tab::Run,
            ..Default::default()
        };
        s.run.phase = RunPhase::Done {
            tsihs: vec![1],
            report: Report {
                seconds: 2.0,
                read: Totals {
                    bytes: 2 << 30,
                    transfers: 8192,
                },
                write: Totals::default(),
                latency: Default::default(),
                errors: 0,
                first_error: None,
                mismatches: 0,
                first_mismatch_lba: None,
            },
        };
        s.run.sampled.insert((1, 0), 2 << 30);
        s.snapshot = std::sync::Arc::new(iolab_lab_core::LabSnapshot {
            host: iolab_lab_core::host::HostSample {
                cpu: vec![50.0, 100.0],
                mem_used: 3 << 30,
                mem_total: 24 << 30,
                ifaces: vec![iolab_lab_core::host::IfaceRate {
                    name: "lo".into(),
                    rx_per_s: 2e9,
                    tx_per_s: 2e9,
                }],
            },
            ..Default::default()
        });
        let mut t = Terminal::new(TestBackend::new(130, 30)).unwrap();
        t.draw(|f| render(f, &s)).unwrap();
        let text: String = t
            .backend()
            .buffer()
            .content()
            .iter()
            .map(|c| c.symbol())
            .collect();
        assert!(
            text.contains(
                "mode read   block 256K   outstanding I/Os 64   time 10 s   connections 1"
            )
        );
        assert!(
            text.contains(
                "engine: read 2147483648 B in 8192 transfers (1024.00 MB/s, IOPS 4096.0)"
            )
        );
        assert!(text.contains("sampled by the console: 2147483648 B"));
        assert!(text.contains("PASSED"));
        assert!(text.contains("CPU % per core — mem 3.0/24.0 GiB"), "{text}");
        assert!(text.contains("NIC MB/s"), "{text}");
        // Nothing sampled yet: the charts say so rather than draw empty axes.
        assert!(text.contains("no samples yet"), "{text}");
    }

    /// A populated lab: one session with two connections, a finished run, host figures.
    fn populated() -> ConsoleState {
        use iolab_iscsi::SessionInfo;
        use iolab_iscsi::negotiation::Params;
        use iolab_iscsi::stats::ConnStatsSnapshot;
        use iolab_iscsi::target::ConnectionInfo;
        use iolab_lab_core::sampler::Sampler;
        use std::time::{Duration, Instant};

        let info = |bytes: u64| SessionInfo {
            tsih: 1,
            isid: 0x40_1234_5678,
            initiator: "iqn.2026-11.io.iolab:initiator".into(),
            target: "iqn.2026-11.io.iolab:target0".into(),
            queue_depth: 64,
            connections: (0..2u16)
                .map(|cid| ConnectionInfo {
                    cid,
                    peer: format!("127.0.0.1:{}", 50000 + cid).parse().unwrap(),
                    local: "127.0.0.1:3260".parse().unwrap(),
                    params: Params {
                        peer_max_recv_data_segment: 262_144,
                        ..Params::default()
                    },
                    mss: Some(65483),
                    stats: ConnStatsSnapshot {
                        read_bytes: bytes,
                        commands: bytes / 262_144,
                        ..Default::default()
                    },
                })
                .collect(),
        };
        let mut sampler = Sampler::new();
        let t0 = Instant::now();
        let mut s = ConsoleState {
            target_urls: vec!["iscsi://127.0.0.1:3260/iqn.2026-11.io.iolab:target0/0".into()],
            portals: vec!["127.0.0.1:3260".into()],
            status: "embedded target ready".into(),
            ..Default::default()
        };
        s.run.phase = RunPhase::Running {
            started: t0,
            tsihs: vec![1],
            connections: 2,
            progress: Default::default(),
        };
        // 30 s at 4 Hz: connection 0 ramps up to ~1 GB/s, connection 1 holds ~500 MB/s.
        let (mut c0, mut c1) = (0u64, 0u64);
        for i in 0..=120u64 {
            let mut info = info(0);
            c0 += 2_000_000 * i.min(60) + 40_000_000;
            c1 += 125_000_000 + (i % 8) * 4_000_000;
            for (c, bytes) in info.connections.iter_mut().zip([c0, c1]) {
                c.stats.read_bytes = bytes;
                c.stats.commands = bytes / 262_144;
            }
            let mut snap = sampler.sample(vec![info], t0 + Duration::from_millis(250 * i));
            snap.host = iolab_lab_core::host::HostSample {
                cpu: vec![40.0 + (i % 20) as f32 * 2.0, 30.0 + (i % 10) as f32],
                mem_used: 2 << 30,
                mem_total: 24 << 30,
                ifaces: vec![iolab_lab_core::host::IfaceRate {
                    name: "lo".into(),
                    rx_per_s: 1e9 + i as f64 * 1e7,
                    tx_per_s: 1e9 + i as f64 * 1e7,
                }],
            };
            s.on_snapshot(std::sync::Arc::new(snap));
        }
        // The run is over: its chart stays until the next run.
        s.run.phase = RunPhase::Done {
            tsihs: vec![1],
            report: iolab_lab_core::workload::Report {
                seconds: 10.0,
                read: iolab_lab_core::workload::Totals {
                    bytes: 20 << 30,
                    transfers: 81920,
                },
                write: Default::default(),
                latency: Default::default(),
                errors: 0,
                first_error: None,
                mismatches: 0,
                first_mismatch_lba: None,
            },
        };
        s.run.sampled.insert((1, 0), 10 << 30);
        s.run.sampled.insert((1, 1), 10 << 30);
        s.editor = lab_editor();
        s
    }

    /// The editor over a lab with a RAMDISK and a FILEIO LUN, an ACL with
    /// mutual CHAP, and one session logged in.
    pub(super) fn lab_editor() -> crate::console::editor::TargetEditor {
        use iolab_iscsi::chap::ChapCredentials;
        use iolab_iscsi::target::{Acl, ServerConfig};
        let mut cfg = ServerConfig::default_lab("127.0.0.1:3260".parse().unwrap(), 1 << 30);
        cfg.targets[0].add_lun(iolab_storage::BackstoreSpec::Fileio {
            path: "/var/tmp/lun1.img".into(),
            size: Some(64 << 20),
            direct: true,
        });
        cfg.targets[0].acls.push(Acl {
            initiator: "iqn.2026-12.org.example:host1".into(),
            chap: ChapCredentials::parse("alice:secret12345"),
            mutual_chap: ChapCredentials::parse("tgt:othersecret12"),
        });
        crate::console::editor::TargetEditor {
            config: Some(cfg),
            cursor: 4,
            sessions: vec!["iqn.2026-11.io.iolab:target0".into()],
            ..Default::default()
        }
    }

    fn draw(s: &ConsoleState) -> Terminal<TestBackend> {
        let mut t = Terminal::new(TestBackend::new(110, 32)).unwrap();
        t.draw(|f| render(f, s)).unwrap();
        t
    }

    #[test]
    fn snapshot_target_screen() {
        let s = ConsoleState {
            tab: Tab::Target,
            ..populated()
        };
        insta::assert_snapshot!(draw(&s).backend());
    }

    #[test]
    fn snapshot_workload_form_over_the_run_screen() {
        let mut s = ConsoleState {
            tab: Tab::Run,
            ..populated()
        };
        s.run.edit = Some(crate::console::editor::Form::workload(
            &s.run.form,
            &s.target_urls,
        ));
        insta::assert_snapshot!(draw(&s).backend());
    }

    #[test]
    fn snapshot_save_form_and_unsaved_marker() {
        let mut s = ConsoleState {
            tab: Tab::Target,
            ..populated()
        };
        let mut form = crate::console::editor::Form::save("quick");
        form.error = form.save_choice().err();
        s.lab.save = Some(form);
        insta::assert_snapshot!(draw(&s).backend());
    }

    #[test]
    fn snapshot_connections_screen() {
        let s = ConsoleState {
            tab: Tab::Connections,
            ..populated()
        };
        insta::assert_snapshot!(draw(&s).backend());
    }

    #[test]
    fn snapshot_run_screen() {
        let s = ConsoleState {
            tab: Tab::Run,
            ..populated()
        };
        insta::assert_snapshot!(draw(&s).backend());
    }

    #[test]
    fn a_finished_runs_chart_stays_until_the_next_run() {
        let mut s = ConsoleState {
            tab: Tab::Run,
            ..populated()
        };
        let before = s.run.history.plot(s.chart);
        assert_eq!(before.lines.len(), 3, "two connections and the total");
        // The target keeps sampling (idle now): the run's chart does not move.
        let mut later = (*s.snapshot).clone();
        for k in 1..=8 {
            later.seq += 1;
            later.t += 0.25;
            later.connections.clear();
            s.on_snapshot(std::sync::Arc::new(later.clone()));
            assert_eq!(s.run.history.plot(s.chart), before, "after {k} samples");
        }
        // Other metrics and windows come from the same history.
        s.on_key(crossterm::event::KeyCode::Char('v'));
        assert_eq!(s.chart.metric, iolab_lab_core::chart::Metric::ReadMbps);
        s.on_key(crossterm::event::KeyCode::Char('w'));
        assert_eq!(s.chart.window, iolab_lab_core::chart::Window::M2);
        let text = format!("{:?}", draw(&s).backend());
        assert!(text.contains("MB/s read, last 2 min"), "{text}");
        assert!(
            text.contains("1/0 127.0.0.1:50000"),
            "legend names the connection: {text}"
        );
    }

    #[test]
    fn snapshot_connections_chart_of_iops_over_two_minutes() {
        let mut s = ConsoleState {
            tab: Tab::Connections,
            ..populated()
        };
        s.chart = ChartSettings {
            metric: iolab_lab_core::chart::Metric::Iops,
            window: iolab_lab_core::chart::Window::M2,
        };
        insta::assert_snapshot!(draw(&s).backend());
    }

    #[test]
    fn snapshot_run_screen_matrix_fills_like_the_seed_table() {
        use super::super::state::{MatrixCell, MatrixView};
        let mut s = ConsoleState {
            tab: Tab::Run,
            ..populated()
        };
        let p = s
            .run
            .form
            .matrix_profile("iscsi://127.0.0.1:3260/iqn.2026-11.io.iolab:target0/0");
        let cells = p
            .workload
            .cells(0)
            .iter()
            .enumerate()
            .map(|(i, c)| MatrixCell {
                mode: c.mode,
                connections: c.connections,
                result: (i < 5).then(|| {
                    let mib = 4110 + 100 * i as u64;
                    let read = c.mode == Mode::Read;
                    iolab_profiles::Cell {
                        mode: mode_name(c.mode).into(),
                        connections: c.connections,
                        sessions: 1,
                        block_bytes: 262_144,
                        threads: 64,
                        seconds: 10.0,
                        read_bytes: if read { mib << 20 } else { 0 },
                        read_transfers: if read { mib * 4 } else { 0 },
                        write_bytes: if read { 0 } else { mib << 20 },
                        write_transfers: if read { 0 } else { mib * 4 },
                        ..iolab_profiles::Cell::default()
                    }
                }),
            })
            .collect();
        s.run.matrix = Some(MatrixView {
            cells,
            current: Some(5),
            ..MatrixView::default()
        });
        let t = draw(&s);
        let text = format!("{:?}", t.backend());
        assert!(text.contains("running"), "{text}");
        insta::assert_snapshot!(t.backend());
    }

    #[test]
    fn snapshot_help_overlay() {
        let s = ConsoleState {
            help: true,
            ..populated()
        };
        insta::assert_snapshot!(draw(&s).backend());
    }
}

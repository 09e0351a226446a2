//! The Network screen: interfaces with MTU and traffic, a tuning profile
//! planned against this namespace with differences marked, and the y/n box
//! before anything is written.

use iolab_lab_core::host::HostSample;
use iolab_lab_core::tuning::plan::normalized;
use iolab_lab_core::tuning::{KeyAccess, PlanItem, Severity};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Wrap};

use super::{boxed_table, header, selectable};
use crate::console::state::{Confirm, NetworkView};

pub fn render(f: &mut Frame, n: &NetworkView, host: &HostSample, area: Rect) {
    let iface_rows = (n.ifaces.len() as u16 + 3).clamp(4, 10);
    let [top, plan, lints] = Layout::vertical([
        Constraint::Length(iface_rows),
        Constraint::Min(5),
        Constraint::Length(6),
    ])
    .areas(area);
    interfaces(f, n, host, top);
    plan_table(f, n, plan);
    notes(f, n, lints);
    if let Some(c) = n.confirm {
        confirm(f, n, c, area);
    }
}

fn interfaces(f: &mut Frame, n: &NetworkView, host: &HostSample, area: Rect) {
    let rows = n.ifaces.iter().enumerate().map(|(i, (name, mtu, marked))| {
        let rate = host.ifaces.iter().find(|r| &r.name == name);
        let row = Row::new(vec![
            if *marked { "[x]" } else { "[ ]" }.to_string(),
            name.clone(),
            mtu.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
            rate.map(|r| format!("{:.2}", r.rx_per_s / 1e6))
                .unwrap_or_else(|| "-".into()),
            rate.map(|r| format!("{:.2}", r.tx_per_s / 1e6))
                .unwrap_or_else(|| "-".into()),
        ]);
        selectable(row, i == n.cursor)
    });
    f.render_widget(
        boxed_table(
            rows,
            [
                Constraint::Length(3),
                Constraint::Length(16),
                Constraint::Length(6),
                Constraint::Length(10),
                Constraint::Length(10),
            ],
            header(&["MTU", "interface", "mtu", "rx MB/s", "tx MB/s"]),
            "Interfaces (Up/Down, Space: give it the profile's MTU)".into(),
        ),
        area,
    );
}

fn action(i: &PlanItem) -> &'static str {
    match (i.change, i.access, &i.note) {
        (_, _, Some(_)) => "skip",
        (false, _, _) => "",
        (true, KeyAccess::Writable, _) if i.current.is_some() => "change",
        _ => "refused",
    }
}

fn plan_table(f: &mut Frame, n: &NetworkView, area: Rect) {
    let title = format!(
        "Tuning profile {} (p next, a apply, u revert; {} value(s) recorded)",
        n.profile().unwrap_or("-"),
        n.recorded
    );
    let Some(plan) = &n.plan else {
        f.render_widget(
            Paragraph::new("No plan yet.").block(Block::new().borders(Borders::ALL).title(title)),
            area,
        );
        return;
    };
    let rows = plan.items.iter().map(|i| {
        let mark = if i.change { "*" } else { " " };
        let row = Row::new(vec![
            mark.to_string(),
            i.key.clone(),
            i.current
                .as_deref()
                .map(normalized)
                .unwrap_or_else(|| "-".into()),
            normalized(&i.wanted),
            action(i).to_string(),
        ]);
        if i.will_write() {
            row.style(Style::new().add_modifier(Modifier::BOLD))
        } else {
            row
        }
    });
    f.render_widget(
        boxed_table(
            rows,
            [
                Constraint::Length(1),
                Constraint::Length(30),
                Constraint::Length(26),
                Constraint::Length(26),
                Constraint::Min(7),
            ],
            header(&["", "key", "host now", "profile", "action"]),
            title,
        ),
        area,
    );
}

fn notes(f: &mut Frame, n: &NetworkView, area: Rect) {
    let mut lines = Vec::new();
    if let Some(plan) = &n.plan {
        for i in plan.items.iter().filter(|i| i.note.is_some()) {
            lines.push(Line::from(format!(
                "skip {}: {}",
                i.key,
                i.note.as_deref().unwrap_or_default()
            )));
        }
        for l in &plan.lints {
            let sev = match l.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            lines.push(Line::from(format!("{sev}: {}: {}", l.key, l.message)));
        }
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: true })
            .block(Block::new().borders(Borders::ALL).title("Notes")),
        area,
    );
}

fn confirm(f: &mut Frame, n: &NetworkView, c: Confirm, area: Rect) {
    let w = 64.min(area.width);
    let h = 6.min(area.height);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    let writes = n
        .plan
        .as_ref()
        .map(|p| p.items.iter().filter(|i| i.will_write()).count())
        .unwrap_or(0);
    let text = match c {
        Confirm::Apply => format!(
            "Apply {} to this network namespace? It writes {writes} value(s); the current ones are recorded first.",
            n.profile().unwrap_or("-")
        ),
        Confirm::Revert => {
            format!("Put back the {} value(s) the lab recorded?", n.recorded)
        }
    };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(vec![
            Line::from(text),
            Line::from(""),
            Line::from("y: yes   any other key: no"),
        ])
        .wrap(Wrap { trim: true })
        .block(Block::new().borders(Borders::ALL).title("Confirm")),
        r,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use iolab_lab_core::host::IfaceRate;
    use iolab_lab_core::tuning::{Lint, Plan};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn item(
        key: &str,
        cur: Option<&str>,
        want: &str,
        access: KeyAccess,
        note: Option<&str>,
    ) -> PlanItem {
        PlanItem {
            key: key.into(),
            current: cur.map(str::to_owned),
            wanted: want.into(),
            access,
            change: cur.map(normalized) != Some(normalized(want)),
            note: note.map(str::to_owned),
        }
    }

    fn view() -> NetworkView {
        NetworkView {
            profiles: vec!["seed".into(), "network-throughput".into()],
            selected: 0,
            ifaces: vec![
                ("lo".into(), Some(65536), false),
                ("va".into(), Some(1500), true),
            ],
            cursor: 1,
            plan: Some(Plan {
                profile: "seed".into(),
                items: vec![
                    item(
                        "net.ipv4.tcp_sack",
                        Some("1"),
                        "0",
                        KeyAccess::Writable,
                        None,
                    ),
                    item(
                        "net.ipv4.tcp_rmem",
                        Some("4096\t131072\t33554432"),
                        "10000000 10000000 10000000",
                        KeyAccess::Writable,
                        None,
                    ),
                    item(
                        "net.ipv4.tcp_mem",
                        None,
                        "10000000 10000000 10000000",
                        KeyAccess::Absent,
                        Some("only in the initial network namespace"),
                    ),
                    item(
                        "net.core.optmem_max",
                        Some("524287"),
                        "524287",
                        KeyAccess::Writable,
                        None,
                    ),
                    item("mtu:va", Some("1500"), "9000", KeyAccess::Writable, None),
                ],
                lints: vec![Lint {
                    severity: Severity::Warning,
                    key: "net.core.rmem_max".into(),
                    message:
                        "net.core.rmem_max = 4194304 is below net.ipv4.tcp_rmem's maximum 10000000"
                            .into(),
                }],
            }),
            recorded: 0,
            confirm: None,
            lab_tuning: None,
            chosen: None,
            picked: false,
            premarked: Vec::new(),
        }
    }

    fn host() -> HostSample {
        HostSample {
            ifaces: vec![IfaceRate {
                name: "va".into(),
                rx_per_s: 12_500_000.0,
                tx_per_s: 250_000.0,
            }],
            ..HostSample::default()
        }
    }

    #[test]
    fn snapshot_network_screen_marks_differences() {
        let mut t = Terminal::new(TestBackend::new(110, 26)).unwrap();
        t.draw(|f| render(f, &view(), &host(), f.area())).unwrap();
        insta::assert_snapshot!(t.backend());
    }

    #[test]
    fn snapshot_network_apply_confirmation() {
        let mut t = Terminal::new(TestBackend::new(110, 26)).unwrap();
        let n = NetworkView {
            confirm: Some(Confirm::Apply),
            ..view()
        };
        t.draw(|f| render(f, &n, &host(), f.area())).unwrap();
        let text = format!("{:?}", t.backend());
        assert!(text.contains("It writes 3 value(s)"), "{text}");
        insta::assert_snapshot!(t.backend());
    }
}

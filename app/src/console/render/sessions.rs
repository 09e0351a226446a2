//! The Sessions screen: discovery and login settings, the targets a portal
//! offers, and the embedded initiator's sessions with what they negotiated.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Paragraph, Row, Wrap};

use super::{boxed_table, header, selectable};
use crate::console::sessions::{Pane, SessionsView};

fn yes(b: bool) -> &'static str {
    if b { "Yes" } else { "No" }
}

pub fn render(f: &mut Frame, v: &SessionsView, area: Rect) {
    let [settings, lists, detail] = Layout::vertical([
        Constraint::Length(v.settings.fields.len() as u16 + 3),
        Constraint::Min(6),
        Constraint::Length(9),
    ])
    .areas(area);
    let mut lines: Vec<Line> = v
        .settings
        .fields
        .iter()
        .enumerate()
        .map(|(i, fl)| {
            let value = if fl.choices.is_empty() {
                fl.value.clone()
            } else {
                format!("‹ {} ›", fl.value)
            };
            let style = if v.editing && i == v.settings.focus {
                Style::new().add_modifier(Modifier::REVERSED)
            } else {
                Style::new()
            };
            Line::from(vec![
                Span::raw(format!("{:>14}  ", fl.label)),
                Span::styled(value, style),
            ])
        })
        .collect();
    let status = match (&v.busy, &v.error, &v.settings.error) {
        (Some(b), _, _) => Line::from(b.clone()),
        (_, Some(e), _) | (_, _, Some(e)) => {
            Line::from(Span::styled(e.clone(), Style::new().fg(Color::Red)))
        }
        _ if v.editing => Line::from("Tab/Up/Down field, Enter or Esc done"),
        _ => Line::from(""),
    };
    lines.push(status);
    f.render_widget(
        Paragraph::new(lines).block(Block::new().borders(Borders::ALL).title(
            "Discovery and login   e edit  d discover  l log in  o log out  Left/Right list",
        )),
        settings,
    );

    let [targets, sessions] =
        Layout::horizontal([Constraint::Percentage(45), Constraint::Percentage(55)]).areas(lists);
    let rows = v.discovered.iter().enumerate().map(|(i, t)| {
        selectable(
            Row::new(vec![t.name.clone(), t.addresses.join(" ")]),
            v.pane == Pane::Targets && i == v.target_cursor,
        )
    });
    f.render_widget(
        boxed_table(
            rows,
            [Constraint::Min(20), Constraint::Length(22)],
            header(&["target", "addresses"]),
            format!("Targets the portal offers ({})", v.discovered.len()),
        ),
        targets,
    );
    let rows = v.sessions.iter().enumerate().map(|(i, s)| {
        let size = s
            .capacity
            .map(|(n, bs)| super::super::editor::size_text(n * bs as u64))
            .unwrap_or_else(|| "-".into());
        selectable(
            Row::new(vec![
                s.facts.tsih.to_string(),
                s.target.clone(),
                format!("{:?}", s.luns),
                size,
                s.facts.connections.len().to_string(),
            ]),
            v.pane == Pane::Sessions && i == v.session_cursor,
        )
    });
    f.render_widget(
        boxed_table(
            rows,
            [
                Constraint::Length(6),
                Constraint::Min(20),
                Constraint::Length(10),
                Constraint::Length(7),
                Constraint::Length(6),
            ],
            header(&["TSIH", "target", "LUNs", "size", "conns"]),
            format!("Sessions of the embedded initiator ({})", v.sessions.len()),
        ),
        sessions,
    );

    let mut lines = Vec::new();
    match v.sessions.get(v.session_cursor) {
        Some(s) => {
            let p = &s.facts.params;
            lines.push(Line::from(format!(
                "{} as {}  TPGT {}  ISID {:012x}",
                s.url,
                s.initiator,
                s.facts
                    .target_portal_group
                    .map(|t| t.to_string())
                    .unwrap_or_else(|| "-".into()),
                s.facts.isid
            )));
            lines.push(Line::from(format!(
                "MaxConnections {}  InitialR2T {}  ImmediateData {}  FirstBurstLength {}  MaxBurstLength {}  MaxOutstandingR2T {}  ErrorRecoveryLevel {}",
                p.max_connections,
                yes(p.initial_r2t),
                yes(p.immediate_data),
                p.first_burst,
                p.max_burst,
                p.max_outstanding_r2t,
                p.error_recovery_level
            )));
            for (cid, mss, cp) in &s.facts.connections {
                lines.push(Line::from(format!(
                    "CID {cid}: MaxRecvDataSegmentLength ours {} / target's {}  HeaderDigest {}  DataDigest {}  MSS {}",
                    cp.max_recv_data_segment,
                    cp.peer_max_recv_data_segment,
                    if cp.header_digest { "CRC32C" } else { "None" },
                    if cp.data_digest { "CRC32C" } else { "None" },
                    mss.map(|m| m.to_string()).unwrap_or_else(|| "-".into())
                )));
            }
            lines.push(Line::from(
                "Its LUNs are offered in the Run form's target field (Left/Right).",
            ));
        }
        None => lines.push(Line::from(
            "No session yet: d discovers the portal's targets, l logs in to the selected one.",
        )),
    }
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::new().borders(Borders::ALL).title("Negotiated")),
        detail,
    );
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use super::*;
    use crate::console::sessions::SessionRow;
    use iolab_iscsi::initiator::{DiscoveredTarget, SessionFacts};
    use iolab_iscsi::negotiation::Params;

    #[test]
    fn snapshot_sessions_screen_with_an_mcs_session() {
        let mut v = SessionsView::new("127.0.0.1:3260");
        v.settings.fields[4].value = "2".into();
        v.discovered = vec![
            DiscoveredTarget {
                name: "iqn.2026-11.test.istgt:disk1".into(),
                addresses: vec!["127.0.0.1:3260,1".into()],
            },
            DiscoveredTarget {
                name: "iqn.2026-11.io.iolab:target0".into(),
                addresses: vec!["127.0.0.1:3260,1".into()],
            },
        ];
        let params = Params {
            max_connections: 2,
            initial_r2t: true,
            immediate_data: true,
            max_recv_data_segment: 262144,
            peer_max_recv_data_segment: 262144,
            first_burst: 262144,
            max_burst: 1048576,
            ..Params::default()
        };
        v.sessions = vec![SessionRow {
            url: "iscsi://127.0.0.1:3260/iqn.2026-11.test.istgt:disk1/0".into(),
            target: "iqn.2026-11.test.istgt:disk1".into(),
            luns: vec![0],
            capacity: Some((131072, 512)),
            facts: SessionFacts {
                tsih: 3,
                target_portal_group: Some(1),
                isid: 0x80_1234_5678,
                params: params.clone(),
                connections: vec![(0, Some(65483), params.clone()), (1, Some(65483), params)],
            },
            initiator: "iqn.2026-11.io.iolab:initiator".into(),
        }];
        v.pane = Pane::Sessions;
        assert_eq!(
            v.lun_urls(),
            vec!["iscsi://127.0.0.1:3260/iqn.2026-11.test.istgt:disk1/0".to_string()]
        );
        let mut t = Terminal::new(TestBackend::new(120, 30)).unwrap();
        t.draw(|f| render(f, &v, f.area())).unwrap();
        insta::assert_snapshot!(t.backend());
    }
}

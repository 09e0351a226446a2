//! Pure render functions: `render(frame, &state)` over a snapshot.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Table, Tabs};

use super::state::{ConsoleState, Tab};

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
        Tab::Target => target(f, s, body),
        Tab::Connections => connections(f, s, body),
    }
    f.render_widget(
        Paragraph::new(format!("{}   ? help  q quit", s.status)),
        status,
    );
    if s.help {
        help(f, f.area());
    }
}

fn target(f: &mut Frame, s: &ConsoleState, area: Rect) {
    let [luns, sessions] = Layout::vertical([
        Constraint::Length(4 + s.target_urls.len() as u16),
        Constraint::Min(3),
    ])
    .areas(area);
    let mut lines = vec![Line::from(vec![
        Span::raw("portals: "),
        Span::raw(s.portals.join(", ")),
    ])];
    for u in &s.target_urls {
        lines.push(Line::from(format!("lun {u}")));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::new().borders(Borders::ALL).title("Embedded target")),
        luns,
    );
    let rows = s.snapshot.sessions.iter().map(|ss| {
        Row::new(vec![
            ss.info.tsih.to_string(),
            ss.info.initiator.clone(),
            format!("{:012x}", ss.info.isid),
            ss.info.connections.len().to_string(),
            ss.info.queue_depth.to_string(),
            format!("{:.1}", ss.total_mbps),
        ])
    });
    let table = Table::new(
        rows,
        [
            Constraint::Length(6),
            Constraint::Min(20),
            Constraint::Length(14),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(10),
        ],
    )
    .header(
        Row::new(vec!["TSIH", "Initiator", "ISID", "Conns", "Depth", "MB/s"])
            .style(Style::new().add_modifier(Modifier::BOLD)),
    )
    .block(
        Block::new()
            .borders(Borders::ALL)
            .title(format!("Sessions ({})", s.snapshot.sessions.len())),
    );
    f.render_widget(table, sessions);
}

fn connections(f: &mut Frame, s: &ConsoleState, area: Rect) {
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
        "Connections — total {:.1} MB/s",
        s.snapshot.total_mbps
    )));
    f.render_widget(table, area);
}

fn digest(on: bool) -> &'static str {
    if on { "CRC32C" } else { "None" }
}

fn help(f: &mut Frame, area: Rect) {
    let w = 44.min(area.width);
    let h = 9.min(area.height);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    f.render_widget(Clear, r);
    let text = vec![
        Line::from("1, 2 / Tab   switch screen"),
        Line::from("click a tab  switch screen"),
        Line::from("?            this help (Esc closes)"),
        Line::from("q, Ctrl-C    quit (terminal is restored)"),
    ];
    f.render_widget(
        Paragraph::new(text).block(Block::new().borders(Borders::ALL).title("Keys")),
        r,
    );
}

#[cfg(test)]
mod tests {
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
}

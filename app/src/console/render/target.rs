//! The Target screen: the running target's configuration as an editable
//! tree (portals, targets, LUNs, ACLs), its LUN URLs, its sessions, and the
//! open form or question on top.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Wrap};

use super::{boxed_table, header};
use crate::console::editor::{Form, Node, TargetEditor, backstore_text};
use crate::console::state::ConsoleState;

pub fn render(f: &mut Frame, s: &ConsoleState, area: Rect) {
    let e = &s.editor;
    let tree_rows = e.rows().len() as u16;
    let [tree, urls, sessions] = Layout::vertical([
        Constraint::Min(tree_rows.min(12) + 2),
        Constraint::Length(2 + s.target_urls.len().max(1) as u16),
        Constraint::Length(3 + s.snapshot.sessions.len().clamp(1, 8) as u16),
    ])
    .areas(area);
    render_tree(f, e, &s.portals, tree);
    let mut lines: Vec<Line> = s
        .target_urls
        .iter()
        .map(|u| Line::from(format!("lun {u}")))
        .collect();
    if lines.is_empty() {
        lines.push(Line::from("no LUN served"));
    }
    f.render_widget(
        Paragraph::new(lines).block(Block::new().borders(Borders::ALL).title("LUN URLs")),
        urls,
    );
    let rows = s.snapshot.sessions.iter().map(|ss| {
        Row::new(vec![
            ss.info.tsih.to_string(),
            ss.info.target.clone(),
            ss.info.initiator.clone(),
            format!("{:012x}", ss.info.isid),
            ss.info.connections.len().to_string(),
            ss.info.queue_depth.to_string(),
            format!("{:.1}", ss.total_mbps),
        ])
    });
    f.render_widget(
        boxed_table(
            rows,
            [
                Constraint::Length(6),
                Constraint::Min(16),
                Constraint::Min(16),
                Constraint::Length(14),
                Constraint::Length(6),
                Constraint::Length(6),
                Constraint::Length(10),
            ],
            header(&[
                "TSIH",
                "Target",
                "Initiator",
                "ISID",
                "Conns",
                "Depth",
                "MB/s",
            ]),
            format!("Sessions ({})", s.snapshot.sessions.len()),
        ),
        sessions,
    );
    if let Some(form) = &e.form {
        render_form(f, form, e.proposed.is_some(), area);
    } else if let Some(q) = e.confirm.as_ref().map(|c| c.question.as_str()) {
        popup(f, area, "Delete", q);
    } else if let Some(n) = &e.notice {
        let title = if n.starts_with("imported") {
            "Imported"
        } else {
            "Not changed"
        };
        popup(f, area, title, n);
    }
}

/// The configuration tree; `bound` is where each portal listens, in
/// `listen` order (a port 0 resolved).
fn render_tree(f: &mut Frame, e: &TargetEditor, bound: &[String], area: Rect) {
    let title = "Target configuration   a add  A add ACL  T add target  e edit  d delete  i import";
    let block = Block::new().borders(Borders::ALL).title(title);
    let Some(cfg) = &e.config else {
        f.render_widget(
            Paragraph::new("the embedded target is not running").block(block),
            area,
        );
        return;
    };
    let dim = Style::new().add_modifier(Modifier::DIM);
    let lines: Vec<Line> = e
        .rows()
        .into_iter()
        .enumerate()
        .map(|(i, node)| {
            let spans = match node {
                Node::Portals => vec![Span::styled(
                    "Portals",
                    Style::new().add_modifier(Modifier::BOLD),
                )],
                Node::Portal(p) => {
                    let mut v = vec![Span::raw(format!("  {}", cfg.listen[p]))];
                    if let Some(b) = bound
                        .get(p)
                        .filter(|b| **b != cfg.listen[p].bind.to_string())
                    {
                        v.push(Span::styled(format!("  (listening on {b})"), dim));
                    }
                    v
                }
                Node::Target(t) => {
                    let tc = &cfg.targets[t];
                    let sessions = e.sessions_on(&tc.iqn);
                    let mut facts = vec![format!("tpgt {}", tc.tpgt)];
                    facts.push(if tc.demo_mode {
                        "demo mode".into()
                    } else {
                        "ACLs only".into()
                    });
                    if let Some(c) = &tc.chap {
                        let mutual = if tc.mutual_chap.is_some() {
                            " + mutual"
                        } else {
                            ""
                        };
                        facts.push(format!("CHAP {}{mutual}", c.user));
                    }
                    facts.push(format!("depth {}", tc.queue_depth));
                    facts.push(format!("MC/S {}", tc.negotiation.max_connections));
                    facts.push(format!("{sessions} session(s)"));
                    vec![
                        Span::styled(tc.iqn.clone(), Style::new().add_modifier(Modifier::BOLD)),
                        Span::styled(format!("   {}", facts.join(" · ")), dim),
                    ]
                }
                Node::Lun(t, l) => {
                    let lc = &cfg.targets[t].luns[l];
                    let mut text = format!("  LUN {:<4} {}", lc.lun, backstore_text(&lc.backstore));
                    if lc.attributes.read_only {
                        text.push_str("  read-only");
                    }
                    if lc.attributes.block_size != 512 {
                        text.push_str(&format!("  {} B blocks", lc.attributes.block_size));
                    }
                    vec![Span::raw(text)]
                }
                Node::Acl(t, a) => {
                    let acl = &cfg.targets[t].acls[a];
                    let chap = match (&acl.chap, &acl.mutual_chap) {
                        (Some(c), Some(_)) => format!("CHAP {} + mutual", c.user),
                        (Some(c), None) => format!("CHAP {}", c.user),
                        _ => "no CHAP".into(),
                    };
                    vec![
                        Span::raw(format!("  ACL {}", acl.initiator)),
                        Span::styled(format!("   {chap}"), dim),
                    ]
                }
            };
            let line = Line::from(spans);
            if i == e.cursor {
                line.style(Style::new().add_modifier(Modifier::REVERSED))
            } else {
                line
            }
        })
        .collect();
    // Keep the cursor in view.
    let inner = area.height.saturating_sub(2) as usize;
    let scroll = e.cursor.saturating_sub(inner.saturating_sub(1));
    f.render_widget(
        Paragraph::new(lines)
            .block(block)
            .scroll((scroll as u16, 0)),
        area,
    );
}

fn centered(area: Rect, w: u16, h: u16) -> Rect {
    let (w, h) = (w.min(area.width), h.min(area.height));
    Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    }
}

fn popup(f: &mut Frame, area: Rect, title: &str, text: &str) {
    let r = centered(area, 80, 5);
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: true })
            .block(Block::new().borders(Borders::ALL).title(title.to_string())),
        r,
    );
}

pub(super) fn render_form(f: &mut Frame, form: &Form, waiting: bool, area: Rect) {
    // Room for a hint or an error that wraps to a second line.
    let r = centered(area, 90, form.fields.len() as u16 + 9);
    f.render_widget(Clear, r);
    let mut lines: Vec<Line> = form
        .fields
        .iter()
        .enumerate()
        .map(|(i, fl)| {
            let value = if fl.choices.is_empty() {
                if i == form.focus {
                    format!("{}▏", fl.value)
                } else {
                    fl.value.clone()
                }
            } else {
                format!("‹ {} ›", fl.value)
            };
            let label = Span::raw(format!("{:>16}  ", fl.label));
            let style = if i == form.focus {
                Style::new().add_modifier(Modifier::REVERSED)
            } else {
                Style::new()
            };
            Line::from(vec![label, Span::styled(value, style)])
        })
        .collect();
    lines.push(Line::from(""));
    let hint = form.fields.get(form.focus).map(|f| f.hint).unwrap_or("");
    lines.push(Line::from(Span::styled(
        hint.to_string(),
        Style::new().add_modifier(Modifier::DIM),
    )));
    match (&form.error, waiting) {
        (_, true) => lines.push(Line::from("applying to the running target...")),
        (Some(e), _) => lines.push(Line::from(Span::styled(
            e.clone(),
            Style::new().fg(Color::Red),
        ))),
        (None, _) => lines.push(Line::from("")),
    }
    lines.push(Line::from("Tab/Up/Down field   Enter apply   Esc cancel"));
    f.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::new().borders(Borders::ALL).title(form.title())),
        r,
    );
}

#[cfg(test)]
mod tests {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use crate::console::editor::{Confirm, Form, FormKind, Node};
    use crate::console::state::{ConsoleState, Tab};

    fn draw(s: &ConsoleState) -> Terminal<TestBackend> {
        let mut t = Terminal::new(TestBackend::new(110, 32)).unwrap();
        t.draw(|f| crate::console::render::render(f, s)).unwrap();
        t
    }

    fn lab() -> ConsoleState {
        ConsoleState {
            tab: Tab::Target,
            editor: crate::console::render::tests::lab_editor(),
            target_urls: vec![
                "iscsi://127.0.0.1:3260/iqn.2026-11.io.iolab:target0/0".into(),
                "iscsi://127.0.0.1:3260/iqn.2026-11.io.iolab:target0/1".into(),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn snapshot_lun_form_refused_with_the_reason() {
        let mut s = lab();
        let cfg = s.editor.config.clone().unwrap();
        let mut form = Form::new(FormKind::Lun(0, None), &cfg);
        form.fields[2].value = "12X".into();
        form.focus = 2;
        form.error = form.apply(&cfg).err();
        s.editor.form = Some(form);
        insta::assert_snapshot!(draw(&s).backend());
    }

    #[test]
    fn snapshot_delete_asks_with_the_sessions_logged_in() {
        let mut s = lab();
        s.editor.confirm = Some(Confirm {
            node: Node::Lun(0, 1),
            question: "1 session(s) are logged in to this target: delete LUN 1 of iqn.2026-11.io.iolab:target0 anyway? y/n".into(),
        });
        insta::assert_snapshot!(draw(&s).backend());
    }
}

#[cfg(test)]
mod form_snapshots {
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    use crate::console::editor::{Form, FormKind};
    use crate::console::state::{ConsoleState, Tab};

    /// Each remaining form of the editor over the Target screen.
    #[test]
    fn snapshot_portal_target_acl_and_import_forms() {
        let editor = crate::console::render::tests::lab_editor();
        let cfg = editor.config.clone().unwrap();
        let mut screens = String::new();
        for kind in [
            FormKind::Portal(Some(0)),
            FormKind::Target(Some(0)),
            FormKind::Acl(0, Some(0)),
            FormKind::Import,
        ] {
            let s = ConsoleState {
                tab: Tab::Target,
                editor: crate::console::editor::TargetEditor {
                    form: Some(Form::new(kind, &cfg)),
                    ..editor.clone()
                },
                ..Default::default()
            };
            let mut t = Terminal::new(TestBackend::new(100, 24)).unwrap();
            t.draw(|f| crate::console::render::render(f, &s)).unwrap();
            screens.push_str(&format!("{:?}\n", t.backend()));
        }
        insta::assert_snapshot!(screens);
    }
}

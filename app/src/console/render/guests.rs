//! The Guests screen: defined guests with their state, the exact qemu
//! command line each runs, and what qemu reports the guest got.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Wrap};

use super::{boxed_table, header, selectable};
use crate::console::state::{GuestConfirm, GuestsView};

pub fn render(f: &mut Frame, v: &GuestsView, area: Rect) {
    let [list, detail, serial] = Layout::vertical([
        Constraint::Length((v.guests.len() as u16 + 3).clamp(4, 12)),
        Constraint::Min(6),
        Constraint::Length(10),
    ])
    .areas(area);
    let name = v
        .guests
        .get(v.cursor)
        .map(|g| g.def.name.as_str())
        .unwrap_or("");
    let mut console: Vec<Line> = v.serial.iter().map(|l| Line::from(l.clone())).collect();
    if console.is_empty() {
        console.push(Line::from("(nothing on its serial console yet)"));
    }
    f.render_widget(
        Paragraph::new(console).block(
            Block::new()
                .borders(Borders::ALL)
                .title(format!("serial console of {name}")),
        ),
        serial,
    );
    let rows = v.guests.iter().enumerate().map(|(i, g)| {
        let nics: Vec<String> = g
            .def
            .nics
            .iter()
            .map(|n| match n {
                iolab_lab_core::guest::Nic::User { forward } if forward.is_empty() => {
                    "user".to_string()
                }
                iolab_lab_core::guest::Nic::User { forward } => format!(
                    "user({})",
                    forward
                        .iter()
                        .map(|f| String::from(*f))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                iolab_lab_core::guest::Nic::Tap { ifname } => format!("tap:{ifname}"),
            })
            .collect();
        selectable(
            Row::new(vec![
                g.def.name.clone(),
                g.profile.clone(),
                g.def.memory_mib.to_string(),
                g.def.vcpus.to_string(),
                g.def.pci.join(" "),
                nics.join(" "),
                g.state.clone(),
            ]),
            i == v.cursor,
        )
    });
    f.render_widget(
        boxed_table(
            rows,
            [
                Constraint::Length(16),
                Constraint::Length(14),
                Constraint::Length(6),
                Constraint::Length(5),
                Constraint::Length(14),
                Constraint::Length(10),
                Constraint::Min(10),
            ],
            header(&[
                "guest",
                "profile",
                "MiB",
                "vcpus",
                "passthrough",
                "nics",
                "state",
            ]),
            "Guests (a add, e edit, d delete, s start, x stop, g refresh)".into(),
        ),
        list,
    );
    let mut lines = Vec::new();
    if let Some(g) = v.guests.get(v.cursor) {
        lines.push(Line::from(g.command.clone()));
        for bdf in &g.def.pci {
            lines.push(Line::from(format!(
                "passthrough {bdf}: the seed wrote `{}`",
                iolab_lab_core::guest::command::legacy_pcidevice(bdf)
            )));
        }
        if let Some(w) = &g.warning {
            lines.push(Line::from(format!("warning: {w}")));
        }
        if !g.pci_seen.is_empty() {
            lines.push(Line::from(format!(
                "qemu reports: {}",
                g.pci_seen.join(", ")
            )));
        }
    } else {
        lines.push(Line::from(
            "No guests: a adds one (a micro-guest starts on a fresh machine); profiles define them too ([[guests]]).",
        ));
    }
    f.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::new()
                .borders(Borders::ALL)
                .title("qemu command line"),
        ),
        detail,
    );
    if let Some(form) = &v.form {
        super::target::render_form(f, form, false, area);
    }
    if let Some(c) = v.confirm {
        let (i, text) = match c {
            GuestConfirm::Start(i) => (i, "Start this guest? It runs:"),
            GuestConfirm::Stop(i) => (i, "Power this guest down (then quit qemu after 30 s)?"),
            GuestConfirm::Delete(_) => (v.cursor, "Delete this guest from the lab?"),
        };
        let mut l = vec![Line::from(text)];
        if let (GuestConfirm::Start(_), Some(g)) = (c, v.guests.get(i)) {
            l.push(Line::from(g.command.clone()));
        }
        l.push(Line::from(""));
        l.push(Line::from("y: yes   any other key: no"));
        let w = area.width.saturating_sub(4);
        // As tall as the wrapped text (a passthrough adds a root port to
        // the command line), so the question is never cut off.
        let inner = usize::from(w.saturating_sub(2)).max(1);
        let rows: usize = l
            .iter()
            .map(|line| {
                let text: String = line.spans.iter().map(|s| s.content.as_ref()).collect();
                wrapped_rows(&text, inner)
            })
            .sum();
        let h = u16::try_from(rows + 2).unwrap_or(u16::MAX).min(area.height);
        let r = Rect {
            x: area.x + 2,
            y: area.y + (area.height - h) / 2,
            width: w,
            height: h,
        };
        f.render_widget(Clear, r);
        f.render_widget(
            Paragraph::new(l)
                .wrap(Wrap { trim: false })
                .block(Block::new().borders(Borders::ALL).title("Confirm")),
            r,
        );
    }
}

/// Rows `text` takes when wrapped at word boundaries to `width` columns
/// (a word longer than a row is cut across rows).
fn wrapped_rows(text: &str, width: usize) -> usize {
    let mut rows = 1;
    let mut used = 0;
    for word in text.split(' ') {
        let n = word.chars().count();
        let need = if used == 0 { n } else { used + 1 + n };
        if need <= width {
            used = need;
        } else if n <= width {
            rows += 1;
            used = n;
        } else {
            rows += usize::from(used > 0) + (n - 1) / width;
            used = (n - 1) % width + 1;
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::state::GuestRow;
    use iolab_lab_core::guest::command::{GuestPaths, Resolved, qemu_args, shell_line};
    use iolab_lab_core::profile::{Profile, builtin};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn view() -> GuestsView {
        let p = Profile::parse(builtin("seed-lio-kvm").unwrap(), "seed").unwrap();
        let guests = p
            .guests
            .into_iter()
            .enumerate()
            .map(|(i, def)| GuestRow {
                profile: "seed-lio-kvm".into(),
                command: shell_line(
                    "qemu-system-x86_64",
                    &qemu_args(
                        &def,
                        &GuestPaths::new(format!("/state/{}", def.name)),
                        Resolved::Kvm,
                    ),
                ),
                state: if i == 0 {
                    "running (pid 4242)".into()
                } else {
                    "stopped".into()
                },
                running: i == 0,
                warning: None,
                pci_seen: if i == 0 {
                    vec!["00:02.0 [8086:10fb]".into()]
                } else {
                    vec![]
                },
                def,
            })
            .collect();
        GuestsView {
            guests,
            cursor: 0,
            confirm: None,
            serial: vec!["IOLAB-NET-UP 10.0.2.15/24".into(), "IOLAB-IDLE".into()],
            ..Default::default()
        }
    }

    #[test]
    fn snapshot_guests_screen() {
        let mut t = Terminal::new(TestBackend::new(120, 32)).unwrap();
        let v = view();
        t.draw(|f| render(f, &v, f.area())).unwrap();
        let text = format!("{:?}", t.backend());
        assert!(text.contains("vfio-pci,host=0000:06:00.0"), "{text}");
        insta::assert_snapshot!(t.backend());
    }

    #[test]
    fn starting_asks_first_showing_the_command() {
        let mut t = Terminal::new(TestBackend::new(120, 22)).unwrap();
        let v = GuestsView {
            cursor: 1,
            confirm: Some(GuestConfirm::Start(1)),
            ..view()
        };
        t.draw(|f| render(f, &v, f.area())).unwrap();
        let text = format!("{:?}", t.backend());
        assert!(text.contains("Start this guest? It runs:"), "{text}");
        // The whole command and the question fit, however long the line.
        assert!(text.contains("bus=hostdev-port0"), "{text}");
        assert!(text.contains("y: yes   any other key: no"), "{text}");
        insta::assert_snapshot!(t.backend());
    }

    #[test]
    fn snapshot_guest_form_for_a_micro_guest() {
        let mut t = Terminal::new(TestBackend::new(120, 32)).unwrap();
        let mut v = view();
        let mut form = crate::console::editor::Form::guest(None, None, &[]);
        form.fields[4].value =
            "bench iscsi://10.0.2.2:3260/iqn.2026-11.io.iolab:target0/0 --time 10s".into();
        v.form = Some(form);
        t.draw(|f| render(f, &v, f.area())).unwrap();
        insta::assert_snapshot!(t.backend());
    }
}

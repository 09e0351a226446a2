//! The Devices screen: PCI functions with names, drivers and IOMMU groups,
//! the selected one in full, and the writes a bind will make before it is confirmed.

use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Clear, Paragraph, Row, Wrap};

use super::{boxed_table, header, selectable};
use crate::console::state::{DeviceConfirm, DevicesView};

pub fn render(f: &mut Frame, v: &DevicesView, area: Rect) {
    let [list, detail] =
        Layout::vertical([Constraint::Percentage(55), Constraint::Min(6)]).areas(area);
    if let Some(e) = &v.error {
        f.render_widget(
            Paragraph::new(e.as_str())
                .wrap(Wrap { trim: true })
                .block(Block::new().borders(Borders::ALL).title("PCI devices")),
            list,
        );
        return;
    }
    let rows = v.devices.iter().enumerate().map(|(i, d)| {
        let mark = if v.bound.contains(&d.address) {
            "*"
        } else {
            ""
        };
        let link = d
            .link
            .as_ref()
            .and_then(|l| {
                Some(format!(
                    "{} x{}",
                    l.current_speed.as_deref()?,
                    l.current_width.as_deref()?
                ))
            })
            .unwrap_or_else(|| "-".into());
        selectable(
            Row::new(vec![
                format!("{mark}{}", d.address),
                d.class_label(),
                d.name(),
                d.driver.clone().unwrap_or_else(|| "-".into()),
                d.group_text(),
                d.numa_text(),
                link,
            ]),
            i == v.cursor,
        )
    });
    f.render_widget(
        boxed_table(
            rows,
            [
                Constraint::Length(13),
                Constraint::Length(20),
                Constraint::Min(24),
                Constraint::Length(11),
                Constraint::Length(5),
                Constraint::Length(4),
                Constraint::Length(17),
            ],
            header(&[
                "address", "class", "device", "driver", "group", "numa", "link",
            ]),
            format!(
                "PCI devices ({}; * bound by iolab; b bind to vfio-pci, u give back)",
                v.devices.len()
            ),
        ),
        list,
    );
    let text = v
        .devices
        .get(v.cursor)
        .map(|d| {
            let mut t = d.details();
            if let Some(why) = d.host_use() {
                t += &format!("  in use by the host: {why}\n");
            }
            t
        })
        .unwrap_or_default();
    f.render_widget(
        Paragraph::new(text)
            .wrap(Wrap { trim: false })
            .block(Block::new().borders(Borders::ALL).title("Selected")),
        detail,
    );
    if let Some(c) = &v.confirm {
        confirm(f, c, area);
    }
}

fn confirm(f: &mut Frame, c: &DeviceConfirm, area: Rect) {
    let mut lines: Vec<Line> = match c {
        DeviceConfirm::Bind(b, writes) => {
            let mut l = vec![Line::from(format!("Move {b} to vfio-pci? iolab will:"))];
            l.extend(writes.iter().map(|w| Line::from(format!("  {w}"))));
            l
        }
        DeviceConfirm::Reattach(b) => vec![Line::from(format!(
            "Give {b} back to the driver it had before? (A lab guest that had it no longer passes it through.)"
        ))],
        DeviceConfirm::Give(b, _, guest, writes) => {
            let mut l = vec![Line::from(format!(
                "Give {b} to guest {guest}: move it to vfio-pci and pass it through? iolab will:"
            ))];
            l.extend(writes.iter().map(|w| Line::from(format!("  {w}"))));
            l
        }
    };
    lines.push(Line::from(""));
    lines.push(Line::from("y: yes   any other key: no"));
    let w = area.width.saturating_sub(4).min(110);
    let h = (lines.len() as u16 + 2).min(area.height);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    f.render_widget(Clear, r);
    f.render_widget(
        Paragraph::new(lines).block(Block::new().borders(Borders::ALL).title("Confirm")),
        r,
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use iolab_pci::fake::FakeTree;
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;

    fn view() -> (FakeTree, DevicesView) {
        let t = FakeTree::new("render");
        t.device("0000:00:00.0", 0x8086, 0x0d57, 0x060000, Some(0), None)
            .x520("0000:06:00.0", 12, Some("vfio-pci"))
            .x520("0000:07:00.0", 13, Some("ixgbe"))
            .net("0000:07:00.0", "eth8", 9000)
            .device(
                "0000:08:00.0",
                0x8086,
                0x10d3,
                0x020000,
                Some(14),
                Some("e1000e"),
            )
            .net("0000:08:00.0", "eth0", 1500)
            .default_route("eth0");
        let devices = iolab_pci::enumerate(&t.sysfs()).unwrap();
        let v = DevicesView {
            bound: vec![devices[1].address],
            devices,
            cursor: 3,
            ..DevicesView::default()
        };
        (t, v)
    }

    #[test]
    fn snapshot_devices_screen() {
        let (_t, v) = view();
        let mut term = Terminal::new(TestBackend::new(120, 24)).unwrap();
        term.draw(|f| render(f, &v, f.area())).unwrap();
        let text = format!("{:?}", term.backend());
        assert!(text.contains("eth0 carries the default route"), "{text}");
        insta::assert_snapshot!(term.backend());
    }

    #[test]
    fn snapshot_bind_confirmation_lists_the_writes() {
        let (t, mut v) = view();
        v.cursor = 2;
        let plan = iolab_pci::plan_bind(
            &t.sysfs(),
            v.devices[2].address,
            iolab_pci::BindOptions::default(),
        )
        .unwrap();
        let lines = plan
            .lines()
            .into_iter()
            .map(|l| l.replace(&t.root.display().to_string(), ""))
            .collect();
        v.confirm = Some(DeviceConfirm::Bind(v.devices[2].address, lines));
        let mut term = Terminal::new(TestBackend::new(120, 24)).unwrap();
        term.draw(|f| render(f, &v, f.area())).unwrap();
        insta::assert_snapshot!(term.backend());
    }
}

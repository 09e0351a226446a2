//! Console state: what is shown, independent of any terminal.

use std::sync::Arc;

use crossterm::event::{KeyCode, MouseEvent, MouseEventKind};
use iolab_lab_core::LabSnapshot;

/// Screens of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tab {
    #[default]
    Target,
    Connections,
}

impl Tab {
    pub const ALL: [Tab; 2] = [Tab::Target, Tab::Connections];
    pub fn title(self) -> &'static str {
        match self {
            Tab::Target => "1 Target",
            Tab::Connections => "2 Connections",
        }
    }
}

/// Everything the render functions read.
#[derive(Debug, Clone, Default)]
pub struct ConsoleState {
    pub tab: Tab,
    pub help: bool,
    pub status: String,
    pub target_urls: Vec<String>,
    pub portals: Vec<String>,
    pub snapshot: Arc<LabSnapshot>,
}

impl ConsoleState {
    /// Handles a key; returns true when the console should quit.
    pub fn on_key(&mut self, code: KeyCode) -> bool {
        match code {
            KeyCode::Char('q') => return true,
            KeyCode::Esc if self.help => self.help = false,
            KeyCode::Char('?') => self.help = !self.help,
            KeyCode::Tab => {
                let i = Tab::ALL.iter().position(|t| *t == self.tab).unwrap_or(0);
                self.tab = Tab::ALL[(i + 1) % Tab::ALL.len()];
            }
            KeyCode::Char(c) if c.is_ascii_digit() => {
                let i = c as usize - '1' as usize;
                if let Some(t) = Tab::ALL.get(i) {
                    self.tab = *t;
                }
            }
            _ => {}
        }
        false
    }

    /// A click on the tab row (row 0) selects the tab under the pointer.
    pub fn on_mouse(&mut self, m: MouseEvent) {
        if m.kind != MouseEventKind::Down(crossterm::event::MouseButton::Left) || m.row != 0 {
            return;
        }
        let mut x = 1u16;
        for t in Tab::ALL {
            let w = t.title().len() as u16 + 3;
            if m.column >= x && m.column < x + w {
                self.tab = t;
                return;
            }
            x += w;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_switch_tabs_and_quit() {
        let mut s = ConsoleState::default();
        assert!(!s.on_key(KeyCode::Char('2')));
        assert_eq!(s.tab, Tab::Connections);
        s.on_key(KeyCode::Tab);
        assert_eq!(s.tab, Tab::Target);
        s.on_key(KeyCode::Char('?'));
        assert!(s.help);
        s.on_key(KeyCode::Esc);
        assert!(!s.help);
        assert!(s.on_key(KeyCode::Char('q')));
    }
}

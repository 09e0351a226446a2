//! Console state: what is shown, independent of any terminal.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crossterm::event::{KeyCode, MouseEvent, MouseEventKind};
use iolab_lab_core::LabSnapshot;
use iolab_lab_core::run::{RunEvent, RunForm};
use iolab_lab_core::workload::{Mode, Progress, Report};
use iolab_profiles::{Run, RunSummary};

/// Screens of the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Tab {
    #[default]
    Target,
    Connections,
    Run,
    Profiles,
}

impl Tab {
    pub const ALL: [Tab; 4] = [Tab::Target, Tab::Connections, Tab::Run, Tab::Profiles];
    pub fn title(self) -> &'static str {
        match self {
            Tab::Target => "1 Target",
            Tab::Connections => "2 Connections",
            Tab::Run => "3 Run",
            Tab::Profiles => "4 Profiles",
        }
    }
}

/// What a key asks the event loop to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    None,
    Quit,
    StartRun,
    /// Load this stored run to show it (and compare it with the baseline).
    ShowRun(i64),
    /// Load this stored run as the baseline (A) of comparisons.
    SetBaseline(i64),
    /// Fill the Run form from this profile.
    LoadProfile(usize),
}

/// A profile as the Profiles screen lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ProfileEntry {
    pub name: String,
    pub builtin: bool,
    pub description: String,
}

/// The Profiles screen: profiles, stored runs, the selected run and the baseline.
#[derive(Debug, Clone, Default)]
pub struct NotebookView {
    /// Where the notebook lives, or why it could not be opened.
    pub location: String,
    pub profiles: Vec<ProfileEntry>,
    pub runs: Vec<RunSummary>,
    /// Index into `runs`.
    pub selected: usize,
    /// Index into `profiles`.
    pub profile: usize,
    pub shown: Option<Run>,
    pub baseline: Option<Run>,
}

impl NotebookView {
    fn selected_id(&self) -> Option<i64> {
        self.runs.get(self.selected).map(|r| r.id)
    }
}

/// A run's lifecycle as the Run screen shows it.
#[derive(Debug, Clone, Default)]
pub enum RunPhase {
    #[default]
    Idle,
    Connecting,
    Running {
        started: Instant,
        tsihs: Vec<u16>,
        connections: usize,
        progress: Progress,
    },
    Done {
        tsihs: Vec<u16>,
        report: Report,
    },
    Failed(String),
}

/// The Run screen: the form, the phase, and what the statistics bus saw of
/// the run's connections (last cumulative payload bytes per (TSIH, CID)).
#[derive(Debug, Clone, Default)]
pub struct RunView {
    pub form: RunForm,
    pub phase: RunPhase,
    pub sampled: HashMap<(u16, u16), u64>,
}

impl RunView {
    pub fn busy(&self) -> bool {
        matches!(self.phase, RunPhase::Connecting | RunPhase::Running { .. })
    }

    /// Payload bytes the console saw move over the run's connections.
    pub fn sampled_total(&self) -> u64 {
        self.sampled.values().sum()
    }

    pub fn on_event(&mut self, ev: RunEvent) {
        self.phase = match (std::mem::take(&mut self.phase), ev) {
            (_, RunEvent::Started { tsihs, connections }) => RunPhase::Running {
                started: Instant::now(),
                tsihs,
                connections,
                progress: Progress::default(),
            },
            (
                RunPhase::Running {
                    started,
                    tsihs,
                    connections,
                    ..
                },
                RunEvent::Progress(progress),
            ) => RunPhase::Running {
                started,
                tsihs,
                connections,
                progress,
            },
            (RunPhase::Running { tsihs, .. }, RunEvent::Done(report)) => {
                RunPhase::Done { tsihs, report }
            }
            (_, RunEvent::Done(report)) => RunPhase::Done {
                tsihs: Vec::new(),
                report,
            },
            (_, RunEvent::Failed(why)) => RunPhase::Failed(why),
            (other, RunEvent::Progress(_)) => other,
        };
    }

    /// Records the run's connections from a statistics snapshot.
    pub fn observe(&mut self, snap: &LabSnapshot) {
        let tsihs = match &self.phase {
            RunPhase::Running { tsihs, .. } | RunPhase::Done { tsihs, .. } => tsihs,
            _ => return,
        };
        for c in snap.connections.iter().filter(|c| tsihs.contains(&c.tsih)) {
            self.sampled
                .insert((c.tsih, c.cid), c.totals.read_bytes + c.totals.write_bytes);
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
    pub run: RunView,
    pub notebook: NotebookView,
}

impl ConsoleState {
    /// Handles a key.
    pub fn on_key(&mut self, code: KeyCode) -> Action {
        match code {
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Esc if self.help => self.help = false,
            KeyCode::Char('?') => self.help = !self.help,
            KeyCode::Tab => {
                let i = Tab::ALL.iter().position(|t| *t == self.tab).unwrap_or(0);
                self.tab = Tab::ALL[(i + 1) % Tab::ALL.len()];
            }
            KeyCode::Char(c) if c.is_ascii_digit() => {
                let i = (c as usize).wrapping_sub('1' as usize);
                if let Some(t) = Tab::ALL.get(i) {
                    self.tab = *t;
                }
            }
            KeyCode::Char('r') | KeyCode::Enter if self.tab == Tab::Run => {
                if self.run.busy() {
                    self.status = "a run is already going".into();
                } else {
                    return Action::StartRun;
                }
            }
            KeyCode::Down | KeyCode::Char('j') if self.tab == Tab::Profiles => {
                let n = &mut self.notebook;
                if n.selected + 1 < n.runs.len() {
                    n.selected += 1;
                }
                return n.selected_id().map_or(Action::None, Action::ShowRun);
            }
            KeyCode::Up | KeyCode::Char('k') if self.tab == Tab::Profiles => {
                let n = &mut self.notebook;
                n.selected = n.selected.saturating_sub(1);
                return n.selected_id().map_or(Action::None, Action::ShowRun);
            }
            KeyCode::Char('a') if self.tab == Tab::Profiles => {
                return self
                    .notebook
                    .selected_id()
                    .map_or(Action::None, Action::SetBaseline);
            }
            KeyCode::Char('p') if self.tab == Tab::Profiles => {
                let n = &mut self.notebook;
                if !n.profiles.is_empty() {
                    n.profile = (n.profile + 1) % n.profiles.len();
                }
            }
            KeyCode::Enter
                if self.tab == Tab::Profiles
                    && !self.run.busy()
                    && self.notebook.profile < self.notebook.profiles.len() =>
            {
                return Action::LoadProfile(self.notebook.profile);
            }
            KeyCode::Char('m') if self.tab == Tab::Run && !self.run.busy() => {
                self.run.form.mode = match self.run.form.mode {
                    Mode::Read => Mode::Write,
                    Mode::Write => Mode::Rw,
                    Mode::Rw => Mode::Read,
                };
            }
            KeyCode::Char('c') if self.tab == Tab::Run && !self.run.busy() => {
                self.run.form.connections = self.run.form.connections % 4 + 1;
            }
            KeyCode::Char('t') if self.tab == Tab::Run && !self.run.busy() => {
                self.run.form.seconds = match self.run.form.seconds {
                    10 => 30,
                    30 => 60,
                    _ => 10,
                };
            }
            _ => {}
        }
        Action::None
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
    fn keys_switch_tabs_edit_the_form_and_quit() {
        let mut s = ConsoleState::default();
        assert_eq!(s.on_key(KeyCode::Char('2')), Action::None);
        assert_eq!(s.tab, Tab::Connections);
        s.on_key(KeyCode::Tab);
        assert_eq!(s.tab, Tab::Run);
        s.on_key(KeyCode::Char('m'));
        assert_eq!(s.run.form.mode, Mode::Write);
        s.on_key(KeyCode::Char('c'));
        assert_eq!(s.run.form.connections, 2);
        assert_eq!(s.on_key(KeyCode::Char('r')), Action::StartRun);
        s.on_key(KeyCode::Char('?'));
        assert!(s.help);
        s.on_key(KeyCode::Esc);
        assert!(!s.help);
        assert_eq!(s.on_key(KeyCode::Char('q')), Action::Quit);
    }

    #[test]
    fn profiles_keys_select_runs_mark_a_baseline_and_load_a_profile() {
        let summary = |id| RunSummary {
            id,
            profile_name: "quick".into(),
            started_ms: 0,
            ended_ms: 1,
            cells: 6,
            kernel: "k".into(),
        };
        let mut s = ConsoleState::default();
        s.on_key(KeyCode::Char('4'));
        assert_eq!(s.tab, Tab::Profiles);
        assert_eq!(s.on_key(KeyCode::Down), Action::None, "no runs yet");
        s.notebook.runs = vec![summary(3), summary(7)];
        assert_eq!(s.on_key(KeyCode::Down), Action::ShowRun(7));
        assert_eq!(
            s.on_key(KeyCode::Down),
            Action::ShowRun(7),
            "stays on the last"
        );
        assert_eq!(s.on_key(KeyCode::Char('a')), Action::SetBaseline(7));
        assert_eq!(s.on_key(KeyCode::Up), Action::ShowRun(3));
        assert_eq!(s.on_key(KeyCode::Enter), Action::None, "no profiles");
        s.notebook.profiles = vec![
            ProfileEntry {
                name: "quick".into(),
                builtin: true,
                description: String::new(),
            };
            2
        ];
        s.on_key(KeyCode::Char('p'));
        assert_eq!(s.on_key(KeyCode::Enter), Action::LoadProfile(1));
    }
}

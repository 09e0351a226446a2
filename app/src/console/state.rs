//! Console state: what is shown, independent of any terminal.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use crossterm::event::{KeyCode, MouseEvent, MouseEventKind};
use iolab_lab_core::LabSnapshot;
use iolab_lab_core::chart::{ChartSettings, History};
use iolab_lab_core::profile::Profile;
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
    Network,
    Devices,
    Guests,
    Sessions,
}

impl Tab {
    pub const ALL: [Tab; 8] = [
        Tab::Target,
        Tab::Connections,
        Tab::Run,
        Tab::Profiles,
        Tab::Network,
        Tab::Devices,
        Tab::Guests,
        Tab::Sessions,
    ];
    pub fn title(self) -> &'static str {
        match self {
            Tab::Target => "1 Target",
            Tab::Connections => "2 Connections",
            Tab::Run => "3 Run",
            Tab::Profiles => "4 Profiles",
            Tab::Network => "5 Network",
            Tab::Devices => "6 Devices",
            Tab::Guests => "7 Guests",
            Tab::Sessions => "8 Sessions",
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
    /// Plan the Network screen's tuning profile against the host.
    PlanTuning,
    /// Apply the planned tuning (confirmed).
    ApplyTuning,
    /// Put back what the lab changed (confirmed).
    RevertTuning,
    /// Re-read the PCI devices.
    ScanDevices,
    /// Plan moving this function to vfio-pci (and ask).
    PlanBind(iolab_pci::Bdf),
    /// Bind it (confirmed).
    Bind(iolab_pci::Bdf),
    /// Plan giving it to a guest of the lab (and ask).
    PlanGive(iolab_pci::Bdf),
    /// Bind it and add it to the lab's guest at this index (confirmed).
    Give(iolab_pci::Bdf, usize),
    /// Give it back to its driver (confirmed).
    Reattach(iolab_pci::Bdf),
    /// Run the seed's matrix (modes x 1-4 connections) with the form's settings.
    StartMatrix,
    /// Re-read the guests and their states.
    ScanGuests,
    /// Start this guest (confirmed).
    StartGuest(usize),
    /// Stop this guest (confirmed).
    StopGuest(usize),
    /// Hand the editor's proposed configuration to the running target.
    ApplyTarget,
    /// Store `lab.pending_save` in the notebook.
    SaveLab,
    /// SendTargets on the Sessions screen's portal.
    Discover,
    /// Log in to this discovered target.
    Login(usize),
    /// Log this session of the embedded initiator out.
    Logout(usize),
}

/// The lab as a whole: the profile it was opened from (or the embedded
/// default), what was last saved, and the Save form.
#[derive(Debug, Clone)]
pub struct LabState {
    pub name: String,
    /// The profile the lab was opened from or last saved as.
    pub base: Profile,
    /// The Run form as it was when the lab was opened or saved.
    pub opened_form: RunForm,
    /// The Save form, while it is open.
    pub save: Option<super::editor::Form>,
    /// The profile to store and whether to replace a saved one.
    pub pending_save: Option<(Profile, bool)>,
    /// `q` was pressed with unsaved changes: a second `q` quits.
    pub quitting: bool,
}

impl Default for LabState {
    fn default() -> Self {
        LabState::opened(default_lab_profile(), RunForm::default())
    }
}

impl LabState {
    pub fn opened(base: Profile, form: RunForm) -> LabState {
        LabState {
            name: base.name.clone(),
            base,
            opened_form: form,
            save: None,
            pending_save: None,
            quitting: false,
        }
    }
}

/// The embedded default lab as a profile: a 1 GiB RAMDISK on a free
/// loopback port, the Run form's defaults.
pub fn default_lab_profile() -> Profile {
    let mut p = RunForm::default().profile("");
    p.name = "lab".into();
    p.description = "the embedded default lab".into();
    p.initiator.url = None;
    p.target = Some(iolab_iscsi::ServerConfig::default_lab(
        std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        iolab_lab_core::lab::DEFAULT_RAMDISK_BYTES,
    ));
    p
}

/// A guest as the Guests screen shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestRow {
    pub profile: String,
    pub def: iolab_lab_core::guest::GuestDef,
    pub state: String,
    pub running: bool,
    /// The exact qemu command line.
    pub command: String,
    pub warning: Option<String>,
    /// PCI functions qemu reports the guest got (when running).
    pub pci_seen: Vec<String>,
}

/// What waits for a y/n on the Guests screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestConfirm {
    Start(usize),
    Stop(usize),
    /// Delete the lab's guest at this index (of `GuestsView::lab`).
    Delete(usize),
}

/// The Guests screen.
#[derive(Debug, Clone, Default)]
pub struct GuestsView {
    pub guests: Vec<GuestRow>,
    pub cursor: usize,
    pub confirm: Option<GuestConfirm>,
    /// The lab's own guests, as defined and edited here.
    pub lab: Vec<iolab_lab_core::guest::GuestDef>,
    /// The guest form, while it is open.
    pub form: Option<super::editor::Form>,
    /// The last lines of the selected guest's serial console.
    pub serial: Vec<String>,
}

impl GuestsView {
    /// The index in `lab` of the guest at the cursor, when it is the lab's.
    pub fn lab_index(&self, lab_name: &str) -> Option<usize> {
        let row = self.guests.get(self.cursor)?;
        if row.profile != lab_name {
            return None;
        }
        self.lab.iter().position(|g| g.name == row.def.name)
    }

    /// Whether this screen takes the key.
    fn wants(&self, code: KeyCode) -> bool {
        self.confirm.is_some()
            || self.form.is_some()
            || matches!(
                code,
                KeyCode::Char('j' | 'k' | 's' | 'x' | 'g' | 'a' | 'e' | 'd')
                    | KeyCode::Up
                    | KeyCode::Down
            )
    }

    fn on_key(&mut self, code: KeyCode, lab_name: &str) -> Action {
        if let Some(form) = self.form.as_mut() {
            match form.on_key(code) {
                Some(false) => self.form = None,
                Some(true) => match form.apply_guest(&self.lab) {
                    Ok(def) => {
                        match form.kind {
                            super::editor::FormKind::Guest(Some(i)) if i < self.lab.len() => {
                                self.lab[i] = def
                            }
                            _ => self.lab.push(def),
                        }
                        self.form = None;
                        return Action::ScanGuests;
                    }
                    Err(e) => form.error = Some(e),
                },
                None => {}
            }
            return Action::None;
        }
        if let Some(c) = self.confirm.take() {
            return match (code, c) {
                (KeyCode::Char('y'), GuestConfirm::Start(i)) => Action::StartGuest(i),
                (KeyCode::Char('y'), GuestConfirm::Stop(i)) => Action::StopGuest(i),
                (KeyCode::Char('y'), GuestConfirm::Delete(i)) if i < self.lab.len() => {
                    self.lab.remove(i);
                    Action::ScanGuests
                }
                _ => Action::None,
            };
        }
        match code {
            KeyCode::Char('a') => {
                self.form = Some(super::editor::Form::guest(None, None, &self.lab));
            }
            KeyCode::Char('e') => {
                if let Some(i) = self.lab_index(lab_name) {
                    self.form = Some(super::editor::Form::guest(
                        Some(i),
                        self.lab.get(i),
                        &self.lab,
                    ));
                }
            }
            KeyCode::Char('d') => {
                let running = self.guests.get(self.cursor).is_some_and(|g| g.running);
                if let Some(i) = self.lab_index(lab_name).filter(|_| !running) {
                    self.confirm = Some(GuestConfirm::Delete(i));
                }
            }
            KeyCode::Down | KeyCode::Char('j') if self.cursor + 1 < self.guests.len() => {
                self.cursor += 1;
            }
            KeyCode::Up | KeyCode::Char('k') => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Char('s') if self.guests.get(self.cursor).is_some_and(|g| !g.running) => {
                self.confirm = Some(GuestConfirm::Start(self.cursor));
            }
            KeyCode::Char('x') if self.guests.get(self.cursor).is_some_and(|g| g.running) => {
                self.confirm = Some(GuestConfirm::Stop(self.cursor));
            }
            KeyCode::Char('g') => return Action::ScanGuests,
            _ => {}
        }
        Action::None
    }
}

/// What waits for a y/n on the Devices screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceConfirm {
    /// Bind, with the writes it will make.
    Bind(iolab_pci::Bdf, Vec<String>),
    Reattach(iolab_pci::Bdf),
    /// Bind and add to the lab's guest at this index (named), with the writes.
    Give(iolab_pci::Bdf, usize, String, Vec<String>),
}

/// The Devices screen: PCI functions, the selected one's details, and what iolab bound.
#[derive(Debug, Clone, Default)]
pub struct DevicesView {
    pub devices: Vec<iolab_pci::PciDevice>,
    /// Why the devices could not be read, if they could not.
    pub error: Option<String>,
    pub cursor: usize,
    /// Functions iolab moved to vfio-pci.
    pub bound: Vec<iolab_pci::Bdf>,
    pub confirm: Option<DeviceConfirm>,
}

impl DevicesView {
    fn selected(&self) -> Option<iolab_pci::Bdf> {
        self.devices.get(self.cursor).map(|d| d.address)
    }

    fn on_key(&mut self, code: KeyCode) -> Action {
        if let Some(c) = self.confirm.take() {
            return match (code, c) {
                (KeyCode::Char('y'), DeviceConfirm::Bind(b, _)) => Action::Bind(b),
                (KeyCode::Char('y'), DeviceConfirm::Reattach(b)) => Action::Reattach(b),
                (KeyCode::Char('y'), DeviceConfirm::Give(b, g, _, _)) => Action::Give(b, g),
                _ => Action::None,
            };
        }
        match code {
            KeyCode::Down | KeyCode::Char('j') if self.cursor + 1 < self.devices.len() => {
                self.cursor += 1;
            }
            KeyCode::Up | KeyCode::Char('k') => self.cursor = self.cursor.saturating_sub(1),
            KeyCode::Char('b') => return self.selected().map_or(Action::None, Action::PlanBind),
            KeyCode::Char('G') => return self.selected().map_or(Action::None, Action::PlanGive),
            KeyCode::Char('u') => {
                if let Some(b) = self.selected().filter(|b| self.bound.contains(b)) {
                    self.confirm = Some(DeviceConfirm::Reattach(b));
                }
            }
            _ => {}
        }
        Action::None
    }
}

/// What waits for a y/n on the Network screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Confirm {
    Apply,
    Revert,
}

/// The Network screen: interfaces with their MTUs, a tuning profile planned
/// against this namespace, and what the lab recorded before changing it.
#[derive(Debug, Clone, Default)]
pub struct NetworkView {
    /// Tuning profiles to choose from.
    pub profiles: Vec<String>,
    pub selected: usize,
    /// Interfaces, their MTU, and whether the profile's MTU goes to them.
    pub ifaces: Vec<(String, Option<u32>, bool)>,
    /// Index into `ifaces`.
    pub cursor: usize,
    pub plan: Option<iolab_lab_core::tuning::Plan>,
    /// Values recorded before the lab changed them.
    pub recorded: usize,
    pub confirm: Option<Confirm>,
    /// The tuning of the lab's own profile, offered first.
    pub lab_tuning: Option<iolab_lab_core::tuning::TuningProfile>,
    /// The tuning profile planned now, as resolved.
    pub chosen: Option<iolab_lab_core::tuning::TuningProfile>,
    /// A person chose a profile or marked interfaces here: the lab's
    /// tuning is what this screen says, when the lab is saved.
    pub picked: bool,
    /// Interfaces to mark once they are read (the lab's tuning's).
    pub premarked: Vec<String>,
}

impl NetworkView {
    pub fn profile(&self) -> Option<&str> {
        self.profiles.get(self.selected).map(String::as_str)
    }

    /// Interfaces marked to get the profile's MTU.
    pub fn marked(&self) -> Vec<String> {
        self.ifaces
            .iter()
            .filter(|i| i.2)
            .map(|i| i.0.clone())
            .collect()
    }

    fn on_key(&mut self, code: KeyCode) -> Action {
        if let Some(c) = self.confirm.take() {
            return match (code, c) {
                (KeyCode::Char('y'), Confirm::Apply) => Action::ApplyTuning,
                (KeyCode::Char('y'), Confirm::Revert) => Action::RevertTuning,
                _ => Action::None,
            };
        }
        match code {
            KeyCode::Char('p') if !self.profiles.is_empty() => {
                self.selected = (self.selected + 1) % self.profiles.len();
                self.picked = true;
                Action::PlanTuning
            }
            KeyCode::Down | KeyCode::Char('j') => {
                if self.cursor + 1 < self.ifaces.len() {
                    self.cursor += 1;
                }
                Action::None
            }
            KeyCode::Up | KeyCode::Char('k') => {
                self.cursor = self.cursor.saturating_sub(1);
                Action::None
            }
            KeyCode::Char(' ') => match self.ifaces.get_mut(self.cursor) {
                Some(i) => {
                    i.2 = !i.2;
                    self.picked = true;
                    Action::PlanTuning
                }
                None => Action::None,
            },
            KeyCode::Char('a') if self.plan.is_some() => {
                self.confirm = Some(Confirm::Apply);
                Action::None
            }
            KeyCode::Char('u') => {
                self.confirm = Some(Confirm::Revert);
                Action::None
            }
            _ => Action::None,
        }
    }
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
    /// The shown run's per-connection chart instead of its cells.
    pub chart: bool,
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

/// Whose counters the Run screen shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MeasuredBy {
    /// The embedded target's (the run goes to it).
    #[default]
    Target,
    /// The initiator's own (the target is not ours to ask).
    Initiator,
}

/// The Run screen: the form, the phase, and what the statistics bus saw of
/// the run's connections (last cumulative payload bytes per (TSIH, CID)).
#[derive(Debug, Clone, Default)]
pub struct RunView {
    pub measured_by: MeasuredBy,
    /// The run's connections as the initiator counts them.
    pub initiator: Arc<LabSnapshot>,
    pub form: RunForm,
    pub phase: RunPhase,
    pub sampled: HashMap<(u16, u16), u64>,
    pub matrix: Option<MatrixView>,
    /// The workload form, while it is open.
    pub edit: Option<super::editor::Form>,
    /// The run's connections over time, from the side that measures them;
    /// kept after the run until the next one starts.
    pub history: History,
    /// The run's per-connection series for the notebook (sent before Done).
    pub series: Vec<iolab_profiles::SeriesPoint>,
}

/// One cell of a matrix run as the Run screen's table shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct MatrixCell {
    pub mode: Mode,
    pub connections: u32,
    pub result: Option<iolab_profiles::Cell>,
}

/// A matrix run filling its table like the seed page's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MatrixView {
    pub cells: Vec<MatrixCell>,
    /// The cell running now.
    pub current: Option<usize>,
    pub finished: bool,
    pub error: Option<String>,
    /// The notebook id once stored.
    pub run_id: Option<i64>,
}

impl MatrixView {
    /// The empty table of `p`'s matrix, its cells in run order.
    pub fn of(p: &iolab_lab_core::profile::Profile) -> MatrixView {
        MatrixView {
            cells: p
                .workload
                .cells(p.default_lun())
                .iter()
                .map(|c| MatrixCell {
                    mode: c.mode,
                    connections: c.connections,
                    result: None,
                })
                .collect(),
            ..MatrixView::default()
        }
    }

    pub fn running(&self) -> bool {
        !self.finished && self.error.is_none()
    }
}

impl RunView {
    /// Where the run goes: the form's URL, else the embedded target's first LUN.
    pub fn url(&self, embedded: &[String]) -> Option<String> {
        self.form.url.clone().or_else(|| embedded.first().cloned())
    }

    pub fn busy(&self) -> bool {
        matches!(self.phase, RunPhase::Connecting | RunPhase::Running { .. })
            || self.matrix.as_ref().is_some_and(MatrixView::running)
    }

    /// Payload bytes the console saw move over the run's connections.
    pub fn sampled_total(&self) -> u64 {
        self.sampled.values().sum()
    }

    pub fn on_event(&mut self, ev: RunEvent) {
        if let RunEvent::Series(points) = ev {
            self.series = points;
            return;
        }
        if matches!(ev, RunEvent::Done(_) | RunEvent::Failed(_)) {
            // The run is over: nothing moves now; the totals stay.
            let mut snap = (*self.initiator).clone();
            for c in &mut snap.connections {
                (c.read_mbps, c.write_mbps, c.iops) = (0.0, 0.0, 0.0);
            }
            snap.total_mbps = 0.0;
            self.initiator = Arc::new(snap);
        }
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
            (other, RunEvent::Progress(_) | RunEvent::Sample(_) | RunEvent::Series(_)) => other,
        };
    }

    /// The target session handles of the run's sessions (none before it logs in).
    fn tsihs(&self) -> &[u16] {
        match &self.phase {
            RunPhase::Running { tsihs, .. } | RunPhase::Done { tsihs, .. } => tsihs,
            _ => &[],
        }
    }

    /// The run's connections, from the side that measures them.
    pub fn live<'a>(&'a self, target: &'a LabSnapshot) -> Vec<&'a iolab_lab_core::ConnSample> {
        let tsihs = self.tsihs();
        match self.measured_by {
            MeasuredBy::Target => target
                .connections
                .iter()
                .filter(|c| tsihs.contains(&c.tsih))
                .collect(),
            MeasuredBy::Initiator if tsihs.is_empty() => Vec::new(),
            MeasuredBy::Initiator => self.initiator.connections.iter().collect(),
        }
    }

    /// Records the run's connections from a statistics snapshot.
    pub fn observe(&mut self, snap: &LabSnapshot) {
        if matches!(self.phase, RunPhase::Running { .. }) {
            let tsihs = self.tsihs().to_vec();
            let side = match self.measured_by {
                MeasuredBy::Target => snap,
                MeasuredBy::Initiator => &*self.initiator,
            };
            self.history.observe(side, |c| tsihs.contains(&c.tsih));
        }
        let seen: Vec<(u16, u16, u64)> = self
            .live(snap)
            .iter()
            .map(|c| (c.tsih, c.cid, c.totals.read_bytes + c.totals.write_bytes))
            .collect();
        for (tsih, cid, bytes) in seen {
            self.sampled.insert((tsih, cid), bytes);
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
    /// Every connection of the embedded target over time (Connections screen).
    pub live: History,
    /// What the Connections and Run charts plot, over which window.
    pub chart: ChartSettings,
    pub run: RunView,
    pub notebook: NotebookView,
    pub network: NetworkView,
    pub devices: DevicesView,
    pub guests: GuestsView,
    pub editor: super::editor::TargetEditor,
    pub lab: LabState,
    pub sessions: super::sessions::SessionsView,
}

impl ConsoleState {
    /// A new statistics snapshot of the embedded target: the Connections
    /// chart's history and the run's connections take it.
    pub fn on_snapshot(&mut self, snap: Arc<LabSnapshot>) {
        self.live.observe(&snap, |_| true);
        self.live
            .forget_older_than(iolab_lab_core::chart::Window::M10);
        self.run.observe(&snap);
        self.snapshot = snap;
    }

    /// The lab as it stands now, as a profile under the lab's name.
    pub fn current_lab(&self) -> Profile {
        let mut p = iolab_lab_core::run::lab_profile(
            &self.lab.base,
            &self.lab.name,
            self.editor.config.as_ref(),
            &self.target_urls,
            &self.run.form,
            &self.lab.opened_form,
        );
        p.guests = self.guests.lab.clone();
        if let (true, Some(t)) = (self.network.picked, &self.network.chosen) {
            // The tuning chosen on the Network screen, its MTU on the marked interfaces.
            let mut t = t.clone();
            if let Some(mtu) = t.mtu {
                t.interfaces = self
                    .network
                    .marked()
                    .into_iter()
                    .map(|i| (i, mtu))
                    .collect();
            }
            p.tuning = Some(t);
        }
        p
    }

    /// Whether the lab differs from what was opened or last saved.
    pub fn unsaved(&self) -> bool {
        self.current_lab() != self.lab.base
    }

    /// The lab's guest a function goes to: the one selected on the Guests
    /// screen when it is the lab's, else the lab's first.
    pub fn give_target(&self) -> Option<usize> {
        self.guests
            .lab_index(&self.lab.name)
            .or((!self.guests.lab.is_empty()).then_some(0))
    }

    /// After `bdf` was bound: it is in guest `g`'s passthrough list (once).
    pub fn gave(&mut self, bdf: iolab_pci::Bdf, g: usize) {
        let b = bdf.to_string();
        if let Some(guest) = self.guests.lab.get_mut(g)
            && !guest.pci.contains(&b)
        {
            guest.pci.push(b);
        }
    }

    /// After `bdf` went back to its driver: no lab guest passes it through.
    pub fn taken_back(&mut self, bdf: iolab_pci::Bdf) {
        let b = bdf.to_string();
        for g in &mut self.guests.lab {
            g.pci.retain(|x| *x != b);
        }
    }

    /// After the notebook stored `p`: it is the lab's new base.
    pub fn saved(&mut self, p: Profile) {
        self.lab = LabState::opened(p, self.run.form.clone());
    }

    fn save_key(&mut self, code: KeyCode) -> Action {
        let Some(form) = self.lab.save.as_mut() else {
            return Action::None;
        };
        if self.lab.pending_save.is_some() {
            return Action::None;
        }
        match form.on_key(code) {
            Some(false) => self.lab.save = None,
            Some(true) => match form.save_choice() {
                Ok((name, replace)) => {
                    let mut p = self.current_lab();
                    p.name = name;
                    let problems = p.problems();
                    if problems.is_empty() {
                        self.lab.pending_save = Some((p, replace));
                        return Action::SaveLab;
                    }
                    if let Some(f) = self.lab.save.as_mut() {
                        f.error = Some(problems.join("; "));
                    }
                }
                Err(e) => form.error = Some(e),
            },
            None => {}
        }
        Action::None
    }

    /// Handles a key.
    pub fn on_key(&mut self, code: KeyCode) -> Action {
        if self.lab.save.is_some() {
            return self.save_key(code);
        }
        if std::mem::take(&mut self.lab.quitting) {
            return match code {
                KeyCode::Char('q') => Action::Quit,
                KeyCode::Char('S') => {
                    self.lab.save = Some(super::editor::Form::save(&self.lab.name));
                    Action::None
                }
                _ => Action::None,
            };
        }
        // A pending confirmation takes the next key, whatever it is.
        if self.tab == Tab::Target && self.editor.wants(code) {
            return match self.editor.on_key(code) {
                super::editor::EditorAction::Apply => Action::ApplyTarget,
                super::editor::EditorAction::None => Action::None,
            };
        }
        if self.tab == Tab::Network && self.network.confirm.is_some() {
            return self.network.on_key(code);
        }
        if self.tab == Tab::Devices
            && (self.devices.confirm.is_some()
                || matches!(
                    code,
                    KeyCode::Char('j' | 'k' | 'b' | 'u' | 'G') | KeyCode::Up | KeyCode::Down
                ))
        {
            return self.devices.on_key(code);
        }
        if self.tab == Tab::Sessions && self.sessions.wants(code) {
            return self.sessions.on_key(code);
        }
        if self.tab == Tab::Guests && self.guests.wants(code) {
            let lab = self.lab.name.clone();
            return self.guests.on_key(code, &lab);
        }
        if self.tab == Tab::Run
            && let Some(form) = self.run.edit.as_mut()
        {
            match form.on_key(code) {
                Some(false) => self.run.edit = None,
                Some(true) => match form.apply_workload() {
                    Ok(f) => {
                        self.run.form = f;
                        self.run.edit = None;
                    }
                    Err(e) => form.error = Some(e),
                },
                None => {}
            }
            return Action::None;
        }
        let network_key = matches!(
            code,
            KeyCode::Char('p' | 'j' | 'k' | ' ' | 'a' | 'u') | KeyCode::Up | KeyCode::Down
        );
        if self.tab == Tab::Network && network_key {
            return self.network.on_key(code);
        }
        match code {
            KeyCode::Char('q') if self.unsaved() => self.lab.quitting = true,
            KeyCode::Char('q') => return Action::Quit,
            KeyCode::Char('S') => self.lab.save = Some(super::editor::Form::save(&self.lab.name)),
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
                    if *t == Tab::Network {
                        return Action::PlanTuning;
                    }
                    if *t == Tab::Devices {
                        return Action::ScanDevices;
                    }
                    if *t == Tab::Guests {
                        return Action::ScanGuests;
                    }
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
            KeyCode::Char('v') if matches!(self.tab, Tab::Run | Tab::Connections) => {
                self.chart.metric = self.chart.metric.next();
            }
            KeyCode::Char('w') if matches!(self.tab, Tab::Run | Tab::Connections) => {
                self.chart.window = self.chart.window.next();
            }
            KeyCode::Char('c') if self.tab == Tab::Profiles => {
                self.notebook.chart = !self.notebook.chart;
            }
            KeyCode::Char('M') if self.tab == Tab::Run => {
                if self.run.busy() {
                    self.status = "a run is already going".into();
                } else {
                    return Action::StartMatrix;
                }
            }
            KeyCode::Char('m') if self.tab == Tab::Run && !self.run.busy() => {
                self.run.form.mode = match self.run.form.mode {
                    Mode::Read => Mode::Write,
                    Mode::Write => Mode::Rw,
                    Mode::Rw => Mode::Read,
                };
            }
            KeyCode::Char('e') if self.tab == Tab::Run && !self.run.busy() => {
                // The embedded target's LUNs, then those of the initiator's sessions.
                let mut urls = self.target_urls.clone();
                urls.extend(self.sessions.lun_urls());
                self.run.edit = Some(super::editor::Form::workload(&self.run.form, &urls));
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
    /// A click on the tab row (row 0) selects the tab under the pointer, as
    /// its number key would; a click on a list row selects that row.
    pub fn on_mouse(&mut self, m: MouseEvent) -> Action {
        if m.kind != MouseEventKind::Down(crossterm::event::MouseButton::Left) {
            return Action::None;
        }
        if m.row == 0 {
            let mut x = 1u16;
            for (i, t) in Tab::ALL.iter().enumerate() {
                let w = t.title().len() as u16 + 3;
                if m.column >= x && m.column < x + w {
                    return self.on_key(KeyCode::Char((b'1' + i as u8) as char));
                }
                x += w;
            }
            return Action::None;
        }
        // Lists at the top of a screen: tab row, border, header, then rows.
        let Some(row) = (m.row as usize).checked_sub(FIRST_LIST_ROW) else {
            return Action::None;
        };
        match self.tab {
            Tab::Devices if row < self.devices.devices.len() => self.devices.cursor = row,
            Tab::Guests if row < self.guests.guests.len() => self.guests.cursor = row,
            Tab::Network if row < self.network.ifaces.len() => self.network.cursor = row,
            _ => {}
        }
        Action::None
    }
}

/// The screen row of a top list's first entry.
pub const FIRST_LIST_ROW: usize = 3;

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
        assert_eq!(s.on_key(KeyCode::Char('M')), Action::StartMatrix);
        s.run.matrix = Some(MatrixView::default());
        assert_eq!(
            s.on_key(KeyCode::Char('r')),
            Action::None,
            "a matrix is running"
        );
        s.run.matrix.as_mut().unwrap().finished = true;
        s.on_key(KeyCode::Char('?'));
        assert!(s.help);
        s.on_key(KeyCode::Esc);
        assert!(!s.help);
        // The form changed since the lab opened: q asks first.
        assert!(s.unsaved());
        assert_eq!(s.on_key(KeyCode::Char('q')), Action::None);
        assert!(s.lab.quitting);
        assert_eq!(s.on_key(KeyCode::Char('x')), Action::None, "stays");
        assert!(!s.lab.quitting);
        s.on_key(KeyCode::Char('q'));
        assert_eq!(s.on_key(KeyCode::Char('q')), Action::Quit);
        // Nothing changed: q quits at once.
        let mut fresh = ConsoleState::default();
        assert!(!fresh.unsaved());
        assert_eq!(fresh.on_key(KeyCode::Char('q')), Action::Quit);
    }

    /// Why the Save form refused, as it shows it.
    fn save_error(s: &ConsoleState) -> String {
        let form = s.lab.save.as_ref().expect("the Save form is open");
        form.error.clone().unwrap_or_default()
    }

    #[test]
    fn save_names_the_lab_and_makes_it_clean() {
        let mut s = ConsoleState {
            tab: Tab::Run,
            ..Default::default()
        };
        s.on_key(KeyCode::Char('m'));
        assert!(s.unsaved());
        s.on_key(KeyCode::Char('S'));
        let form = s.lab.save.as_ref().unwrap();
        assert_eq!(form.fields[0].value, "lab");
        for _ in 0..3 {
            s.on_key(KeyCode::Backspace);
        }
        // A bad name and a built-in's name are refused in the form.
        s.on_key(KeyCode::Char('?'));
        assert_eq!(s.on_key(KeyCode::Enter), Action::None);
        assert!(save_error(&s).contains("must be 1-64"));
        s.on_key(KeyCode::Backspace);
        for c in "quick".chars() {
            s.on_key(KeyCode::Char(c));
        }
        assert_eq!(s.on_key(KeyCode::Enter), Action::None);
        assert!(save_error(&s).contains("built-in"));
        for _ in 0..5 {
            s.on_key(KeyCode::Backspace);
        }
        for c in "mylab".chars() {
            s.on_key(KeyCode::Char(c));
        }
        assert_eq!(s.on_key(KeyCode::Enter), Action::SaveLab);
        let (p, replace) = s.lab.pending_save.take().unwrap();
        assert_eq!((p.name.as_str(), replace), ("mylab", false));
        assert_eq!(p.workload.modes, vec![Mode::Write]);
        s.saved(p);
        assert_eq!(s.lab.name, "mylab");
        assert!(s.lab.save.is_none());
        assert!(!s.unsaved());
        assert_eq!(s.on_key(KeyCode::Char('q')), Action::Quit);
    }

    /// A row of the Guests table for `def` of `profile`.
    fn lab_row(def: iolab_lab_core::guest::GuestDef, profile: &str, running: bool) -> GuestRow {
        GuestRow {
            profile: profile.into(),
            def,
            state: if running { "running" } else { "stopped" }.into(),
            running,
            command: String::new(),
            warning: None,
            pci_seen: Vec::new(),
        }
    }

    #[test]
    fn guests_are_defined_edited_and_deleted_in_the_lab() {
        let mut s = ConsoleState {
            tab: Tab::Guests,
            ..Default::default()
        };
        assert_eq!(s.on_key(KeyCode::Char('a')), Action::None);
        assert_eq!(s.guests.form.as_ref().unwrap().fields[0].value, "guest1");
        assert_eq!(s.on_key(KeyCode::Enter), Action::ScanGuests);
        let g = &s.guests.lab[0];
        assert!(g.micro.is_some(), "a new guest is a micro-guest");
        assert!(g.kernel.as_deref().unwrap().ends_with("image/vmlinuz"));
        assert!(
            g.append
                .contains("iolab.name=guest1 iolab.ip=10.0.2.15/24 iolab.gw=10.0.2.2")
        );
        assert!(s.unsaved());
        assert_eq!(s.current_lab().guests, s.guests.lab);
        // The scan lists it under the lab's name; e edits it.
        let row = |def, profile: &str| lab_row(def, profile, false);
        s.guests.guests = vec![row(s.guests.lab[0].clone(), "lab")];
        s.on_key(KeyCode::Char('e'));
        let form = s.guests.form.as_mut().unwrap();
        assert_eq!(form.title(), "Change guest");
        form.fields[2].value = "32".into();
        s.on_key(KeyCode::Enter);
        let err = s.guests.form.as_ref().unwrap().error.clone().unwrap();
        assert!(err.contains("memory_mib 32 is below 64"), "{err}");
        s.guests.form.as_mut().unwrap().fields[2].value = "512".into();
        assert_eq!(s.on_key(KeyCode::Enter), Action::ScanGuests);
        assert_eq!((s.guests.lab.len(), s.guests.lab[0].memory_mib), (1, 512));
        // Another profile's guest is not the lab's to change.
        s.guests.guests = vec![row(s.guests.lab[0].clone(), "seed-lio-kvm")];
        s.on_key(KeyCode::Char('e'));
        assert!(s.guests.form.is_none());
        s.guests.guests = vec![row(s.guests.lab[0].clone(), "lab")];
        s.on_key(KeyCode::Char('d'));
        assert_eq!(s.guests.confirm, Some(GuestConfirm::Delete(0)));
        assert_eq!(s.on_key(KeyCode::Char('y')), Action::ScanGuests);
        assert!(s.guests.lab.is_empty());
        assert!(!s.unsaved());
    }

    #[test]
    fn a_device_is_given_to_a_lab_guest_and_taken_back() {
        let t = iolab_pci::fake::FakeTree::new("give");
        t.x520("0000:06:00.0", 12, Some("ixgbe"));
        let mut s = ConsoleState::default();
        s.on_key(KeyCode::Char('6'));
        s.devices.devices = iolab_pci::enumerate(&t.sysfs()).unwrap();
        let bdf = s.devices.devices[0].address;
        assert_eq!(s.on_key(KeyCode::Char('G')), Action::PlanGive(bdf));
        assert_eq!(s.give_target(), None, "the lab has no guest yet");
        // Two lab guests; the one selected on the Guests screen gets it.
        s.tab = Tab::Guests;
        s.on_key(KeyCode::Char('a'));
        s.on_key(KeyCode::Enter);
        s.on_key(KeyCode::Char('a'));
        s.on_key(KeyCode::Enter);
        assert_eq!(s.guests.lab.len(), 2);
        assert_eq!(s.give_target(), Some(0));
        let row = |def| lab_row(def, "lab", false);
        s.guests.guests = s.guests.lab.iter().cloned().map(row).collect();
        s.guests.cursor = 1;
        assert_eq!(s.give_target(), Some(1));
        s.tab = Tab::Devices;
        s.devices.confirm = Some(DeviceConfirm::Give(bdf, 1, "guest2".into(), vec![]));
        assert_eq!(s.on_key(KeyCode::Char('y')), Action::Give(bdf, 1));
        s.gave(bdf, 1);
        s.gave(bdf, 1);
        assert_eq!(
            s.guests.lab[1].pci,
            vec!["0000:06:00.0".to_string()],
            "once"
        );
        assert!(s.guests.lab[0].pci.is_empty());
        assert_eq!(
            s.current_lab().guests[1].pci,
            s.guests.lab[1].pci,
            "saved with the lab"
        );
        // Editing the guest keeps what it was given.
        s.tab = Tab::Guests;
        s.on_key(KeyCode::Char('e'));
        s.on_key(KeyCode::Enter);
        assert_eq!(s.guests.lab[1].pci, vec!["0000:06:00.0".to_string()]);
        s.taken_back(bdf);
        assert!(s.guests.lab.iter().all(|g| g.pci.is_empty()));
    }

    #[test]
    fn guest_form_refuses_what_cannot_boot() {
        use super::super::editor::Form;
        let set = |f: &mut Form, label: &str, v: &str| {
            f.fields
                .iter_mut()
                .find(|x| x.label == label)
                .unwrap()
                .value = v.into();
        };
        for (label, value, kind, why) in [
            ("kind", "kernel", "kernel", "a kernel guest needs a kernel"),
            ("kind", "disk", "disk", "a disk guest needs an image"),
            ("NIC", "tap", "micro", "a tap NIC needs its interface name"),
            ("NIC option", "nonsense", "micro", "forward 'nonsense'"),
            ("vCPUs", "0", "micro", "vcpus 0 is outside"),
        ] {
            let mut f = Form::guest(None, None, &[]);
            set(&mut f, "kind", kind);
            set(&mut f, label, value);
            let e = f.apply_guest(&[]).unwrap_err();
            assert!(e.contains(why), "{label}={value}: {e}");
        }
        let mut f = Form::guest(None, None, &[]);
        set(&mut f, "kind", "disk");
        set(&mut f, "disk", "/var/lib/images/lenny.img");
        set(&mut f, "NIC option", "13260=3260");
        let g = f.apply_guest(&[]).unwrap();
        assert_eq!(g.disk.as_deref(), Some("/var/lib/images/lenny.img"));
        assert!(g.micro.is_none() && g.kernel.is_none());
        // The same name twice is refused.
        let e = Form::guest(None, None, &[]).apply_guest(&[iolab_lab_core::guest::GuestDef {
            name: "guest2".into(),
            ..g.clone()
        }]);
        assert!(e.is_ok(), "guest1 is free: {e:?}");
        let mut f = Form::guest(None, None, &[]);
        set(&mut f, "name", "guest2");
        let e = f
            .apply_guest(&[iolab_lab_core::guest::GuestDef {
                name: "guest2".into(),
                ..g
            }])
            .unwrap_err();
        assert!(e.contains("already"), "{e}");
    }

    #[test]
    fn a_run_elsewhere_is_measured_by_the_initiator() {
        use iolab_iscsi::SessionInfo;
        use iolab_iscsi::stats::ConnStatsSnapshot;
        use iolab_iscsi::target::ConnectionInfo;
        let info = |bytes: u64| SessionInfo {
            tsih: 7,
            isid: 1,
            initiator: "i".into(),
            target: "t".into(),
            queue_depth: 64,
            connections: (0..2u16)
                .map(|cid| ConnectionInfo {
                    cid,
                    peer: "127.0.0.1:3260".parse().unwrap(),
                    local: "127.0.0.1:50000".parse().unwrap(),
                    params: Default::default(),
                    mss: None,
                    stats: ConnStatsSnapshot {
                        read_bytes: bytes,
                        ..Default::default()
                    },
                })
                .collect(),
        };
        let mut run = RunView {
            measured_by: MeasuredBy::Initiator,
            ..Default::default()
        };
        let target_side = LabSnapshot::default();
        run.on_event(RunEvent::Started {
            tsihs: vec![7],
            connections: 2,
        });
        let mut sampler = iolab_lab_core::Sampler::new();
        let t0 = Instant::now();
        sampler.sample(vec![info(0)], t0);
        run.initiator = Arc::new(sampler.sample(
            vec![info(100_000_000)],
            t0 + std::time::Duration::from_millis(250),
        ));
        let live = run.live(&target_side);
        assert_eq!(live.len(), 2, "the target side knows nothing of them");
        assert!(live.iter().all(|c| c.read_mbps > 0.0));
        run.observe(&target_side);
        assert_eq!(run.sampled_total(), 200_000_000);
        run.on_event(RunEvent::Done(iolab_lab_core::workload::Report {
            seconds: 1.0,
            ..Default::default()
        }));
        assert!(
            run.live(&target_side).iter().all(|c| c.read_mbps == 0.0),
            "a finished run moves nothing now"
        );
        assert_eq!(run.sampled_total(), 200_000_000, "totals stay");
        // Measured by the target, the same run shows the target's view (empty here).
        run.measured_by = MeasuredBy::Target;
        assert!(run.live(&target_side).is_empty());
    }

    #[test]
    fn workload_form_edits_every_field() {
        let mut s = ConsoleState {
            tab: Tab::Run,
            target_urls: vec![
                "iscsi://127.0.0.1:3260/iqn.2026-11.io.iolab:target0/0".into(),
                "iscsi://127.0.0.1:3260/iqn.2026-11.io.iolab:target0/1".into(),
            ],
            ..Default::default()
        };
        s.on_key(KeyCode::Char('e'));
        // target: the second embedded URL; mode write; block 64K; 16 I/Os; 5s; 2 conns.
        s.on_key(KeyCode::Right);
        s.on_key(KeyCode::Right);
        let typed = |s: &mut ConsoleState, text: &str| {
            for _ in 0..8 {
                s.on_key(KeyCode::Backspace);
            }
            for c in text.chars() {
                s.on_key(KeyCode::Char(c));
            }
            s.on_key(KeyCode::Tab);
        };
        s.on_key(KeyCode::Tab);
        s.on_key(KeyCode::Right);
        s.on_key(KeyCode::Tab);
        typed(&mut s, "64K");
        typed(&mut s, "16");
        typed(&mut s, "5s");
        typed(&mut s, "2");
        typed(&mut s, "1");
        s.on_key(KeyCode::Char(' '));
        s.on_key(KeyCode::Tab);
        typed(&mut s, "nonsense");
        assert_eq!(s.on_key(KeyCode::Enter), Action::None);
        let err = s.run.edit.as_ref().unwrap().error.clone().unwrap();
        assert!(err.contains("range: 'nonsense' is not a size"), "{err}");
        s.on_key(KeyCode::BackTab);
        typed(&mut s, "32M");
        s.on_key(KeyCode::Enter);
        assert!(s.run.edit.is_none(), "applied");
        let f = &s.run.form;
        assert_eq!(f.url.as_deref(), Some(s.target_urls[1].as_str()));
        assert_eq!(
            (
                f.mode,
                f.block_bytes,
                f.threads,
                f.seconds,
                f.connections,
                f.sessions
            ),
            (Mode::Write, 64 << 10, 16, 5, 2, 1)
        );
        assert!(f.verify);
        assert_eq!(f.range_bytes, 32 << 20);
        assert_eq!(s.run.url(&s.target_urls), f.url);
    }

    #[test]
    fn devices_keys_plan_then_confirm_binds_and_reattach_only_what_iolab_bound() {
        let t = iolab_pci::fake::FakeTree::new("state");
        t.x520("0000:06:00.0", 12, Some("ixgbe"))
            .x520("0000:07:00.0", 13, Some("vfio-pci"));
        let mut s = ConsoleState::default();
        assert_eq!(s.on_key(KeyCode::Char('6')), Action::ScanDevices);
        s.devices.devices = iolab_pci::enumerate(&t.sysfs()).unwrap();
        let (a, b) = (s.devices.devices[0].address, s.devices.devices[1].address);
        assert_eq!(s.on_key(KeyCode::Char('b')), Action::PlanBind(a));
        s.devices.confirm = Some(DeviceConfirm::Bind(a, vec!["echo".into()]));
        assert_eq!(s.on_key(KeyCode::Char('n')), Action::None, "declined");
        s.devices.confirm = Some(DeviceConfirm::Bind(a, vec![]));
        assert_eq!(s.on_key(KeyCode::Char('y')), Action::Bind(a));
        s.on_key(KeyCode::Down);
        s.on_key(KeyCode::Char('u'));
        assert_eq!(s.devices.confirm, None, "iolab did not bind it");
        s.devices.bound = vec![b];
        s.on_key(KeyCode::Char('u'));
        assert_eq!(s.on_key(KeyCode::Char('y')), Action::Reattach(b));
    }

    #[test]
    fn guests_keys_start_only_stopped_and_stop_only_running_after_confirming() {
        let p = iolab_lab_core::profile::Profile::parse(
            iolab_lab_core::profile::builtin("seed-lio-kvm").unwrap(),
            "seed",
        )
        .unwrap();
        let row = |def: iolab_lab_core::guest::GuestDef, running| GuestRow {
            profile: "seed-lio-kvm".into(),
            def,
            state: String::new(),
            running,
            command: String::new(),
            warning: None,
            pci_seen: Vec::new(),
        };
        let mut s = ConsoleState::default();
        assert_eq!(s.on_key(KeyCode::Char('7')), Action::ScanGuests);
        s.guests.guests = vec![
            row(p.guests[0].clone(), false),
            row(p.guests[1].clone(), true),
        ];
        s.on_key(KeyCode::Char('x'));
        assert_eq!(s.guests.confirm, None, "not running");
        s.on_key(KeyCode::Char('s'));
        assert_eq!(s.on_key(KeyCode::Char('n')), Action::None);
        s.on_key(KeyCode::Char('s'));
        assert_eq!(s.on_key(KeyCode::Char('y')), Action::StartGuest(0));
        s.on_key(KeyCode::Down);
        s.on_key(KeyCode::Char('s'));
        assert_eq!(s.guests.confirm, None, "already running");
        s.on_key(KeyCode::Char('x'));
        assert_eq!(s.on_key(KeyCode::Char('y')), Action::StopGuest(1));
        assert_eq!(s.on_key(KeyCode::Char('g')), Action::ScanGuests);
    }

    #[test]
    fn clicks_select_tabs_like_their_keys_and_list_rows() {
        use crossterm::event::{KeyModifiers, MouseButton};
        let click = |column, row| MouseEvent {
            kind: MouseEventKind::Down(MouseButton::Left),
            column,
            row,
            modifiers: KeyModifiers::NONE,
        };
        let mut s = ConsoleState::default();
        // "1 Target │ 2 Connections │ 3 Run │ 4 Profiles │ 5 Network │ 6 Devices"
        let x = 1 + Tab::ALL[..5]
            .iter()
            .map(|t| t.title().len() as u16 + 3)
            .sum::<u16>();
        assert_eq!(s.on_mouse(click(x + 1, 0)), Action::ScanDevices);
        assert_eq!(s.tab, Tab::Devices);
        let t = iolab_pci::fake::FakeTree::new("click");
        t.x520("0000:06:00.0", 12, None)
            .x520("0000:07:00.0", 13, None);
        s.devices.devices = iolab_pci::enumerate(&t.sysfs()).unwrap();
        s.on_mouse(click(5, FIRST_LIST_ROW as u16 + 1));
        assert_eq!(s.devices.cursor, 1);
        s.on_mouse(click(5, FIRST_LIST_ROW as u16 + 9));
        assert_eq!(s.devices.cursor, 1, "below the list");
    }

    #[test]
    fn network_keys_choose_mark_and_confirm_before_acting() {
        let mut s = ConsoleState::default();
        assert_eq!(s.on_key(KeyCode::Char('5')), Action::PlanTuning);
        s.network.profiles = vec!["seed".into(), "network-latency".into()];
        s.network.ifaces = vec![
            ("lo".into(), Some(65536), false),
            ("veth0".into(), Some(1500), false),
        ];
        assert_eq!(s.on_key(KeyCode::Char('p')), Action::PlanTuning);
        assert_eq!(s.network.profile(), Some("network-latency"));
        s.on_key(KeyCode::Down);
        assert_eq!(s.on_key(KeyCode::Char(' ')), Action::PlanTuning);
        assert_eq!(s.network.marked(), ["veth0"]);
        assert_eq!(
            s.on_key(KeyCode::Char('a')),
            Action::None,
            "nothing planned yet"
        );
        s.network.plan = Some(iolab_lab_core::tuning::Plan {
            profile: "network-latency".into(),
            items: Vec::new(),
            lints: Vec::new(),
        });
        assert_eq!(s.on_key(KeyCode::Char('a')), Action::None);
        assert_eq!(s.network.confirm, Some(Confirm::Apply));
        assert_eq!(
            s.on_key(KeyCode::Char('q')),
            Action::None,
            "any other key cancels"
        );
        assert_eq!(s.network.confirm, None);
        s.on_key(KeyCode::Char('a'));
        assert_eq!(s.on_key(KeyCode::Char('y')), Action::ApplyTuning);
        s.on_key(KeyCode::Char('u'));
        assert_eq!(s.on_key(KeyCode::Char('y')), Action::RevertTuning);
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

//! The interactive console: terminal set-up and restore, the event loop, and
//! the pure render functions over a state snapshot.

mod apply;
mod editor;
mod notebook;
mod render;
mod sessions;
mod state;
mod tuning;

use std::io::Stdout;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use crossterm::event::{Event, EventStream, KeyCode, KeyEventKind, KeyModifiers};
use crossterm::execute;
use crossterm::terminal::{
    EnterAlternateScreen, LeaveAlternateScreen, disable_raw_mode, enable_raw_mode,
};
use futures_util::StreamExt;
use iolab_lab_core::Lab;
use iolab_lab_core::sampler::{DEFAULT_HZ, Sampler};
use ratatui::Terminal;
use ratatui::backend::CrosstermBackend;

use state::{Action, ConsoleState};

/// Restores the terminal: leaves raw mode and the alternate screen.
fn restore() {
    let _ = disable_raw_mode();
    let _ = execute!(
        std::io::stdout(),
        LeaveAlternateScreen,
        crossterm::cursor::Show
    );
}

/// Puts the terminal back when dropped, whichever way the console ends.
struct TerminalGuard;
impl Drop for TerminalGuard {
    fn drop(&mut self) {
        restore();
    }
}

fn setup() -> anyhow::Result<(Terminal<CrosstermBackend<Stdout>>, TerminalGuard)> {
    enable_raw_mode().context("the console needs a terminal (stdin/stdout must be a TTY)")?;
    let guard = TerminalGuard;
    execute!(std::io::stdout(), EnterAlternateScreen).context("entering the alternate screen")?;
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        prev(info);
    }));
    let term = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    Ok((term, guard))
}

/// Re-reads the guests of the profiles and, on a blocking thread (a hung qemu's
/// monitor takes seconds to time out), asks each one's QMP for its state and
/// devices; the rows arrive on `tx`.
fn scan_guests(
    notebook: &notebook::Notebook,
    lab: &iolab_lab_core::profile::Profile,
    tx: &tokio::sync::mpsc::UnboundedSender<Vec<state::GuestRow>>,
) {
    // The lab's own guests first, then those of the other profiles.
    let mut defs: Vec<_> = lab
        .guests
        .iter()
        .map(|g| (lab.name.clone(), g.clone()))
        .collect();
    defs.extend(
        iolab_lab_core::notebook::guests_in(notebook.store())
            .into_iter()
            .filter(|(p, _)| *p != lab.name),
    );
    let tx = tx.clone();
    tokio::task::spawn_blocking(move || {
        let _ = tx.send(guest_rows(defs));
    });
}

fn guest_rows(defs: Vec<(String, iolab_lab_core::guest::GuestDef)>) -> Vec<state::GuestRow> {
    use iolab_lab_core::guest::command::{qemu_args, resolve_accel, shell_line};
    use iolab_lab_core::guest::lifecycle::{self, GuestState, QEMU};
    defs.into_iter()
        .map(|(profile, def)| {
            let paths = iolab_lab_core::guest::lifecycle::paths(&def.name).ok();
            let st = paths.as_ref().map(lifecycle::status);
            let (accel, warning) = resolve_accel(def.accel);
            let command = paths
                .as_ref()
                .map(|p| shell_line(QEMU, &qemu_args(&def, p, accel)))
                .unwrap_or_default();
            let running = matches!(st, Some(GuestState::Running { .. }));
            let pci_seen = match (&paths, running) {
                (Some(p), true) => {
                    iolab_lab_core::guest::qmp::Qmp::connect(&p.qmp(), Duration::from_secs(1))
                        .and_then(|mut q| q.pci())
                        .map(|l| {
                            l.iter()
                                .map(|d| {
                                    format!(
                                        "{:02x}:{:02x}.{} [{:04x}:{:04x}]",
                                        d.bus, d.slot, d.function, d.vendor, d.device
                                    )
                                })
                                .collect()
                        })
                        .unwrap_or_default()
                }
                _ => Vec::new(),
            };
            state::GuestRow {
                profile,
                state: st.map(|s| s.to_string()).unwrap_or_else(|| "-".into()),
                running,
                command,
                warning,
                pci_seen,
                def,
            }
        })
        .collect()
}

/// Lines of a guest's serial console the Guests screen shows.
const SERIAL_LINES: usize = 8;

/// The last `n` lines of a serial log (at most its last 16 KiB are read).
fn serial_tail(path: &std::path::Path, n: usize) -> Vec<String> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(16 << 10)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .filter(|l| !l.trim().is_empty())
        .collect();
    lines[lines.len().saturating_sub(n)..].to_vec()
}

/// Starts or stops guest `i` on a blocking thread (qemu start-up and a
/// graceful power-down take seconds); the outcome comes back as a status line.
fn guest_op(
    state: &mut ConsoleState,
    i: usize,
    start: bool,
    tx: &tokio::sync::mpsc::UnboundedSender<String>,
) {
    let Some(g) = state.guests.guests.get(i) else {
        return;
    };
    let def = g.def.clone();
    let tx = tx.clone();
    state.status = format!(
        "{} guest {}...",
        if start { "starting" } else { "stopping" },
        def.name
    );
    tokio::task::spawn_blocking(move || {
        use iolab_lab_core::guest::lifecycle::{self, QEMU};
        let msg = match iolab_lab_core::guest::lifecycle::paths(&def.name) {
            Err(e) => format!("guest {}: {e}", def.name),
            Ok(p) if start => {
                // A micro-guest's image is built the first time it is needed.
                let r = iolab_lab_core::guest::image::ensure_micro_image(&def)
                    .and_then(|_| lifecycle::start(&def, &p, QEMU, true));
                match r {
                    Ok(s) => format!("guest {} started (pid {})", def.name, s.pid),
                    Err(e) => format!("guest {}: {e}", def.name),
                }
            }
            Ok(p) => match lifecycle::stop(&p, Duration::from_secs(30)) {
                Ok(how) => format!("guest {}: {how}", def.name),
                Err(e) => format!("guest {}: {e}", def.name),
            },
        };
        let _ = tx.send(msg);
    });
}

/// The Run form of a lab's profile: its first cell, on its first listed LUN
/// of the embedded target when it names one.
fn lab_form(p: &iolab_lab_core::profile::Profile, urls: &[String]) -> iolab_lab_core::run::RunForm {
    let mut form = iolab_lab_core::run::RunForm::from_profile(p);
    if form.url.is_none()
        && let Some(lun) = p.workload.luns.as_ref().and_then(|l| l.first())
    {
        form.url = urls
            .iter()
            .find(|u| u.ends_with(&format!("/{lun}")))
            .cloned();
    }
    form
}

/// The running target's URLs and portals on the Target screen.
fn show_target(state: &mut ConsoleState, t: &iolab_lab_core::lab::LabTarget) {
    state.target_urls = t.urls();
    state.portals = t.local_addrs().iter().map(|a| a.to_string()).collect();
}

/// What the Sessions screen's background work reports.
enum SessionsEvent {
    Discovered(Result<Vec<iolab_iscsi::initiator::DiscoveredTarget>, String>),
    LoggedIn(Result<(Arc<iolab_iscsi::initiator::Session>, sessions::SessionRow), String>),
    LoggedOut(String),
}

/// Logs in to `url` and reads what the Sessions screen shows of the session.
async fn log_in(
    url: iolab_iscsi::initiator::IscsiUrl,
    opts: iolab_iscsi::initiator::InitiatorOptions,
) -> Result<(Arc<iolab_iscsi::initiator::Session>, sessions::SessionRow), String> {
    let s = iolab_iscsi::initiator::Session::connect(&url, &opts)
        .await
        .map_err(|e| format!("login to {url}: {e}"))?;
    // Unit attentions of a fresh login first, as a SCSI host clears them.
    let _ = s.test_unit_ready().await;
    let luns = s.report_luns().await.map_err(|e| format!("{url}: {e}"))?;
    // LUN 0 may be a controller (tgt's) with no capacity.
    let capacity = s.capacity().await.ok();
    let row = sessions::SessionRow {
        url: url.to_string(),
        target: url.target.clone().unwrap_or_default(),
        luns,
        capacity,
        facts: s.facts(),
        initiator: opts.initiator_name.clone(),
    };
    Ok((Arc::new(s), row))
}

/// What a matrix run in the background reports.
enum MatrixEvent {
    Runner(iolab_lab_core::profile_run::RunnerEvent),
    Done(Result<iolab_profiles::Run, String>),
}

/// Sessions on other lab hosts, as their agents last reported them.
type RemoteSessions = Arc<std::sync::Mutex<Vec<(String, iolab_iscsi::target::SessionInfo)>>>;

/// What the Connections screen samples: the embedded target's sessions and
/// those a lab across hosts reports from its target's host.
struct ConsoleSource {
    registry: Option<Arc<iolab_iscsi::target::Registry>>,
    remote: RemoteSessions,
}

impl iolab_lab_core::sampler::SessionSource for ConsoleSource {
    fn sessions(&self) -> Vec<iolab_iscsi::target::SessionInfo> {
        self.labelled_sessions()
            .into_iter()
            .map(|(_, s)| s)
            .collect()
    }

    fn labelled_sessions(&self) -> Vec<(String, iolab_iscsi::target::SessionInfo)> {
        let mut out: Vec<_> = match &self.registry {
            Some(r) => r
                .sessions()
                .iter()
                .map(|s| (String::new(), s.info()))
                .collect(),
            None => Vec::new(),
        };
        out.extend(
            self.remote
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .cloned(),
        );
        out
    }
}

/// Runs a lab across hosts' matrix in the background: its target's
/// sessions on the target's host go into `remote` as they are sampled.
fn spawn_hosts_matrix(
    p: iolab_lab_core::profile::Profile,
    db: Option<std::path::PathBuf>,
    remote: RemoteSessions,
    notes: tokio::sync::mpsc::UnboundedSender<String>,
) -> tokio::sync::mpsc::UnboundedReceiver<MatrixEvent> {
    use iolab_lab_core::agent::{HostsEvent, HostsOptions, Side};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let body = p.to_toml();
        let events = tx.clone();
        let shown = remote.clone();
        let opts = HostsOptions { db, push: true };
        let r = iolab_lab_core::agent::run_across_hosts(&p, &body, &opts, move |e| match e {
            HostsEvent::Note(m) => {
                let _ = notes.send(m);
            }
            HostsEvent::Runner(r) => {
                let _ = events.send(MatrixEvent::Runner(r));
            }
            HostsEvent::Sessions {
                host,
                side: Side::Target,
                sessions,
            } => {
                *shown.lock().unwrap_or_else(|e| e.into_inner()) =
                    sessions.into_iter().map(|s| (host.clone(), s)).collect();
            }
            HostsEvent::Sessions { .. } | HostsEvent::CellTarget { .. } => {}
        })
        .await
        .map_err(|e| e.to_string());
        remote.lock().unwrap_or_else(|e| e.into_inner()).clear();
        let _ = tx.send(MatrixEvent::Done(r));
    });
    rx
}

/// Runs a matrix profile in the background.
fn spawn_matrix(
    p: iolab_lab_core::profile::Profile,
) -> tokio::sync::mpsc::UnboundedReceiver<MatrixEvent> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let body = p.to_toml();
        let events = tx.clone();
        let r = iolab_lab_core::profile_run::run_profile(&p, &body, move |e| {
            let _ = events.send(MatrixEvent::Runner(e));
        })
        .await
        .map_err(|e| e.to_string());
        let _ = tx.send(MatrixEvent::Done(r));
    });
    rx
}

fn on_matrix_event(state: &mut ConsoleState, notebook: &mut notebook::Notebook, ev: MatrixEvent) {
    use iolab_lab_core::profile_run::RunnerEvent;
    let Some(m) = state.run.matrix.as_mut() else {
        return;
    };
    match ev {
        MatrixEvent::Runner(RunnerEvent::CellStarted { index, .. }) => m.current = Some(index),
        MatrixEvent::Runner(RunnerEvent::CellDone { index, cell }) => {
            if let Some(c) = m.cells.get_mut(index) {
                c.result = Some(cell);
            }
        }
        MatrixEvent::Runner(_) => {}
        MatrixEvent::Done(Ok(run)) => {
            m.finished = true;
            match notebook.add_run(&run) {
                Ok(id) => {
                    m.run_id = Some(id);
                    state.status = format!("matrix stored as run #{id}");
                    notebook.refresh(&mut state.notebook);
                }
                Err(e) => state.status = format!("matrix not stored: {e}"),
            }
        }
        MatrixEvent::Done(Err(e)) => {
            state.status = format!("matrix failed: {e}");
            m.error = Some(e);
        }
    }
}

/// Runs the console until `q`: on the lab of `profile` (a built-in or saved
/// profile's name, or a profile file), or on the embedded default lab.
pub async fn run(
    db: Option<&std::path::Path>,
    profile: Option<&str>,
    metrics: Option<std::net::SocketAddr>,
) -> anyhow::Result<()> {
    let mut lab = Lab::default();
    let mut state = ConsoleState::default();
    let notebook = notebook::Notebook::open(db, &mut state.notebook);
    let base = match profile {
        Some(name) => notebook.profile(name).map_err(|e| anyhow::anyhow!(e))?,
        None => state::default_lab_profile(),
    };
    let deps = apply::Deps {
        notebook,
        pci_root: iolab_pci::Sysfs::default(),
        pci_kernel: Box::new(iolab_pci::RealKernel),
        tune_host: Box::new(iolab_lab_core::tuning::Namespace::current()),
        tune_scope: iolab_lab_core::tuning::scope(None),
    };
    let mut run_started_ms = 0i64;
    state.network.profiles = tuning::profile_names();
    let (bg_tx, mut bg_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    let (rows_tx, mut rows_rx) = tokio::sync::mpsc::unbounded_channel::<Vec<state::GuestRow>>();
    let mut matrix_events: Option<tokio::sync::mpsc::UnboundedReceiver<MatrixEvent>> = None;
    let spans_hosts = base.roles.clone();
    if let Some(roles) = &spans_hosts {
        // The target belongs on its host: the matrix (M) starts it there.
        state.status = format!(
            "lab {} spans hosts: target on {}, initiator on {}; M on the Run screen runs its matrix there (over ssh)",
            base.name, roles.target, roles.initiator
        );
    } else if let Some(cfg) = base.target.clone() {
        match lab.start_target(cfg).await {
            Ok(t) => {
                state.editor.config = Some(t.config.clone());
                show_target(&mut state, t);
                state.status = format!("embedded target ready: {}", state.target_urls.join(" "));
            }
            Err(e) => state.status = format!("lab {}: the target failed to start: {e}", base.name),
        }
    } else {
        state.status = format!(
            "lab {}: no embedded target; runs go to {}",
            base.name,
            base.initiator.url.as_deref().unwrap_or("-")
        );
    }
    state.run.form = lab_form(&base, &state.target_urls);
    if let Some(t) = &base.tuning {
        state.network.profiles.retain(|n| *n != t.name);
        state.network.profiles.insert(0, t.name.clone());
        state.network.lab_tuning = Some(t.clone());
        state.network.premarked = t.interfaces.keys().cloned().collect();
    }
    state.guests.lab = base.guests.clone();
    state.lab = state::LabState::opened(base, state.run.form.clone());
    let (sessions_tx, mut sessions_rx) = tokio::sync::mpsc::unbounded_channel::<SessionsEvent>();
    let mut initiator_sessions: Vec<Arc<iolab_iscsi::initiator::Session>> = Vec::new();
    if let Some(p) = state.portals.first() {
        state.sessions = sessions::SessionsView::new(p);
    }
    let (applied_tx, mut applied_rx) = tokio::sync::mpsc::unbounded_channel::<
        Result<(iolab_iscsi::ServerConfig, iolab_iscsi::target::Changes), String>,
    >();
    let remote: RemoteSessions = Arc::default();
    let source: Arc<dyn iolab_lab_core::sampler::SessionSource> = Arc::new(ConsoleSource {
        registry: lab.target.as_ref().map(|t| t.target.registry().clone()),
        remote: remote.clone(),
    });
    let _metrics = match metrics {
        Some(addr) => {
            let r = lab.target.as_ref().map(|t| t.target.registry().clone());
            // The exporter also sees connections that just ended (final counters).
            let exported = match &r {
                Some(r) => iolab_lab_core::metrics::registry_source(r.clone()),
                None => source.clone(),
            };
            let extra: iolab_lab_core::metrics::Extra = Arc::new(move || match &r {
                Some(r) => iolab_lab_core::metrics::target_extra(r),
                None => iolab_lab_core::metrics::host(),
            });
            let (bound, task) = iolab_lab_core::metrics::serve(addr, exported, extra)
                .await
                .with_context(|| format!("serving metrics on {addr}"))?;
            state.status = format!("{}; metrics http://{bound}/metrics", state.status);
            Some(task)
        }
        None => None,
    };
    let mut snapshots = Sampler::spawn(source, DEFAULT_HZ);
    // Rates of a run's connections as its initiator counts them.
    let mut initiator_sampler = Sampler::new();

    let (mut term, _guard) = setup()?;
    let mut events = EventStream::new();
    let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut redraw = tokio::time::interval(Duration::from_millis(250));
    let mut run_events: Option<
        tokio::sync::mpsc::UnboundedReceiver<iolab_lab_core::run::RunEvent>,
    > = None;
    let mut console = apply::Console { state, deps };
    loop {
        let apply::Console { state, deps } = &mut console;
        term.draw(|f| render::render(f, state))?;
        tokio::select! {
            _ = redraw.tick() => {
                if state.tab == state::Tab::Guests {
                    state.guests.serial = state
                        .guests
                        .guests
                        .get(state.guests.cursor)
                        .and_then(|g| iolab_lab_core::guest::lifecycle::paths(&g.def.name).ok())
                        .map(|p| serial_tail(&p.serial(), SERIAL_LINES))
                        .unwrap_or_default();
                }
            }
            _ = sigterm.recv() => break,
            Some(ev) = async { match matrix_events.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                on_matrix_event(state, &mut deps.notebook, ev);
            }
            Some(rows) = rows_rx.recv() => {
                let g = &mut state.guests;
                g.guests = rows;
                g.cursor = g.cursor.min(g.guests.len().saturating_sub(1));
            }
            Some(msg) = bg_rx.recv() => {
                state.status = msg;
                scan_guests(&deps.notebook, &state.current_lab(), &rows_tx);
            }
            changed = snapshots.changed() => {
                if changed.is_ok() {
                    let snap = snapshots.borrow_and_update().clone();
                    state.on_snapshot(snap.clone());
                    state.editor.sessions = snap.sessions.iter().map(|s| s.info.target.clone()).collect();
                }
            }
            Some(ev) = sessions_rx.recv() => {
                let v = &mut state.sessions;
                v.busy = None;
                match ev {
                    SessionsEvent::Discovered(Ok(t)) => {
                        v.error = None;
                        v.target_cursor = v.target_cursor.min(t.len().saturating_sub(1));
                        state.status = format!("{} target(s) offered", t.len());
                        v.discovered = t;
                    }
                    SessionsEvent::LoggedIn(Ok((s, row))) => {
                        v.error = None;
                        state.status = format!("logged in to {} (TSIH {}, {} connection(s))", row.target, row.facts.tsih, row.facts.connections.len());
                        initiator_sessions.push(s);
                        v.sessions.push(row);
                        v.session_cursor = v.sessions.len() - 1;
                    }
                    SessionsEvent::Discovered(Err(e)) | SessionsEvent::LoggedIn(Err(e)) => v.error = Some(e),
                    SessionsEvent::LoggedOut(m) => state.status = m,
                }
            }
            Some(r) = applied_rx.recv() => match r {
                Ok((cfg, changes)) => {
                    state.status = if changes.is_empty() {
                        "target: nothing changed".into()
                    } else {
                        format!("target changed: {}", changes.summary().join("; "))
                    };
                    state.editor.applied(Ok(cfg.clone()));
                    if let Some(t) = lab.target.as_mut() {
                        t.config = cfg;
                        show_target(state, t);
                    }
                }
                Err(e) => {
                    state.status = format!("target not changed: {e}");
                    state.editor.applied(Err(e));
                }
            },
            Some(ev) = async { match run_events.as_mut() { Some(rx) => rx.recv().await, None => std::future::pending().await } } => {
                let granted = match &state.run.phase {
                    state::RunPhase::Running { connections, .. } => *connections,
                    _ => state.run.form.connections as usize,
                };
                if let (iolab_lab_core::run::RunEvent::Done(report), Some(url)) = (&ev, state.run.url(&state.target_urls)) {
                    let per_session = granted / state.run.form.sessions.max(1) as usize;
                    let series = std::mem::take(&mut state.run.series);
                    let record = state.run.form.record(&url, run_started_ms, per_session.max(1), report, series);
                    match deps.notebook.add_run(&record) {
                        Ok(id) => {
                            state.status = format!("run stored as #{id}");
                            deps.notebook.refresh(&mut state.notebook);
                            state.notebook.selected = state.notebook.runs.len().saturating_sub(1);
                            state.notebook.shown = deps.notebook.run(id).ok();
                        }
                        Err(e) => state.status = format!("run not stored: {e}"),
                    }
                }
                if let iolab_lab_core::run::RunEvent::Sample(infos) = &ev {
                    state.run.initiator = Arc::new(initiator_sampler.sample(infos.clone(), std::time::Instant::now()));
                    let snap = state.snapshot.clone();
                    state.run.observe(&snap);
                }
                state.run.on_event(ev);
            }
            ev = events.next() => match ev {
                Some(Ok(ev @ (Event::Key(_) | Event::Mouse(_)))) => {
                    let action = match ev {
                        Event::Key(k) if k.kind == KeyEventKind::Release => Action::None,
                        Event::Key(k) if k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL) => break,
                        Event::Key(k) => state.on_key(k.code),
                        Event::Mouse(m) => state.on_mouse(m),
                        _ => Action::None,
                    };
                    match apply::apply(state, deps, action) {
                        apply::Applied::NotMine => {}
                        apply::Applied::Done => continue,
                        apply::Applied::RescanGuests => {
                            scan_guests(&deps.notebook, &state.current_lab(), &rows_tx);
                            continue;
                        }
                    }
                    match action {
                        Action::Quit => break,
                        Action::StartRun => match state.run.url(&state.target_urls) {
                            Some(url) => {
                                state.run.sampled.clear();
                                state.run.history.clear();
                                state.run.series.clear();
                                state.run.phase = state::RunPhase::Connecting;
                                run_started_ms = iolab_profiles::time::now_ms();
                                let mut form = state.run.form.clone();
                                let login = match (state.sessions.credentials_for(&url), iolab_iscsi::initiator::IscsiUrl::parse(&url, false)) {
                                    // A LUN of a session logged in on the Sessions screen: its credentials and name.
                                    (Some((chap, mutual, name)), Ok(mut u)) if u.chap.is_none() => {
                                        (u.chap, u.mutual) = (chap, mutual);
                                        form.initiator = form.initiator.or(Some(name));
                                        u.with_secrets()
                                    }
                                    _ => iolab_lab_core::run::login_url(&url, state.editor.config.as_ref(), form.initiator.as_deref()),
                                };
                                state.run.measured_by = if state.target_urls.contains(&url) {
                                    state::MeasuredBy::Target
                                } else {
                                    state::MeasuredBy::Initiator
                                };
                                initiator_sampler = Sampler::new();
                                state.run.initiator = Default::default();
                                run_events = Some(iolab_lab_core::run::spawn_run(login, form));
                                state.status = format!("run started against {url}");
                            }
                            None => state.status = "no embedded target to run against".into(),
                        },
                        Action::StartMatrix if spans_hosts.is_some() => {
                            let p = state.current_lab();
                            state.run.matrix = Some(state::MatrixView::of(&p));
                            let hosts = p.roles.as_ref().map(|r| format!("{} -> {}", r.initiator, r.target)).unwrap_or_default();
                            matrix_events = Some(spawn_hosts_matrix(p, db.map(std::path::Path::to_path_buf), remote.clone(), bg_tx.clone()));
                            state.status = format!("matrix started across hosts ({hosts})");
                        }
                        Action::StartMatrix => match state.run.url(&state.target_urls) {
                            Some(url) => {
                                let login = iolab_lab_core::run::login_url(&url, state.editor.config.as_ref(), state.run.form.initiator.as_deref());
                                let p = state.run.form.matrix_profile(&login);
                                state.run.matrix = Some(state::MatrixView::of(&p));
                                matrix_events = Some(spawn_matrix(p));
                                state.status = format!("matrix started against {url}");
                            }
                            None => state.status = "no embedded target to run against".into(),
                        },
                        Action::ScanGuests => scan_guests(&deps.notebook, &state.current_lab(), &rows_tx),
                        Action::StartGuest(i) => guest_op(state, i, true, &bg_tx),
                        Action::StopGuest(i) => guest_op(state, i, false, &bg_tx),
                        Action::ApplyTarget => match (state.editor.proposed.clone(), lab.target.as_ref()) {
                            (Some(cfg), Some(t)) => {
                                let target = t.target.clone();
                                let tx = applied_tx.clone();
                                tokio::spawn(async move {
                                    let r = target.reconfigure(cfg.clone()).await;
                                    let _ = tx.send(r.map(|c| (cfg, c)).map_err(|e| e.to_string()));
                                });
                            }
                            _ => state.editor.applied(Err("the embedded target is not running".into())),
                        },
                        Action::Discover => {
                            let v = &mut state.sessions;
                            match (v.portal_url(), v.options()) {
                                (Ok(url), Ok(opts)) => {
                                    v.busy = Some(format!("discovering {url}..."));
                                    let tx = sessions_tx.clone();
                                    tokio::spawn(async move {
                                        let r = iolab_iscsi::initiator::discover(&url, &opts).await.map_err(|e| format!("discovery on {url}: {e}"));
                                        let _ = tx.send(SessionsEvent::Discovered(r));
                                    });
                                }
                                (Err(e), _) | (_, Err(e)) => v.error = Some(e),
                            }
                        }
                        Action::Login(i) => {
                            let v = &mut state.sessions;
                            let url = v.discovered.get(i).map(|t| v.login_url(t));
                            match (url, v.options()) {
                                (Some(Ok(url)), Ok(opts)) => {
                                    v.busy = Some(format!("logging in to {url}..."));
                                    let tx = sessions_tx.clone();
                                    tokio::spawn(async move {
                                        let _ = tx.send(SessionsEvent::LoggedIn(log_in(url, opts).await));
                                    });
                                }
                                (Some(Err(e)), _) | (_, Err(e)) => v.error = Some(e),
                                (None, _) => {}
                            }
                        }
                        Action::Logout(i) => {
                            if i < initiator_sessions.len() {
                                let s = initiator_sessions.remove(i);
                                let row = state.sessions.sessions.remove(i);
                                let v = &mut state.sessions;
                                v.session_cursor = v.session_cursor.min(v.sessions.len().saturating_sub(1));
                                let tx = sessions_tx.clone();
                                tokio::spawn(async move {
                                    let msg = match Arc::try_unwrap(s) {
                                        Ok(s) => match s.logout().await {
                                            Ok(()) => format!("logged out of {}", row.target),
                                            Err(e) => format!("logout of {}: {e}", row.target),
                                        },
                                        // A run still uses it: it ends with the run.
                                        Err(_) => format!("{}: the session ends when its last user lets go", row.target),
                                    };
                                    let _ = tx.send(SessionsEvent::LoggedOut(msg));
                                });
                            }
                        }
                        // The synchronous ones, done by apply::apply above.
                        Action::ShowRun(_) | Action::SetBaseline(_) | Action::LoadProfile(_)
                        | Action::PlanTuning | Action::ApplyTuning | Action::RevertTuning
                        | Action::ScanDevices | Action::PlanBind(_) | Action::Bind(_)
                        | Action::PlanGive(_) | Action::Give(..) | Action::Reattach(_)
                        | Action::SaveLab | Action::None => {}
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    state.status = format!("terminal input error: {e}");
                }
                None => break,
            },
        }
    }
    drop(term);
    lab.stop_target();
    Ok(())
}

//! Runs a profile's workload matrix: starts its target when it has one, logs
//! in for every cell, runs the workload, samples every connection at the
//! statistics bus's rate, and returns the run record for the notebook.
//! Tuning is applied around this by the caller (it needs the notebook).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use iolab_iscsi::Target;
use iolab_iscsi::initiator::Session;
use iolab_profiles::time::now_ms;
use iolab_profiles::{Cell, Run, SeriesPoint};

use crate::error::LabError;
use crate::profile::{CellPlan, InitiatorKind, Profile};
use crate::sampler::DEFAULT_INTERVAL;
use crate::series::Recorder;
use crate::workload::{self, Mode, Progress, Report, Workload};

/// What a profile run reports while it goes.
#[derive(Debug, Clone)]
pub enum RunnerEvent {
    /// The profile's own target listens here.
    TargetStarted(SocketAddr),
    CellStarted {
        index: usize,
        total: usize,
        plan: CellPlan,
        /// Connections per session the target granted.
        granted: usize,
    },
    Heartbeat {
        index: usize,
        progress: Progress,
    },
    CellDone {
        index: usize,
        cell: Cell,
    },
}

pub fn mode_name(m: Mode) -> &'static str {
    match m {
        Mode::Read => "read",
        Mode::Write => "write",
        Mode::Rw => "rw",
    }
}

/// The sessions of the cell running now, as the initiator counts them, and
/// the final counters of earlier cells' sessions: a session source for a
/// metrics exporter over a whole profile run.
#[derive(Clone, Default)]
pub struct LiveSessions(Arc<std::sync::Mutex<Live>>);

/// A cell's sessions and the initiator name they logged in with.
type CellSessions = (Arc<Vec<Session>>, String);

#[derive(Default)]
struct Live {
    now: Option<CellSessions>,
    /// Sessions of finished cells as they ended (the last few).
    ended: Vec<iolab_iscsi::SessionInfo>,
}

/// Finished cells' sessions kept for the exporter.
const ENDED_KEPT: usize = 64;

impl LiveSessions {
    fn set(&self, v: Option<CellSessions>) {
        let mut live = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((list, name)) = live.now.take() {
            live.ended.extend(list.iter().map(|s| s.info(&name)));
            let extra = live.ended.len().saturating_sub(ENDED_KEPT);
            live.ended.drain(..extra);
        }
        live.now = v;
    }
}

impl crate::sampler::SessionSource for LiveSessions {
    fn sessions(&self) -> Vec<iolab_iscsi::SessionInfo> {
        let live = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let mut all = live.ended.clone();
        if let Some((list, name)) = &live.now {
            all.extend(list.iter().map(|s| s.info(name)));
        }
        all
    }
}

/// Runs every cell of `profile` (whose text is `body`, kept in the record).
pub async fn run_profile(
    profile: &Profile,
    body: &str,
    on: impl FnMut(RunnerEvent),
) -> Result<Run, LabError> {
    run_profile_live(profile, body, on, &LiveSessions::default()).await
}

/// [`run_profile`], showing each cell's sessions in `live` while it runs.
pub async fn run_profile_live(
    profile: &Profile,
    body: &str,
    mut on: impl FnMut(RunnerEvent),
    live: &LiveSessions,
) -> Result<Run, LabError> {
    let problems = profile.problems();
    if !problems.is_empty() {
        return Err(LabError::Profile(problems.join("; ")));
    }
    let started_ms = now_ms();
    let target = match &profile.target {
        Some(cfg) => {
            let t = Target::start(cfg.clone()).await?;
            if let Some(a) = t.local_addrs().first() {
                on(RunnerEvent::TargetStarted(*a));
            }
            Some(t)
        }
        None => None,
    };
    let addr = target
        .as_ref()
        .and_then(|t| t.local_addrs().first().copied());
    let result = run_cells(profile, addr, &mut on, live).await;
    if let Some(t) = target {
        t.shutdown();
    }
    let (cells, series) = result?;
    let peer = profile.lun_url(0, addr).and_then(|u| u.host_ip());
    Ok(Run {
        id: None,
        profile_name: profile.name.clone(),
        profile_body: body.to_string(),
        started_ms,
        ended_ms: now_ms(),
        host: crate::host::facts(peer),
        cells,
        series,
        hosts: Vec::new(),
    })
}

async fn run_cells(
    profile: &Profile,
    addr: Option<SocketAddr>,
    on: &mut impl FnMut(RunnerEvent),
    live: &LiveSessions,
) -> Result<(Vec<Cell>, Vec<SeriesPoint>), LabError> {
    let plans = profile.workload.cells(profile.default_lun());
    let mut cells = Vec::new();
    let mut series = Vec::new();
    for (index, plan) in plans.iter().enumerate() {
        let total = plans.len();
        let done = run_cell(profile, plan, index, addr, live, |e| {
            on(match e {
                CellEvent::Started { granted } => RunnerEvent::CellStarted {
                    index,
                    total,
                    plan: *plan,
                    granted,
                },
                CellEvent::Progress { progress, .. } => RunnerEvent::Heartbeat { index, progress },
            })
        })
        .await?;
        on(RunnerEvent::CellDone {
            index,
            cell: done.cell.clone(),
        });
        cells.push(done.cell);
        series.extend(done.series);
    }
    Ok((cells, series))
}

/// What one cell reports while it runs.
pub enum CellEvent<'a> {
    /// Logged in; the target granted this many connections per session.
    Started { granted: usize },
    /// A heartbeat at the statistics bus's rate, with the cell's sessions.
    Progress {
        progress: Progress,
        sessions: &'a [Session],
    },
}

/// One finished cell: its table row and the initiator's per-connection series.
pub struct CellDone {
    pub cell: Cell,
    pub series: Vec<SeriesPoint>,
}

/// Runs cell `index` (`plan`) of `profile`: logs in, runs the workload,
/// samples every connection at the statistics bus's rate, logs out.
pub async fn run_cell(
    profile: &Profile,
    plan: &CellPlan,
    index: usize,
    addr: Option<SocketAddr>,
    live: &LiveSessions,
    mut on: impl FnMut(CellEvent<'_>),
) -> Result<CellDone, LabError> {
    let w = &profile.workload;
    let bad = |e: crate::profile::WorkloadError| LabError::Profile(e.to_string());
    let block_bytes = w.block_bytes().map_err(bad)?;
    let duration = w.duration().map_err(bad)?;
    let range_bytes = w.range_bytes().map_err(bad)?;
    let url = profile
        .lun_url(plan.lun, addr)
        .ok_or_else(|| LabError::Profile("no target to run on".into()))?;
    let load = Workload {
        mode: plan.mode,
        block_bytes,
        threads: w.threads,
        duration,
        pattern: w.pattern,
        verify: w.verify,
        range_bytes,
    };
    if plan.initiator == InitiatorKind::OpenIscsi {
        return kernel_cell(profile, plan, &url, load, on).await;
    }
    let opts = profile.initiator.options(plan.connections);
    let (sessions, shards) = workload::connect(&url, &opts, profile.initiator.sessions).await?;
    let granted = sessions[0].connection_count();
    on(CellEvent::Started { granted });
    let sessions = Arc::new(sessions);
    live.set(Some((sessions.clone(), opts.initiator_name.clone())));
    let mut sampler = Recorder::new(index as u32, &sessions);
    let report = workload::run(
        sessions.clone(),
        shards.as_ref(),
        load,
        DEFAULT_INTERVAL,
        |p| {
            sampler.sample(&sessions, p.elapsed);
            on(CellEvent::Progress {
                progress: p,
                sessions: &sessions,
            });
        },
    )
    .await;
    if let Ok(r) = &report {
        sampler.sample(&sessions, Duration::from_secs_f64(r.seconds));
    }
    live.set(None);
    if let Ok(list) = Arc::try_unwrap(sessions) {
        for s in list {
            let _ = s.logout().await;
        }
    }
    let report = passed(plan, granted, report?)?;
    Ok(CellDone {
        cell: cell_of(plan, granted, profile, block_bytes, &report),
        series: sampler.into_points(),
    })
}

/// The report of a cell with no I/O error and no verify mismatch, or the
/// cell's failure.
fn passed(plan: &CellPlan, connections: usize, report: Report) -> Result<Report, LabError> {
    if report.passed() {
        return Ok(report);
    }
    Err(LabError::CellFailed {
        mode: mode_name(plan.mode),
        lun: plan.lun,
        connections,
        errors: report.errors,
        mismatches: report.mismatches,
        first: report.first_error,
    })
}

/// A cell on the Linux kernel's initiator: iscsiadm logs in, the workload
/// runs on its disk with O_DIRECT, iscsiadm logs out. Its connection's
/// counters are the kernel's, so only the target's side has a series.
async fn kernel_cell(
    profile: &Profile,
    plan: &CellPlan,
    url: &iolab_iscsi::initiator::IscsiUrl,
    load: Workload,
    mut on: impl FnMut(CellEvent<'_>),
) -> Result<CellDone, LabError> {
    use crate::kernel_initiator::{self, KernelQueue};
    let q = KernelQueue {
        cmds_max: profile.initiator.queue_depth,
        queue_depth: profile.initiator.cmd_per_lun,
    };
    let disk = kernel_initiator::attach(url, q).await?;
    on(CellEvent::Started { granted: 1 });
    let block_bytes = load.block_bytes;
    let report = match workload::Device::open(&disk.device) {
        Ok(dev) => {
            workload::run_on(Arc::new(dev), load, DEFAULT_INTERVAL, |p| {
                on(CellEvent::Progress {
                    progress: p,
                    sessions: &[],
                })
            })
            .await
        }
        Err(e) => Err(e),
    };
    kernel_initiator::detach(disk).await;
    let report = passed(plan, 1, report?)?;
    let mut cell = cell_of(plan, 1, profile, block_bytes, &report);
    cell.initiator = plan.initiator.name().into();
    Ok(CellDone {
        cell,
        series: Vec::new(),
    })
}

/// A table cell from a workload report.
pub fn cell_of(plan: &CellPlan, granted: usize, p: &Profile, block_bytes: u32, r: &Report) -> Cell {
    let us = |ns: u64| ns as f64 / 1e3;
    Cell {
        initiator: String::new(),
        mode: mode_name(plan.mode).into(),
        lun: plan.lun,
        connections: granted as u32,
        sessions: p.initiator.sessions,
        block_bytes,
        threads: p.workload.threads,
        seconds: r.seconds,
        read_bytes: r.read.bytes,
        read_transfers: r.read.transfers,
        write_bytes: r.write.bytes,
        write_transfers: r.write.transfers,
        errors: r.errors,
        p50_us: us(r.latency.percentile(0.5)),
        p99_us: us(r.latency.percentile(0.99)),
        p999_us: us(r.latency.percentile(0.999)),
        max_us: us(r.latency.max_ns),
    }
}

//! Runs a workload with the embedded initiator in the background and reports
//! its progress as events, for the console (which must never block on it).

use std::sync::Arc;
use std::time::Duration;

use iolab_iscsi::initiator::{InitiatorOptions, IscsiUrl, Session};
use tokio::sync::mpsc;

use iolab_profiles::Run;

use crate::profile::{CellPlan, InitiatorSettings, PROFILE_FORMAT, Profile, WorkloadMatrix};
use crate::profile_run::cell_of;
use crate::workload::{self, Mode, Pattern, Progress, Report, Workload};

/// The run form: what a person picks on the Run screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunForm {
    pub mode: Mode,
    pub block_bytes: u32,
    pub threads: u32,
    pub seconds: u32,
    pub connections: u32,
    pub sessions: u32,
}

impl Default for RunForm {
    /// The seed's disktest settings, for a 10-second run.
    fn default() -> Self {
        RunForm {
            mode: Mode::Read,
            block_bytes: 256 * 1024,
            threads: 64,
            seconds: 10,
            connections: 1,
            sessions: 1,
        }
    }
}

impl RunForm {
    /// The form filled from a profile's first cell.
    pub fn from_profile(p: &Profile) -> RunForm {
        let w = &p.workload;
        let d = RunForm::default();
        RunForm {
            mode: w.modes.first().copied().unwrap_or(d.mode),
            block_bytes: w.block_bytes().unwrap_or(d.block_bytes),
            threads: w.threads,
            seconds: w
                .duration()
                .map(|t| t.as_secs().max(1) as u32)
                .unwrap_or(d.seconds),
            connections: w.connections.first().copied().unwrap_or(d.connections),
            sessions: p.initiator.sessions,
        }
    }

    /// The profile this form amounts to against `url` (kept with the stored run).
    pub fn profile(&self, url: &str) -> Profile {
        Profile {
            format: PROFILE_FORMAT,
            name: "console".into(),
            description: format!("a run from the console's Run screen against {url}"),
            tuning: None,
            target: None,
            initiator: InitiatorSettings {
                url: Some(url.into()),
                sessions: self.sessions,
                ..InitiatorSettings::default()
            },
            workload: WorkloadMatrix {
                modes: vec![self.mode],
                connections: vec![self.connections],
                luns: None,
                block_size: self.block_bytes.to_string(),
                threads: self.threads,
                time: format!("{}s", self.seconds),
                pattern: Pattern::Seq,
                verify: false,
                range: None,
            },
            guests: Vec::new(),
        }
    }

    /// The seed page's matrix with this form's block size, outstanding I/Os
    /// and time per cell: READ, WRITE and READ+WRITE at 1 to 4 connections.
    pub fn matrix_profile(&self, url: &str) -> Profile {
        let mut p = self.profile(url);
        p.name = "console-matrix".into();
        p.description = format!("the seed's matrix from the console's Run screen against {url}");
        p.workload.modes = vec![Mode::Read, Mode::Write, Mode::Rw];
        p.workload.connections = vec![1, 2, 3, 4];
        p
    }

    /// The run record of a finished console run.
    pub fn record(&self, url: &str, started_ms: i64, granted: usize, report: &Report) -> Run {
        let p = self.profile(url);
        let parsed = IscsiUrl::parse(url, false).ok();
        let plan = CellPlan {
            lun: parsed.as_ref().map_or(0, |u| u.lun),
            mode: self.mode,
            connections: self.connections,
        };
        let peer = parsed.as_ref().and_then(IscsiUrl::host_ip);
        Run {
            id: None,
            profile_name: p.name.clone(),
            profile_body: p.to_toml(),
            started_ms,
            ended_ms: iolab_profiles::time::now_ms(),
            host: crate::host::facts(peer),
            cells: vec![cell_of(&plan, granted, &p, self.block_bytes, report)],
            series: Vec::new(),
        }
    }
}

/// What a background run reports.
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// Logged in: the target session handles (TSIH) of the run's sessions.
    Started {
        tsihs: Vec<u16>,
        connections: usize,
    },
    Progress(Progress),
    Done(Report),
    Failed(String),
}

/// Starts a run against `url`; events arrive on the returned channel.
pub fn spawn_run(url: String, form: RunForm) -> mpsc::UnboundedReceiver<RunEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let r = async {
            let url = IscsiUrl::parse(&url, false)?;
            let opts = InitiatorOptions {
                connections: form.connections,
                ..InitiatorOptions::default()
            };
            let mut sessions = Vec::new();
            for _ in 0..form.sessions.max(1) {
                sessions.push(Session::connect(&url, &opts).await?);
            }
            let tsihs = sessions.iter().map(|s| s.facts().tsih).collect();
            let connections = sessions.iter().map(|s| s.connection_count()).sum();
            let _ = tx.send(RunEvent::Started { tsihs, connections });
            let w = Workload {
                mode: form.mode,
                block_bytes: form.block_bytes,
                threads: form.threads,
                duration: Duration::from_secs(form.seconds as u64),
                pattern: Pattern::Seq,
                verify: false,
                range_bytes: 0,
            };
            let sessions = Arc::new(sessions);
            let ptx = tx.clone();
            let report = workload::run(sessions.clone(), w, Duration::from_millis(500), move |p| {
                let _ = ptx.send(RunEvent::Progress(p));
            })
            .await?;
            // Let the statistics bus take one more sample of the final counters before logout.
            tokio::time::sleep(Duration::from_millis(600)).await;
            if let Ok(list) = Arc::try_unwrap(sessions) {
                for s in list {
                    let _ = s.logout().await;
                }
            }
            Ok::<Report, iolab_iscsi::IscsiError>(report)
        }
        .await;
        let _ = tx.send(match r {
            Ok(report) => RunEvent::Done(report),
            Err(e) => RunEvent::Failed(e.to_string()),
        });
    });
    rx
}

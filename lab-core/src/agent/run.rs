//! A profile run across hosts: the target served by one host's agent, the
//! workload run by another's initiator, tuning applied on each, and both
//! sides' per-connection counters sampled at the statistics bus's rate,
//! stored as one run with every host's facts.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use iolab_iscsi::target::SessionInfo;
use iolab_profiles::{Cell, HostFacts, Run, RunHost, SeriesPoint};
use tokio::sync::mpsc;

use super::client::{AgentError, AgentLink};
use super::proto::{Event, Reply, Request};
use super::ssh;
use crate::error::LabError;
use crate::profile::{HostSpec, Profile};
use crate::profile_run::RunnerEvent;
use crate::sampler::DEFAULT_INTERVAL;
use crate::series::{ConnCount, Recorder};
use crate::workload::Progress;

/// How a run across hosts reaches them.
#[derive(Debug, Clone, Default)]
pub struct HostsOptions {
    /// This host's notebook (for a `local` host's agent).
    pub db: Option<PathBuf>,
    /// Copy this iolab to hosts that have none or another build.
    pub push: bool,
}

/// What a run across hosts reports while it goes.
#[derive(Debug, Clone)]
pub enum HostsEvent {
    /// A line worth showing (connecting, copying, tuning, reverting).
    Note(String),
    Runner(RunnerEvent),
    /// One side's sessions on a host, at the statistics bus's rate.
    Sessions {
        host: String,
        side: Side,
        sessions: Vec<SessionInfo>,
    },
    /// Before a cell's `CellDone`: every connection the target saw in that
    /// cell (live or ended since, with its last counters), earlier cells'
    /// left out. The live polls can miss a connection that logged out
    /// between two of them; this cannot.
    CellTarget {
        index: usize,
        sessions: Vec<SessionInfo>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Target,
    Initiator,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Target => "target",
            Side::Initiator => "initiator",
        }
    }
}

/// Quick requests (facts, tuning, sessions) must answer within this.
const QUICK: Duration = Duration::from_secs(30);

struct HostLink {
    spec: HostSpec,
    link: AgentLink,
    /// What this run did there, for the message when the host drops.
    did: Vec<String>,
    tuned: bool,
    settings: Vec<(String, String)>,
    facts: HostFacts,
}

/// Runs `profile` (text `body`) on its `[roles]` hosts.
pub async fn run_across_hosts(
    profile: &Profile,
    body: &str,
    opts: &HostsOptions,
    mut on: impl FnMut(HostsEvent),
) -> Result<Run, LabError> {
    let problems = profile.problems();
    if !problems.is_empty() {
        return Err(LabError::Profile(problems.join("; ")));
    }
    let roles = profile
        .roles
        .clone()
        .ok_or_else(|| LabError::Profile("the profile has no [roles]".into()))?;
    let spec = |name: &str| profile.hosts.iter().find(|h| h.name == name).cloned();
    let mut names = vec![roles.target.clone()];
    if roles.initiator != roles.target {
        names.push(roles.initiator.clone());
    }
    let mut hosts: Vec<HostLink> = Vec::new();
    for name in &names {
        let Some(s) = spec(name) else {
            return Err(LabError::Profile(format!("no host named {name}")));
        };
        let how = match &s.guest {
            Some(g) => format!("guest {g}"),
            None => s.ssh.clone(),
        };
        on(HostsEvent::Note(format!("host {name}: connecting ({how})")));
        match ssh::connect(&s, opts.db.as_deref(), opts.push, |m| {
            on(HostsEvent::Note(m))
        })
        .await
        {
            Ok(link) => {
                on(HostsEvent::Note(format!(
                    "host {name}: {} agent ({})",
                    link.hello().version,
                    link.hello().hostname
                )));
                hosts.push(HostLink {
                    spec: s,
                    link,
                    did: Vec::new(),
                    tuned: false,
                    settings: Vec::new(),
                    facts: HostFacts::default(),
                })
            }
            Err(e) => {
                finish(hosts, opts, &mut on).await;
                return Err(e.into());
            }
        }
    }
    let started_ms = iolab_profiles::time::now_ms();
    let result = drive(profile, body, &roles, &mut hosts, &mut on).await;
    // Every host is put back, also after an error, before the error is told.
    let result = match result {
        Ok(r) => Ok(r),
        Err(e) => {
            let host = e.host().to_string();
            let did = hosts
                .iter()
                .find(|h| h.spec.name == host)
                .map(|h| h.did.clone())
                .unwrap_or_default();
            Err(LabError::HostFailed {
                host,
                did,
                cause: Box::new(e),
            })
        }
    };
    let run_hosts: Vec<RunHost> = hosts
        .iter()
        .map(|h| RunHost {
            name: h.spec.name.clone(),
            roles: [(&roles.target, "target"), (&roles.initiator, "initiator")]
                .iter()
                .filter(|(n, _)| **n == h.spec.name)
                .map(|(_, r)| r.to_string())
                .collect(),
            facts: h.facts.clone(),
            agent: format!("{} ({})", h.link.hello().version, h.link.hello().build),
            settings: h.settings.clone(),
        })
        .collect();
    let initiator_facts = hosts
        .iter()
        .find(|h| h.spec.name == roles.initiator)
        .map(|h| h.facts.clone())
        .unwrap_or_default();
    finish(hosts, opts, &mut on).await;
    let (cells, series) = result?;
    Ok(Run {
        id: None,
        profile_name: profile.name.clone(),
        profile_body: body.to_string(),
        started_ms,
        ended_ms: iolab_profiles::time::now_ms(),
        host: initiator_facts,
        cells,
        series,
        hosts: run_hosts,
    })
}

fn link_of<'a>(hosts: &'a mut [HostLink], name: &str) -> &'a mut HostLink {
    let i = hosts.iter().position(|h| h.spec.name == name).unwrap_or(0);
    &mut hosts[i]
}

async fn drive(
    profile: &Profile,
    body: &str,
    roles: &crate::profile::Roles,
    hosts: &mut [HostLink],
    on: &mut impl FnMut(HostsEvent),
) -> Result<(Vec<Cell>, Vec<SeriesPoint>), AgentError> {
    // Tuning first, on every host, as the run will see it.
    if let Some(t) = &profile.tuning {
        for h in hosts.iter_mut() {
            let r = h
                .link
                .call(
                    Request::Tune {
                        tuning: t.clone(),
                        ifaces: h.spec.ifaces.clone(),
                    },
                    QUICK,
                )
                .await?;
            if let Reply::Tuned {
                written,
                skipped,
                settings,
            } = r
            {
                h.tuned = true;
                h.did.push(format!(
                    "applied tuning {} ({} value(s) written)",
                    t.name,
                    written.len()
                ));
                on(HostsEvent::Note(format!(
                    "host {}: tuning {} applied: {} value(s) written, {} skipped",
                    h.spec.name,
                    t.name,
                    written.len(),
                    skipped.len()
                )));
                for (k, why) in skipped {
                    on(HostsEvent::Note(format!(
                        "  {}: skipped {k}: {why}",
                        h.spec.name
                    )));
                }
                h.settings = settings;
            }
        }
    }
    let Some(config) = profile.target.clone() else {
        return Err(AgentError::Refused {
            host: roles.target.clone(),
            message: "the profile has no [target]".into(),
        });
    };
    let t = link_of(hosts, &roles.target);
    let addrs = match t.link.call(Request::ServeTarget { config }, QUICK).await? {
        Reply::Serving { addrs } => addrs,
        _ => Vec::new(),
    };
    let addr = reachable(&t.spec, &addrs)?;
    t.did.push(format!("served the target on {addr}"));
    on(HostsEvent::Note(format!(
        "host {}: target listening on {addr}",
        t.spec.name
    )));
    on(HostsEvent::Runner(RunnerEvent::TargetStarted(addr)));
    for h in hosts.iter_mut() {
        if let Reply::Facts { facts } = h
            .link
            .call(
                Request::Facts {
                    peer: Some(addr.ip()),
                },
                QUICK,
            )
            .await?
        {
            h.facts = facts;
        }
    }
    let plans = profile.workload.cells(profile.default_lun());
    let duration = profile
        .workload
        .duration()
        .map_err(|e| AgentError::Refused {
            host: roles.initiator.clone(),
            message: e.to_string(),
        })?;
    let mut cells = Vec::new();
    let mut series = Vec::new();
    for (index, plan) in plans.iter().enumerate() {
        // Earlier cells' connections (ended, or not yet) are left out.
        let baseline = target_sessions(link_of(hosts, &roles.target)).await?;
        let old: Vec<(u32, u16)> = counts(&baseline).iter().map(|c| (c.0, c.1)).collect();
        let fresh = |s: &Sessions| -> Vec<ConnCount> {
            counts(s)
                .into_iter()
                .filter(|c| !old.contains(&(c.0, c.1)))
                .collect()
        };
        let mut target_rec = Recorder::from_counts(index as u32, Vec::new())
            .labelled(&roles.target, Side::Target.name());
        let (etx, mut erx) = mpsc::unbounded_channel();
        let request = Request::RunCell {
            profile: body.to_string(),
            index: index as u32,
            plan: *plan,
            target: addr,
        };
        let within = duration + Duration::from_secs(120);
        let started = Instant::now();
        let mut tick = tokio::time::interval(DEFAULT_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reply = {
            let (ini, tgt) = two(hosts, &roles.initiator, &roles.target);
            let call = ini.link.call_with_events(request, Some(etx), within);
            tokio::pin!(call);
            loop {
                tokio::select! {
                    r = &mut call => match r {
                        Ok(r) => break r,
                        // The initiator's cell fails when the target's host
                        // drops: that host is the one to name.
                        Err(e) => {
                            target_sessions(tgt).await?;
                            return Err(e);
                        }
                    },
                    Some(ev) = erx.recv() => match ev {
                        Event::CellStarted { granted } => on(HostsEvent::Runner(RunnerEvent::CellStarted {
                            index,
                            total: plans.len(),
                            plan: *plan,
                            granted: granted as usize,
                        })),
                        Event::Progress { elapsed_ms, sessions } => {
                            let progress = progress_of(elapsed_ms, &sessions);
                            on(HostsEvent::Sessions {
                                host: roles.initiator.clone(),
                                side: Side::Initiator,
                                sessions,
                            });
                            on(HostsEvent::Runner(RunnerEvent::Heartbeat { index, progress }));
                        }
                    },
                    _ = tick.tick() => {
                        let s = target_sessions(tgt).await?;
                        target_rec.sample_counts(fresh(&s), started.elapsed());
                        on(HostsEvent::Sessions {
                            host: roles.target.clone(),
                            side: Side::Target,
                            sessions: s.live,
                        });
                    }
                }
            }
        };
        // The target's counters after the logout: the cell's final figures
        // (its connections have ended by now, with their last counters).
        let s = target_sessions(link_of(hosts, &roles.target)).await?;
        target_rec.sample_counts(fresh(&s), started.elapsed());
        on(HostsEvent::CellTarget {
            index,
            sessions: cell_sessions(&s, &old),
        });
        let Reply::CellDone {
            cell, series: ini, ..
        } = reply
        else {
            return Err(AgentError::Malformed {
                host: roles.initiator.clone(),
                message: "a run_cell answered with something else than cell_done".into(),
            });
        };
        if index == 0 {
            link_of(hosts, &roles.initiator)
                .did
                .push("ran the workload".into());
        }
        on(HostsEvent::Runner(RunnerEvent::CellDone {
            index,
            cell: cell.clone(),
        }));
        series.extend(ini.into_iter().map(|p| SeriesPoint {
            host: roles.initiator.clone(),
            side: Side::Initiator.name().into(),
            ..p
        }));
        series.extend(target_rec.into_points());
        cells.push(cell);
    }
    Ok((cells, series))
}

/// The initiator's and the target's links (the same host may be both).
fn two<'a>(hosts: &'a [HostLink], a: &str, b: &str) -> (&'a HostLink, &'a HostLink) {
    let ia = hosts.iter().position(|h| h.spec.name == a).unwrap_or(0);
    let ib = hosts.iter().position(|h| h.spec.name == b).unwrap_or(0);
    (&hosts[ia], &hosts[ib])
}

/// Where the initiator host reaches the target: its bound address, or the
/// host's lab `address` when the target listens on a wildcard.
fn reachable(spec: &HostSpec, addrs: &[SocketAddr]) -> Result<SocketAddr, AgentError> {
    if let Some(p) = spec.portal {
        return Ok(p);
    }
    let Some(a) = addrs.first() else {
        return Err(AgentError::Refused {
            host: spec.name.clone(),
            message: "the target has no portal".into(),
        });
    };
    if !a.ip().is_unspecified() {
        return Ok(*a);
    }
    match spec.address {
        Some(ip) => Ok(SocketAddr::new(ip, a.port())),
        None => Err(AgentError::Refused {
            host: spec.name.clone(),
            message: format!(
                "the target listens on {a}: give the host an `address` for initiators to reach"
            ),
        }),
    }
}

/// A target's sessions, and its connections that ended lately.
struct Sessions {
    live: Vec<SessionInfo>,
    ended: Vec<SessionInfo>,
}

async fn target_sessions(h: &HostLink) -> Result<Sessions, AgentError> {
    match h.link.call(Request::TargetSessions, QUICK).await? {
        Reply::Sessions { sessions, ended } => Ok(Sessions {
            live: sessions,
            ended,
        }),
        _ => Ok(Sessions {
            live: Vec::new(),
            ended: Vec::new(),
        }),
    }
}

/// A target's connections as series counters, sessions by TSIH; a
/// connection both live and ended counts with its larger (later) figures.
fn counts(s: &Sessions) -> Vec<ConnCount> {
    let mut out: Vec<ConnCount> = Vec::new();
    for info in s.live.iter().chain(&s.ended) {
        for c in &info.connections {
            let (tsih, cid) = (u32::from(info.tsih), c.cid);
            let (r, w) = (c.stats.read_bytes, c.stats.write_bytes);
            match out.iter_mut().find(|x| x.0 == tsih && x.1 == cid) {
                Some(x) => {
                    x.2 = x.2.max(r);
                    x.3 = x.3.max(w);
                }
                None => out.push((tsih, cid, r, w)),
            }
        }
    }
    out
}

/// The sessions and connections of `s` not among `old` (by TSIH and CID);
/// a connection both live and ended is given once, as it ended.
fn cell_sessions(s: &Sessions, old: &[(u32, u16)]) -> Vec<SessionInfo> {
    let mut out: Vec<SessionInfo> = Vec::new();
    for info in s.ended.iter().chain(&s.live) {
        let tsih = u32::from(info.tsih);
        let conns = info
            .connections
            .iter()
            .filter(|c| !old.contains(&(tsih, c.cid)));
        let at = match out.iter().position(|o| o.tsih == info.tsih) {
            Some(i) => i,
            None => {
                out.push(SessionInfo {
                    connections: Vec::new(),
                    ..info.clone()
                });
                out.len() - 1
            }
        };
        for c in conns {
            if !out[at].connections.iter().any(|x| x.cid == c.cid) {
                out[at].connections.push(c.clone());
            }
        }
    }
    out.retain(|o| !o.connections.is_empty());
    for o in &mut out {
        o.connections.sort_by_key(|c| c.cid);
    }
    out
}

fn progress_of(elapsed_ms: u64, sessions: &[SessionInfo]) -> Progress {
    let mut p = Progress {
        elapsed: Duration::from_millis(elapsed_ms),
        ..Progress::default()
    };
    for c in sessions.iter().flat_map(|s| &s.connections) {
        p.read_bytes += c.stats.read_bytes;
        p.read_ios += c.stats.read_commands;
        p.write_bytes += c.stats.write_bytes;
        p.write_ios += c.stats.write_commands;
    }
    p
}

/// Asks `link`'s agent to put its host's tuning back, and says how it went.
async fn revert(link: &AgentLink, on: &mut impl FnMut(HostsEvent)) {
    match link.call(Request::Revert, QUICK).await {
        Ok(Reply::Reverted { restored }) => on(HostsEvent::Note(format!(
            "host {}: tuning reverted ({} value(s) restored)",
            link.host(),
            restored.len()
        ))),
        Ok(_) => {}
        Err(e) => on(HostsEvent::Note(format!("warning: {e}"))),
    }
}

/// Stops targets, reverts tuning and closes every link; a host whose agent
/// is gone is reached again to revert what it had applied.
async fn finish(hosts: Vec<HostLink>, opts: &HostsOptions, on: &mut impl FnMut(HostsEvent)) {
    for h in hosts {
        let name = h.spec.name.clone();
        if !h.link.has_ended() {
            if h.tuned {
                revert(&h.link, on).await;
            }
            if let Err(e) = h.link.close(QUICK).await {
                on(HostsEvent::Note(format!("warning: {e}")));
            }
        } else if h.tuned {
            // Its agent reverted on its way out if it could; make sure.
            on(HostsEvent::Note(format!(
                "host {name}: reconnecting to put its tuning back"
            )));
            match ssh::connect(&h.spec, opts.db.as_deref(), false, |_| {}).await {
                Ok(again) => {
                    revert(&again, on).await;
                    let _ = again.close(QUICK).await;
                }
                Err(e) => on(HostsEvent::Note(format!(
                    "warning: {e}; run `iolab tune revert` there to put its tuning back"
                ))),
            }
        }
        ssh::stop_master(&h.spec).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iolab_iscsi::target::ConnectionInfo;

    fn conn(cid: u16, read: u64) -> ConnectionInfo {
        let a: SocketAddr = "10.77.0.2:40000".parse().expect("addr");
        ConnectionInfo {
            cid,
            peer: a,
            local: a,
            params: Default::default(),
            mss: Some(8960),
            stats: iolab_iscsi::stats::ConnStatsSnapshot {
                read_bytes: read,
                ..Default::default()
            },
        }
    }

    fn session(tsih: u16, conns: Vec<ConnectionInfo>) -> SessionInfo {
        SessionInfo {
            tsih,
            isid: 1,
            initiator: "i".into(),
            target: "t".into(),
            queue_depth: 64,
            connections: conns,
        }
    }

    #[test]
    fn a_cell_keeps_its_ended_connections_and_drops_earlier_cells() {
        // cid 0 of session 2 logged out before the last live poll: only the
        // ended list still has it; session 1 belongs to the cell before.
        let s = Sessions {
            live: vec![session(2, vec![conn(1, 50), conn(2, 60)])],
            ended: vec![
                session(1, vec![conn(0, 10)]),
                session(2, vec![conn(0, 40), conn(1, 55)]),
            ],
        };
        let got = cell_sessions(&s, &[(1, 0)]);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].tsih, 2);
        let cids: Vec<(u16, u64)> = got[0]
            .connections
            .iter()
            .map(|c| (c.cid, c.stats.read_bytes))
            .collect();
        // cid 1 is given as it ended (55), not as last polled live (50).
        assert_eq!(cids, vec![(0, 40), (1, 55), (2, 60)]);
        assert!(cell_sessions(&s, &[(1, 0), (2, 0), (2, 1), (2, 2)]).is_empty());
    }
}

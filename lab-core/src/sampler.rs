//! The statistics bus: samples engine counters at a fixed rate into
//! per-connection and per-session series and publishes snapshots on a
//! tokio watch channel that the console reads without ever blocking.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use iolab_iscsi::SessionInfo;
use iolab_iscsi::stats::ConnStatsSnapshot;
use tokio::sync::watch;

use crate::chart::Point;

/// Default sampling rate.
pub const DEFAULT_HZ: f64 = 4.0;
/// [`DEFAULT_HZ`] as an interval.
pub const DEFAULT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(250);

/// One connection as of the last sample.
#[derive(Debug, Clone)]
pub struct ConnSample {
    /// The lab host whose engine counted it (empty: this host).
    pub host: String,
    pub tsih: u16,
    pub cid: u16,
    /// The peer's address, after `host: ` when the connection is on another host.
    pub peer: String,
    pub mss: Option<u32>,
    pub totals: ConnStatsSnapshot,
    /// MB/s (10^6 bytes) of payload read and written, over the last interval.
    pub read_mbps: f64,
    pub write_mbps: f64,
    pub iops: f64,
    /// The last interval's figures, for charts (`chart::History`).
    pub point: Point,
}

/// One session as of the last sample.
#[derive(Debug, Clone)]
pub struct SessionSample {
    pub info: SessionInfo,
    pub total_mbps: f64,
}

/// What the console draws: the lab's live state at one instant.
#[derive(Debug, Clone, Default)]
pub struct LabSnapshot {
    pub seq: u64,
    /// Seconds since the sampler's first sample.
    pub t: f64,
    pub host: crate::host::HostSample,
    pub sessions: Vec<SessionSample>,
    pub connections: Vec<ConnSample>,
    pub total_mbps: f64,
}

/// A source of session snapshots (the embedded target, or a fake in tests).
pub trait SessionSource: Send + Sync + 'static {
    fn sessions(&self) -> Vec<SessionInfo>;

    /// The sessions, each with the lab host it runs on (empty: this host).
    fn labelled_sessions(&self) -> Vec<(String, SessionInfo)> {
        self.sessions()
            .into_iter()
            .map(|s| (String::new(), s))
            .collect()
    }
}

impl<F: Fn() -> Vec<SessionInfo> + Send + Sync + 'static> SessionSource for F {
    fn sessions(&self) -> Vec<SessionInfo> {
        self()
    }
}

/// Keeps the series and turns counters into rates.
pub struct Sampler {
    prev: HashMap<(u16, u16), ConnStatsSnapshot>,
    first: Option<Instant>,
    last: Option<Instant>,
    seq: u64,
}

impl Default for Sampler {
    fn default() -> Self {
        Self::new()
    }
}

fn mb(bytes: u64, secs: f64) -> f64 {
    if secs <= 0.0 {
        0.0
    } else {
        bytes as f64 / secs / 1e6
    }
}

impl Sampler {
    pub fn new() -> Self {
        Sampler {
            prev: HashMap::new(),
            first: None,
            last: None,
            seq: 0,
        }
    }

    /// Turns one set of session infos taken at `now` into a snapshot.
    pub fn sample(&mut self, infos: Vec<SessionInfo>, now: Instant) -> LabSnapshot {
        self.sample_labelled(infos.into_iter().map(|i| (String::new(), i)).collect(), now)
    }

    /// [`sample`](Self::sample) of sessions on lab hosts: each connection
    /// is labelled with its host (in `host`, and before its peer).
    pub fn sample_labelled(
        &mut self,
        infos: Vec<(String, SessionInfo)>,
        now: Instant,
    ) -> LabSnapshot {
        let secs = self
            .last
            .map(|t| now.duration_since(t).as_secs_f64())
            .unwrap_or(0.0);
        self.last = Some(now);
        self.seq += 1;
        let t = now
            .duration_since(*self.first.get_or_insert(now))
            .as_secs_f64();
        let mut snap = LabSnapshot {
            seq: self.seq,
            t,
            ..Default::default()
        };
        let mut live = HashMap::new();
        for (host, info) in infos {
            let mut session_mbps = 0.0;
            for c in &info.connections {
                let key = (info.tsih, c.cid);
                let prev = self.prev.remove(&key).unwrap_or_else(|| c.stats.clone());
                let rd = mb(c.stats.read_bytes.saturating_sub(prev.read_bytes), secs);
                let wr = mb(c.stats.write_bytes.saturating_sub(prev.write_bytes), secs);
                let iops = if secs > 0.0 {
                    c.stats.commands.saturating_sub(prev.commands) as f64 / secs
                } else {
                    0.0
                };
                let lat = c.stats.latency.since(&prev.latency);
                session_mbps += rd + wr;
                snap.connections.push(ConnSample {
                    peer: if host.is_empty() {
                        c.peer.to_string()
                    } else {
                        format!("{host}: {}", c.peer)
                    },
                    host: host.clone(),
                    tsih: info.tsih,
                    cid: c.cid,
                    mss: c.mss,
                    totals: c.stats.clone(),
                    read_mbps: rd,
                    write_mbps: wr,
                    iops,
                    point: Point {
                        t,
                        read_mbps: rd,
                        write_mbps: wr,
                        iops,
                        p50_us: lat.percentile(0.5) as f64 / 1e3,
                        p99_us: lat.percentile(0.99) as f64 / 1e3,
                        in_flight: c.stats.in_flight as f64,
                    },
                });
                live.insert(key, c.stats.clone());
            }
            snap.total_mbps += session_mbps;
            snap.sessions.push(SessionSample {
                info,
                total_mbps: session_mbps,
            });
        }
        self.prev = live;
        snap
    }

    /// Samples `source` and the real host every `1/hz` seconds.
    pub fn spawn(source: Arc<dyn SessionSource>, hz: f64) -> watch::Receiver<Arc<LabSnapshot>> {
        Self::spawn_with(source, crate::host::default_probe(), hz)
    }

    /// Samples `source` and `host` every `1/hz` seconds and publishes on the returned channel.
    pub fn spawn_with(
        source: Arc<dyn SessionSource>,
        mut host: Box<dyn crate::host::HostProbe>,
        hz: f64,
    ) -> watch::Receiver<Arc<LabSnapshot>> {
        let (tx, rx) = watch::channel(Arc::new(LabSnapshot::default()));
        let period = Duration::from_secs_f64(1.0 / hz.clamp(0.1, 100.0));
        tokio::spawn(async move {
            let mut sampler = Sampler::new();
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let now = Instant::now();
                let secs = sampler
                    .last
                    .map(|t| now.duration_since(t).as_secs_f64())
                    .unwrap_or(0.0);
                let mut snap = sampler.sample_labelled(source.labelled_sessions(), now);
                snap.host = host.sample(secs);
                if tx.send(Arc::new(snap)).is_err() {
                    break;
                }
            }
        });
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use iolab_iscsi::negotiation::Params;
    use iolab_iscsi::target::ConnectionInfo;

    fn info(read_bytes: u64) -> SessionInfo {
        SessionInfo {
            tsih: 1,
            isid: 7,
            initiator: "iqn.x".into(),
            target: "iqn.t".into(),
            queue_depth: 64,
            connections: vec![ConnectionInfo {
                cid: 0,
                peer: "127.0.0.1:5000".parse().unwrap(),
                local: "127.0.0.1:3260".parse().unwrap(),
                params: Params::default(),
                mss: Some(65483),
                stats: ConnStatsSnapshot {
                    read_bytes,
                    commands: read_bytes / 1000,
                    ..Default::default()
                },
            }],
        }
    }

    #[test]
    fn rates_come_from_counter_deltas() {
        let mut s = Sampler::new();
        let t0 = Instant::now();
        s.sample(vec![info(0)], t0);
        let snap = s.sample(vec![info(50_000_000)], t0 + Duration::from_millis(500));
        assert_eq!(snap.connections.len(), 1);
        assert!((snap.connections[0].read_mbps - 100.0).abs() < 1e-6);
        assert!((snap.total_mbps - 100.0).abs() < 1e-6);
        assert!((snap.connections[0].iops - 100_000.0).abs() < 1e-3);
        assert!((snap.t - 0.5).abs() < 1e-9);
        assert_eq!(snap.connections[0].point.t, snap.t);
        assert!((snap.connections[0].point.read_mbps - 100.0).abs() < 1e-6);
    }

    #[test]
    fn connections_on_a_lab_host_carry_its_name() {
        let mut s = Sampler::new();
        let t0 = Instant::now();
        s.sample_labelled(vec![("lab-a".into(), info(0))], t0);
        let snap = s.sample_labelled(
            vec![("lab-a".into(), info(25_000_000))],
            t0 + Duration::from_millis(250),
        );
        let c = &snap.connections[0];
        assert_eq!(c.host, "lab-a");
        assert_eq!(c.peer, "lab-a: 127.0.0.1:5000");
        assert!((c.read_mbps - 100.0).abs() < 1e-6);
        // This host's own connections stay unlabelled.
        let snap = Sampler::new().sample(vec![info(0)], t0);
        assert_eq!(snap.connections[0].peer, "127.0.0.1:5000");
        assert!(snap.connections[0].host.is_empty());
    }
}

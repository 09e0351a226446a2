//! The per-connection series a run stores: byte counts between samples of
//! the initiator's sessions, at the statistics bus's rate.

use std::collections::BTreeMap;
use std::time::Duration;

use iolab_iscsi::initiator::Session;
use iolab_profiles::SeriesPoint;

/// Per-connection byte counts between samples, as the notebook stores them
/// (`SeriesPoint`s at the statistics bus's rate).
pub struct Recorder {
    cell: u32,
    /// Where the counts come from (host and side), empty for this host's initiator.
    host: String,
    side: String,
    /// (session, cid) → (read, write) bytes at the previous sample.
    last: Vec<((u32, u16), (u64, u64))>,
    seq: u32,
    points: Vec<SeriesPoint>,
}

/// One connection's byte counters: (session, cid, read bytes, write bytes).
pub type ConnCount = (u32, u16, u64, u64);

/// The counters of an initiator's sessions, sessions numbered by position.
pub fn initiator_counts(sessions: &[Session]) -> Vec<ConnCount> {
    let mut out = Vec::new();
    for (si, s) in sessions.iter().enumerate() {
        for (cid, st) in s.connection_stats() {
            out.push((si as u32, cid, st.read_bytes, st.write_bytes));
        }
    }
    out
}

impl Recorder {
    pub fn new(cell: u32, sessions: &[Session]) -> Self {
        Self::from_counts(cell, initiator_counts(sessions))
    }

    /// A recorder whose first counts are `counts` (what a cell starts from).
    pub fn from_counts(cell: u32, counts: Vec<ConnCount>) -> Self {
        let mut s = Recorder {
            cell,
            host: String::new(),
            side: String::new(),
            last: Vec::new(),
            seq: 0,
            points: Vec::new(),
        };
        s.take(counts, None);
        s
    }

    /// Labels every point with the host and side that counted it.
    pub fn labelled(mut self, host: &str, side: &str) -> Self {
        self.host = host.to_string();
        self.side = side.to_string();
        self
    }

    pub fn sample(&mut self, sessions: &[Session], at: Duration) {
        self.take(initiator_counts(sessions), Some(at));
    }

    /// A sample of counters read elsewhere (a target's sessions, a remote agent).
    pub fn sample_counts(&mut self, counts: Vec<ConnCount>, at: Duration) {
        self.take(counts, Some(at));
    }

    fn take(&mut self, counts: Vec<ConnCount>, at: Option<Duration>) {
        for (session, cid, read, write) in counts {
            let key = (session, cid);
            let now = (read, write);
            let prev = match self.last.iter_mut().find(|(k, _)| *k == key) {
                Some((_, v)) => std::mem::replace(v, now),
                None => {
                    self.last.push((key, now));
                    (0, 0)
                }
            };
            if let Some(at) = at {
                self.points.push(SeriesPoint {
                    host: self.host.clone(),
                    side: self.side.clone(),
                    cell: self.cell,
                    session: key.0,
                    cid: u32::from(cid),
                    seq: self.seq,
                    t_ms: at.as_millis() as u64,
                    read_bytes: now.0.saturating_sub(prev.0),
                    write_bytes: now.1.saturating_sub(prev.1),
                });
            }
        }
        if at.is_some() {
            self.seq += 1;
        }
    }
}

impl Recorder {
    /// The points taken so far.
    pub fn points(&self) -> &[SeriesPoint] {
        &self.points
    }
    pub fn into_points(self) -> Vec<SeriesPoint> {
        self.points
    }
}

/// A [`Recorder`] sampling a run's sessions at the statistics bus's rate in
/// a task of its own, for runs whose progress callback comes less often.
pub struct Recording {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<Recorder>,
    sessions: std::sync::Arc<Vec<Session>>,
    start: std::time::Instant,
}

impl Recording {
    /// Starts sampling `sessions` (cell `cell` of the run) now.
    pub fn start(sessions: std::sync::Arc<Vec<Session>>, cell: u32) -> Recording {
        let start = std::time::Instant::now();
        let mut rec = Recorder::new(cell, &sessions);
        let (stop, mut stopped) = tokio::sync::watch::channel(false);
        let list = sessions.clone();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(crate::sampler::DEFAULT_INTERVAL);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = tick.tick() => rec.sample(&list, start.elapsed()),
                    _ = stopped.changed() => break,
                }
            }
            rec
        });
        Recording {
            stop,
            task,
            sessions,
            start,
        }
    }

    /// Stops sampling, takes a last sample of the final counters and hands
    /// the points over; the task has let go of the sessions by then.
    pub async fn finish(self) -> Vec<SeriesPoint> {
        let _ = self.stop.send(true);
        match self.task.await {
            Ok(mut rec) => {
                rec.sample(&self.sessions, self.start.elapsed());
                rec.into_points()
            }
            Err(e) => {
                tracing::warn!("series recorder ended early: {e}");
                Vec::new()
            }
        }
    }
}

/// Each stored point with the seconds it covers: since the previous point
/// of the same connection in the same cell (from the cell's start for the
/// first). Points keep their order; each connection's must be in time order.
pub fn with_intervals<'a>(
    points: impl IntoIterator<Item = &'a SeriesPoint>,
) -> Vec<(&'a SeriesPoint, f64)> {
    let mut last: BTreeMap<(u32, u32, u32), u64> = BTreeMap::new();
    points
        .into_iter()
        .map(|p| {
            let prev = last.insert((p.cell, p.session, p.cid), p.t_ms).unwrap_or(0);
            (p, p.t_ms.saturating_sub(prev) as f64 / 1000.0)
        })
        .collect()
}

//! What a live chart draws: per-connection and host histories kept from the
//! statistics bus's snapshots, and the lines one metric over one window makes
//! of them. No terminal code: the console's `render/chart.rs` draws these.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::sampler::{ConnSample, DEFAULT_HZ, LabSnapshot};

/// One connection's figures over one sampling interval.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Seconds since the sampler started, at the end of the interval.
    pub t: f64,
    /// MB/s (10^6 bytes) of payload read and written.
    pub read_mbps: f64,
    pub write_mbps: f64,
    /// Commands completed per second.
    pub iops: f64,
    /// Latency percentiles of the commands completed in the interval (µs;
    /// 0 when none completed).
    pub p50_us: f64,
    pub p99_us: f64,
    /// Commands outstanding at the end of the interval.
    pub in_flight: f64,
}

/// What a chart plots.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Metric {
    #[default]
    Mbps,
    ReadMbps,
    WriteMbps,
    Iops,
    P50,
    P99,
    InFlight,
}

impl Metric {
    pub const ALL: [Metric; 7] = [
        Metric::Mbps,
        Metric::ReadMbps,
        Metric::WriteMbps,
        Metric::Iops,
        Metric::P50,
        Metric::P99,
        Metric::InFlight,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Metric::Mbps => "MB/s read+write",
            Metric::ReadMbps => "MB/s read",
            Metric::WriteMbps => "MB/s write",
            Metric::Iops => "IOPS",
            Metric::P50 => "latency p50 (µs)",
            Metric::P99 => "latency p99 (µs)",
            Metric::InFlight => "in flight",
        }
    }

    /// The y axis's unit.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Mbps | Metric::ReadMbps | Metric::WriteMbps => "MB/s",
            Metric::Iops => "IOPS",
            Metric::P50 | Metric::P99 => "µs",
            Metric::InFlight => "I/Os",
        }
    }

    pub fn of(self, p: &Point) -> f64 {
        match self {
            Metric::Mbps => p.read_mbps + p.write_mbps,
            Metric::ReadMbps => p.read_mbps,
            Metric::WriteMbps => p.write_mbps,
            Metric::Iops => p.iops,
            Metric::P50 => p.p50_us,
            Metric::P99 => p.p99_us,
            Metric::InFlight => p.in_flight,
        }
    }

    /// Whether a "total" line means anything (latency percentiles do not add up).
    pub fn adds_up(self) -> bool {
        !matches!(self, Metric::P50 | Metric::P99)
    }

    pub fn next(self) -> Metric {
        let i = Metric::ALL.iter().position(|m| *m == self).unwrap_or(0);
        Metric::ALL[(i + 1) % Metric::ALL.len()]
    }
}

/// How much time a chart shows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Window {
    #[default]
    S30,
    M2,
    M10,
}

impl Window {
    pub fn secs(self) -> f64 {
        match self {
            Window::S30 => 30.0,
            Window::M2 => 120.0,
            Window::M10 => 600.0,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Window::S30 => "30 s",
            Window::M2 => "2 min",
            Window::M10 => "10 min",
        }
    }
    pub fn next(self) -> Window {
        match self {
            Window::S30 => Window::M2,
            Window::M2 => Window::M10,
            Window::M10 => Window::S30,
        }
    }
}

/// The chart settings a screen keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChartSettings {
    pub metric: Metric,
    pub window: Window,
}

/// Samples kept per line: the longest window at the bus's rate, and a little.
pub const KEEP: usize = (600.0 * DEFAULT_HZ) as usize + 8;

/// A fixed-capacity ring of points.
#[derive(Debug, Clone, Default, PartialEq)]
struct Ring(VecDeque<Point>);

impl Ring {
    fn push(&mut self, p: Point) {
        if self.0.len() == KEEP {
            self.0.pop_front();
        }
        self.0.push_back(p);
    }
}

/// One connection's line.
#[derive(Debug, Clone, Default, PartialEq)]
struct Track {
    label: String,
    points: Ring,
    /// Sampler time it was last seen.
    seen: f64,
}

/// One plotted line: its label and (seconds before now, value) pairs.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// The lines one chart draws, with the bounds of its axes.
#[derive(Debug, Clone, PartialEq)]
pub struct Plot {
    pub lines: Vec<Line>,
    /// The x axis in seconds: live charts run from minus the window to 0
    /// (the newest sample), stored runs from 0 to their length.
    pub x: [f64; 2],
    pub y_max: f64,
}

impl Plot {
    /// The distinct line labels in order of appearance: a legend entry and
    /// a colour each (a stored run draws a connection's cells as separate
    /// lines under one label).
    pub fn legend(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for l in &self.lines {
            if !out.contains(&l.label.as_str()) {
                out.push(&l.label);
            }
        }
        out
    }

    /// The colour index of line `i`: its label's place in the legend.
    pub fn color_of(&self, i: usize) -> usize {
        let label = self.lines.get(i).map(|l| l.label.as_str());
        self.legend()
            .iter()
            .position(|l| Some(*l) == label)
            .unwrap_or(0)
    }
}

/// Connection and host histories from successive snapshots.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct History {
    conns: BTreeMap<(u16, u16), Track>,
    cpu: Vec<Ring>,
    nic: Vec<(String, Ring)>,
    now: f64,
    seq: u64,
}

fn cpu_point(t: f64, busy: f32) -> Point {
    Point {
        t,
        iops: busy as f64,
        ..Default::default()
    }
}

impl History {
    /// Forgets everything (a new run starts).
    pub fn clear(&mut self) {
        *self = History::default();
    }

    pub fn is_empty(&self) -> bool {
        self.conns.is_empty()
    }

    /// Takes the connections of `snap` that `keep` wants, and the host
    /// figures. A snapshot already taken (same sequence number) is skipped.
    pub fn observe(&mut self, snap: &LabSnapshot, keep: impl Fn(&ConnSample) -> bool) {
        if snap.seq == self.seq && self.seq != 0 {
            return;
        }
        self.seq = snap.seq;
        self.now = snap.t;
        for c in snap.connections.iter().filter(|c| keep(c)) {
            let t = self.conns.entry((c.tsih, c.cid)).or_default();
            t.label = format!("{}/{} {}", c.tsih, c.cid, c.peer);
            t.seen = snap.t;
            t.points.push(c.point);
        }
        let host = &snap.host;
        self.cpu.resize_with(host.cpu.len(), Ring::default);
        for (ring, busy) in self.cpu.iter_mut().zip(&host.cpu) {
            ring.push(cpu_point(snap.t, *busy));
        }
        for i in &host.ifaces {
            let at = match self.nic.iter().position(|(n, _)| *n == i.name) {
                Some(at) => at,
                None => {
                    self.nic.push((i.name.clone(), Ring::default()));
                    self.nic.len() - 1
                }
            };
            self.nic[at].1.push(Point {
                t: snap.t,
                read_mbps: i.rx_per_s / 1e6,
                write_mbps: i.tx_per_s / 1e6,
                ..Default::default()
            });
        }
    }

    /// Drops connections not seen for a whole `window` (the live screen's
    /// connections come and go; a run's are kept to its end).
    pub fn forget_older_than(&mut self, window: Window) {
        let now = self.now;
        self.conns.retain(|_, t| now - t.seen <= window.secs());
    }

    fn in_window<'a>(
        &self,
        ring: &'a Ring,
        window: Window,
        metric: Metric,
    ) -> impl Iterator<Item = (f64, f64)> + 'a {
        let now = self.now;
        ring.0
            .iter()
            .filter(move |p| now - p.t <= window.secs())
            .map(move |p| (p.t - now, metric.of(p)))
    }

    /// One line per connection and, when the metric adds up and there is
    /// more than one connection, the total.
    pub fn plot(&self, s: ChartSettings) -> Plot {
        let mut lines: Vec<Line> = self
            .conns
            .values()
            .map(|t| Line {
                label: t.label.clone(),
                points: self.in_window(&t.points, s.window, s.metric).collect(),
            })
            .filter(|l| !l.points.is_empty())
            .collect();
        if s.metric.adds_up() && lines.len() > 1 {
            let mut total: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
            for l in &lines {
                for (x, y) in &l.points {
                    // Samples of one tick share their time to the millisecond.
                    let e = total
                        .entry((x * 1000.0).round() as i64)
                        .or_insert((*x, 0.0));
                    e.1 += y;
                }
            }
            lines.push(Line {
                label: "total".into(),
                points: total.into_values().collect(),
            });
        }
        Plot {
            y_max: y_max(&lines),
            lines,
            x: [-s.window.secs(), 0.0],
        }
    }

    /// Busy % per core over the window.
    pub fn cpu_plot(&self, window: Window) -> Plot {
        let lines: Vec<Line> = self
            .cpu
            .iter()
            .enumerate()
            .map(|(i, r)| Line {
                label: format!("cpu{i}"),
                points: self.in_window(r, window, Metric::Iops).collect(),
            })
            .collect();
        Plot {
            lines,
            x: [-window.secs(), 0.0],
            y_max: 100.0,
        }
    }

    /// Receive and transmit MB/s of the busiest interface over the window.
    pub fn nic_plot(&self, window: Window) -> Plot {
        let busiest = self.nic.iter().max_by(|a, b| {
            let sum = |r: &Ring| r.0.iter().map(|p| p.read_mbps + p.write_mbps).sum::<f64>();
            sum(&a.1).total_cmp(&sum(&b.1))
        });
        let lines: Vec<Line> = busiest
            .map(|(name, r)| {
                vec![
                    Line {
                        label: format!("{name} rx"),
                        points: self.in_window(r, window, Metric::ReadMbps).collect(),
                    },
                    Line {
                        label: format!("{name} tx"),
                        points: self.in_window(r, window, Metric::WriteMbps).collect(),
                    },
                ]
            })
            .unwrap_or_default();
        Plot {
            y_max: y_max(&lines),
            lines,
            x: [-window.secs(), 0.0],
        }
    }
}

/// A y axis bound a little above the highest value, never 0.
fn y_max(lines: &[Line]) -> f64 {
    let m = lines
        .iter()
        .flat_map(|l| l.points.iter().map(|p| p.1))
        .fold(0.0, f64::max);
    if m <= 0.0 { 1.0 } else { m * 1.1 }
}

/// Per-connection MB/s lines of a stored run (its series at 4 Hz), cells
/// one after another on the time axis; each cell's part of a connection is
/// a line of its own (no line joins two cells), under the connection's label.
pub fn stored_plot(run: &iolab_profiles::Run, metric: Metric) -> Plot {
    // The initiator's counts: a run across hosts also stores the target's.
    let series: Vec<iolab_profiles::SeriesPoint> = run
        .series
        .iter()
        .filter(|p| p.by_initiator())
        .cloned()
        .collect();
    let mut lines: BTreeMap<(u32, u32, u32), Line> = BTreeMap::new();
    // Where each cell starts on the run's time axis.
    let mut cell_end: BTreeMap<u32, f64> = BTreeMap::new();
    for p in &series {
        let e = cell_end.entry(p.cell).or_insert(0.0);
        *e = e.max(p.t_ms as f64 / 1000.0);
    }
    let mut offset = BTreeMap::new();
    let mut at = 0.0;
    for (cell, len) in &cell_end {
        offset.insert(*cell, at);
        at += len;
    }
    // Each cell's sum over its connections, sample by sample.
    let mut totals: BTreeMap<(u32, u32), (f64, f64)> = BTreeMap::new();
    for (p, secs) in crate::series::with_intervals(&series) {
        let key = (p.cell, p.session, p.cid);
        // The last sample of a cell can cover a few milliseconds of a
        // queue draining: too short to be a rate worth drawing.
        if secs < MIN_DRAWN_S {
            continue;
        }
        let point = Point {
            read_mbps: p.read_bytes as f64 / secs / 1e6,
            write_mbps: p.write_bytes as f64 / secs / 1e6,
            ..Default::default()
        };
        let x = offset.get(&p.cell).copied().unwrap_or(0.0) + p.t_ms as f64 / 1000.0;
        let y = metric.of(&point);
        lines
            .entry(key)
            .or_insert_with(|| Line {
                label: format!("session {} cid {}", p.session, p.cid),
                points: Vec::new(),
            })
            .points
            .push((x, y));
        let t = totals.entry((p.cell, p.seq)).or_insert((x, 0.0));
        t.1 += y;
    }
    let mut lines: Vec<Line> = lines.into_values().collect();
    if metric.adds_up() {
        for cell in cell_end.keys() {
            let conns = lines_of_cell(&series, *cell);
            if conns > 1 {
                lines.push(Line {
                    label: "total".into(),
                    points: totals
                        .range((*cell, 0)..=(*cell, u32::MAX))
                        .map(|(_, v)| *v)
                        .collect(),
                });
            }
        }
    }
    Plot {
        y_max: y_max(&lines),
        lines,
        x: [0.0, at],
    }
}

/// Samples covering less than this are left out of stored-run charts.
const MIN_DRAWN_S: f64 = 0.1;

/// How many connections a cell of a stored series has.
fn lines_of_cell(series: &[iolab_profiles::SeriesPoint], cell: u32) -> usize {
    let mut seen: Vec<(u32, u32)> = series
        .iter()
        .filter(|p| p.cell == cell)
        .map(|p| (p.session, p.cid))
        .collect();
    seen.sort_unstable();
    seen.dedup();
    seen.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{HostSample, IfaceRate};

    fn conn(tsih: u16, cid: u16, mbps: f64, t: f64) -> ConnSample {
        ConnSample {
            host: String::new(),
            tsih,
            cid,
            peer: format!("127.0.0.1:{}", 50000 + cid),
            mss: None,
            totals: Default::default(),
            read_mbps: mbps,
            write_mbps: 0.0,
            iops: mbps * 4.0,
            point: Point {
                t,
                read_mbps: mbps,
                iops: mbps * 4.0,
                p50_us: 100.0,
                p99_us: 900.0,
                ..Default::default()
            },
        }
    }

    fn snap(seq: u64, t: f64, conns: Vec<ConnSample>) -> LabSnapshot {
        LabSnapshot {
            seq,
            t,
            host: HostSample {
                cpu: vec![50.0, 25.0],
                ifaces: vec![IfaceRate {
                    name: "lo".into(),
                    rx_per_s: 2e6,
                    tx_per_s: 2e6,
                }],
                ..Default::default()
            },
            connections: conns,
            ..Default::default()
        }
    }

    #[test]
    fn lines_per_connection_and_a_total_within_the_window() {
        let mut h = History::default();
        for i in 1..=200u64 {
            let t = i as f64 * 0.25;
            h.observe(
                &snap(i, t, vec![conn(1, 0, 100.0, t), conn(1, 1, 50.0, t)]),
                |_| true,
            );
        }
        let p = h.plot(ChartSettings::default());
        assert_eq!(p.lines.len(), 3);
        assert_eq!(p.lines[2].label, "total");
        // 30 s at 4 Hz, newest at x = 0.
        assert_eq!(p.lines[0].points.len(), 121);
        assert_eq!(p.lines[0].points.last(), Some(&(0.0, 100.0)));
        assert!(
            p.lines[2]
                .points
                .iter()
                .all(|(_, y)| (*y - 150.0).abs() < 1e-9)
        );
        assert!((p.y_max - 165.0).abs() < 1e-9);
        // Latency percentiles have no total.
        let lat = h.plot(ChartSettings {
            metric: Metric::P99,
            window: Window::M2,
        });
        assert_eq!(lat.lines.len(), 2);
        assert_eq!(lat.lines[0].points.len(), 200);
        // The same snapshot twice is one sample.
        h.observe(&snap(200, 50.0, vec![conn(1, 0, 1.0, 50.0)]), |_| true);
        assert_eq!(h.plot(ChartSettings::default()).lines[0].points.len(), 121);
        assert_eq!(h.cpu_plot(Window::S30).lines.len(), 2);
        assert_eq!(h.nic_plot(Window::S30).lines[0].label, "lo rx");
    }

    #[test]
    fn ended_connections_go_after_a_window() {
        let mut h = History::default();
        h.observe(&snap(1, 1.0, vec![conn(1, 0, 1.0, 1.0)]), |_| true);
        h.observe(&snap(2, 20.0, vec![conn(2, 0, 1.0, 20.0)]), |_| true);
        h.forget_older_than(Window::S30);
        assert_eq!(h.plot(ChartSettings::default()).lines.len(), 3);
        h.observe(&snap(3, 40.0, vec![conn(2, 0, 1.0, 40.0)]), |_| true);
        h.forget_older_than(Window::S30);
        let p = h.plot(ChartSettings::default());
        assert_eq!(p.lines.len(), 1);
        assert!(p.lines[0].label.starts_with("2/0"));
        // A filter keeps other sessions out.
        let mut only = History::default();
        only.observe(
            &snap(1, 1.0, vec![conn(1, 0, 1.0, 1.0), conn(2, 0, 1.0, 1.0)]),
            |c| c.tsih == 2,
        );
        assert_eq!(only.plot(ChartSettings::default()).lines.len(), 1);
    }

    #[test]
    fn stored_series_become_mbps_lines_cell_after_cell() {
        use iolab_profiles::{Run, SeriesPoint};
        let pt = |cell, cid, t_ms, read_bytes| SeriesPoint {
            cell,
            session: 0,
            cid,
            seq: 0,
            t_ms,
            read_bytes,
            write_bytes: 0,
            ..SeriesPoint::default()
        };
        let run = Run {
            series: vec![
                pt(0, 0, 250, 25_000_000),
                pt(0, 0, 500, 25_000_000),
                pt(1, 0, 250, 50_000_000),
                pt(1, 1, 250, 50_000_000),
                // A cell's last sample of 20 ms is not drawn.
                pt(1, 1, 270, 1_000),
            ],
            ..Default::default()
        };
        let p = stored_plot(&run, Metric::ReadMbps);
        // Cell 0's cid 0, then cell 1's cid 0 and cid 1: no line across
        // cells; cell 1 has two connections, so a total too.
        assert_eq!(p.lines.len(), 4);
        assert_eq!(p.lines[0].points, vec![(0.25, 100.0), (0.5, 100.0)]);
        assert_eq!(p.lines[1].points, vec![(0.75, 200.0)]);
        assert_eq!(p.lines[2].points, vec![(0.75, 200.0)]);
        assert_eq!(p.lines[3].label, "total");
        assert_eq!(p.lines[3].points, vec![(0.75, 400.0)]);
        assert_eq!(
            p.legend(),
            vec!["session 0 cid 0", "session 0 cid 1", "total"]
        );
        assert_eq!((p.color_of(0), p.color_of(1), p.color_of(2)), (0, 0, 1));
        assert_eq!(p.x, [0.0, 0.77]);
    }
}

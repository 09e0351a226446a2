//! Live counters of connections and sessions. The data path updates them with
//! relaxed atomics (no lock); samplers read consistent-enough snapshots.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Sub-buckets per power of two in the latency histogram.
const SUB: usize = 4;
const BUCKETS: usize = 64 * SUB;

/// A lock-free log-linear latency histogram in nanoseconds (about 19% resolution).
pub struct LatencyHistogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        LatencyHistogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }
}

fn bucket_of(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let log = 63 - ns.leading_zeros() as usize;
    let frac = ((ns >> (log - 2)) & (SUB as u64 - 1)) as usize;
    (log * SUB + frac).min(BUCKETS - 1)
}

fn bucket_upper(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let log = i / SUB;
    if log < 2 {
        // Indices SUB..2*SUB are never used (values below 4 map to 0..SUB).
        return (SUB - 1) as u64;
    }
    let frac = (i % SUB) as u64;
    (1u64 << log)
        .saturating_add((frac + 1) << (log - 2))
        .saturating_sub(1)
}

impl LatencyHistogram {
    pub fn record(&self, d: Duration) {
        let ns = d.as_nanos().min(u64::MAX as u128) as u64;
        self.buckets[bucket_of(ns)].fetch_add(1, Relaxed);
        self.count.fetch_add(1, Relaxed);
        self.sum_ns.fetch_add(ns, Relaxed);
        self.max_ns.fetch_max(ns, Relaxed);
    }

    pub fn snapshot(&self) -> LatencySnapshot {
        LatencySnapshot {
            buckets: self.buckets.iter().map(|b| b.load(Relaxed)).collect(),
            count: self.count.load(Relaxed),
            sum_ns: self.sum_ns.load(Relaxed),
            max_ns: self.max_ns.load(Relaxed),
        }
    }
}

/// A copy of a histogram; snapshots merge and subtract for per-interval figures.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LatencySnapshot {
    pub buckets: Vec<u64>,
    pub count: u64,
    pub sum_ns: u64,
    pub max_ns: u64,
}

impl LatencySnapshot {
    /// How many took at most `ns` (whole buckets: a bucket counts when its
    /// upper bound is within `ns`), for cumulative histogram buckets.
    pub fn count_at_most(&self, ns: u64) -> u64 {
        self.buckets
            .iter()
            .enumerate()
            .filter(|(i, _)| bucket_upper(*i) <= ns)
            .map(|(_, c)| *c)
            .sum()
    }

    pub fn merge(&mut self, other: &LatencySnapshot) {
        if self.buckets.len() < other.buckets.len() {
            self.buckets.resize(other.buckets.len(), 0);
        }
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
        self.sum_ns += other.sum_ns;
        self.max_ns = self.max_ns.max(other.max_ns);
    }

    /// The latency below which `q` (0..=1) of the samples fall, in nanoseconds.
    pub fn percentile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let want = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= want {
                return bucket_upper(i).min(self.max_ns);
            }
        }
        self.max_ns
    }

    /// What was recorded after `earlier` (a snapshot of the same histogram):
    /// the latencies of one interval. The interval's maximum is not known;
    /// the upper bound of its highest non-empty bucket stands in for it.
    pub fn since(&self, earlier: &LatencySnapshot) -> LatencySnapshot {
        let buckets: Vec<u64> = self
            .buckets
            .iter()
            .enumerate()
            .map(|(i, n)| n.saturating_sub(earlier.buckets.get(i).copied().unwrap_or(0)))
            .collect();
        let max_ns = buckets
            .iter()
            .rposition(|n| *n > 0)
            .map_or(0, |i| bucket_upper(i).min(self.max_ns));
        LatencySnapshot {
            buckets,
            count: self.count.saturating_sub(earlier.count),
            sum_ns: self.sum_ns.saturating_sub(earlier.sum_ns),
            max_ns,
        }
    }

    pub fn mean_ns(&self) -> u64 {
        self.sum_ns.checked_div(self.count).unwrap_or(0)
    }
}

/// Counters of one connection.
#[derive(Default)]
pub struct ConnStats {
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub pdus_in: AtomicU64,
    pub pdus_out: AtomicU64,
    pub commands: AtomicU64,
    pub read_commands: AtomicU64,
    pub write_commands: AtomicU64,
    /// Payload bytes moved by reads (Data-In) and writes (Data-Out + immediate).
    pub read_bytes: AtomicU64,
    pub write_bytes: AtomicU64,
    pub in_flight: AtomicU64,
    pub errors: AtomicU64,
    pub latency: LatencyHistogram,
}

impl ConnStats {
    pub fn snapshot(&self) -> ConnStatsSnapshot {
        ConnStatsSnapshot {
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            pdus_in: self.pdus_in.load(Relaxed),
            pdus_out: self.pdus_out.load(Relaxed),
            commands: self.commands.load(Relaxed),
            read_commands: self.read_commands.load(Relaxed),
            write_commands: self.write_commands.load(Relaxed),
            read_bytes: self.read_bytes.load(Relaxed),
            write_bytes: self.write_bytes.load(Relaxed),
            in_flight: self.in_flight.load(Relaxed),
            errors: self.errors.load(Relaxed),
            latency: self.latency.snapshot(),
        }
    }
}

/// Plain copy of a connection's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnStatsSnapshot {
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub pdus_in: u64,
    pub pdus_out: u64,
    pub commands: u64,
    pub read_commands: u64,
    pub write_commands: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub in_flight: u64,
    pub errors: u64,
    pub latency: LatencySnapshot,
}

impl ConnStatsSnapshot {
    pub fn add(&mut self, o: &ConnStatsSnapshot) {
        self.bytes_in += o.bytes_in;
        self.bytes_out += o.bytes_out;
        self.pdus_in += o.pdus_in;
        self.pdus_out += o.pdus_out;
        self.commands += o.commands;
        self.read_commands += o.read_commands;
        self.write_commands += o.write_commands;
        self.read_bytes += o.read_bytes;
        self.write_bytes += o.write_bytes;
        self.in_flight += o.in_flight;
        self.errors += o.errors;
        self.latency.merge(&o.latency);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_bucket_resolution() {
        let h = LatencyHistogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 1000);
        let p50 = s.percentile(0.5) as f64 / 1000.0;
        assert!((450.0..=620.0).contains(&p50), "p50 {p50}us");
        assert_eq!(s.percentile(1.0), 1_000_000);
        assert!(s.percentile(0.99) <= 1_000_000);
    }

    #[test]
    fn bucket_bounds_are_monotonic() {
        let used: Vec<usize> = (0..SUB).chain(2 * SUB..BUCKETS).collect();
        for w in used.windows(2) {
            assert!(bucket_upper(w[0]) < bucket_upper(w[1]), "{w:?}");
        }
        for v in [0u64, 1, 5, 100, 12345, 1 << 40] {
            assert!(bucket_upper(bucket_of(v)) >= v);
        }
    }

    #[test]
    fn an_interval_has_only_its_own_latencies() {
        let h = LatencyHistogram::default();
        for _ in 0..100 {
            h.record(Duration::from_millis(10));
        }
        let before = h.snapshot();
        for _ in 0..100 {
            h.record(Duration::from_micros(50));
        }
        let d = h.snapshot().since(&before);
        assert_eq!(d.count, 100);
        assert_eq!(d.sum_ns, 100 * 50_000);
        let p99 = d.percentile(0.99);
        assert!((50_000..60_000).contains(&p99), "p99 {p99} ns");
        assert!(
            d.max_ns < 60_000,
            "the interval's max is not the 10 ms of before"
        );
        assert_eq!(h.snapshot().since(&h.snapshot()).percentile(0.5), 0);
    }
}

//! What a run record holds, and the comparison of two runs.

use serde::{Deserialize, Serialize};

/// Facts about the host a run was measured on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostFacts {
    pub kernel: String,
    pub cpu_model: String,
    pub cores: u32,
    pub memory_bytes: u64,
    /// The interfaces the run's traffic used, as "name (driver)".
    #[serde(default)]
    pub interfaces: Vec<String>,
}

/// One cell of a run's table: one workload at one connection count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    /// Which initiator ran it when not iolab's own ("open-iscsi": the kernel's).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub initiator: String,
    /// read, write or rw.
    pub mode: String,
    pub lun: u64,
    /// Connections per session the target granted.
    pub connections: u32,
    pub sessions: u32,
    pub block_bytes: u32,
    pub threads: u32,
    pub seconds: f64,
    pub read_bytes: u64,
    pub read_transfers: u64,
    pub write_bytes: u64,
    pub write_transfers: u64,
    pub errors: u64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

/// disktest's MB is 2^20 bytes.
const MB: f64 = 1_048_576.0;

impl Cell {
    fn per_second(&self, n: u64) -> f64 {
        if self.seconds > 0.0 {
            n as f64 / self.seconds
        } else {
            0.0
        }
    }
    pub fn read_mbps(&self) -> f64 {
        self.per_second(self.read_bytes) / MB
    }
    pub fn write_mbps(&self) -> f64 {
        self.per_second(self.write_bytes) / MB
    }
    pub fn read_iops(&self) -> f64 {
        self.per_second(self.read_transfers)
    }
    pub fn write_iops(&self) -> f64 {
        self.per_second(self.write_transfers)
    }
    /// Read and write together.
    pub fn total_mbps(&self) -> f64 {
        self.read_mbps() + self.write_mbps()
    }
    pub fn total_iops(&self) -> f64 {
        self.read_iops() + self.write_iops()
    }
    /// What makes two runs' cells comparable.
    pub fn key(&self) -> CellKey {
        CellKey {
            initiator: self.initiator.clone(),
            mode: self.mode.clone(),
            lun: self.lun,
            connections: self.connections,
            sessions: self.sessions,
            block_bytes: self.block_bytes,
            threads: self.threads,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CellKey {
    pub initiator: String,
    pub mode: String,
    pub lun: u64,
    pub connections: u32,
    pub sessions: u32,
    pub block_bytes: u32,
    pub threads: u32,
}

/// Bytes one connection moved in the sampling interval ending at `t_ms`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeriesPoint {
    /// The lab host that counted it (empty: the host that ran iolab).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// Which engine counted it there: "initiator" or "target" (empty: the initiator).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub side: String,
    pub cell: u32,
    pub session: u32,
    pub cid: u32,
    pub seq: u32,
    /// Milliseconds since the cell started.
    pub t_ms: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
}

impl SeriesPoint {
    /// Counted by the initiator that ran the workload (what a run's charts show).
    pub fn by_initiator(&self) -> bool {
        self.side.is_empty() || self.side == "initiator"
    }
}

/// A stored run: the profile as used, where, when, and what it measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// Set by the store; ignored when a run is added.
    #[serde(default)]
    pub id: Option<i64>,
    pub profile_name: String,
    /// The profile's TOML exactly as it was used.
    pub profile_body: String,
    pub started_ms: i64,
    pub ended_ms: i64,
    pub host: HostFacts,
    pub cells: Vec<Cell>,
    #[serde(default)]
    pub series: Vec<SeriesPoint>,
    /// Every lab host of a run that spans hosts (none for a run on this host alone).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<RunHost>,
}

/// One lab host of a run: its name in the profile, what it did, its facts
/// and the settings in force while the run went.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunHost {
    pub name: String,
    /// "target", "initiator", or both.
    pub roles: Vec<String>,
    pub facts: HostFacts,
    /// The iolab that served it there (`iolab --version` of the agent).
    #[serde(default)]
    pub agent: String,
    /// The lab interfaces' MTUs (`mtu:IFACE`) and the sysctls as applied, in order.
    #[serde(default)]
    pub settings: Vec<(String, String)>,
}

/// One line of the run list.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunSummary {
    pub id: i64,
    pub profile_name: String,
    pub started_ms: i64,
    pub ended_ms: i64,
    pub cells: u32,
    pub kernel: String,
}

/// One row of a comparison: a cell of A beside the same cell of B.
#[derive(Debug, Clone, PartialEq)]
pub struct CompareRow {
    pub key: CellKey,
    pub a: Option<Cell>,
    pub b: Option<Cell>,
}

impl CompareRow {
    /// Change of total MB/s from A to B, in percent.
    pub fn mbps_change(&self) -> Option<f64> {
        change(self.a.as_ref()?.total_mbps(), self.b.as_ref()?.total_mbps())
    }
    /// Change of total IOPS from A to B, in percent.
    pub fn iops_change(&self) -> Option<f64> {
        change(self.a.as_ref()?.total_iops(), self.b.as_ref()?.total_iops())
    }
}

/// (b - a) / a in percent; none when A measured nothing.
pub fn change(a: f64, b: f64) -> Option<f64> {
    (a > 0.0).then(|| (b - a) / a * 100.0)
}

/// Pairs the cells of two runs by what they measured, in A's order, then B's
/// cells that A lacks.
pub fn compare(a: &Run, b: &Run) -> Vec<CompareRow> {
    let mut rows: Vec<CompareRow> = a
        .cells
        .iter()
        .map(|c| CompareRow {
            key: c.key(),
            a: Some(c.clone()),
            b: b.cells.iter().find(|x| x.key() == c.key()).cloned(),
        })
        .collect();
    for c in &b.cells {
        if !rows.iter().any(|r| r.key == c.key()) {
            rows.push(CompareRow {
                key: c.key(),
                a: None,
                b: Some(c.clone()),
            });
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cell(mode: &str, conns: u32, mib: u64, ios: u64) -> Cell {
        Cell {
            mode: mode.into(),
            connections: conns,
            sessions: 1,
            block_bytes: 262_144,
            threads: 64,
            seconds: 2.0,
            read_bytes: mib << 20,
            read_transfers: ios,
            ..Cell::default()
        }
    }

    #[test]
    fn figures_are_per_second_in_mib() {
        let c = cell("read", 1, 800, 3200);
        assert_eq!(c.read_mbps(), 400.0);
        assert_eq!(c.read_iops(), 1600.0);
        assert_eq!(c.total_mbps(), 400.0);
        assert_eq!(
            Cell::default().read_mbps(),
            0.0,
            "zero seconds is not a division by zero"
        );
    }

    #[test]
    fn comparison_pairs_cells_and_computes_percentages() {
        let a = Run {
            cells: vec![cell("read", 1, 800, 3200), cell("read", 2, 1000, 4000)],
            ..Run::default()
        };
        let b = Run {
            cells: vec![
                cell("read", 2, 1500, 3000),
                cell("read", 1, 600, 3200),
                cell("write", 1, 10, 10),
            ],
            ..Run::default()
        };
        let rows = compare(&a, &b);
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[0].key.connections, 1);
        assert_eq!(rows[0].mbps_change(), Some(-25.0));
        assert_eq!(rows[0].iops_change(), Some(0.0));
        assert_eq!(rows[1].mbps_change(), Some(50.0));
        assert_eq!(rows[1].iops_change(), Some(-25.0));
        assert!(rows[2].a.is_none());
        assert_eq!(rows[2].mbps_change(), None);
        assert_eq!(change(0.0, 5.0), None);
    }
}

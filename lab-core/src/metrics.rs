//! The engines' counters for Prometheus: `/metrics` in the text exposition
//! format (version 0.0.4), per session and connection, with base units in
//! the names (`_bytes_total`, `_seconds`) and ids as labels. Connections
//! that ended stay in the output for a grace period with their last values
//! (so `rate()` sees their final increase), then go: label cardinality
//! stays bounded however many initiators come and go.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use iolab_iscsi::SessionInfo;
use iolab_iscsi::stats::{ConnStatsSnapshot, LatencySnapshot};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::sampler::SessionSource;

/// How long an ended connection's last values stay in the output.
pub const GRACE: Duration = Duration::from_secs(60);

/// Upper bounds (seconds) of the latency histogram's buckets.
const LATENCY_BOUNDS: [f64; 14] = [
    0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
    1.0,
];

/// A counter family: name, help, and how to read it from a connection's counters.
type Counter = (&'static str, &'static str, fn(&ConnStatsSnapshot) -> u64);

/// One connection's identity as labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ConnKey {
    target: String,
    initiator: String,
    isid: u64,
    tsih: u16,
    cid: u16,
    peer: String,
}

/// What was last seen of a connection.
struct Seen {
    stats: ConnStatsSnapshot,
    at: Instant,
    live: bool,
}

/// The exporter's memory of connections, live and recently ended.
#[derive(Default)]
pub struct Exporter {
    seen: Mutex<HashMap<ConnKey, Seen>>,
}

/// Escapes a label value (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

impl Exporter {
    /// The text exposition of `sessions` now, plus `extra` (host metrics).
    pub fn render(&self, sessions: &[SessionInfo], now: Instant, extra: &str) -> String {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        for s in seen.values_mut() {
            s.live = false;
        }
        let mut per_target: HashMap<&str, (usize, usize)> = HashMap::new();
        for s in sessions {
            let e = per_target.entry(s.target.as_str()).or_default();
            e.0 += 1;
            e.1 += s.connections.len();
            for c in &s.connections {
                let key = ConnKey {
                    target: s.target.clone(),
                    initiator: s.initiator.clone(),
                    isid: s.isid,
                    tsih: s.tsih,
                    cid: c.cid,
                    peer: c.peer.to_string(),
                };
                seen.insert(
                    key,
                    Seen {
                        stats: c.stats.clone(),
                        at: now,
                        live: true,
                    },
                );
            }
        }
        seen.retain(|_, s| s.live || now.duration_since(s.at) < GRACE);
        let mut conns: Vec<(&ConnKey, &Seen)> = seen.iter().collect();
        conns.sort_by(|a, b| (a.0.tsih, a.0.cid, &a.0.peer).cmp(&(b.0.tsih, b.0.cid, &b.0.peer)));

        let mut out = String::new();
        let mut targets: Vec<_> = per_target.into_iter().collect();
        targets.sort();
        family(
            &mut out,
            "iolab_sessions",
            "gauge",
            "Sessions logged in to a target.",
        );
        for (t, (n, _)) in &targets {
            let _ = writeln!(out, "iolab_sessions{{target=\"{}\"}} {n}", label(t));
        }
        family(
            &mut out,
            "iolab_connections",
            "gauge",
            "Connections of the sessions of a target.",
        );
        for (t, (_, n)) in &targets {
            let _ = writeln!(out, "iolab_connections{{target=\"{}\"}} {n}", label(t));
        }
        let counters: [Counter; 8] = [
            (
                "iolab_connection_read_bytes_total",
                "Payload bytes read by the initiator (Data-In).",
                |s| s.read_bytes,
            ),
            (
                "iolab_connection_write_bytes_total",
                "Payload bytes written by the initiator (Data-Out and immediate data).",
                |s| s.write_bytes,
            ),
            (
                "iolab_connection_read_commands_total",
                "READ commands.",
                |s| s.read_commands,
            ),
            (
                "iolab_connection_write_commands_total",
                "WRITE commands.",
                |s| s.write_commands,
            ),
            (
                "iolab_connection_commands_total",
                "SCSI commands of every kind.",
                |s| s.commands,
            ),
            (
                "iolab_connection_errors_total",
                "Commands that ended in an error status.",
                |s| s.errors,
            ),
            (
                "iolab_connection_received_bytes_total",
                "Bytes received on the connection, headers included.",
                |s| s.bytes_in,
            ),
            (
                "iolab_connection_sent_bytes_total",
                "Bytes sent on the connection, headers included.",
                |s| s.bytes_out,
            ),
        ];
        for (name, help, get) in counters {
            family(&mut out, name, "counter", help);
            for (k, s) in &conns {
                let _ = writeln!(out, "{name}{{{}}} {}", labels(k), get(&s.stats));
            }
        }
        family(
            &mut out,
            "iolab_connection_in_flight_commands",
            "gauge",
            "Commands received and not yet answered.",
        );
        for (k, s) in &conns {
            let v = if s.live { s.stats.in_flight } else { 0 };
            let _ = writeln!(
                out,
                "iolab_connection_in_flight_commands{{{}}} {v}",
                labels(k)
            );
        }
        let name = "iolab_connection_command_latency_seconds";
        family(
            &mut out,
            name,
            "histogram",
            "Time from a command's arrival to its answer.",
        );
        for (k, s) in &conns {
            histogram(&mut out, name, &labels(k), &s.stats.latency);
        }
        out.push_str(extra);
        out
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn labels(k: &ConnKey) -> String {
    format!(
        "target=\"{}\",initiator=\"{}\",isid=\"{:012x}\",tsih=\"{}\",cid=\"{}\",peer=\"{}\"",
        label(&k.target),
        label(&k.initiator),
        k.isid,
        k.tsih,
        k.cid,
        label(&k.peer)
    )
}

fn histogram(out: &mut String, name: &str, labels: &str, l: &LatencySnapshot) {
    for b in LATENCY_BOUNDS {
        let n = l.count_at_most((b * 1e9) as u64);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {}", l.count);
    let _ = writeln!(out, "{name}_sum{{{labels}}} {}", l.sum_ns as f64 / 1e9);
    let _ = writeln!(out, "{name}_count{{{labels}}} {}", l.count);
}

/// A target's logins and logouts since it started.
pub fn logins(c: &iolab_iscsi::target::LoginCounters) -> String {
    use std::sync::atomic::Ordering::Relaxed;
    let mut out = String::new();
    family(
        &mut out,
        "iolab_logins_total",
        "counter",
        "Logins completed, by session type.",
    );
    let _ = writeln!(
        out,
        "iolab_logins_total{{type=\"normal\"}} {}",
        c.normal.load(Relaxed)
    );
    let _ = writeln!(
        out,
        "iolab_logins_total{{type=\"discovery\"}} {}",
        c.discovery.load(Relaxed)
    );
    family(
        &mut out,
        "iolab_login_failures_total",
        "counter",
        "Logins refused or abandoned.",
    );
    let _ = writeln!(
        out,
        "iolab_login_failures_total {}",
        c.failures.load(Relaxed)
    );
    family(
        &mut out,
        "iolab_logouts_total",
        "counter",
        "Logout Requests answered.",
    );
    let _ = writeln!(out, "iolab_logouts_total {}", c.logouts.load(Relaxed));
    out
}

/// Per-LUN counters of every target of a registry, as LIO keeps per LUN:
/// what each logical unit served, whichever session asked.
pub fn luns(targets: &[Arc<iolab_iscsi::target::TargetNode>]) -> String {
    type Get = fn(&iolab_storage::scsi::LuStatsSnapshot) -> u64;
    let rows: Vec<(String, u64, iolab_storage::scsi::LuStatsSnapshot)> = targets
        .iter()
        .flat_map(|t| {
            t.luns()
                .iter()
                .map(|(n, lu)| (t.iqn.clone(), *n, lu.stats()))
                .collect::<Vec<_>>()
        })
        .collect();
    let families: [(&str, &str, Get); 6] = [
        (
            "iolab_lun_read_bytes_total",
            "Payload bytes read from a LUN.",
            |s| s.read_bytes,
        ),
        (
            "iolab_lun_write_bytes_total",
            "Payload bytes written to a LUN.",
            |s| s.write_bytes,
        ),
        (
            "iolab_lun_read_commands_total",
            "READ commands a LUN completed.",
            |s| s.read_commands,
        ),
        (
            "iolab_lun_write_commands_total",
            "WRITE commands a LUN completed.",
            |s| s.write_commands,
        ),
        (
            "iolab_lun_commands_total",
            "SCSI commands of every kind a LUN answered.",
            |s| s.commands,
        ),
        (
            "iolab_lun_errors_total",
            "Commands a LUN ended with an error status.",
            |s| s.errors,
        ),
    ];
    let mut out = String::new();
    for (name, help, get) in families {
        family(&mut out, name, "counter", help);
        for (t, n, s) in &rows {
            let _ = writeln!(
                out,
                "{name}{{target=\"{}\",lun=\"{n}\"}} {}",
                label(t),
                get(s)
            );
        }
    }
    out
}

/// A target's connections for its exporter: those logged in, and those that
/// ended in the last minute with their final counters (so what moved after
/// the last scrape still reaches Prometheus).
pub fn registry_source(reg: Arc<iolab_iscsi::target::Registry>) -> Arc<dyn SessionSource> {
    Arc::new(move || {
        let mut all: Vec<SessionInfo> = reg.sessions().iter().map(|s| s.info()).collect();
        all.extend(reg.ended_connections());
        all
    })
}

/// What a target's exporter adds to its connections: logins, LUNs, the host.
pub fn target_extra(reg: &iolab_iscsi::target::Registry) -> String {
    logins(&reg.logins) + &luns(&reg.targets()) + &host()
}

/// What every exporter adds: the host's CPU.
pub fn host() -> String {
    host_cpu(&std::fs::read_to_string("/proc/stat").unwrap_or_default())
}

/// The host's CPU time per CPU and mode, from `/proc/stat` (USER_HZ ticks).
pub fn host_cpu(stat: &str) -> String {
    const MODES: [&str; 8] = [
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    ];
    // /proc/stat counts in USER_HZ, which Linux fixes at 100 for user space.
    let ticks = 100.0;
    let mut out = String::new();
    family(
        &mut out,
        "iolab_host_cpu_seconds_total",
        "counter",
        "CPU time of the host by CPU and mode.",
    );
    for line in stat.lines() {
        let mut f = line.split_whitespace();
        let Some(cpu) = f
            .next()
            .and_then(|c| c.strip_prefix("cpu"))
            .filter(|c| !c.is_empty())
        else {
            continue;
        };
        for (mode, v) in MODES.iter().zip(f) {
            if let Ok(t) = v.parse::<u64>() {
                let _ = writeln!(
                    out,
                    "iolab_host_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"{mode}\"}} {}",
                    t as f64 / ticks
                );
            }
        }
    }
    out
}

/// Serves `/metrics` on `addr` from `source` (and `extra`) until the task
/// is aborted; returns the bound address once listening.
/// Families beyond the sessions' (host CPU, logins), rendered per scrape.
pub type Extra = Arc<dyn Fn() -> String + Send + Sync>;

pub async fn serve(
    addr: SocketAddr,
    source: Arc<dyn SessionSource>,
    extra: Extra,
) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let l = TcpListener::bind(addr).await?;
    let bound = l.local_addr()?;
    let exporter = Arc::new(Exporter::default());
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = l.accept().await else {
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            };
            let (source, exporter, extra) = (source.clone(), exporter.clone(), extra.clone());
            tokio::spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(10), async {
                    // The request head, at most 8 KiB.
                    let mut buf = Vec::with_capacity(1024);
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
                        match sock.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let head = String::from_utf8_lossy(&buf);
                    let path = head.split_whitespace().nth(1).unwrap_or("");
                    let get = head.starts_with("GET ");
                    let (status, ctype, body) = if get && (path == "/metrics" || path.starts_with("/metrics?")) {
                        let text = exporter.render(&source.sessions(), Instant::now(), &extra());
                        ("200 OK", "text/plain; version=0.0.4; charset=utf-8", text)
                    } else {
                        ("404 Not Found", "text/plain; charset=utf-8", "only /metrics is here\n".to_string())
                    };
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = sock.write_all(resp.as_bytes()).await;
                    let _ = sock.shutdown().await;
                })
                .await;
            });
        }
    });
    Ok((bound, task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use iolab_iscsi::target::ConnectionInfo;

    fn session(tsih: u16, bytes: u64) -> SessionInfo {
        SessionInfo {
            tsih,
            isid: 0x40_0000_0001,
            initiator: "iqn.2026-12.org.example:\"h\"".into(),
            target: "iqn.2026-11.io.iolab:target0".into(),
            queue_depth: 64,
            connections: vec![ConnectionInfo {
                cid: 0,
                peer: "127.0.0.1:50000".parse().unwrap(),
                local: "127.0.0.1:3260".parse().unwrap(),
                params: Default::default(),
                mss: None,
                stats: ConnStatsSnapshot {
                    read_bytes: bytes,
                    commands: 3,
                    ..Default::default()
                },
            }],
        }
    }

    #[test]
    fn counters_labels_and_the_grace_period() {
        let e = Exporter::default();
        let t0 = Instant::now();
        let text = e.render(&[session(1, 4096)], t0, "");
        assert!(
            text.contains("# TYPE iolab_connection_read_bytes_total counter"),
            "{text}"
        );
        let line = "iolab_connection_read_bytes_total{target=\"iqn.2026-11.io.iolab:target0\",initiator=\"iqn.2026-12.org.example:\\\"h\\\"\",isid=\"004000000001\",tsih=\"1\",cid=\"0\",peer=\"127.0.0.1:50000\"} 4096";
        assert!(text.contains(line), "{text}");
        assert!(text.contains("iolab_sessions{target=\"iqn.2026-11.io.iolab:target0\"} 1"));
        assert!(text.contains("le=\"+Inf\"} 0"), "{text}");
        // Ended: kept with its last values during the grace period, then gone.
        let text = e.render(&[], t0 + Duration::from_secs(10), "");
        assert!(text.contains("} 4096"), "{text}");
        let text = e.render(&[], t0 + GRACE + Duration::from_secs(1), "");
        assert!(!text.contains("tsih=\"1\""), "{text}");
    }

    #[test]
    fn host_cpu_in_seconds() {
        let stat = "cpu  10 0 5 100 0 0 0 0 0 0\ncpu0 10 0 5 100 0 0 0 0 0 0\nintr 1 2\n";
        let text = host_cpu(stat);
        assert!(
            text.contains("iolab_host_cpu_seconds_total{cpu=\"0\",mode=\"idle\"}"),
            "{text}"
        );
        assert!(
            !text.contains("cpu=\"\""),
            "the total line is not a CPU: {text}"
        );
    }

    #[test]
    fn luns_are_counted_per_target_and_lun() {
        use iolab_iscsi::target::ServerConfig;
        let cfg = ServerConfig::default_lab("127.0.0.1:0".parse().unwrap(), 1 << 20);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let target = rt.block_on(iolab_iscsi::Target::start(cfg)).unwrap();
        let text = luns(&target.registry().targets());
        assert!(
            text.contains("# TYPE iolab_lun_read_bytes_total counter"),
            "{text}"
        );
        assert!(
            text.contains(
                "iolab_lun_read_bytes_total{target=\"iqn.2026-11.io.iolab:target0\",lun=\"0\"} 0"
            ),
            "{text}"
        );
        target.shutdown();
    }
}

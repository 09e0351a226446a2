//! `iolab watch`: per-connection figures per interval, from a running
//! engine's `/metrics` (two scrapes make one interval) or from a stored
//! run's series, as lines of one versioned schema for scripts.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The schema every line carries; a change that breaks readers gets a new one.
pub const SCHEMA: &str = "iolab.watch.v1";

/// Why a scrape failed.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("{0}: not an http://HOST:PORT/PATH URL")]
    BadUrl(String),
    #[error("{url}: {source}")]
    Io {
        url: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: no answer within {secs} s")]
    Timeout { url: String, secs: u64 },
    #[error("{url}: {status}")]
    Status { url: String, status: String },
    #[error("{url}: no iolab connection counters in the answer (is it iolab's /metrics?)")]
    NotIolab { url: String },
}

/// One connection over one interval: a line of `iolab watch --json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WatchLine {
    pub schema: String,
    /// Unix time in milliseconds at the end of the interval (stored runs:
    /// milliseconds since the cell started).
    pub t_ms: i64,
    pub interval_s: f64,
    /// Which connection (its fields sit beside the others in the JSON).
    #[serde(flatten)]
    pub conn: ConnId,
    /// Payload bytes in the interval, and the same per second (10^6 B/s).
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub read_mbps: f64,
    pub write_mbps: f64,
    /// Commands completed per second (None where the source has no count).
    pub iops: Option<f64>,
    /// Commands outstanding at the end of the interval.
    pub in_flight: Option<u64>,
    /// Latency percentiles of the interval's commands, in µs (None when no
    /// command completed or the source has no histogram).
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
}

/// What identifies a connection in the exposition.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ConnId {
    pub target: String,
    pub initiator: String,
    pub isid: String,
    pub tsih: u32,
    pub cid: u32,
    pub peer: String,
}

/// A connection's counters at one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Counters {
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub commands: u64,
    pub in_flight: u64,
    /// Cumulative latency buckets: (upper bound in seconds, count).
    pub buckets: Vec<(f64, u64)>,
}

/// One scrape: every connection's counters.
pub type Scrape = BTreeMap<ConnId, Counters>;

/// One sample line of the exposition: name, labels, value.
type SampleLine<'a> = (&'a str, Vec<(String, String)>, f64);

/// Splits `name{a="x",b="y"} value` into its parts (escapes `\"`, `\\`, `\n`).
fn parse_line(line: &str) -> Option<SampleLine<'_>> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, rest) = match line.find('{') {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => {
            let (n, v) = line.split_once(' ')?;
            return Some((n, Vec::new(), v.split_whitespace().next()?.parse().ok()?));
        }
    };
    let mut labels = Vec::new();
    let mut chars = rest.char_indices().peekable();
    let mut end = None;
    while let Some((i, c)) = chars.next() {
        match c {
            '}' => {
                end = Some(i);
                break;
            }
            ',' | ' ' => continue,
            _ => {
                let key_start = i;
                let mut key_end = i;
                for (j, k) in chars.by_ref() {
                    if k == '=' {
                        key_end = j;
                        break;
                    }
                }
                if chars.next().map(|x| x.1) != Some('"') {
                    return None;
                }
                let mut value = String::new();
                loop {
                    match chars.next()?.1 {
                        '\\' => match chars.next()?.1 {
                            'n' => value.push('\n'),
                            other => value.push(other),
                        },
                        '"' => break,
                        other => value.push(other),
                    }
                }
                labels.push((rest[key_start..key_end].to_string(), value));
            }
        }
    }
    let value = rest[end? + 1..].split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        v => v.parse().ok()?,
    };
    Some((name, labels, value))
}

/// The iolab connection counters of a Prometheus text exposition.
pub fn parse(text: &str) -> Scrape {
    let mut out = Scrape::new();
    for line in text.lines() {
        let Some((name, labels, value)) = parse_line(line) else {
            continue;
        };
        let Some(metric) = name.strip_prefix("iolab_connection_") else {
            continue;
        };
        let get = |k: &str| {
            labels
                .iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        };
        let id = ConnId {
            target: get("target"),
            initiator: get("initiator"),
            isid: get("isid"),
            tsih: get("tsih").parse().unwrap_or(0),
            cid: get("cid").parse().unwrap_or(0),
            peer: get("peer"),
        };
        let c = out.entry(id).or_default();
        let n = value.max(0.0) as u64;
        match metric {
            "read_bytes_total" => c.read_bytes = n,
            "write_bytes_total" => c.write_bytes = n,
            "commands_total" => c.commands = n,
            "in_flight_commands" => c.in_flight = n,
            "command_latency_seconds_bucket" => {
                let le = match get("le").as_str() {
                    "+Inf" => f64::INFINITY,
                    v => v.parse().unwrap_or(f64::INFINITY),
                };
                c.buckets.push((le, n));
            }
            _ => {}
        }
    }
    out
}

/// The latency below which `q` of the interval's commands finished, in µs:
/// found in the cumulative buckets' differences and interpolated linearly
/// within its bucket, as Prometheus's `histogram_quantile` does.
fn quantile(now: &[(f64, u64)], before: &[(f64, u64)], q: f64) -> Option<f64> {
    let mut delta: Vec<(f64, u64)> = now
        .iter()
        .map(|(le, n)| {
            let b = before.iter().find(|(l, _)| l == le).map_or(0, |(_, x)| *x);
            (*le, n.saturating_sub(b))
        })
        .collect();
    delta.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = delta.last()?.1;
    if total == 0 {
        return None;
    }
    let want = total as f64 * q;
    let mut lower = (0.0, 0u64);
    for (le, n) in &delta {
        if *n as f64 >= want {
            if !le.is_finite() {
                // Above the highest bound: that bound is all that is known.
                return Some(lower.0 * 1e6);
            }
            let within = (n - lower.1) as f64;
            let frac = if within > 0.0 {
                (want - lower.1 as f64) / within
            } else {
                1.0
            };
            return Some((lower.0 + (le - lower.0) * frac) * 1e6);
        }
        lower = (*le, *n);
    }
    None
}

/// The lines of one interval between two scrapes `secs` apart. Connections
/// that appear only in `now` start from zero.
pub fn interval(before: &Scrape, now: &Scrape, secs: f64, t_ms: i64) -> Vec<WatchLine> {
    let empty = Counters::default();
    now.iter()
        .map(|(id, c)| {
            let b = before.get(id).unwrap_or(&empty);
            let rd = c.read_bytes.saturating_sub(b.read_bytes);
            let wr = c.write_bytes.saturating_sub(b.write_bytes);
            let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
            WatchLine {
                schema: SCHEMA.into(),
                t_ms,
                interval_s: secs,
                conn: id.clone(),
                read_bytes: rd,
                write_bytes: wr,
                read_mbps: per_s(rd) / 1e6,
                write_mbps: per_s(wr) / 1e6,
                iops: Some(per_s(c.commands.saturating_sub(b.commands))),
                in_flight: Some(c.in_flight),
                p50_us: quantile(&c.buckets, &b.buckets, 0.5),
                p99_us: quantile(&c.buckets, &b.buckets, 0.99),
            }
        })
        .collect()
}

/// A stored run's series as watch lines (bytes per interval; no command
/// counts or latencies are stored per interval).
pub fn stored(run: &iolab_profiles::Run) -> Vec<WatchLine> {
    let mut points: Vec<&iolab_profiles::SeriesPoint> =
        run.series.iter().filter(|p| p.by_initiator()).collect();
    // Sample by sample: every connection of a cell at one time together.
    points.sort_by_key(|p| (p.cell, p.seq, p.session, p.cid));
    crate::series::with_intervals(points)
        .into_iter()
        .map(|(p, secs)| {
            let per_s = |n: u64| if secs > 0.0 { n as f64 / secs } else { 0.0 };
            WatchLine {
                schema: SCHEMA.into(),
                t_ms: p.t_ms as i64,
                interval_s: secs,
                conn: ConnId {
                    tsih: p.session,
                    cid: p.cid,
                    peer: format!("cell {}", p.cell),
                    ..ConnId::default()
                },
                read_bytes: p.read_bytes,
                write_bytes: p.write_bytes,
                read_mbps: per_s(p.read_bytes) / 1e6,
                write_mbps: per_s(p.write_bytes) / 1e6,
                iops: None,
                in_flight: None,
                p50_us: None,
                p99_us: None,
            }
        })
        .collect()
}

/// `GET` of an `http://` URL: the body of a 200 answer.
pub async fn fetch(url: &str, timeout: Duration) -> Result<String, WatchError> {
    let bad = || WatchError::BadUrl(url.to_string());
    let rest = url.strip_prefix("http://").ok_or_else(bad)?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/metrics"),
    };
    if authority.is_empty() || !authority.contains(':') {
        return Err(bad());
    }
    let io = |source| WatchError::Io {
        url: url.to_string(),
        source,
    };
    let get = async {
        let mut s = tokio::net::TcpStream::connect(authority)
            .await
            .map_err(io)?;
        let req = format!("GET {path} HTTP/1.0\r\nHost: {authority}\r\nAccept: text/plain\r\n\r\n");
        s.write_all(req.as_bytes()).await.map_err(io)?;
        let mut body = Vec::new();
        // A /metrics answer of a few thousand connections is a few MB.
        s.take(64 << 20).read_to_end(&mut body).await.map_err(io)?;
        Ok::<_, WatchError>(String::from_utf8_lossy(&body).into_owned())
    };
    let answer = tokio::time::timeout(timeout, get)
        .await
        .map_err(|_| WatchError::Timeout {
            url: url.to_string(),
            secs: timeout.as_secs(),
        })??;
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(WatchError::Status {
            url: url.to_string(),
            status: if status.is_empty() {
                "empty answer".into()
            } else {
                status
            },
        });
    }
    if !body.contains("iolab_connection") && !body.contains("iolab_sessions") {
        return Err(WatchError::NotIolab {
            url: url.to_string(),
        });
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = r#"# HELP iolab_connection_read_bytes_total Payload bytes read.
# TYPE iolab_connection_read_bytes_total counter
iolab_connection_read_bytes_total{target="iqn.t",initiator="iqn.i:\"q\"",isid="004000000001",tsih="1",cid="0",peer="127.0.0.1:50000"} 1000000
iolab_connection_write_bytes_total{target="iqn.t",initiator="iqn.i:\"q\"",isid="004000000001",tsih="1",cid="0",peer="127.0.0.1:50000"} 0
iolab_connection_commands_total{target="iqn.t",initiator="iqn.i:\"q\"",isid="004000000001",tsih="1",cid="0",peer="127.0.0.1:50000"} 10
iolab_connection_in_flight_commands{target="iqn.t",initiator="iqn.i:\"q\"",isid="004000000001",tsih="1",cid="0",peer="127.0.0.1:50000"} 3
iolab_connection_command_latency_seconds_bucket{target="iqn.t",initiator="iqn.i:\"q\"",isid="004000000001",tsih="1",cid="0",peer="127.0.0.1:50000",le="0.0001"} 5
iolab_connection_command_latency_seconds_bucket{target="iqn.t",initiator="iqn.i:\"q\"",isid="004000000001",tsih="1",cid="0",peer="127.0.0.1:50000",le="0.001"} 10
iolab_connection_command_latency_seconds_bucket{target="iqn.t",initiator="iqn.i:\"q\"",isid="004000000001",tsih="1",cid="0",peer="127.0.0.1:50000",le="+Inf"} 10
iolab_sessions{target="iqn.t"} 1
"#;

    #[test]
    fn two_scrapes_make_one_interval_per_connection() {
        let before = parse(A);
        assert_eq!(before.len(), 1);
        let (id, c) = before.iter().next().unwrap();
        assert_eq!(id.initiator, "iqn.i:\"q\"", "escaped quotes read back");
        assert_eq!((id.tsih, id.cid), (1, 0));
        assert_eq!(c.buckets.len(), 3);
        let later = A
            .replace("} 1000000", "} 51000000")
            .replace("} 10\n", "} 110\n")
            .replace("le=\"0.0001\"} 5", "le=\"0.0001\"} 6");
        let now = parse(&later);
        let lines = interval(&before, &now, 0.5, 1_000);
        assert_eq!(lines.len(), 1);
        let l = &lines[0];
        assert_eq!(l.schema, SCHEMA);
        assert_eq!(l.read_bytes, 50_000_000);
        assert!((l.read_mbps - 100.0).abs() < 1e-9);
        assert_eq!(l.iops, Some(200.0));
        assert_eq!(l.in_flight, Some(3));
        // 100 commands in the interval: 1 at most 100 µs, 99 in (100 µs, 1 ms]:
        // the median is 49/99 of the way through that bucket.
        let p50 = l.p50_us.unwrap();
        assert!((p50 - (100.0 + 900.0 * 49.0 / 99.0)).abs() < 1e-6, "{p50}");
        assert!((l.p99_us.unwrap() - (100.0 + 900.0 * 98.0 / 99.0)).abs() < 1e-6);
        // Nothing done: no percentiles rather than zero.
        let idle = interval(&now, &now, 1.0, 2_000);
        assert_eq!((idle[0].p50_us, idle[0].iops), (None, Some(0.0)));
        // The JSON has the schema and every field by name.
        let json = serde_json::to_string(l).unwrap();
        assert!(json.starts_with("{\"schema\":\"iolab.watch.v1\""), "{json}");
        let back: WatchLine = serde_json::from_str(&json).unwrap();
        assert_eq!(
            (back.conn.tsih, back.conn.cid, back.read_bytes),
            (1, 0, 50_000_000)
        );
        assert!((back.p99_us.unwrap() - l.p99_us.unwrap()).abs() < 1e-9);
    }

    #[test]
    fn garbage_and_other_metrics_are_skipped() {
        let s =
            parse("not a metric\n{}\nfoo{a=\"b} 1\niolab_connection_read_bytes_total{cid=\"x 5\n");
        assert!(s.is_empty(), "{s:?}");
        assert!(parse("iolab_sessions 3\nnode_cpu 1\n").is_empty());
    }

    #[tokio::test]
    async fn urls_are_checked_before_connecting() {
        for bad in [
            "ftp://x:1/metrics",
            "http:///metrics",
            "http://host/metrics",
        ] {
            let e = fetch(bad, Duration::from_secs(1)).await.unwrap_err();
            assert!(matches!(e, WatchError::BadUrl(_)), "{bad}: {e}");
        }
        // Nothing listens on port 1.
        let e = fetch("http://127.0.0.1:1/metrics", Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            e.to_string().starts_with("http://127.0.0.1:1/metrics: "),
            "{e}"
        );
    }
}

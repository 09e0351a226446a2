//! `iolab bench` and `iolab discover`: the embedded initiator from the command line.

use std::sync::Arc;

use anyhow::{Context, bail};
use iolab_iscsi::initiator::{self, InitiatorOptions, IscsiUrl, Session};
use iolab_lab_core::workload::{self, Mode, Pattern, Progress, Report, Workload};
use iolab_storage::backstore::parse_size;

use crate::cli::{BenchArgs, DiscoverArgs, InitiatorArgs, MatrixArgs, ModeArg, PatternArg};

fn options(a: &InitiatorArgs) -> anyhow::Result<InitiatorOptions> {
    if !(1..=8).contains(&a.connections) {
        bail!("--connections must be 1..=8");
    }
    if a.queue_depth == 0 || a.cmd_per_lun == 0 {
        bail!("--queue-depth and --cmd-per-lun must be at least 1");
    }
    let d = InitiatorOptions::default();
    Ok(InitiatorOptions {
        initiator_name: a.initiator_name.clone().unwrap_or(d.initiator_name.clone()),
        connections: a.connections,
        queue_depth: a.queue_depth,
        cmd_per_lun: a.cmd_per_lun,
        header_digest: a.header_digest,
        data_digest: a.data_digest,
        immediate_data: !a.no_immediate_data,
        initial_r2t: a.initial_r2t,
        io_timeout: a.io_timeout,
        login_timeout: a.login_timeout,
        ..d
    })
}

pub async fn discover(a: DiscoverArgs) -> anyhow::Result<()> {
    let url = IscsiUrl::parse(&a.portal, true)?;
    let opts = options(&a.initiator)?;
    let targets = initiator::discover(&url, &opts)
        .await
        .with_context(|| format!("discovery at {}", url.portal()))?;
    for t in targets {
        for addr in &t.addresses {
            println!("{addr} {}", t.name);
        }
        if t.addresses.is_empty() {
            println!("- {}", t.name);
        }
    }
    Ok(())
}

/// disktest's line prefix: `| date | KIND  | pid | version | device | `.
fn line(kind: &str, device: &str, text: &str) {
    let now = chrono_like_now();
    println!(
        "| {now} | {kind:<5} | {} | iolab {} | {device} | {text}",
        std::process::id(),
        env!("CARGO_PKG_VERSION")
    );
}

/// YYYY/MM/DD-HH:MM:SS in UTC, without a date crate.
fn chrono_like_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}/{m:02}/{d:02}-{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn throughput(label: &str, bytes: u64, transfers: u64, secs: f64) -> String {
    let bps = if secs > 0.0 { bytes as f64 / secs } else { 0.0 };
    let iops = if secs > 0.0 {
        transfers as f64 / secs
    } else {
        0.0
    };
    // disktest's MB is 2^20 bytes.
    format!(
        "{label} throughput: {bps:.1}B/s ({:.2}MB/s), IOPS {iops:.1}/s.",
        bps / 1_048_576.0
    )
}

pub async fn bench(a: BenchArgs) -> anyhow::Result<()> {
    let url = IscsiUrl::parse(&a.url, false)?;
    let opts = options(&a.initiator)?;
    let block_bytes = parse_size(&a.bs)? as u32;
    if a.threads == 0 || a.threads > 4096 {
        bail!("--threads must be 1..=4096");
    }
    if !(1..=16).contains(&a.sessions) {
        bail!("--sessions must be 1..=16");
    }
    let range_bytes = match &a.range {
        Some(r) => parse_size(r)?,
        None => 0,
    };
    let mut sessions = Vec::new();
    for _ in 0..a.sessions {
        let s = Session::connect(&url, &opts)
            .await
            .with_context(|| format!("login to {url}"))?;
        sessions.push(s);
    }
    let granted = sessions[0].connection_count();
    let mode = mode_of(a.mode);
    let pattern = match a.pattern {
        PatternArg::Seq => Pattern::Seq,
        PatternArg::Random => Pattern::Random,
    };
    let device = url.to_string();
    let flag = match mode {
        Mode::Read => "-r",
        Mode::Write => "-w",
        Mode::Rw => "-wr",
    };
    let mix = match mode {
        Mode::Read => "100:0",
        Mode::Write => "0:100",
        Mode::Rw => "50:50",
    };
    line(
        "START",
        &device,
        &format!(
            "Start args: -K{} -h{} -T{} {flag} -b{block_bytes} (-D {mix}) (-p {}) (connections {granted}, sessions {})",
            a.threads,
            a.heartbeat.as_secs(),
            a.time.as_secs(),
            if pattern == Pattern::Seq { "L" } else { "R" },
            a.sessions
        ),
    );
    line("INFO", &device, "Starting pass");
    let w = Workload {
        mode,
        block_bytes,
        threads: a.threads,
        duration: a.time,
        pattern,
        verify: a.verify,
        range_bytes,
    };
    let sessions = Arc::new(sessions);
    let mut last = Progress::default();
    let report = workload::run(sessions.clone(), w, a.heartbeat, |p: Progress| {
        let dt = (p.elapsed - last.elapsed).as_secs_f64();
        if p.read_ios > 0 {
            line(
                "STAT",
                &device,
                &throughput(
                    "Heartbeat read",
                    p.read_bytes - last.read_bytes,
                    p.read_ios - last.read_ios,
                    dt,
                ),
            );
        }
        if p.write_ios > 0 {
            line(
                "STAT",
                &device,
                &throughput(
                    "Heartbeat write",
                    p.write_bytes - last.write_bytes,
                    p.write_ios - last.write_ios,
                    dt,
                ),
            );
        }
        last = p;
    })
    .await
    .with_context(|| format!("benchmark on {url}"))?;
    print_report(&device, &report, &sessions);
    if a.json {
        let per_conn: Vec<_> = sessions
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                s.connection_stats()
                    .into_iter()
                    .map(move |(cid, st)| (i, cid, st))
            })
            .map(|(i, cid, st)| {
                serde_json_like(&[
                    ("session", i.to_string()),
                    ("cid", cid.to_string()),
                    ("read_bytes", st.read_bytes.to_string()),
                    ("write_bytes", st.write_bytes.to_string()),
                    ("commands", st.commands.to_string()),
                ])
            })
            .collect();
        let l = &report.latency;
        println!(
            "{{\"seconds\":{:.3},\"read_bytes\":{},\"read_transfers\":{},\"write_bytes\":{},\"write_transfers\":{},\"errors\":{},\"mismatches\":{},\"latency_us\":{{\"p50\":{:.1},\"p99\":{:.1},\"p999\":{:.1},\"max\":{:.1}}},\"connections\":[{}]}}",
            report.seconds,
            report.read.bytes,
            report.read.transfers,
            report.write.bytes,
            report.write.transfers,
            report.errors,
            report.mismatches,
            l.percentile(0.5) as f64 / 1e3,
            l.percentile(0.99) as f64 / 1e3,
            l.percentile(0.999) as f64 / 1e3,
            l.max_ns as f64 / 1e3,
            per_conn.join(",")
        );
    }
    match Arc::try_unwrap(sessions) {
        Ok(list) => {
            for s in list {
                let _ = s.logout().await;
            }
        }
        Err(_) => tracing::debug!("sessions still shared at exit"),
    }
    if !report.passed() {
        if let Some(lba) = report.first_mismatch_lba {
            bail!(
                "verify failed: {} mismatching I/Os, first at LBA {lba}",
                report.mismatches
            );
        }
        bail!(
            "{} I/O errors, first: {}",
            report.errors,
            report.first_error.unwrap_or_default()
        );
    }
    Ok(())
}

fn serde_json_like(fields: &[(&str, String)]) -> String {
    let inner: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", inner.join(","))
}

fn print_report(device: &str, r: &Report, sessions: &[Session]) {
    // disktest's order: both byte totals, then both throughputs.
    let dirs = [
        (&r.read, "read", "Total read"),
        (&r.write, "written", "Total write"),
    ];
    for (t, verb, _) in dirs {
        if t.transfers > 0 {
            line(
                "STAT",
                device,
                &format!(
                    "Total bytes {verb} in {} transfers: {}",
                    t.transfers, t.bytes
                ),
            );
        }
    }
    for (t, _, label) in dirs {
        if t.transfers > 0 {
            line(
                "STAT",
                device,
                &throughput(label, t.bytes, t.transfers, r.seconds),
            );
        }
    }
    if r.mismatches > 0 {
        line(
            "ERROR",
            device,
            &format!(
                "Verify: {} mismatching I/Os, first at LBA {}",
                r.mismatches,
                r.first_mismatch_lba.unwrap_or(0)
            ),
        );
    }
    if r.errors > 0 {
        line(
            "ERROR",
            device,
            &format!(
                "{} I/O errors, first: {}",
                r.errors,
                r.first_error.clone().unwrap_or_default()
            ),
        );
    }
    line(
        "END",
        device,
        if r.passed() {
            "Test Done (Passed)"
        } else {
            "Test Done (Failed)"
        },
    );
    println!();
    println!(
        "{:<8} {:>4} {:>6} {:>14} {:>14} {:>10} {:>10}",
        "session", "cid", "mss", "read MB/s", "write MB/s", "commands", "errors"
    );
    for (i, s) in sessions.iter().enumerate() {
        let facts = s.facts();
        for (cid, st) in s.connection_stats() {
            let mss = facts
                .connections
                .iter()
                .find(|c| c.0 == cid)
                .and_then(|c| c.1);
            println!(
                "{:<8} {:>4} {:>6} {:>14.2} {:>14.2} {:>10} {:>10}",
                i,
                cid,
                mss.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                st.read_bytes as f64 / r.seconds / 1e6,
                st.write_bytes as f64 / r.seconds / 1e6,
                st.commands,
                st.errors
            );
        }
    }
    let l = &r.latency;
    println!(
        "latency: p50 {:.1} us, p99 {:.1} us, p99.9 {:.1} us, max {:.1} us ({} I/Os)",
        l.percentile(0.5) as f64 / 1e3,
        l.percentile(0.99) as f64 / 1e3,
        l.percentile(0.999) as f64 / 1e3,
        l.max_ns as f64 / 1e3,
        l.count
    );
}

fn mode_of(m: ModeArg) -> Mode {
    match m {
        ModeArg::Read => Mode::Read,
        ModeArg::Write => Mode::Write,
        ModeArg::Rw => Mode::Rw,
    }
}

/// `iolab matrix`: every mode at every connection count, then one table like the seed page's.
pub async fn matrix(a: MatrixArgs) -> anyhow::Result<()> {
    let url = IscsiUrl::parse(&a.url, false)?;
    let base = options(&a.initiator)?;
    let block_bytes = parse_size(&a.bs)? as u32;
    if a.conns.iter().any(|c| !(1..=8).contains(c)) {
        bail!("--conns values must be 1..=8");
    }
    let mut rows = Vec::new();
    for &m in &a.modes {
        for &c in &a.conns {
            let opts = InitiatorOptions {
                connections: c,
                ..base.clone()
            };
            let session = Session::connect(&url, &opts)
                .await
                .with_context(|| format!("login to {url}"))?;
            let granted = session.connection_count();
            let sessions = Arc::new(vec![session]);
            let w = Workload {
                mode: mode_of(m),
                block_bytes,
                threads: a.threads,
                duration: a.time,
                pattern: Pattern::Seq,
                verify: false,
                range_bytes: 0,
            };
            let r = workload::run(sessions.clone(), w, a.time, |_| {})
                .await
                .with_context(|| format!("{m:?} with {c} connections"))?;
            eprintln!("{m:?} x {granted} connection(s): done");
            if let Ok(list) = Arc::try_unwrap(sessions) {
                for s in list {
                    let _ = s.logout().await;
                }
            }
            if !r.passed() {
                bail!(
                    "{m:?} with {c} connections: {} I/O errors, first: {}",
                    r.errors,
                    r.first_error.unwrap_or_default()
                );
            }
            rows.push((m, c, granted, r));
        }
    }
    println!(
        "{:<6} {:>5} {:>12} {:>10} {:>12} {:>10}",
        "mode", "conns", "read MB/s", "read IOPS", "write MB/s", "write IOPS"
    );
    for (m, _c, granted, r) in &rows {
        let mb = |b: u64| b as f64 / r.seconds / 1_048_576.0;
        let iops = |t: u64| t as f64 / r.seconds;
        println!(
            "{:<6} {:>5} {:>12.2} {:>10.1} {:>12.2} {:>10.1}",
            format!("{m:?}").to_lowercase(),
            granted,
            mb(r.read.bytes),
            iops(r.read.transfers),
            mb(r.write.bytes),
            iops(r.write.transfers)
        );
    }
    Ok(())
}

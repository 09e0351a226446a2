//! `iolab bench` and `iolab discover`: the embedded initiator from the command line.

use std::sync::Arc;

use anyhow::{Context, bail};
use iolab_iscsi::initiator::{self, InitiatorOptions, IscsiUrl, Session};
use iolab_lab_core::profile::{
    CellPlan, InitiatorKind, InitiatorSettings, PROFILE_FORMAT, Profile, WorkloadMatrix,
};
use iolab_lab_core::profile_run::cell_of;
use iolab_lab_core::workload::{self, Mode, Pattern, Progress, Report, Workload};
use iolab_storage::backstore::parse_size;

use crate::cli::{BenchArgs, DiscoverArgs, InitiatorArgs, MatrixArgs, Via};
use iolab_lab_core::kernel_initiator;
use iolab_lab_core::profile::MAX_SESSIONS as MAX_BENCH_SESSIONS;

fn options(a: &InitiatorArgs) -> anyhow::Result<InitiatorOptions> {
    if !(1..=8).contains(&a.connections) {
        bail!("--connections must be 1..=8");
    }
    if a.queue_depth == 0 || a.cmd_per_lun == 0 {
        bail!("--queue-depth and --cmd-per-lun must be at least 1");
    }
    Ok(InitiatorOptions {
        login_timeout: a.login_timeout,
        ..settings(a, None).options(a.connections)
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
    let now = iolab_profiles::time::utc_string(iolab_profiles::time::now_ms());
    println!(
        "| {now} | {kind:<5} | {} | iolab {} | {device} | {text}",
        std::process::id(),
        env!("CARGO_PKG_VERSION")
    );
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

/// The kernel's initiator's queue limits from the initiator options.
fn kernel_queue(a: &InitiatorArgs) -> kernel_initiator::KernelQueue {
    kernel_initiator::KernelQueue {
        cmds_max: a.queue_depth,
        queue_depth: a.cmd_per_lun,
    }
}

/// disktest's heartbeat lines: each direction's rate since the last one.
fn heartbeat(device: &str) -> impl FnMut(Progress) + '_ {
    let mut last = Progress::default();
    move |p: Progress| {
        let dt = (p.elapsed - last.elapsed).as_secs_f64();
        for (label, bytes, ios, bytes0, ios0) in [
            (
                "Heartbeat read",
                p.read_bytes,
                p.read_ios,
                last.read_bytes,
                last.read_ios,
            ),
            (
                "Heartbeat write",
                p.write_bytes,
                p.write_ios,
                last.write_bytes,
                last.write_ios,
            ),
        ] {
            if ios > 0 {
                line(
                    "STAT",
                    device,
                    &throughput(label, bytes - bytes0, ios - ios0, dt),
                );
            }
        }
        last = p;
    }
}

/// The workload `bench`'s options describe.
fn workload_of(
    a: &BenchArgs,
    mode: Mode,
    pattern: Pattern,
    block_bytes: u32,
    range_bytes: u64,
) -> Workload {
    Workload {
        mode,
        block_bytes,
        threads: a.threads,
        duration: a.time,
        pattern,
        verify: a.verify,
        range_bytes,
    }
}

/// The disktest start line's arguments.
fn start_args(a: &BenchArgs, mode: Mode, pattern: Pattern, block_bytes: u32) -> String {
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
    format!(
        "Start args: -K{} -h{} -T{} {flag} -b{block_bytes} (-D {mix}) (-p {})",
        a.threads,
        a.heartbeat.as_secs(),
        a.time.as_secs(),
        if pattern == Pattern::Seq { "L" } else { "R" },
    )
}

/// `iolab bench` on a block device or file (O_DIRECT), disktest's output.
async fn bench_device(a: &BenchArgs, path: &std::path::Path, device: &str) -> anyhow::Result<()> {
    let block_bytes = parse_size(&a.bs)? as u32;
    if a.threads == 0 || a.threads > 4096 {
        bail!("--threads must be 1..=4096");
    }
    let mode = crate::cli::mode_of(a.mode);
    let pattern = crate::cli::pattern_of(a.pattern);
    let volume = Arc::new(workload::Device::open(path)?);
    line("START", device, &start_args(a, mode, pattern, block_bytes));
    line("INFO", device, "Starting pass");
    let range_bytes = match &a.range {
        Some(r) => parse_size(r)?,
        None => 0,
    };
    let w = workload_of(a, mode, pattern, block_bytes, range_bytes);
    let report = workload::run_on(volume, w, a.heartbeat, heartbeat(device))
        .await
        .with_context(|| format!("benchmark on {device}"))?;
    print_report(device, &report, &[]);
    if a.json {
        println!(
            "{}",
            crate::json::line("iolab.bench.v1", &BenchJson::of(&report, &[]))?
        );
    }
    verdict(&report)
}

/// A failed verify or I/O errors as the command's error.
fn verdict(report: &Report) -> anyhow::Result<()> {
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
            report.first_error.clone().unwrap_or_default()
        );
    }
    Ok(())
}

pub async fn bench(db: Option<&std::path::Path>, a: BenchArgs) -> anyhow::Result<()> {
    // A path (no scheme) is a disk or file; any URL must be an iSCSI one.
    if !a.url.contains("://") {
        let path = std::path::PathBuf::from(&a.url);
        let shown = path.display().to_string();
        return bench_device(&a, &path, &shown).await;
    }
    if a.via == Via::OpenIscsi {
        let url = IscsiUrl::parse(&a.url, false)?;
        let disk = kernel_initiator::attach(&url, kernel_queue(&a.initiator)).await?;
        let shown = format!("{} (open-iscsi {})", disk.device.display(), url.portal());
        let r = bench_device(&a, &disk.device, &shown).await;
        kernel_initiator::detach(disk).await;
        return r;
    }
    let url = IscsiUrl::parse(&a.url, false)?;
    let opts = options(&a.initiator)?;
    let block_bytes = parse_size(&a.bs)? as u32;
    if a.threads == 0 || a.threads > 4096 {
        bail!("--threads must be 1..=4096");
    }
    if !(1..=MAX_BENCH_SESSIONS).contains(&a.sessions) {
        bail!("--sessions must be 1..={MAX_BENCH_SESSIONS}");
    }
    let range_bytes = match &a.range {
        Some(r) => parse_size(r)?,
        None => 0,
    };
    let (sessions, shards) = workload::connect(&url, &opts, a.sessions)
        .await
        .with_context(|| format!("login to {url}"))?;
    let granted = sessions[0].connection_count();
    let mode = crate::cli::mode_of(a.mode);
    let pattern = crate::cli::pattern_of(a.pattern);
    let device = url.to_string();
    line(
        "START",
        &device,
        &format!(
            "{} (connections {granted}, sessions {})",
            start_args(&a, mode, pattern, block_bytes),
            a.sessions
        ),
    );
    line("INFO", &device, "Starting pass");
    let started_ms = iolab_profiles::time::now_ms();
    let w = workload_of(&a, mode, pattern, block_bytes, range_bytes);
    let sessions = Arc::new(sessions);
    // The initiator's own counters for Prometheus, while the run lasts.
    let _metrics = match a.metrics {
        Some(addr) => {
            let (list, name) = (sessions.clone(), opts.initiator_name.clone());
            let source: Arc<dyn iolab_lab_core::sampler::SessionSource> =
                Arc::new(move || list.iter().map(|s| s.info(&name)).collect());
            Some(crate::runner::serve_initiator_metrics(addr, source).await?)
        }
        None => None,
    };
    let recording = iolab_lab_core::series::Recording::start(sessions.clone(), 0);
    let report = workload::run(
        sessions.clone(),
        shards.as_ref(),
        w,
        a.heartbeat,
        heartbeat(&device),
    )
    .await;
    let series = recording.finish().await;
    let report = report.with_context(|| format!("benchmark on {url}"))?;
    print_report(&device, &report, &sessions);
    if a.json {
        println!(
            "{}",
            crate::json::line("iolab.bench.v1", &BenchJson::of(&report, &sessions))?
        );
    }
    let profile = Adhoc {
        name: "bench",
        url: &a.url,
        initiator: &a.initiator,
        modes: vec![mode],
        conns: vec![a.initiator.connections],
        sessions: a.sessions,
        bs: &a.bs,
        threads: a.threads,
        time: a.time,
        pattern,
        verify: a.verify,
        range: a.range.clone(),
        initiators: vec![InitiatorKind::Iolab],
    }
    .profile();
    let plan = CellPlan {
        lun: url.lun,
        mode,
        connections: a.initiator.connections,
        initiator: InitiatorKind::Iolab,
    };
    let run = iolab_profiles::Run {
        id: None,
        profile_name: profile.name.clone(),
        profile_body: profile.to_toml(),
        started_ms,
        ended_ms: iolab_profiles::time::now_ms(),
        host: iolab_lab_core::host::facts(url.host_ip()),
        cells: vec![cell_of(&plan, granted, &profile, block_bytes, &report)],
        series,
        hosts: Vec::new(),
    };
    crate::runner::store_run(db, &run);
    match Arc::try_unwrap(sessions) {
        Ok(list) => {
            for s in list {
                let _ = s.logout().await;
            }
        }
        Err(_) => tracing::debug!("sessions still shared at exit"),
    }
    verdict(&report)
}

/// `bench --json`: the run's totals, latency and per-connection counters.
#[derive(serde::Serialize)]
struct BenchJson {
    seconds: f64,
    read_bytes: u64,
    read_transfers: u64,
    write_bytes: u64,
    write_transfers: u64,
    errors: u64,
    mismatches: u64,
    latency_us: LatencyJson,
    connections: Vec<ConnJson>,
}

#[derive(serde::Serialize)]
struct LatencyJson {
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
}

#[derive(serde::Serialize)]
struct ConnJson {
    session: usize,
    cid: u16,
    read_bytes: u64,
    write_bytes: u64,
    commands: u64,
}

impl BenchJson {
    fn of(r: &Report, sessions: &[Session]) -> BenchJson {
        let us = |ns: u64| ns as f64 / 1e3;
        BenchJson {
            seconds: r.seconds,
            read_bytes: r.read.bytes,
            read_transfers: r.read.transfers,
            write_bytes: r.write.bytes,
            write_transfers: r.write.transfers,
            errors: r.errors,
            mismatches: r.mismatches,
            latency_us: LatencyJson {
                p50: us(r.latency.percentile(0.5)),
                p99: us(r.latency.percentile(0.99)),
                p999: us(r.latency.percentile(0.999)),
                max: us(r.latency.max_ns),
            },
            connections: sessions
                .iter()
                .enumerate()
                .flat_map(|(session, s)| {
                    s.connection_stats()
                        .into_iter()
                        .map(move |(cid, st)| ConnJson {
                            session,
                            cid,
                            read_bytes: st.read_bytes,
                            write_bytes: st.write_bytes,
                            commands: st.commands,
                        })
                })
                .collect(),
        }
    }
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
    // A disk has no connections of ours to show (the kernel's initiator ran it).
    if !sessions.is_empty() {
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

/// The initiator part of a profile, from the command line.
fn settings(a: &InitiatorArgs, url: Option<&str>) -> InitiatorSettings {
    InitiatorSettings {
        url: url.map(str::to_string),
        name: a.initiator_name.clone(),
        sessions: 1,
        queue_depth: a.queue_depth,
        cmd_per_lun: a.cmd_per_lun,
        header_digest: a.header_digest,
        data_digest: a.data_digest,
        immediate_data: !a.no_immediate_data,
        initial_r2t: a.initial_r2t,
        io_timeout: format!("{}ms", a.io_timeout.as_millis()),
        ..InitiatorSettings::default()
    }
}

/// The profile a command-line run amounts to, kept with its stored run.
struct Adhoc<'a> {
    name: &'a str,
    url: &'a str,
    initiator: &'a InitiatorArgs,
    modes: Vec<Mode>,
    conns: Vec<u32>,
    sessions: u32,
    bs: &'a str,
    threads: u32,
    time: std::time::Duration,
    pattern: Pattern,
    verify: bool,
    range: Option<String>,
    initiators: Vec<InitiatorKind>,
}

impl Adhoc<'_> {
    fn profile(self) -> Profile {
        Profile {
            format: PROFILE_FORMAT,
            name: self.name.into(),
            description: format!("iolab {} {}", self.name, self.url),
            tuning: None,
            target: None,
            initiator: InitiatorSettings {
                sessions: self.sessions,
                ..settings(self.initiator, Some(self.url))
            },
            workload: WorkloadMatrix {
                modes: self.modes,
                connections: self.conns,
                luns: None,
                block_size: self.bs.into(),
                threads: self.threads,
                time: format!("{}ms", self.time.as_millis()),
                pattern: self.pattern,
                verify: self.verify,
                range: self.range,
                initiators: self.initiators,
            },
            guests: Vec::new(),
            hosts: Vec::new(),
            roles: None,
        }
    }
}

/// `iolab matrix`: every mode at every connection count, stored as a run, then
/// one table like the seed page's.
pub async fn matrix(db: Option<&std::path::Path>, a: MatrixArgs) -> anyhow::Result<()> {
    IscsiUrl::parse(&a.url, false)?;
    options(&a.initiator)?;
    let p = Adhoc {
        name: "matrix",
        url: &a.url,
        initiator: &a.initiator,
        modes: crate::cli::modes_of(&a.shape.modes),
        conns: a.conns.clone(),
        sessions: 1,
        bs: &a.shape.bs,
        threads: a.shape.threads,
        time: a.time,
        pattern: Pattern::Seq,
        verify: false,
        range: None,
        initiators: a
            .initiators
            .iter()
            .map(|v| crate::cli::initiator_of(*v))
            .collect(),
    }
    .profile();
    let problems = p.problems();
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    // Each initiator's cells in the order --initiators names them (the
    // kernel's at one connection: open-iscsi has no MC/S).
    let run = crate::runner::execute(&p, &p.to_toml()).await?;
    let id = crate::runner::store_run(db, &run);
    print!("{}", crate::table::cells(&run.cells));
    if let Some(id) = id {
        println!("stored as run {id}");
    }
    Ok(())
}

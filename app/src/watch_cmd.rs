//! `iolab watch`: per-connection figures every interval, from a running
//! engine's `/metrics` or a stored run, as a table or JSON lines.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use iolab_lab_core::watch::{self, WatchLine};

use crate::cli::WatchArgs;

pub async fn watch(db: Option<&std::path::Path>, a: WatchArgs) -> anyhow::Result<()> {
    if a.interval < Duration::from_millis(100) {
        bail!("--interval must be at least 100ms");
    }
    let mut out = std::io::stdout().lock();
    if let Some(id) = a.run {
        let store = iolab_lab_core::notebook::open(db)?;
        let run = store.run(id)?;
        if run.series.is_empty() {
            bail!("run {id} has no per-connection series");
        }
        let lines = watch::stored(&run);
        // One block per sample: the connections of one cell at one time.
        let blocks = lines.chunk_by(|a, b| a.t_ms == b.t_ms && a.conn.peer == b.conn.peer);
        let n = a.count.map_or(usize::MAX, |c| c as usize);
        for (i, block) in blocks.take(n).enumerate() {
            print(&mut out, block, a.json, i == 0)?;
        }
        return Ok(());
    }
    let Some(url) = a.metrics_url.as_deref() else {
        bail!(
            "say where to watch: --metrics-url URL (target serve, bench, run or the console started with --metrics ADDR:PORT) or --run ID (a stored run)"
        );
    };
    let timeout = a.interval.max(Duration::from_secs(5));
    let mut before = watch::parse(&watch::fetch(url, timeout).await?);
    let mut at = Instant::now();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + a.interval, a.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut first = true;
    let mut n = 0u64;
    while a.count.is_none_or(|c| n < c) {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        let now = watch::parse(&watch::fetch(url, timeout).await?);
        let secs = at.elapsed().as_secs_f64();
        at = Instant::now();
        let lines = watch::interval(&before, &now, secs, iolab_profiles::time::now_ms());
        print(&mut out, &lines, a.json, first)?;
        first = false;
        before = now;
        n += 1;
    }
    Ok(())
}

/// Time of day (UTC) for live lines, seconds into the cell for stored ones.
fn when(t_ms: i64) -> String {
    if t_ms > 1_000_000_000_000 {
        let s = iolab_profiles::time::utc_string(t_ms);
        let tod = s.rsplit('-').next().unwrap_or(&s).to_string();
        format!("{tod}.{:03}", t_ms.rem_euclid(1000))
    } else {
        format!("{:.2}s", t_ms as f64 / 1000.0)
    }
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "-".into(), |x| format!("{x:.prec$}"))
}

/// JSON lines, or one block per interval: a row per connection and a total.
fn print(
    out: &mut impl Write,
    lines: &[WatchLine],
    json: bool,
    header: bool,
) -> anyhow::Result<()> {
    if json {
        for l in lines {
            serde_json::to_writer(&mut *out, l)?;
            writeln!(out)?;
        }
        return out.flush().context("writing to stdout");
    }
    if header {
        writeln!(
            out,
            "{:<13} {:>5} {:>4} {:<22} {:>10} {:>10} {:>9} {:>5} {:>8} {:>8}",
            "time",
            "tsih",
            "cid",
            "peer",
            "read MB/s",
            "write MB/s",
            "IOPS",
            "InFl",
            "p50 us",
            "p99 us"
        )?;
    }
    let mut total = (0.0, 0.0, 0.0);
    for l in lines {
        writeln!(
            out,
            "{:<13} {:>5} {:>4} {:<22} {:>10.1} {:>10.1} {:>9} {:>5} {:>8} {:>8}",
            when(l.t_ms),
            l.conn.tsih,
            l.conn.cid,
            l.conn.peer,
            l.read_mbps,
            l.write_mbps,
            opt(l.iops, 0),
            l.in_flight.map_or_else(|| "-".into(), |v| v.to_string()),
            opt(l.p50_us, 0),
            opt(l.p99_us, 0)
        )?;
        total.0 += l.read_mbps;
        total.1 += l.write_mbps;
        total.2 += l.iops.unwrap_or(0.0);
    }
    if lines.len() > 1 {
        let iops = if lines.iter().any(|l| l.iops.is_some()) {
            format!("{:.0}", total.2)
        } else {
            "-".into()
        };
        writeln!(
            out,
            "{:<13} {:>5} {:>4} {:<22} {:>10.1} {:>10.1} {:>9}",
            "", "", "", "total", total.0, total.1, iops
        )?;
    }
    if lines.is_empty() {
        writeln!(out, "(no connections)")?;
    }
    out.flush().context("writing to stdout")
}

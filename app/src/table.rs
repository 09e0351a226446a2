//! The tables runs print: the seed page's MB/s and IOPS per cell, and two runs side by side.

use iolab_profiles::{Cell, CompareRow, Run};

/// One line per cell.
pub fn cells(cells: &[Cell]) -> String {
    // A run that compares initiators says which ran each row.
    let who = cells.iter().any(|c| !c.initiator.is_empty());
    let name = |c: &Cell| match (who, c.initiator.as_str()) {
        (false, _) => String::new(),
        (true, "") => format!("{:<11} ", "iolab"),
        (true, i) => format!("{i:<11} "),
    };
    let mut out = if who {
        format!("{:<11} ", "initiator")
    } else {
        String::new()
    };
    out += &format!(
        "{:>3} {:<6} {:>5} {:>11} {:>10} {:>11} {:>10} {:>9} {:>9}\n",
        "lun",
        "mode",
        "conns",
        "read MB/s",
        "read IOPS",
        "write MB/s",
        "write IOPS",
        "p50 us",
        "p99 us"
    );
    for c in cells {
        out += &name(c);
        out += &format!(
            "{:>3} {:<6} {:>5} {:>11.2} {:>10.1} {:>11.2} {:>10.1} {:>9.1} {:>9.1}\n",
            c.lun,
            c.mode,
            c.connections,
            c.read_mbps(),
            c.read_iops(),
            c.write_mbps(),
            c.write_iops(),
            c.p50_us,
            c.p99_us
        );
    }
    out
}

/// Where and when a run was measured.
pub fn header(r: &Run) -> String {
    let secs = (r.ended_ms - r.started_ms) as f64 / 1000.0;
    let mut out = format!(
        "run {} of profile {}\nstarted {} UTC, {secs:.1} s\n",
        r.id.map(|i| i.to_string()).unwrap_or_else(|| "-".into()),
        r.profile_name,
        iolab_profiles::time::utc_string(r.started_ms),
    );
    if r.hosts.is_empty() {
        out += &format!("host: {}\n", facts(&r.host));
    }
    // A run across hosts: each host, what it did, and its settings as run.
    for h in &r.hosts {
        out += &format!(
            "host {} ({}): {}\n",
            h.name,
            h.roles.join(" + "),
            facts(&h.facts)
        );
        out += &format!("  agent {}\n", h.agent);
        if !h.settings.is_empty() {
            let s: Vec<String> = h.settings.iter().map(|(k, v)| format!("{k}={v}")).collect();
            out += &format!("  as run: {}\n", s.join(", "));
        }
    }
    out
}

fn facts(h: &iolab_profiles::HostFacts) -> String {
    format!(
        "kernel {}, {} ({} cores), {:.1} GiB, via {}",
        h.kernel,
        h.cpu_model,
        h.cores,
        h.memory_bytes as f64 / (1u64 << 30) as f64,
        if h.interfaces.is_empty() {
            "-".to_string()
        } else {
            h.interfaces.join(", ")
        }
    )
}

fn opt(v: Option<f64>, prec: usize) -> String {
    v.map(|x| format!("{x:.prec$}"))
        .unwrap_or_else(|| "-".into())
}

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{x:+.1}%")).unwrap_or_else(|| "-".into())
}

/// Two runs' cells side by side (MB/s and IOPS, read and write together), change in percent.
pub fn compare(a: i64, b: i64, rows: &[CompareRow]) -> String {
    let mut out = format!(
        "{:>3} {:<6} {:>5} {:>4} {:>7} | {:>10} {:>10} {:>8} | {:>10} {:>10} {:>8}\n",
        "lun",
        "mode",
        "conns",
        "sess",
        "bs",
        format!("#{a} MB/s"),
        format!("#{b} MB/s"),
        "change",
        format!("#{a} IOPS"),
        format!("#{b} IOPS"),
        "change"
    );
    for r in rows {
        let k = &r.key;
        out += &format!(
            "{:>3} {:<6} {:>5} {:>4} {:>7} | {:>10} {:>10} {:>8} | {:>10} {:>10} {:>8}\n",
            k.lun,
            k.mode,
            k.connections,
            k.sessions,
            k.block_bytes,
            opt(r.a.as_ref().map(Cell::total_mbps), 2),
            opt(r.b.as_ref().map(Cell::total_mbps), 2),
            pct(r.mbps_change()),
            opt(r.a.as_ref().map(Cell::total_iops), 1),
            opt(r.b.as_ref().map(Cell::total_iops), 1),
            pct(r.iops_change()),
        );
    }
    out
}

/// A run's cells as CSV.
pub fn csv(r: &Run) -> String {
    let mut out = String::from(
        "run,lun,mode,connections,sessions,block_bytes,threads,seconds,read_bytes,read_transfers,\
         write_bytes,write_transfers,errors,read_mbps,read_iops,write_mbps,write_iops,p50_us,p99_us,p999_us,max_us\n",
    );
    for c in &r.cells {
        out += &format!(
            "{},{},{},{},{},{},{},{:.6},{},{},{},{},{},{:.3},{:.1},{:.3},{:.1},{:.1},{:.1},{:.1},{:.1}\n",
            r.id.unwrap_or(0),
            c.lun,
            c.mode,
            c.connections,
            c.sessions,
            c.block_bytes,
            c.threads,
            c.seconds,
            c.read_bytes,
            c.read_transfers,
            c.write_bytes,
            c.write_transfers,
            c.errors,
            c.read_mbps(),
            c.read_iops(),
            c.write_mbps(),
            c.write_iops(),
            c.p50_us,
            c.p99_us,
            c.p999_us,
            c.max_us
        );
    }
    out
}

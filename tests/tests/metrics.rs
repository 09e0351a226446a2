//! The target's counters for Prometheus: `iolab target serve --metrics`
//! serves `/metrics`; `promtool check metrics` accepts it, and Debian's
//! real `prometheus`, scraping it every second while `qemu-img bench`
//! reads, answers `rate(iolab_connection_read_bytes_total[20s])` within 10%
//! of what the engine counted over the same 20 s.

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use iolab_tests::{Proc, TempDir, free_port, require_peer, serve};

/// The body of `GET path` on a loopback port (HTTP/1.0, the whole answer).
fn http_get(port: u16, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    match out.split_once("\r\n\r\n") {
        Some((head, body))
            if head.starts_with("HTTP/1.1 200") || head.starts_with("HTTP/1.0 200") =>
        {
            body.to_string()
        }
        _ => panic!("GET {path}: {out}"),
    }
}

/// `promtool check metrics` (Prometheus's own linter) accepts the exposition.
fn promtool_accepts(body: &str) {
    let mut lint = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool");
    lint.stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let out = lint.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{body}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Bytes read over every connection, from one scrape of `/metrics`, and when.
fn engine_read_bytes(port: u16) -> (f64, f64) {
    let body = http_get(port, "/metrics");
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let total = body
        .lines()
        .filter(|l| l.starts_with("iolab_connection_read_bytes_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    (total, t)
}

#[test]
fn prometheus_scrapes_the_target_during_a_qemu_img_bench() {
    if !require_peer("prometheus") || !require_peer("promtool") || !require_peer("qemu-img") {
        return;
    }
    let dir = TempDir::new("metrics");
    let mport = free_port();
    let (mut target, urls) = serve(&[
        "--ramdisk",
        "256M",
        "--metrics",
        &format!("127.0.0.1:{mport}"),
    ]);

    // The exposition is valid by Prometheus's own linter.
    let body = http_get(mport, "/metrics");
    promtool_accepts(&body);

    let pport = free_port();
    let conf = dir.0.join("prometheus.yml");
    std::fs::write(
        &conf,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: iolab\n    static_configs:\n      - targets: ['127.0.0.1:{mport}']\n"
        ),
    )
    .unwrap();
    let _prometheus = Proc::new(
        Command::new("prometheus")
            .arg(format!("--config.file={}", conf.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.0.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{pport}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("prometheus"),
    );

    // Reads for longer than the test needs; killed at the end.
    let _bench = Proc::new(
        Command::new("qemu-img")
            .args([
                "bench",
                "-f",
                "raw",
                "-c",
                "100000000",
                "-d",
                "16",
                "-s",
                "65536",
            ])
            .arg(&urls[0])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("qemu-img bench"),
    );
    std::thread::sleep(Duration::from_secs(8));
    let (b1, t1) = engine_read_bytes(mport);
    std::thread::sleep(Duration::from_secs(20));
    let (b2, t2) = engine_read_bytes(mport);
    let engine = (b2 - b1) / (t2 - t1);
    assert!(engine > 0.0, "the bench moved nothing");

    // Prometheus's view of the same 20 s (it ingests within a second or two).
    std::thread::sleep(Duration::from_secs(3));
    let query = format!(
        "/api/v1/query?query=sum(rate(iolab_connection_read_bytes_total%5B20s%5D))&time={t2:.3}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let prom = loop {
        let ans = http_get(pport, &query);
        // {"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[T,"V"]}]}}
        let v = ans
            .split("\"value\":[")
            .nth(1)
            .and_then(|r| r.split('"').nth(1))
            .and_then(|v| v.parse::<f64>().ok());
        match v {
            Some(v) => break v,
            None if Instant::now() < deadline => std::thread::sleep(Duration::from_secs(1)),
            None => panic!("prometheus has no rate: {ans}"),
        }
    };
    let off = (prom - engine).abs() / engine;
    eprintln!(
        "prometheus {prom:.0} B/s, engine {engine:.0} B/s, {:.2}% apart",
        off * 100.0
    );
    assert!(
        off < 0.10,
        "prometheus says {prom:.0} B/s, the engine counted {engine:.0} B/s: {:.1}% apart",
        off * 100.0
    );
    target.kill();
}

/// `/metrics` on `mport` once it answers with `want` connections reading.
fn wait_for_reading(mport: u16, want: usize, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if std::net::TcpStream::connect(("127.0.0.1", mport)).is_ok() {
            let b = http_get(mport, "/metrics");
            let moving = b
                .lines()
                .filter(|l| l.starts_with("iolab_connection_read_bytes_total{"))
                .filter(|l| {
                    l.rsplit(' ')
                        .next()
                        .and_then(|v| v.parse::<f64>().ok())
                        .unwrap_or(0.0)
                        > 0.0
                })
                .count();
            if moving == want {
                return b;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}'s metrics never showed {want} connection(s) reading"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// `iolab run PROFILE --metrics`: each cell's sessions, as the initiator
/// counts them, while the profile runs (here the quick profile's first
/// cell: verified writes, then reads, one connection).
#[test]
fn run_serves_each_cells_counters() {
    if !require_peer("promtool") {
        return;
    }
    let dir = TempDir::new("run-metrics");
    let mport = free_port();
    let mut run = Proc::new(
        iolab_tests::iolab()
            .args([
                "--db",
                dir.0.join("nb.db").to_str().unwrap(),
                "run",
                "quick",
            ])
            .args(["--metrics", &format!("127.0.0.1:{mport}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iolab run"),
    );
    let body = wait_for_reading(mport, 1, "iolab run quick");
    assert!(
        body.contains("initiator=\"iqn.2026-11.io.iolab:initiator\""),
        "{body}"
    );
    promtool_accepts(&body);
    assert!(run.child.wait().unwrap().success());
}

#[test]
fn bench_serves_the_initiators_counters_while_it_runs() {
    if !require_peer("promtool") {
        return;
    }
    let (mut target, urls) = serve(&["--ramdisk", "64M"]);
    let mport = free_port();
    let mut bench = Proc::new(
        iolab_tests::iolab()
            .args([
                "bench",
                &urls[0],
                "--mode",
                "read",
                "--time",
                "6s",
                "--connections",
                "2",
            ])
            .args(["--metrics", &format!("127.0.0.1:{mport}")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("iolab bench"),
    );
    let body = wait_for_reading(mport, 2, "the bench");
    let port = iolab_tests::portal_of(&urls[0]);
    assert!(
        body.contains(&format!("peer=\"{port}\"")),
        "the peer is the target:\n{body}"
    );
    promtool_accepts(&body);
    assert!(bench.child.wait().unwrap().success());
    target.kill();
}

#[test]
fn logins_logouts_and_refusals_are_counted() {
    if !require_peer("iscsi-ls") || !require_peer("promtool") {
        return;
    }
    let mport = free_port();
    let (mut target, urls) = serve(&[
        "--ramdisk",
        "16M",
        "--metrics",
        &format!("127.0.0.1:{mport}"),
    ]);
    let portal = iolab_tests::portal_of(&urls[0]);
    // A discovery session and a normal one (iscsi-ls lists the LUNs), each logged out.
    let (ok, out) = iolab_tests::run(
        Command::new("iscsi-ls").args(["-s", &format!("iscsi://{portal}")]),
        Duration::from_secs(20),
    );
    assert!(ok, "{out}");
    // A login to a target that does not exist is refused.
    let mut raw = iolab_tests::raw::RawConn::connect(&portal);
    let r = raw.login("iqn.2026-12.org.example:nothing-here", &[]);
    assert_ne!(r.bhs[36], 0, "refused");
    std::thread::sleep(Duration::from_millis(200));
    let body = http_get(mport, "/metrics");
    let value = |series: &str| -> f64 {
        body.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {series} in:\n{body}"))
    };
    assert_eq!(value("iolab_logins_total{type=\"discovery\"}"), 1.0);
    assert_eq!(value("iolab_logins_total{type=\"normal\"}"), 1.0);
    assert_eq!(value("iolab_login_failures_total"), 1.0);
    assert!(value("iolab_logouts_total") >= 1.0, "{body}");
    promtool_accepts(&body);
    target.kill();
}

/// `iolab watch --json` started before a bench and running past its end:
/// its lines have the v1 schema, name both connections, and the bytes of
/// all its intervals add up, per connection, to the engine's final
/// counters (connections new to a scrape start from zero).
#[test]
fn watch_lines_add_up_to_what_the_engine_counted() {
    let mport = free_port();
    let (mut target, urls) = serve(&[
        "--ramdisk",
        "64M",
        "--metrics",
        &format!("127.0.0.1:{mport}"),
    ]);
    let url = format!("http://127.0.0.1:{mport}/metrics");
    let watch = iolab_tests::iolab()
        .args(["watch", "--json", "--interval", "500ms", "--count", "12"])
        .args(["--metrics-url", &url])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("iolab watch");
    std::thread::sleep(Duration::from_millis(700));
    let (ok, out) = iolab_tests::run(
        iolab_tests::iolab().args([
            "bench",
            &urls[0],
            "--mode",
            "write",
            "--time",
            "2",
            "--connections",
            "2",
            "--bs",
            "64K",
        ]),
        Duration::from_secs(30),
    );
    assert!(ok, "bench: {out}");
    let done = watch.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&done.stdout);
    assert!(
        done.status.success(),
        "watch: {text}{}",
        String::from_utf8_lossy(&done.stderr)
    );
    let mut per_cid = std::collections::BTreeMap::<u64, u64>::new();
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert_eq!(v["schema"], "iolab.watch.v1", "{line}");
        assert!(v["interval_s"].as_f64().unwrap() > 0.3, "{line}");
        *per_cid.entry(v["cid"].as_u64().unwrap()).or_default() +=
            v["write_bytes"].as_u64().unwrap();
    }
    assert_eq!(per_cid.len(), 2, "both connections:\n{text}");
    // The engine's final counters, from one more scrape (ended connections
    // stay in /metrics for a grace period).
    let body = http_get(mport, "/metrics");
    for (cid, watched) in &per_cid {
        let counted: u64 = body
            .lines()
            .filter(|l| l.starts_with("iolab_connection_write_bytes_total{"))
            .filter(|l| l.contains(&format!("cid=\"{cid}\"")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum();
        assert!(counted > 0);
        assert_eq!(
            *watched, counted,
            "cid {cid}: watch summed {watched}, engine {counted}"
        );
    }
    // The LUN counted the same writes, whichever connection carried them.
    let lun: u64 = body
        .lines()
        .find_map(|l| {
            l.strip_prefix(
                "iolab_lun_write_bytes_total{target=\"iqn.2026-11.io.iolab:target0\",lun=\"0\"} ",
            )?
            .parse()
            .ok()
        })
        .unwrap_or_else(|| panic!("no LUN 0 write counter in:\n{body}"));
    assert_eq!(lun, per_cid.values().sum::<u64>(), "{body}");
    assert!(body.contains("# TYPE iolab_lun_commands_total counter"));
    target.kill();
}

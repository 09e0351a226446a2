//! The embedded initiator (`iolab bench`, `iolab discover`) against Debian's
//! tgtd and against our own target; data cross-checked with qemu-img (libiscsi).

use std::process::Command;
use std::time::{Duration, Instant};

use iolab_lab_core::workload::{check_block, fill_block};
use iolab_tests::{TempDir, Tgtd, iolab, require_peer, run, serve};

fn bench(url: &str, args: &[&str]) -> (bool, String) {
    run(
        iolab().arg("bench").arg(url).args(args),
        Duration::from_secs(120),
    )
}

fn json_field(out: &str, key: &str) -> u64 {
    let line = out
        .lines()
        .rev()
        .find(|l| l.starts_with('{'))
        .unwrap_or_default();
    let at = line
        .find(&format!("\"{key}\":"))
        .unwrap_or_else(|| panic!("no {key} in {line}"));
    line[at + key.len() + 3..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap_or(0)
}

/// Reads the LUN at `url` with qemu-img (libiscsi) and checks the first
/// `mib` MiB are the self-checking blocks iolab wrote.
fn assert_libiscsi_reads_back(url: &str, dir: &TempDir, mib: usize) {
    let back = dir.0.join("back.raw");
    let (ok, out) = run(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "raw", url])
            .arg(&back),
        Duration::from_secs(60),
    );
    assert!(ok, "qemu-img read: {out}");
    let data = std::fs::read(&back).unwrap();
    for (lba, block) in data[..mib << 20].chunks(512).enumerate() {
        assert!(
            check_block(block, lba as u64),
            "block {lba} written by iolab reads back wrong through libiscsi"
        );
    }
}

/// Writes a verified pattern, then reads it back verified, over `range`.
fn write_then_verify(url: &str, extra: &[&str], range: &str) {
    for (mode, expect) in [
        ("write", "Total bytes written in"),
        ("read", "Total read throughput:"),
    ] {
        let mut args = vec![
            "--mode",
            mode,
            "--verify",
            "--time",
            "1s",
            "--range",
            range,
            "--threads",
            "16",
        ];
        args.extend_from_slice(extra);
        let (ok, out) = bench(url, &args);
        assert!(ok, "verified {mode} failed: {out}");
        assert!(
            out.contains(expect) && out.contains("Test Done (Passed)"),
            "{out}"
        );
    }
}

#[test]
fn against_tgtd_discovery_and_verified_io() {
    if !require_peer("tgtd") {
        return;
    }
    let t = Tgtd::start(64, &[]);
    let (ok, out) = run(
        iolab().args(["discover", &format!("iscsi://127.0.0.1:{}", t.port)]),
        Duration::from_secs(20),
    );
    assert!(ok, "discovery failed: {out}");
    assert!(out.contains(&t.iqn), "{out}");
    write_then_verify(&t.url(1), &[], "16M");
}

#[test]
fn against_tgtd_with_small_negotiated_limits() {
    if !require_peer("tgtd") {
        return;
    }
    let t = Tgtd::start(
        64,
        &[
            ("MaxRecvDataSegmentLength", "8192"),
            ("ImmediateData", "No"),
            ("InitialR2T", "Yes"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "65536"),
            ("MaxOutstandingR2T", "1"),
        ],
    );
    write_then_verify(&t.url(1), &[], "8M");
    write_then_verify(
        &t.url(1),
        &["--header-digest", "--data-digest", "--bs", "64k"],
        "8M",
    );
}

#[test]
fn against_tgtd_with_chap() {
    if !require_peer("tgtd") {
        return;
    }
    let t = Tgtd::start(32, &[]);
    t.adm(&[
        "--op",
        "new",
        "--mode",
        "account",
        "--user",
        "benchuser",
        "--password",
        "benchsecret12",
    ])
    .unwrap();
    t.adm(&[
        "--op",
        "bind",
        "--mode",
        "account",
        "--tid",
        "1",
        "--user",
        "benchuser",
    ])
    .unwrap();
    let good = t
        .url(1)
        .replacen("iscsi://", "iscsi://benchuser%benchsecret12@", 1);
    write_then_verify(&good, &[], "4M");
    let bad = t
        .url(1)
        .replacen("iscsi://", "iscsi://benchuser%wrongsecret1@", 1);
    let start = Instant::now();
    let (ok, out) = bench(&bad, &["--time", "1s"]);
    assert!(!ok, "a wrong CHAP secret was accepted: {out}");
    assert!(out.contains("authentication failure"), "{out}");
    assert!(start.elapsed() < Duration::from_secs(15));
}

#[test]
fn bytes_cross_check_with_qemu_img_both_ways() {
    if !require_peer("tgtd") || !require_peer("qemu-img") {
        return;
    }
    let t = Tgtd::start(32, &[]);
    let dir = TempDir::new("xcheck");
    // Ours writes, libiscsi (qemu-img) reads.
    let (ok, out) = bench(
        &t.url(1),
        &[
            "--mode",
            "write",
            "--verify",
            "--time",
            "1s",
            "--range",
            "8M",
            "--threads",
            "8",
        ],
    );
    assert!(ok, "{out}");
    assert_libiscsi_reads_back(&t.url(1), &dir, 8);
    // libiscsi (qemu-img) writes, ours reads and verifies.
    let src = dir.0.join("src.raw");
    let mut img = vec![0u8; 32 << 20];
    for (lba, block) in img.chunks_mut(512).enumerate() {
        fill_block(block, lba as u64, 42);
    }
    std::fs::write(&src, &img).unwrap();
    let (ok, out) = run(
        Command::new("qemu-img")
            .args(["convert", "-n", "-f", "raw", "-O", "raw"])
            .arg(&src)
            .arg(t.url(1)),
        Duration::from_secs(60),
    );
    assert!(ok, "qemu-img write: {out}");
    let (ok, out) = bench(
        &t.url(1),
        &[
            "--mode",
            "read",
            "--verify",
            "--time",
            "1s",
            "--threads",
            "8",
        ],
    );
    assert!(ok, "iolab could not verify what libiscsi wrote: {out}");
    // And a verifying read of blocks that were never written fails with their LBA.
    let t2 = Tgtd::start(8, &[]);
    let (ok, out) = bench(&t2.url(1), &["--mode", "read", "--verify", "--time", "1s"]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("verify failed") && out.contains("first at LBA"),
        "{out}"
    );
}

#[test]
fn against_our_target_with_mcs_1_to_4_connections() {
    let (_srv, urls) = serve(&["--ramdisk", "64M"]);
    let url = &urls[0];
    // A per-LUN limit of 2 commands still moves verified data.
    write_then_verify(url, &["--cmd-per-lun", "2", "--queue-depth", "4"], "4M");
    for n in 1..=4 {
        let c = n.to_string();
        write_then_verify(url, &["--connections", &c], "16M");
        let (ok, out) = bench(
            url,
            &[
                "--mode",
                "rw",
                "--time",
                "1s",
                "--connections",
                &c,
                "--json",
            ],
        );
        assert!(ok, "{out}");
        let rows: Vec<&str> = out.lines().filter(|l| l.starts_with("0 ")).collect();
        assert_eq!(rows.len(), n, "expected {n} connection rows:\n{out}");
        // The per-connection payload counts add up to the session totals.
        let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap();
        let conns = &line[line.find("\"connections\":[").unwrap()..];
        let sum = |k: &str| -> u64 {
            conns
                .match_indices(&format!("\"{k}\":"))
                .map(|(i, m)| {
                    conns[i + m.len()..]
                        .chars()
                        .take_while(|c| c.is_ascii_digit())
                        .collect::<String>()
                        .parse::<u64>()
                        .unwrap()
                })
                .sum()
        };
        // The connections also carried the run's one READ CAPACITY(16) (32 bytes of Data-In).
        assert_eq!(
            sum("read_bytes"),
            json_field(&out, "read_bytes") + 32,
            "{out}"
        );
        assert_eq!(sum("write_bytes"), json_field(&out, "write_bytes"), "{out}");
        if n > 1 {
            assert!(conns.matches("\"cid\":").count() == n);
        }
    }
}

#[test]
fn several_sessions_each_carry_their_share_of_verified_io() {
    let (_srv, urls) = serve(&["--ramdisk", "64M"]);
    let url = &urls[0];
    // Sessions on the initiator's shards, two connections each: the data
    // written through all of them reads back right through all of them.
    write_then_verify(url, &["--sessions", "4", "--connections", "2"], "16M");
    let (ok, out) = bench(
        url,
        &[
            "--mode",
            "read",
            "--time",
            "1s",
            "--sessions",
            "4",
            "--threads",
            "8",
        ],
    );
    assert!(ok && out.contains("Test Done (Passed)"), "{out}");
    // Every session carried commands, and about the same number: 8 workers
    // dealt 2 to each of the 4 sessions.
    let mut per_session = [0u64; 4];
    for row in out.lines() {
        let f: Vec<&str> = row.split_whitespace().collect();
        if f.len() == 7
            && let (Ok(i), Ok(commands)) = (f[0].parse::<usize>(), f[5].parse::<u64>())
        {
            per_session[i] += commands;
        }
    }
    let (lo, hi) = (
        per_session.iter().min().copied().unwrap_or(0),
        per_session.iter().max().copied().unwrap_or(0),
    );
    assert!(
        lo > 100 && hi < lo * 2,
        "commands per session {per_session:?}:\n{out}"
    );
}

#[test]
fn bad_input_ends_with_one_clear_error_in_bounded_time() {
    let (_srv, urls) = serve(&["--ramdisk", "16M"]);
    let url = &urls[0];
    let portal = iolab_tests::portal_of(url);
    let dead = format!(
        "iscsi://127.0.0.1:{}/iqn.2026-11.x:y/0",
        iolab_tests::free_port()
    );
    let cases: Vec<(String, &str)> = vec![
        (dead, "cannot connect"),
        (
            format!("iscsi://{portal}/iqn.2026-11.org.example:nosuch/0"),
            "target not found",
        ),
        (
            format!("iscsi://{portal}/iqn.2026-11.io.iolab:target0/7"),
            "ASC/ASCQ 0x25/0x00",
        ),
        ("iscsi://no-lun-here".to_string(), "bad iSCSI URL"),
        ("http://127.0.0.1/x/0".to_string(), "bad iSCSI URL"),
    ];
    for (u, want) in cases {
        let start = Instant::now();
        let (ok, out) = bench(&u, &["--time", "1s"]);
        assert!(!ok, "{u}: succeeded: {out}");
        assert!(out.contains(want), "{u}: expected '{want}' in:\n{out}");
        assert!(!out.contains("panicked"), "{out}");
        let errors = out.lines().filter(|l| l.starts_with("iolab:")).count();
        assert_eq!(errors, 1, "{u}: one error line expected:\n{out}");
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{u}: took {:?}",
            start.elapsed()
        );
    }
}

#[test]
fn mcs_against_istgt_a_target_we_did_not_write() {
    if !require_peer("istgt") {
        return;
    }
    let t = iolab_tests::Istgt::start();
    for n in [1usize, 2, 4] {
        let c = n.to_string();
        write_then_verify(&t.url(), &["--connections", &c], "8M");
        let (ok, out) = bench(
            &t.url(),
            &["--mode", "read", "--time", "1s", "--connections", &c],
        );
        assert!(ok, "{out}");
        assert!(
            out.contains(&format!("(connections {n}, sessions 1)")),
            "istgt did not grant {n} connections:\n{out}"
        );
        let rows = out.lines().filter(|l| l.starts_with("0 ")).count();
        assert_eq!(rows, n, "{out}");
    }
}

#[test]
fn matrix_prints_one_row_per_mode_and_connection_count_and_stores_the_run() {
    let (_srv, urls) = serve(&["--ramdisk", "64M"]);
    let (ok, out) = run(
        iolab().args([
            "matrix",
            &urls[0],
            "--time",
            "1s",
            "--conns",
            "1,2",
            "--threads",
            "16",
        ]),
        Duration::from_secs(120),
    );
    assert!(ok, "{out}");
    for (mode, conns) in [
        ("read", 1),
        ("read", 2),
        ("write", 1),
        ("write", 2),
        ("rw", 1),
        ("rw", 2),
    ] {
        let row = out
            .lines()
            .find(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                f.len() == 9 && f[0] == "0" && f[1] == mode && f[2] == conns.to_string()
            })
            .unwrap_or_else(|| panic!("no row for {mode} x {conns}:\n{out}"));
        let f: Vec<f64> = row
            .split_whitespace()
            .skip(3)
            .map(|x| x.parse().unwrap())
            .collect();
        match mode {
            "read" => assert!(f[0] > 0.0 && f[2] == 0.0, "{row}"),
            "write" => assert!(f[0] == 0.0 && f[2] > 0.0, "{row}"),
            _ => assert!(f[0] > 0.0 && f[2] > 0.0, "{row}"),
        }
    }
    assert!(
        out.lines().any(|l| l.starts_with("stored as run ")),
        "{out}"
    );
}

/// A 64 MiB target, a proxy in front of it, and `iolab bench` through the
/// proxy with `args` (output piped). The server handle keeps the target up.
fn bench_via_proxy(
    args: &[&str],
) -> (
    iolab_tests::Proc,
    String,
    iolab_tests::proxy::Proxy,
    std::process::Child,
) {
    let (srv, urls) = serve(&["--ramdisk", "64M"]);
    let url = urls[0].clone();
    let proxy = iolab_tests::proxy::Proxy::start(&iolab_tests::portal_of(&url));
    let via_proxy = proxy.url_for(&url);
    let child = iolab()
        .arg("bench")
        .arg(&via_proxy)
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    (srv, url, proxy, child)
}

/// Runs a verified write through a proxy, cuts proxied connection `cut`
/// mid-run, and checks the run completes with data that verifies (or, at
/// worst, ends with one clear error).
fn cut_during_verified_write(connections: &str, cut: usize) -> bool {
    let (_srv, url, proxy, child) = bench_via_proxy(&[
        "--mode",
        "write",
        "--verify",
        "--time",
        "4s",
        "--range",
        "32M",
        "--connections",
        connections,
        "--threads",
        "32",
    ]);
    let url = url.as_str();
    let want: usize = connections.parse().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.connection_count() < want {
        assert!(
            Instant::now() < deadline,
            "the session never opened {want} connections"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1500));
    proxy.cut(cut);
    let out = child.wait_with_output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!(
        "run across the cut: success={}\n{text}",
        out.status.success()
    );
    if out.status.success() {
        // A completed run must have written verifiable data everywhere it claims.
        assert!(text.contains("Test Done (Passed)"), "{text}");
        let (ok, check) = bench(
            url,
            &[
                "--mode",
                "read",
                "--verify",
                "--time",
                "1s",
                "--range",
                "32M",
                "--threads",
                "16",
            ],
        );
        assert!(ok, "data written across the cut does not verify: {check}");
    } else {
        // Otherwise one clear error, never a silent loss.
        assert!(
            text.lines().filter(|l| l.starts_with("iolab:")).count() == 1,
            "{text}"
        );
    }
    out.status.success()
}

#[test]
fn losing_one_connection_of_a_session_loses_no_data() {
    // Two connections: the commands of the cut one go to the survivor.
    assert!(
        cut_during_verified_write("2", 1),
        "the run did not survive losing one of two connections"
    );
}

#[test]
fn losing_the_only_connection_reinstates_the_session() {
    // One connection: the session is reinstated (same ISID, TSIH 0) and the I/O re-issued.
    assert!(
        cut_during_verified_write("1", 0),
        "the run did not survive losing its only connection"
    );
}

#[test]
fn against_our_target_discovery_chap_and_qemu_cross_check() {
    let (_srv, urls) = serve(&[
        "--ramdisk",
        "64M",
        "--chap",
        "benchuser:benchsecret12",
        "--mutual-chap",
        "tgtuser:tgtsecret345",
    ]);
    let url = &urls[0];
    let portal = iolab_tests::portal_of(url);
    let (ok, out) = run(
        iolab()
            .args([
                "discover",
                &format!("iscsi://benchuser%benchsecret12@{portal}"),
            ])
            .env("IOLAB_LOG", "iolab_iscsi=debug"),
        Duration::from_secs(20),
    );
    assert!(
        ok && out.contains("iqn.2026-11.io.iolab:target0"),
        "discovery: {out}"
    );
    // Both ends know SHA3-256: the strongest we offer is the one used.
    assert!(
        out.contains("SHA3-256"),
        "CHAP algorithm not logged as SHA3-256: {out}"
    );
    let with_chap = url.replacen("iscsi://", "iscsi://benchuser%benchsecret12@", 1);
    let mutual = format!("{with_chap}?target_user=tgtuser&target_password=tgtsecret345");
    write_then_verify(&mutual, &["--connections", "2"], "16M");
    let (ok, out) = bench(
        &url.replacen("iscsi://", "iscsi://benchuser%nottheone99@", 1),
        &["--time", "1s"],
    );
    assert!(!ok && out.contains("authentication failure"), "{out}");
    let wrong_target = format!("{with_chap}?target_user=tgtuser&target_password=nottheone99");
    let (ok, out) = bench(&wrong_target, &["--time", "1s"]);
    assert!(!ok && out.contains("mutual CHAP failed"), "{out}");

    // What our initiator wrote, libiscsi reads back intact.
    if !require_peer("qemu-img") {
        return;
    }
    let dir = TempDir::new("xcheck-ours");
    assert_libiscsi_reads_back(&with_chap, &dir, 16);
}

#[test]
fn a_command_without_answer_times_out_and_is_aborted() {
    let (_srv, _url, proxy, child) = bench_via_proxy(&[
        "--mode",
        "read",
        "--time",
        "60s",
        "--threads",
        "4",
        "--io-timeout",
        "1s",
    ]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while proxy.connection_count() < 1 {
        assert!(Instant::now() < deadline, "the session never connected");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(1000));
    // The target "hangs": its answers no longer arrive.
    proxy.freeze_replies();
    let frozen_at = Instant::now();
    let out = child.wait_with_output().unwrap();
    let took = frozen_at.elapsed();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Each command in flight fails after about the I/O timeout, not the 60 s run.
    assert!(took < Duration::from_secs(30), "took {took:?}:\n{text}");
    assert!(text.contains("got no response in 1s"), "{text}");
    // The initiator told the target to forget each one: ABORT TASK (immediate
    // Task Management Function request, function 1).
    let headers = proxy.headers_sent();
    let aborts = headers
        .iter()
        .filter(|(h, after)| *after && h[0] == 0x42 && h[1] == 0x81)
        .count();
    assert!(headers.len() > 100, "{} PDUs sent", headers.len());
    assert!(aborts >= 4, "{aborts} ABORT TASK requests:\n{text}");
    // Each names its task by ITT and by that command's CmdSN (RefCmdSN,
    // RFC 7143 11.5.1), so a target that never saw it can tell.
    let word = |h: &[u8], at: usize| u32::from_be_bytes([h[at], h[at + 1], h[at + 2], h[at + 3]]);
    let cmd_sn_of: std::collections::HashMap<u32, u32> = headers
        .iter()
        .filter(|(h, _)| h[0] & 0x3f == 0x01)
        .map(|(h, _)| (word(h, 16), word(h, 24)))
        .collect();
    for (h, _) in headers
        .iter()
        .filter(|(h, after)| *after && h[0] == 0x42 && h[1] == 0x81)
    {
        let rtt = word(h, 20);
        assert_eq!(
            cmd_sn_of.get(&rtt),
            Some(&word(h, 32)),
            "ABORT TASK of ITT {rtt:#x}: RefCmdSN {} is not that command's CmdSN",
            word(h, 32)
        );
    }
}

#[test]
fn a_small_cmdsn_window_holds_commands_back_without_losing_any() {
    // The target grants a window of 2 commands; 16 outstanding I/Os on two
    // connections wait for it. Commands must still be delivered in CmdSN
    // order without the 2 s gap wait ever running out (it did when the
    // target judged a command at the window's edge to be outside it).
    let (_srv, urls) = serve(&["--ramdisk", "64M", "--queue-depth", "2"]);
    write_then_verify(&urls[0], &["--connections", "2"], "8M");
    for _ in 0..3 {
        let (ok, out) = bench(
            &urls[0],
            &[
                "--mode",
                "read",
                "--time",
                "1s",
                "--range",
                "8M",
                "--threads",
                "16",
                "--connections",
                "2",
                "--json",
            ],
        );
        assert!(ok, "{out}");
        let line = out.lines().rev().find(|l| l.starts_with('{')).unwrap();
        let max_us: f64 = line
            .split("\"max\":")
            .nth(1)
            .and_then(|r| r.split(['}', ',']).next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{line}"));
        assert!(max_us < 1_000_000.0, "a command waited {max_us} us:\n{out}");
        assert!(line.contains("\"errors\":0"), "{line}");
    }
}

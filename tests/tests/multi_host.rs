//! A lab across hosts, as the seed ran it: `iolab lab netns up` builds two
//! network namespaces joined by a veth pair, each with a real sshd
//! (Debian's openssh-server); `iolab run seed-two-hosts` reaches both over
//! ssh, serves the target on lab-a, runs the initiator on lab-b, tunes
//! both, and stores one run. Then the ssh session to the target's host is
//! killed mid-run: the run must fail naming that host and leave nothing
//! behind in either namespace.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use iolab_tests::netns::NetnsPair;
use iolab_tests::tmux::Tmux;
use iolab_tests::{TempDir, iolab, require_peer, run};

const LAB: &str = "lab";
const NS: [&str; 2] = ["iolab-lab-a", "iolab-lab-b"];

/// The lab of `iolab lab netns up`, taken down on drop.
struct NetnsLab;

impl NetnsLab {
    fn up() -> NetnsLab {
        assert!(
            !std::path::Path::new("/run/netns").join(NS[0]).exists(),
            "a lab named '{LAB}' is up already: `iolab lab netns down` it first"
        );
        let (ok, out) = run(
            iolab().args(["lab", "netns", "up", "--name", LAB]),
            Duration::from_secs(60),
        );
        let lab = NetnsLab;
        assert!(ok, "iolab lab netns up: {out}");
        lab
    }
}

impl Drop for NetnsLab {
    fn drop(&mut self) {
        let _ = run(
            iolab().args(["lab", "netns", "down", "--name", LAB]),
            Duration::from_secs(60),
        );
    }
}

/// The processes in a namespace, as "pid command line".
fn processes(ns: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "pids", ns])
        .output()
        .expect("ip netns pids");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(|pid| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            format!(
                "{pid} {}",
                String::from_utf8_lossy(&cmd).replace('\0', " ").trim()
            )
        })
        .collect()
}

/// Only the sshd listener is left (no agent, no session, no qemu).
fn only_the_listener_runs(ns: &str) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let p = processes(ns);
        if p.len() == 1 && p[0].contains("sshd") && p[0].contains("[listener]") {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{ns} still runs more than its sshd listener: {p:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Every sysctl under net.core and net.ipv4 and each link's MTU (link
/// flags left out: a veth's carrier comes up on its own time).
fn snapshot(ns: &str) -> Vec<String> {
    NetnsPair::snapshot(ns)
        .lines()
        .map(|l| match (l.find('<'), l.find('>')) {
            (Some(a), Some(b)) if a < b => format!("{}{}", &l[..a], &l[b + 1..]),
            _ => l.to_string(),
        })
        .collect()
}

/// The lines in which two snapshots differ.
fn changed(before: &[String], after: &[String]) -> Vec<String> {
    let mut out: Vec<String> = before
        .iter()
        .filter(|l| !after.contains(l))
        .map(|l| format!("- {l}"))
        .collect();
    out.extend(
        after
            .iter()
            .filter(|l| !before.contains(l))
            .map(|l| format!("+ {l}")),
    );
    out
}

/// `iolab console` on a copy of seed-two-hosts (read at 2 connections, 6 s):
/// `M` on the Run screen, then the Connections screen shows lab-a's target
/// connections from lab-b with MSS 8960 and rates above zero.
fn console_watches_the_remote_target(d: &TempDir, db: &std::path::Path) {
    let file = d.0.join("seed-two-hosts-short.toml");
    let (ok, out) = run(
        iolab()
            .arg("--db")
            .arg(db)
            .args(["profile", "export", "seed-two-hosts", "-o"])
            .arg(&file),
        Duration::from_secs(30),
    );
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(&file).expect("exported profile");
    let short = text
        .replace("time = \"60s\"", "time = \"6s\"")
        .replace("luns = [0, 1]", "luns = [0]")
        .replace(
            "modes = [\"read\", \"write\", \"rw\"]",
            "modes = [\"read\"]",
        )
        .replace("connections = [1, 2, 3, 4]", "connections = [2]");
    assert_ne!(short, text, "the exported profile changed shape: {text}");
    std::fs::write(&file, short).expect("write profile");
    let name = format!("iolab-multihost-{}", std::process::id());
    let t = Tmux::start(&name, "150", "40");
    let line = format!(
        "{} --db {} console {}; echo CONSOLE-EXITED $?",
        iolab_tests::iolab_bin().display(),
        db.display(),
        file.display()
    );
    t.keys(&[&line, "Enter"]);
    t.wait_for("spans hosts: target on lab-a", Duration::from_secs(30));
    t.keys(&["3"]);
    t.keys(&["M"]);
    t.keys(&["2"]);
    let deadline = Instant::now() + Duration::from_secs(90);
    let rows = loop {
        let screen = t.settled_screen();
        let rows: Vec<Vec<String>> = screen
            .lines()
            .filter(|l| l.contains("lab-a: 10.77.0.2:") && !l.contains('■'))
            .map(|l| {
                l.trim_matches(|c| c == '│' || c == ' ')
                    .split_whitespace()
                    .map(str::to_string)
                    .collect()
            })
            .collect();
        // Sess/CID, "lab-a:", peer, MSS, MRDSL, digests, Imm, read MB/s, ...
        let moving = rows.len() == 2
            && rows
                .iter()
                .all(|r| r.get(7).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0) > 0.0);
        if moving {
            break rows;
        }
        assert!(
            Instant::now() < deadline,
            "no two moving lab-a connections; screen:\n{screen}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    for r in &rows {
        assert_eq!(r.get(3).map(String::as_str), Some("8960"), "{r:?}");
    }
    t.keys(&["3"]);
    t.wait_for("matrix stored as run", Duration::from_secs(90));
    t.keys(&["q"]);
    t.wait_for("CONSOLE-EXITED 0", Duration::from_secs(30));
}

#[test]
fn seed_two_hosts_runs_over_ssh_and_a_dropped_host_leaves_nothing_behind() {
    for p in ["ip", "sshd", "ssh", "ssh-keygen"] {
        if !require_peer(p) {
            return;
        }
    }
    let d = TempDir::new("multihost");
    let db = d.0.join("lab.db");
    let lab = NetnsLab::up();
    let before: Vec<Vec<String>> = NS.iter().map(|ns| snapshot(ns)).collect();
    for ns in NS {
        only_the_listener_runs(ns);
    }

    // The whole seed matrix, 3 s a cell: RAMDISK and FILEIO x READ/WRITE/RW x 1-4.
    let (ok, out) = run(
        iolab()
            .arg("--db")
            .arg(&db)
            .args(["run", "seed-two-hosts", "--time", "3s"]),
        Duration::from_secs(600),
    );
    assert!(ok, "iolab run seed-two-hosts: {out}");
    for host in ["lab-a", "lab-b"] {
        assert!(
            out.contains(&format!(
                "host {host}: tuning seed applied: 6 value(s) written"
            )),
            "{out}"
        );
        assert!(
            out.contains(&format!(
                "host {host}: tuning reverted (6 value(s) restored)"
            )),
            "{out}"
        );
    }
    // Every connection the target saw came from lab-b with the MSS of MTU 9000.
    let seen: Vec<&str> = out
        .lines()
        .filter(|l| l.contains("the target saw:"))
        .collect();
    assert_eq!(seen.len(), 24, "{out}");
    let mut conns = 0;
    for l in &seen {
        for c in l.split("the target saw: ").nth(1).unwrap_or("").split(", ") {
            conns += 1;
            assert!(
                c.contains("10.77.0.2:") && c.ends_with("mss 8960"),
                "{c} in {l}"
            );
        }
    }
    assert_eq!(conns, 2 * 3 * (1 + 2 + 3 + 4), "{out}");
    // Both hosts are as they were: every sysctl and MTU.
    for (ns, b) in NS.iter().zip(&before) {
        let diff = changed(b, &snapshot(ns));
        assert!(diff.is_empty(), "{ns} changed: {diff:#?}");
        only_the_listener_runs(ns);
    }

    // One run with both hosts' facts and settings, and series from both ends.
    let run = iolab_tests::stored_run(&db, &out);
    let hosts = run["hosts"].as_array().expect("hosts");
    assert_eq!(hosts.len(), 2, "{run}");
    for (h, role) in hosts.iter().zip(["target", "initiator"]) {
        assert_eq!(h["roles"][0], role, "{h}");
        assert!(
            !h["facts"]["kernel"].as_str().unwrap_or("").is_empty(),
            "{h}"
        );
        assert!(
            h["facts"]["interfaces"][0]
                .as_str()
                .unwrap_or("")
                .starts_with("lab0"),
            "{h}"
        );
        let settings: Vec<(String, String)> =
            serde_json::from_value(h["settings"].clone()).expect("settings");
        for want in [
            ("mtu:lab0", "9000"),
            ("net.ipv4.tcp_sack", "0"),
            ("net.ipv4.tcp_timestamps", "0"),
            ("net.ipv4.tcp_rmem", "10000000 10000000 10000000"),
        ] {
            assert!(
                settings.iter().any(|(k, v)| k == want.0 && v == want.1),
                "{want:?} not in {settings:?}"
            );
        }
    }
    assert_eq!(run["cells"].as_array().map(Vec::len), Some(24));
    // Per connection and cell, the bytes the initiator moved equal what the
    // target counted, within 1%.
    assert_eq!(iolab_tests::sides_agree(&run), 60, "connections compared");

    // The console on the same lab: its matrix runs across the hosts and the
    // Connections screen shows the remote target's connections live.
    if require_peer("tmux") {
        console_watches_the_remote_target(&d, &db);
        for (ns, b) in NS.iter().zip(&before) {
            only_the_listener_runs(ns);
            let diff = changed(b, &snapshot(ns));
            assert!(
                diff.is_empty(),
                "{ns} kept changes after the console: {diff:#?}"
            );
        }
    }

    // Cut the ssh session to the target's host mid-run.
    let mut child = iolab()
        .arg("--db")
        .arg(&db)
        .args(["run", "seed-two-hosts", "--time", "20s", "--luns", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn iolab run");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut lines = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(120);
    while !lines.iter().any(|l: &String| l.starts_with("cell 1/12")) {
        assert!(
            Instant::now() < deadline,
            "the run did not start: {lines:#?}"
        );
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            lines.push(l);
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    let sessions: Vec<String> = processes(NS[0])
        .into_iter()
        .filter(|p| p.contains("sshd") && !p.contains("[listener]"))
        .collect();
    assert!(
        !sessions.is_empty(),
        "no ssh session into lab-a: {:?}",
        processes(NS[0])
    );
    for s in &sessions {
        let pid = s.split_whitespace().next().unwrap_or("0");
        let _ = std::process::Command::new("kill")
            .args(["-KILL", pid])
            .status();
    }
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the run did not end 90 s after lab-a dropped");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    while let Ok(l) = rx.recv_timeout(Duration::from_millis(500)) {
        lines.push(l);
    }
    let text = lines.join("\n");
    assert!(!status.success(), "{text}");
    let last = lines.last().cloned().unwrap_or_default();
    assert!(last.starts_with("iolab: host lab-a:"), "{text}");
    assert!(
        last.contains("served the target on 10.77.0.1:3260"),
        "{text}"
    );
    for (ns, b) in NS.iter().zip(&before) {
        only_the_listener_runs(ns);
        let diff = changed(b, &snapshot(ns));
        assert!(diff.is_empty(), "{ns} kept changes: {diff:#?}");
    }
    drop(lab);
    assert!(!std::path::Path::new("/run/netns").join(NS[0]).exists());
    let _ = std::fs::remove_file("/var/tmp/iolab-seed-two-hosts.img");
}

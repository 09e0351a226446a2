//! Host tuning in network namespaces the tests create: apply the seed
//! profile and read it back, revert bit for bit, an injected failure
//! half-way, revert after SIGKILL from a new process, bad input, no
//! privilege, and MTU 9000 end to end with the MSS the bench reports.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use iolab_tests::netns::NetnsPair;
use iolab_tests::{TempDir, iolab, iolab_bin, require_peer, run, serve_cmd};

fn tune(db: &std::path::Path, args: &[&str]) -> (bool, String) {
    let mut cmd = iolab();
    cmd.arg("--db").arg(db).arg("tune").args(args);
    run(&mut cmd, Duration::from_secs(60))
}

/// Two test namespaces, a temporary directory and a notebook in it.
fn lab(tag: &str) -> (NetnsPair, TempDir, std::path::PathBuf) {
    require_peer("ip");
    let n = NetnsPair::new(tag);
    let d = TempDir::new(tag);
    let db = d.0.join("lab.db");
    (n, d, db)
}

/// A lab profile with `tuning` (TOML lines), an embedded 16 MiB target and a
/// 4 KiB read workload of `time`.
fn profile_file(d: &TempDir, name: &str, tuning: &str, time: &str) -> String {
    let p = d.0.join(format!("{name}.toml"));
    std::fs::write(
        &p,
        format!(
            "format = 1\nname = \"{name}\"\n[tuning]\nname = \"t\"\nmtu = 9000\n[tuning.sysctls]\n{tuning}\n\
             [target]\nlisten = [\"127.0.0.1:0\"]\n[[target.targets]]\niqn = \"iqn.2026-11.io.iolab:{name}\"\n\
             [[target.targets.luns]]\nlun = 0\nbackstore = {{ kind = \"ramdisk\", size = 16777216 }}\n\
             [workload]\nmodes = [\"read\"]\nblock_size = \"4k\"\nthreads = 2\ntime = \"{time}\"\n"
        ),
    )
    .unwrap();
    p.to_str().unwrap().to_string()
}

const SEED_WRITTEN_IN_A_NETNS: [(&str, &str); 5] = [
    ("net.ipv4.tcp_timestamps", "0"),
    ("net.ipv4.tcp_sack", "0"),
    ("net.ipv4.tcp_rmem", "10000000\t10000000\t10000000"),
    ("net.ipv4.tcp_wmem", "10000000\t10000000\t10000000"),
    ("net.core.optmem_max", "524287"),
];

#[test]
fn seed_applies_reads_back_and_reverts_bit_for_bit() {
    let (n, _d, db) = lab("tune");
    let before = NetnsPair::snapshot(&n.a);
    let other_before = NetnsPair::snapshot(&n.b);
    let (ok, out) = tune(&db, &["apply", "seed", "--netns", &n.a, "--iface", "va"]);
    assert!(ok, "{out}");
    for (k, v) in SEED_WRITTEN_IN_A_NETNS {
        assert_eq!(NetnsPair::sysctl(&n.a, k), v, "{k}\n{out}");
    }
    assert_eq!(NetnsPair::mtu(&n.a, "va"), 9000);
    // Keys the namespace lacks or has read-only are reported, not forced.
    assert!(out.contains("skipped net.ipv4.tcp_mem"), "{out}");
    assert_eq!(
        NetnsPair::snapshot(&n.b),
        other_before,
        "the other namespace changed"
    );
    let (ok, shown) = tune(&db, &["show", "--netns", &n.a]);
    assert!(
        ok && shown.contains("mtu:va") && shown.contains("recorded before"),
        "{shown}"
    );
    let (ok, out) = tune(&db, &["revert", "--netns", &n.a]);
    assert!(ok, "{out}");
    assert_eq!(NetnsPair::snapshot(&n.a), before);
    let (ok, out) = tune(&db, &["revert", "--netns", &n.a]);
    assert!(ok && out.contains("nothing to revert"), "{out}");
}

#[test]
fn a_failure_half_way_leaves_nothing_changed() {
    let (n, d, db) = lab("tunefail");
    // Sorted, the core keys are written first; the congestion control that
    // does not exist fails after them.
    let profile = d.0.join("bad.toml");
    std::fs::write(
        &profile,
        "name = \"half\"\n[sysctls]\n\"net.core.optmem_max\" = 524287\n\"net.ipv4.tcp_congestion_control\" = \"nosuchcc\"\n\"net.ipv4.tcp_sack\" = 0\n",
    )
    .unwrap();
    let before = NetnsPair::snapshot(&n.a);
    let (ok, out) = tune(
        &db,
        &[
            "apply",
            profile.to_str().unwrap(),
            "--netns",
            &n.a,
            "--iface",
            "va",
            "--mtu",
            "9000",
        ],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("writing net.ipv4.tcp_congestion_control failed"),
        "{out}"
    );
    assert!(
        out.contains("the 1 value(s) written before it were put back"),
        "{out}"
    );
    assert_eq!(NetnsPair::snapshot(&n.a), before);
    let (ok, shown) = tune(&db, &["show", "--netns", &n.a]);
    assert!(ok && shown.contains("nothing recorded"), "{shown}");
}

#[test]
fn revert_works_from_a_new_process_after_sigkill() {
    let (n, d, db) = lab("tunekill");
    let profile = profile_file(
        &d,
        "long",
        "\"net.ipv4.tcp_sack\" = 0\n\"net.ipv4.tcp_timestamps\" = 0",
        "5m",
    );
    let before = NetnsPair::snapshot(&n.a);
    let mut child = iolab()
        .arg("--db")
        .arg(&db)
        .args(["run", &profile, "--netns", &n.a, "--iface", "va"])
        .env("IOLAB_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let err = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for l in BufReader::new(err).lines().map_while(Result::ok) {
            let _ = tx.send(l);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = Vec::new();
    while Instant::now() < deadline && !seen.iter().any(|l: &String| l.starts_with("cell 1/1")) {
        if let Ok(l) = rx.recv_timeout(Duration::from_millis(200)) {
            seen.push(l);
        }
    }
    assert!(
        seen.iter()
            .any(|l| l.contains("applied in network namespace")),
        "{seen:?}"
    );
    assert_eq!(NetnsPair::sysctl(&n.a, "net.ipv4.tcp_sack"), "0");
    assert_eq!(NetnsPair::mtu(&n.a, "va"), 9000);
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert_ne!(
        NetnsPair::snapshot(&n.a),
        before,
        "the kill left the tuning in place"
    );
    let (ok, out) = tune(&db, &["revert", "--netns", &n.a]);
    assert!(ok, "{out}");
    assert_eq!(NetnsPair::snapshot(&n.a), before);
}

#[test]
fn run_reverts_its_tuning_at_the_end_unless_told_to_keep_it() {
    let (n, d, db) = lab("tunerun");
    let profile = profile_file(&d, "short", "\"net.ipv4.tcp_sack\" = 0", "1s");
    let before = NetnsPair::snapshot(&n.a);
    let mut cmd = iolab();
    cmd.arg("--db")
        .arg(&db)
        .args(["run", &profile, "--netns", &n.a, "--iface", "va"]);
    let (ok, out) = run(&mut cmd, Duration::from_secs(120));
    assert!(ok, "{out}");
    assert!(
        out.contains("restored net.ipv4.tcp_sack") && out.contains("stored as run"),
        "{out}"
    );
    assert_eq!(NetnsPair::snapshot(&n.a), before);
    let mut cmd = iolab();
    cmd.arg("--db").arg(&db).args([
        "run",
        &profile,
        "--netns",
        &n.a,
        "--iface",
        "va",
        "--keep-tuning",
    ]);
    let (ok, out) = run(&mut cmd, Duration::from_secs(120));
    assert!(ok && out.contains("tuning kept"), "{out}");
    assert_eq!(NetnsPair::sysctl(&n.a, "net.ipv4.tcp_sack"), "0");
    assert_eq!(NetnsPair::mtu(&n.a, "va"), 9000);
    let (ok, out) = tune(&db, &["revert", "--netns", &n.a]);
    assert!(ok, "{out}");
    assert_eq!(NetnsPair::snapshot(&n.a), before);
}

#[test]
fn bad_input_gives_one_clear_message_and_changes_nothing() {
    require_peer("setpriv");
    let (n, d, db) = lab("tunebad");
    let before = NetnsPair::snapshot(&n.a);
    let file = |name: &str, body: &str| {
        let p = d.0.join(name);
        std::fs::write(&p, format!("name = \"{name}\"\n[sysctls]\n{body}\n")).unwrap();
        p.to_str().unwrap().to_string()
    };
    let unknown = file(
        "unknown",
        "\"net.ipv4.tcp_sackk\" = 0\n\"net.ipv4.tcp_sack\" = 0",
    );
    let word = file("word", "\"net.ipv4.tcp_sack\" = \"off\"");
    let fields = file("fields", "\"net.ipv4.tcp_rmem\" = \"4096 8192\"");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["apply", &unknown, "--netns", &n.a],
            "net.ipv4.tcp_sackk: unknown sysctl",
        ),
        (
            vec!["apply", &word, "--netns", &n.a],
            "'off' is not a number",
        ),
        (vec!["apply", &fields, "--netns", &n.a], "takes 3 value(s)"),
        (
            vec!["apply", "seed", "--netns", &n.a, "--iface", "nosuch0"],
            "no interface 'nosuch0'",
        ),
        (
            vec![
                "apply", "seed", "--netns", &n.a, "--iface", "va", "--mtu", "70000",
            ],
            "outside what va takes",
        ),
        (
            vec!["apply", "nosuchprofile", "--netns", &n.a],
            "no profile named 'nosuchprofile'",
        ),
        (
            vec!["apply", "seed", "--netns", "iolab-no-such-ns"],
            "there is no network namespace 'iolab-no-such-ns'",
        ),
    ];
    for (args, want) in cases {
        let (ok, out) = tune(&db, &args);
        assert!(!ok, "{args:?} succeeded:\n{out}");
        assert!(out.contains(want), "{args:?}: wanted {want:?} in:\n{out}");
        assert!(!out.contains("panicked"), "{out}");
    }
    assert_eq!(NetnsPair::snapshot(&n.a), before);

    // Without privilege: as nobody, inside the namespace and from outside it.
    let unpriv = TempDir::new("tunebad-nobody");
    std::fs::set_permissions(
        &unpriv.0,
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let udb = unpriv.0.join("lab.db");
    let nobody = ["--reuid=65534", "--regid=65534", "--clear-groups"];
    let mut inside = NetnsPair::exec(&n.a, "setpriv");
    inside
        .args(nobody)
        .arg(iolab_bin())
        .arg("--db")
        .arg(&udb)
        .args(["tune", "apply", "seed", "--iface", "va"]);
    let (ok, out) = run(&mut inside, Duration::from_secs(60));
    assert!(
        !ok && out.contains("run as root") && out.contains("nothing was changed"),
        "{out}"
    );
    let mut outside = std::process::Command::new("setpriv");
    outside
        .args(nobody)
        .arg(iolab_bin())
        .arg("--db")
        .arg(&udb)
        .args(["tune", "apply", "seed", "--netns", &n.a]);
    let (ok, out) = run(&mut outside, Duration::from_secs(60));
    assert!(!ok && out.contains("needs CAP_SYS_ADMIN"), "{out}");
    assert_eq!(NetnsPair::snapshot(&n.a), before);
}

/// The MSS of each connection in `iolab bench`'s per-connection table.
fn msses(out: &str) -> Vec<u32> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() == 7 && f[0] == "0")
                .then(|| f[2].parse().ok())
                .flatten()
        })
        .collect()
}

#[test]
fn mtu_9000_end_to_end_gives_mss_8960_with_the_seed_profile() {
    let (n, d, db) = lab("tunemss");
    for (ns, dev) in [(&n.a, "va"), (&n.b, "vb")] {
        let (ok, out) = tune(&db, &["apply", "seed", "--netns", ns, "--iface", dev]);
        assert!(ok, "{out}");
        assert_eq!(NetnsPair::mtu(ns, dev), 9000);
    }
    let mut target = NetnsPair::exec(&n.a, iolab_bin());
    target.args([
        "--db",
        d.0.join("target.db").to_str().unwrap(),
        "target",
        "serve",
        "--listen",
        &format!("{}:3260", NetnsPair::A_IP),
        "--ramdisk",
        "64M",
    ]);
    let (_srv, urls) = serve_cmd(target);
    let mut bench = NetnsPair::exec(&n.b, iolab_bin());
    bench.arg("--db").arg(d.0.join("bench.db")).args([
        "bench",
        &urls[0],
        "--mode",
        "write",
        "--verify",
        "--bs",
        "256k",
        "--time",
        "2s",
        "--threads",
        "8",
        "--connections",
        "2",
    ]);
    bench.env("IOLAB_LOG", "warn");
    let (ok, out) = run(&mut bench, Duration::from_secs(120));
    assert!(ok, "{out}");
    assert!(out.contains("Test Done (Passed)"), "{out}");
    let m = msses(&out);
    assert_eq!(m, [8960, 8960], "{out}");
    for (ns, dev) in [(&n.a, "va"), (&n.b, "vb")] {
        let (ok, out) = tune(&db, &["revert", "--netns", ns]);
        assert!(ok, "{out}");
        assert_eq!(NetnsPair::mtu(ns, dev), 1500);
    }
}

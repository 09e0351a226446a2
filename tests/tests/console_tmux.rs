//! End to end: the console inside tmux starts a 10-second read run against the
//! embedded target, shows per-connection throughput, totals that match what
//! the engine counted, and `q` leaves the terminal restored.

use std::process::Command;
use std::time::{Duration, Instant};

use iolab_tests::tmux::Tmux;
use iolab_tests::{TempDir, iolab_bin, require_peer, unique};

/// A tmux session of 130 x `rows` running `shell_cmd`, once the console's target is up.
fn console(shell_cmd: &str, rows: &str) -> Tmux {
    let name = format!("iolab-test-{}-{}", std::process::id(), unique());
    let t = Tmux::start(&name, "130", rows);
    t.keys(&[shell_cmd, "Enter"]);
    t.wait_for("embedded target ready", Duration::from_secs(20));
    t
}

fn number_after(screen: &str, prefix: &str) -> u64 {
    let at = screen
        .find(prefix)
        .unwrap_or_else(|| panic!("no '{prefix}' in:\n{screen}"))
        + prefix.len();
    screen[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .expect("number")
}

#[test]
fn console_runs_a_read_and_shows_live_per_connection_throughput() {
    if !require_peer("tmux") {
        return;
    }
    let state = TempDir::new("console");
    let t = console(
        &format!(
            "XDG_STATE_HOME={0} XDG_DATA_HOME={0} {1}; echo CONSOLE-EXITED $?",
            state.0.display(),
            iolab_bin().display()
        ),
        "36",
    );
    let name = t.0.clone();

    t.keys(&["3"]);
    t.wait_for("Workload", Duration::from_secs(5));
    t.keys(&["r"]);

    // While it runs: a connection row of this run with read MB/s above zero.
    let deadline = Instant::now() + Duration::from_secs(12);
    let mut live_rate = 0.0f64;
    while Instant::now() < deadline && live_rate <= 0.0 {
        let s = t.settled_screen();
        for line in s.lines() {
            let f: Vec<&str> = line
                .trim_matches(|c| c == '│' || c == ' ')
                .split_whitespace()
                .collect();
            if f.len() >= 5
                && f[0].contains('/')
                && f[0].chars().next().is_some_and(|c| c.is_ascii_digit())
            {
                live_rate = live_rate.max(f[1].parse().unwrap_or(0.0));
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        live_rate > 0.0,
        "no per-connection throughput shown during the run:\n{}",
        t.settled_screen()
    );

    let done = t.wait_for("sampled by the console:", Duration::from_secs(30));
    let engine = number_after(&done, "engine: read ");
    let sampled = number_after(&done, "sampled by the console: ");
    assert!(engine > 0, "{done}");
    assert!(done.contains("PASSED"), "{done}");
    let diff = (sampled as f64 - engine as f64).abs() / engine as f64;
    assert!(
        diff < 0.05,
        "console total {sampled} vs engine {engine}: {:.1}% apart",
        diff * 100.0
    );

    // The run went into the notebook, and the Profiles screen shows it.
    t.wait_for("run stored as #1", Duration::from_secs(5));
    t.keys(&["4"]);
    let p = t.wait_for("Run #1 against baseline", Duration::from_secs(5));
    assert!(
        p.lines().any(|l| l.contains("   1 console")),
        "the stored run is not listed:\n{p}"
    );
    assert!(
        state.0.join("iolab/iolab.db").exists(),
        "no notebook in XDG_DATA_HOME"
    );

    // The Devices screen lists this machine's PCI functions; binding without
    // an IOMMU explains what is missing (with one, the writes are shown first).
    if std::path::Path::new("/sys/bus/pci/devices").is_dir() {
        t.keys(&["6"]);
        t.wait_for("PCI devices (", Duration::from_secs(5));
        t.keys(&["b"]);
        std::thread::sleep(Duration::from_millis(600));
        let s = t.settled_screen();
        assert!(
            s.contains("no IOMMU") || s.contains("Confirm") || s.contains("in use by the host"),
            "{s}"
        );
        if s.contains("Confirm") {
            t.keys(&["n"]);
        }
    }

    // The Guests screen shows the seed's guests with their qemu command line;
    // starting one asks first and then says what is missing.
    t.keys(&["7"]);
    t.wait_for(
        "the seed wrote `-pcidevice host=06:00.0`",
        Duration::from_secs(5),
    );
    t.keys(&["s"]);
    t.wait_for("Start this guest? It runs:", Duration::from_secs(5));
    t.keys(&["y"]);
    t.wait_for("does not exist", Duration::from_secs(10));

    t.keys(&["q"]);
    let s = t.wait_for("CONSOLE-EXITED 0", Duration::from_secs(10));
    assert_eq!(
        t.cmd(&["display-message", "-p", "-t", &name, "#{alternate_on}"])
            .trim(),
        "0",
        "still on the alternate screen:\n{s}"
    );
}

/// The Network screen inside a network namespace the test owns: plan the seed
/// profile, give `va` its MTU, apply after confirming, then revert, and the
/// namespace reads back as it was.
#[test]
fn console_network_screen_applies_and_reverts_tuning_in_a_namespace() {
    if !require_peer("tmux") || !require_peer("ip") {
        return;
    }
    let n = iolab_tests::netns::NetnsPair::new("console");
    let before = iolab_tests::netns::NetnsPair::snapshot(&n.a);
    let state = TempDir::new("console-net");
    let t = console(
        &format!(
            "XDG_STATE_HOME={0} XDG_DATA_HOME={0} ip netns exec {1} {2}; echo CONSOLE-EXITED $?",
            state.0.display(),
            n.a,
            iolab_bin().display()
        ),
        "40",
    );
    t.keys(&["5"]);
    t.wait_for("Tuning profile seed", Duration::from_secs(5));
    // lo, then va: mark va for the profile's MTU.
    t.keys(&["Down"]);
    t.keys(&["Space"]);
    let s = t.wait_for("mtu:va", Duration::from_secs(5));
    assert!(s.contains("[x] va"), "{s}");
    t.keys(&["a"]);
    t.wait_for(
        "Apply seed to this network namespace?",
        Duration::from_secs(5),
    );
    t.keys(&["n"]);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(
        iolab_tests::netns::NetnsPair::snapshot(&n.a),
        before,
        "declining changed something"
    );
    t.keys(&["a"]);
    t.wait_for("Apply seed", Duration::from_secs(5));
    t.keys(&["y"]);
    t.wait_for("seed applied:", Duration::from_secs(5));
    assert_eq!(
        iolab_tests::netns::NetnsPair::sysctl(&n.a, "net.ipv4.tcp_sack"),
        "0"
    );
    assert_eq!(iolab_tests::netns::NetnsPair::mtu(&n.a, "va"), 9000);
    t.keys(&["u"]);
    t.wait_for("Put back the", Duration::from_secs(5));
    t.keys(&["y"]);
    t.wait_for("value(s) put back", Duration::from_secs(5));
    assert_eq!(iolab_tests::netns::NetnsPair::snapshot(&n.a), before);
    // Marking an interface chose the lab's tuning: q asks before dropping it.
    t.keys(&["q"]);
    t.wait_for("q quits without saving", Duration::from_secs(5));
    t.keys(&["q"]);
    t.wait_for("CONSOLE-EXITED 0", Duration::from_secs(10));
}

/// Rows of the Run screen's connection table (`TSIH/CID ...`) on a screen.
fn connection_rows(screen: &str) -> Vec<String> {
    screen
        .lines()
        .map(|l| l.trim_matches(|c| c == '│' || c == ' ').to_string())
        .filter(|l| {
            let first = l.split_whitespace().next().unwrap_or("");
            first.contains('/')
                && first
                    .split('/')
                    .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
        })
        .collect()
}

/// Erases a text field of up to `n` characters, then types `text`, then moves on.
fn retype(t: &Tmux, n: usize, text: &str) {
    let bs = vec!["BSpace"; n];
    t.keys(&bs);
    if !text.is_empty() {
        t.keys(&["-l", text]);
    }
    t.keys(&["Tab"]);
}

#[test]
fn console_builds_a_lab_runs_it_saves_it_and_reopens_it() {
    if !require_peer("tmux") {
        return;
    }
    let st = TempDir::new("console-lab");
    let db = st.0.join("notebook.db");
    let lun1 = st.0.join("lun1.img");
    let shell = |extra: &str| {
        format!(
            "XDG_STATE_HOME={0} XDG_DATA_HOME={0} {1} --db {2}{extra}; echo CONSOLE-EXITED $?",
            st.0.display(),
            iolab_bin().display(),
            db.display()
        )
    };
    let t = console(&shell(""), "40");

    // A FILEIO backstore as LUN 1 on the running target.
    t.keys(&["j", "j", "a"]);
    t.wait_for("Add LUN", Duration::from_secs(5));
    t.keys(&["Tab", "Right", "Tab"]);
    retype(&t, 2, "64M");
    t.keys(&["-l", &lun1.display().to_string()]);
    t.keys(&["Enter"]);
    t.wait_for("LUN 1 added", Duration::from_secs(10));
    let s = t.wait_for("LUN 1    FILEIO", Duration::from_secs(5));
    assert!(
        s.contains("/1\n") || s.contains("target0/1 "),
        "no URL for LUN 1:\n{s}"
    );
    assert_eq!(
        std::fs::metadata(&lun1).expect("LUN 1's file").len(),
        64 << 20
    );

    // An ACL with CHAP for the embedded initiator: its runs must now prove it.
    t.keys(&["A"]);
    t.wait_for("Add ACL", Duration::from_secs(5));
    retype(&t, 0, "iqn.2026-11.io.iolab:initiator");
    retype(&t, 0, "alice:secret12345");
    t.keys(&["Enter"]);
    t.wait_for(
        "ACL iqn.2026-11.io.iolab:initiator   CHAP alice",
        Duration::from_secs(10),
    );
    assert!(t.settled_screen().contains("[unsaved]"));

    // The Sessions screen logs in to the running target with that CHAP and
    // two connections, and sees LUN 1.
    t.keys(&["8", "e", "Down", "Down"]);
    t.keys(&["-l", "alice:secret12345"]);
    t.keys(&["Down", "Down", "BSpace", "2", "Enter", "d"]);
    t.wait_for("Targets the portal offers (1)", Duration::from_secs(10));
    t.keys(&["l"]);
    let s = t.wait_for(
        "Sessions of the embedded initiator (1)",
        Duration::from_secs(20),
    );
    assert!(
        s.contains("[0, 1]") && s.contains("CID 1:"),
        "LUNs 0 and 1 over 2 connections:\n{s}"
    );
    assert!(s.contains("MaxConnections 2"), "{s}");

    // The Run form: LUN 1, write, 64 KiB x 16, 5 s, 2 connections, verify.
    t.keys(&["3", "e"]);
    t.wait_for("outstanding I/Os", Duration::from_secs(5));
    t.keys(&["Right", "Right", "Tab", "Right", "Tab"]);
    retype(&t, 4, "64K");
    retype(&t, 2, "16");
    retype(&t, 3, "5s");
    retype(&t, 1, "2");
    t.keys(&["Tab", "Space", "Enter"]);
    let s = t.wait_for("mode write   block 64K", Duration::from_secs(5));
    assert!(
        s.contains("outstanding I/Os 16   time 5 s   connections 2   verify"),
        "{s}"
    );
    assert!(s.contains("iqn.2026-11.io.iolab:target0/1"), "{s}");
    t.keys(&["r"]);
    // Both connections of the session show on screen while it writes.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut rows = Vec::new();
    while Instant::now() < deadline && rows.len() < 2 {
        rows = connection_rows(&t.settled_screen());
        std::thread::sleep(Duration::from_millis(250));
    }
    assert_eq!(
        rows.len(),
        2,
        "two connections expected:\n{}",
        t.settled_screen()
    );
    let s = t.wait_for("run stored as #1", Duration::from_secs(60));
    assert!(s.contains("PASSED") && s.contains("written"), "{s}");

    // Then read it back, verified.
    t.keys(&["e", "Tab", "Right", "Right", "Enter"]);
    t.wait_for("mode read   block 64K", Duration::from_secs(5));
    t.keys(&["r"]);
    let s = t.wait_for("run stored as #2", Duration::from_secs(60));
    assert!(s.contains("PASSED"), "{s}");
    let read = number_after(&s, "engine: read ");
    assert!(read > 0, "{s}");

    // A micro-guest of the lab: defined in the form, started (its image is
    // built on first use), its serial console on screen, then stopped.
    let guest = iolab_tests::micro_image().is_some();
    // Whatever happens below, no qemu of this test outlives it (the console
    // starts guests detached, as a lab wants them).
    struct NoGuestLeft(std::path::PathBuf);
    impl Drop for NoGuestLeft {
        fn drop(&mut self) {
            let pid = std::fs::read_to_string(self.0.join("qemu.pid")).unwrap_or_default();
            let is_qemu = |pid: i32| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| String::from_utf8_lossy(&c).contains("qemu"))
            };
            if let Ok(pid) = pid.trim().parse::<i32>()
                && is_qemu(pid)
            {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
    let _no_guest_left = NoGuestLeft(st.0.join("iolab/guests/micro1"));
    if guest {
        t.keys(&["7"]);
        t.wait_for("Guests (a add", Duration::from_secs(5));
        t.keys(&["a"]);
        t.wait_for("Add guest", Duration::from_secs(5));
        retype(&t, 8, "micro1");
        t.keys(&["Enter"]);
        let s = t.wait_for("micro1", Duration::from_secs(10));
        assert!(
            s.contains("qemu-system-x86_64"),
            "the command line is shown:\n{s}"
        );
        t.keys(&["s"]);
        t.wait_for("Start this guest?", Duration::from_secs(5));
        t.keys(&["y"]);
        t.wait_for("guest micro1 started (pid", Duration::from_secs(120));
        let s = t.wait_for("IOLAB-NET-UP 10.0.2.15/24", Duration::from_secs(90));
        assert!(s.contains("serial console of micro1"), "{s}");
        // Its row's state, as the Guests table shows it.
        let micro1_state = |t: &Tmux| {
            t.settled_screen()
                .lines()
                .find(|l| l.trim_start_matches('│').starts_with("micro1 "))
                .map(|l| l.split_whitespace().skip(5).collect::<Vec<_>>().join(" "))
                .unwrap_or_default()
        };
        let until = |t: &Tmux, want: &str, secs: u64| {
            let deadline = Instant::now() + Duration::from_secs(secs);
            while !micro1_state(t).contains(want) {
                assert!(
                    Instant::now() < deadline,
                    "micro1 never became {want}:\n{}",
                    t.settled_screen()
                );
                t.keys(&["g"]);
                std::thread::sleep(Duration::from_millis(500));
            }
        };
        until(&t, "running (pid", 10);
        t.keys(&["x"]);
        t.wait_for("Power this guest down", Duration::from_secs(5));
        t.keys(&["y"]);
        t.wait_for("guest micro1: ", Duration::from_secs(60));
        until(&t, "stopped", 30);
    }

    // Save the lab as mylab; q then quits without asking.
    t.keys(&["S"]);
    t.wait_for("Save the lab as a profile", Duration::from_secs(5));
    t.keys(&["BSpace", "BSpace", "BSpace"]);
    t.keys(&["-l", "mylab"]);
    t.keys(&["Enter"]);
    t.wait_for("lab saved as profile mylab", Duration::from_secs(10));
    assert!(!t.settled_screen().contains("[unsaved]"));
    t.keys(&["q"]);
    t.wait_for("CONSOLE-EXITED 0", Duration::from_secs(10));

    // The notebook's profile holds the lab.
    let out = Command::new(iolab_bin())
        .args([
            "--db",
            &db.display().to_string(),
            "profile",
            "export",
            "mylab",
        ])
        .output()
        .expect("profile export");
    let toml = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{toml}");
    for want in [
        "kind = \"fileio\"".to_string(),
        format!("path = \"{}\"", lun1.display()),
        "size = 67108864".into(),
        "initiator = \"iqn.2026-11.io.iolab:initiator\"".into(),
        "user = \"alice\"".into(),
        "modes = [\"read\"]".into(),
        "connections = [2]".into(),
        "luns = [1]".into(),
        "block_size = \"64K\"".into(),
        "threads = 16".into(),
        "verify = true".into(),
    ] {
        assert!(toml.contains(&want), "no {want} in:\n{toml}");
    }
    if guest {
        assert!(
            toml.contains("[[guests]]") && toml.contains("name = \"micro1\""),
            "{toml}"
        );
        assert!(toml.contains("[guests.micro]"), "{toml}");
    }

    // Reopened, the console shows the same lab, unchanged.
    t.keys(&[&shell(" --profile mylab"), "Enter"]);
    let s = t.wait_for("lab mylab", Duration::from_secs(20));
    let s = if s.contains("embedded target ready") {
        s
    } else {
        t.wait_for("embedded target ready", Duration::from_secs(20))
    };
    assert!(s.contains("LUN 1    FILEIO"), "{s}");
    assert!(
        s.contains("ACL iqn.2026-11.io.iolab:initiator   CHAP alice"),
        "{s}"
    );
    assert!(!s.contains("[unsaved]"), "{s}");
    if guest {
        t.keys(&["7"]);
        t.wait_for("micro1", Duration::from_secs(10));
    }
    t.keys(&["3"]);
    let s = t.wait_for("mode read   block 64K", Duration::from_secs(5));
    assert!(
        s.contains("outstanding I/Os 16   time 5 s   connections 2   verify"),
        "{s}"
    );
    assert!(s.contains("iqn.2026-11.io.iolab:target0/1"), "{s}");
    // Its run reads what the first session wrote to the file, checked.
    t.keys(&["r"]);
    let s = t.wait_for("run stored as #3", Duration::from_secs(60));
    assert!(s.contains("PASSED"), "{s}");
    t.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while t.settled_screen().matches("CONSOLE-EXITED 0").count() < 2 {
        assert!(
            Instant::now() < deadline,
            "the reopened console did not exit:\n{}",
            t.settled_screen()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Waits until the Run screen shows `n` connection rows of this run with
/// throughput above zero; returns the screen.
fn rows_moving(t: &Tmux, n: usize, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        let s = t.settled_screen();
        let moving = connection_rows(&s)
            .iter()
            .filter(|r| {
                let f: Vec<&str> = r.split_whitespace().collect();
                f.len() >= 3
                    && (f[1].parse::<f64>().unwrap_or(0.0) > 0.0
                        || f[2].parse::<f64>().unwrap_or(0.0) > 0.0)
            })
            .count();
        if moving >= n {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "{n} moving connection rows never appeared:\n{s}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn console_measures_tgtd_and_istgt_from_the_initiator_side() {
    if !require_peer("tmux") || !require_peer("tgtd") || !require_peer("istgt") {
        return;
    }
    let tgtd = iolab_tests::Tgtd::start(256, &[]);
    let istgt = iolab_tests::Istgt::start();
    let st = TempDir::new("console-peers");
    let t = console(
        &format!(
            "XDG_STATE_HOME={0} XDG_DATA_HOME={0} {1} --db {0}/nb.db; echo CONSOLE-EXITED $?",
            st.0.display(),
            iolab_bin().display()
        ),
        "40",
    );
    let set_target = |url: &str, connections: &str| {
        t.keys(&["e"]);
        t.wait_for("outstanding I/Os", Duration::from_secs(5));
        t.keys(&vec!["BSpace"; 120]);
        t.keys(&["-l", url]);
        // target, mode, block size, outstanding I/Os, time: 64K x 16 for 4 s.
        t.keys(&["Tab", "Tab"]);
        retype(&t, 8, "64K");
        retype(&t, 8, "16");
        retype(&t, 8, "4s");
        retype(&t, 8, connections);
        t.keys(&["Enter"]);
        t.wait_for(&format!("target {url}"), Duration::from_secs(5));
    };
    // The Sessions screen: discover each peer's portal and log in, two
    // connections asked; istgt grants both, tgtd one.
    t.keys(&["8"]);
    t.wait_for("Discovery and login", Duration::from_secs(5));
    let log_in = |port: u16, target: &str, sessions: usize| {
        t.keys(&["e"]);
        t.keys(&vec!["BSpace"; 40]);
        t.keys(&["-l", &format!("127.0.0.1:{port}")]);
        t.keys(&["Down", "Down", "Down", "Down"]);
        t.keys(&["BSpace"; 4]);
        t.keys(&["2", "Enter", "d"]);
        // The target's name shows only once this portal answered.
        t.wait_for(&format!("{target} "), Duration::from_secs(10));
        t.keys(&["l"]);
        t.wait_for(
            &format!("Sessions of the embedded initiator ({sessions})"),
            Duration::from_secs(20),
        )
    };
    let s = log_in(istgt.port, "iqn.2026-11.test.istgt:disk1", 1);
    assert!(s.contains("MaxConnections 2"), "istgt grants MC/S:\n{s}");
    assert!(s.contains("CID 0:") && s.contains("CID 1:"), "{s}");
    let s = log_in(tgtd.port, &tgtd.iqn, 2);
    assert!(
        s.contains("MaxConnections 1"),
        "tgtd grants one connection:\n{s}"
    );
    assert!(s.contains("CID 0:") && !s.contains("CID 1:"), "{s}");
    // Their LUNs are offered in the Run form: the embedded target's first.
    t.keys(&["3", "e"]);
    t.wait_for("outstanding I/Os", Duration::from_secs(5));
    t.keys(&["Right", "Right"]);
    t.wait_for(&istgt.url(), Duration::from_secs(5));
    t.keys(&["Escape"]);
    std::thread::sleep(Duration::from_millis(300));
    t.keys(&["3"]);

    // tgtd: one connection (it grants no MC/S), counted by our initiator.
    set_target(&tgtd.url(1), "1");
    t.keys(&["r"]);
    let s = rows_moving(&t, 1, Duration::from_secs(20));
    assert!(s.contains("measured by the initiator"), "{s}");
    assert!(
        s.contains(&format!("127.0.0.1:{}", tgtd.port)),
        "the peer column names tgtd:\n{s}"
    );
    let s = t.wait_for("run stored as #1", Duration::from_secs(30));
    assert!(number_after(&s, "engine: read ") > 0, "{s}");
    let sampled = number_after(&s, "sampled by the console: ");
    let engine = number_after(&s, "engine: read ");
    let diff = (sampled as f64 - engine as f64).abs() / engine as f64;
    assert!(
        diff < 0.05,
        "initiator-side total {sampled} vs engine {engine}"
    );

    // istgt: two connections in one session, each moving.
    set_target(&istgt.url(), "2");
    t.keys(&["r"]);
    t.wait_for(
        &format!("127.0.0.1:{}  ", istgt.port),
        Duration::from_secs(20),
    );
    let s = rows_moving(&t, 2, Duration::from_secs(20));
    assert!(s.contains(&format!("127.0.0.1:{}", istgt.port)), "{s}");
    assert!(s.contains("measured by the initiator"), "{s}");
    assert_eq!(connection_rows(&s).len(), 2, "{s}");
    let s = t.wait_for("run stored as #2", Duration::from_secs(30));
    assert!(number_after(&s, "engine: read ") > 0, "{s}");

    // The embedded target's own runs are still measured on its side.
    t.keys(&["e"]);
    t.wait_for("outstanding I/Os", Duration::from_secs(5));
    t.keys(&vec!["BSpace"; 120]);
    t.keys(&["Enter", "r"]);
    t.wait_for("measured by the target", Duration::from_secs(10));
    let s = rows_moving(&t, 1, Duration::from_secs(20));
    assert!(s.contains("measured by the target"), "{s}");
    t.wait_for("run stored as #3", Duration::from_secs(30));
    t.keys(&["q"]);
    let s = t.settled_screen();
    if !s.contains("CONSOLE-EXITED 0") {
        // The form changed since the lab opened: q asks, a second q quits.
        t.keys(&["q"]);
    }
    t.wait_for("CONSOLE-EXITED 0", Duration::from_secs(10));
}

/// The Run screen charts the run's connections while it runs (a legend line
/// per connection and the total), `v` and `w` change what and how long it
/// plots (latency percentiles among them, while the run goes), the chart
/// stays when the run ends, and the Connections screen charts with the
/// same settings.
#[test]
fn console_charts_a_runs_connections_and_keeps_the_chart() {
    if !require_peer("tmux") {
        return;
    }
    let state = TempDir::new("console-charts");
    let t = console(
        &format!(
            "XDG_STATE_HOME={0} XDG_DATA_HOME={0} {1}",
            state.0.display(),
            iolab_bin().display()
        ),
        "40",
    );
    t.keys(&["3"]);
    t.wait_for("Workload", Duration::from_secs(5));
    t.keys(&["c"]);
    t.wait_for("connections 2", Duration::from_secs(5));
    t.keys(&["r"]);
    let s = t.wait_for("■ total", Duration::from_secs(15));
    assert!(
        s.contains("Run, measured by the target: MB/s read+write, last 30 s"),
        "{s}"
    );
    let legend = |s: &str| {
        s.lines()
            .filter(|l| l.contains("■ ") && l.contains("127.0.0.1:"))
            .count()
    };
    assert_eq!(legend(&s), 2, "a legend line per connection:\n{s}");
    // Latency p99 of each interval, while the run goes.
    for _ in 0..5 {
        t.keys(&["v"]);
    }
    let s = t.wait_for("latency p99 (µs), last 30 s", Duration::from_secs(5));
    assert!(s.contains("µs"), "{s}");
    t.keys(&["v"]);
    t.wait_for("in flight, last 30 s", Duration::from_secs(5));
    t.keys(&["v", "v"]);
    t.wait_for("MB/s read, last 30 s", Duration::from_secs(5));
    t.keys(&["w"]);
    t.wait_for("MB/s read, last 2 min", Duration::from_secs(5));

    let done = t.wait_for("sampled by the console:", Duration::from_secs(30));
    assert_eq!(legend(&done), 2, "the finished run's chart stays:\n{done}");
    assert!(!done.contains("no samples yet"), "{done}");
    std::thread::sleep(Duration::from_secs(2));
    let later = t.settled_screen();
    assert_eq!(legend(&later), 2, "and stays:\n{later}");

    t.keys(&["2"]);
    let s = t.wait_for("Connections: MB/s read, last 2 min", Duration::from_secs(5));
    assert!(s.contains("Connections ("), "{s}");
}

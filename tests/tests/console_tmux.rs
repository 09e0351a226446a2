//! End to end: the console inside tmux starts a 10-second read run against the
//! embedded target, shows per-connection throughput, totals that match what
//! the engine counted, and `q` leaves the terminal restored.

use std::process::Command;
use std::time::{Duration, Instant};

use iolab_tests::{TempDir, iolab_bin, require_peer, unique};

struct Tmux(String);

impl Tmux {
    fn cmd(&self, args: &[&str]) -> String {
        let out = Command::new("tmux").args(args).output().expect("tmux");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
    fn screen(&self) -> String {
        self.cmd(&["capture-pane", "-p", "-t", &self.0])
    }
    fn keys(&self, keys: &[&str]) {
        let mut a = vec!["send-keys", "-t", self.0.as_str()];
        a.extend_from_slice(keys);
        self.cmd(&a);
    }
    fn wait_for(&self, what: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let s = self.screen();
            if s.contains(what) {
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "'{what}' never appeared; screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["kill-session", "-t", &self.0])
            .output();
    }
}

/// A tmux session of 130 x `rows` running `shell_cmd`, once the console's target is up.
fn console(shell_cmd: &str, rows: &str) -> Tmux {
    let name = format!("iolab-test-{}-{}", std::process::id(), unique());
    let t = Tmux(name.clone());
    t.cmd(&[
        "new-session",
        "-d",
        "-s",
        &name,
        "-x",
        "130",
        "-y",
        rows,
        "bash",
        "--norc",
        "--noprofile",
    ]);
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
        let s = t.screen();
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
        t.screen()
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
        let s = t.screen();
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
    t.keys(&["q"]);
    t.wait_for("CONSOLE-EXITED 0", Duration::from_secs(10));
}

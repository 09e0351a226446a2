//! Micro-guests under TCG: a guest's verified bench against a target on the
//! host (slirp) and in a test-owned namespace (tap), two guests over a
//! bridge, passthrough refusals, bad input, and no qemu left behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use iolab_tests::netns::NetnsPair;
use iolab_tests::{
    Proc, TempDir, guest_boot, iolab, iolab_bin, micro_image, missing_or_skip, require_peer, run,
    serve, serve_cmd,
};

fn image() -> Option<(PathBuf, PathBuf)> {
    micro_image()
}

/// qemu processes whose command line mentions `dir`.
fn qemus_in(dir: &Path) -> String {
    let out = Command::new("pgrep")
        .args(["-a", "-f", &format!("qemu-system.*{}", dir.display())])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn boot_cmd(dir: &Path, kernel: &Path, initrd: &Path, extra: &[&str], args: &[&str]) -> Command {
    let mut c = guest_boot(kernel, initrd, dir);
    c.args(extra).arg("--").args(args).env("IOLAB_LOG", "warn");
    c
}

const GUEST_IQN: &str = "iqn.2026-11.io.iolab:micro-guest";

fn bench_args(url: &str) -> Vec<String> {
    [
        "bench",
        url,
        "--mode",
        "write",
        "--verify",
        "--bs",
        "64k",
        "--threads",
        "4",
        "--time",
        "3s",
        "--initiator-name",
        GUEST_IQN,
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

#[test]
fn a_guest_benches_a_target_on_the_host_over_slirp() {
    let Some((k, i)) = image() else { return };
    let d = TempDir::new("guest-slirp");
    let (mut srv, urls) = serve(&["--ramdisk", "64M", "--stats", "500ms"]);
    // The guest reaches the host's loopback as 10.0.2.2.
    let url = urls[0].replace("127.0.0.1", "10.0.2.2");
    let args = bench_args(&url);
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, out) = run(
        &mut boot_cmd(&d.0, &k, &i, &[], &argv),
        Duration::from_secs(300),
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("Test Done (Passed)") && out.contains("IOLAB-EXIT 0"),
        "{out}"
    );
    // The stats are printed every 500 ms from login on: the first lines of
    // the guest's connection may show nothing written yet.
    let guest = format!("initiator={GUEST_IQN}");
    let written = |line: &str| -> u64 {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix("write_bytes="))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    srv.wait_line_where(
        |l| l.contains(&guest) && written(l) > 0,
        Duration::from_secs(5),
    )
    .unwrap_or_else(|| {
        panic!(
            "the host target never showed the guest's connection with bytes written: {:?}",
            srv.lines
        )
    });
    assert_eq!(qemus_in(&d.0), "", "qemu left running");
}

/// The kernel's initiator beside iolab's, as the seed compared Open-iSCSI
/// with Core-iSCSI: in the micro-guest, open-iscsi (iscsid, iscsiadm,
/// iscsi_tcp) logs in to a target on the host; `bench --via open-iscsi`
/// writes its /dev/sdX verified with O_DIRECT, a second boot reads it back
/// verified, and a matrix has rows for both initiators.
#[test]
fn the_kernel_initiator_in_a_guest_writes_reads_back_and_joins_the_matrix() {
    let Some((k, i)) = image() else { return };
    if !require_peer("iscsiadm") || !require_peer("iscsid") {
        return;
    }
    let d = TempDir::new("guest-open-iscsi");
    let (mut srv, urls) = serve(&["--ramdisk", "64M", "--stats", "500ms"]);
    let url = urls[0].replace("127.0.0.1", "10.0.2.2");
    let boot = |args: &[&str]| {
        let dir = d.0.join(format!("boot-{}", iolab_tests::unique()));
        let (ok, out) = run(
            &mut boot_cmd(&dir, &k, &i, &[], args),
            Duration::from_secs(300),
        );
        assert_eq!(qemus_in(&dir), "", "qemu left running");
        (ok, out)
    };
    let bench = |mode: &str| {
        boot(&[
            "bench",
            "--via",
            "open-iscsi",
            &url,
            "--mode",
            mode,
            "--verify",
            "--bs",
            "64k",
            "--threads",
            "4",
            "--time",
            "3s",
            "--range",
            "16M",
        ])
    };
    let (ok, out) = bench("write");
    assert!(ok, "{out}");
    assert!(
        out.contains("/dev/sd") && out.contains("(open-iscsi 10.0.2.2:"),
        "{out}"
    );
    assert!(
        out.contains("Total bytes written") && out.contains("Test Done (Passed)"),
        "{out}"
    );
    // The target saw the kernel's initiator write.
    let kernel = "initiator=iqn.2026-11.io.iolab:micro-guest-open-iscsi";
    srv.wait_line_where(
        |l| l.contains(kernel) && l.contains("write_bytes="),
        Duration::from_secs(5),
    )
    .unwrap_or_else(|| panic!("no session of the kernel's initiator: {:?}", srv.lines));
    // A new guest (no page cache) reads back what the first one wrote.
    let (ok, out) = bench("read");
    assert!(ok, "{out}");
    assert!(
        out.contains("Total bytes read") && out.contains("Test Done (Passed)"),
        "{out}"
    );
    let (ok, out) = boot(&[
        "matrix",
        &url,
        "--initiators",
        "iolab,open-iscsi",
        "--conns",
        "1,2",
        "--modes",
        "read,write",
        "--time",
        "2s",
        "--bs",
        "64k",
        "--threads",
        "8",
    ]);
    assert!(ok, "{out}");
    let rows: Vec<Vec<&str>> = out
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|w| w.len() == 10 && (w[0] == "iolab" || w[0] == "open-iscsi"))
        .collect();
    let shape: Vec<(&str, &str, &str)> = rows.iter().map(|w| (w[0], w[2], w[3])).collect();
    assert_eq!(
        shape,
        [
            ("iolab", "read", "1"),
            ("iolab", "read", "2"),
            ("iolab", "write", "1"),
            ("iolab", "write", "2"),
            ("open-iscsi", "read", "1"),
            ("open-iscsi", "write", "1"),
        ],
        "{out}"
    );
    for w in &rows {
        let mbps: f64 = if w[2] == "read" { w[4] } else { w[6] }
            .parse()
            .unwrap_or(0.0);
        assert!(mbps > 0.0, "{w:?} in {out}");
    }
}

/// Guests as lab hosts, as the seed ran it: the target in micro-guest A, the
/// initiator in micro-guest B, both reached by the host's controller
/// through their agent channels (virtio-serial); B reaches A's target
/// through a port forwarded to A. One verified run with rows for iolab's
/// initiator and the kernel's (open-iscsi in guest B), both guests' facts,
/// and both sides' per-connection bytes agreeing.
#[test]
fn two_guests_are_lab_hosts_target_in_one_initiator_in_the_other() {
    let Some((k, i)) = image() else { return };
    let d = TempDir::new("guest-hosts");
    let port = iolab_tests::free_port();
    let start = |name: &str, extra: &[&str]| {
        let mut c = guest_boot(&k, &i, &d.0.join(name));
        c.args(["--name", name, "--timeout", "10m"])
            .args(extra)
            .env("IOLAB_LOG", "warn")
            .stderr(std::process::Stdio::null());
        Proc::spawn(&mut c)
    };
    let forward = format!("127.0.0.1:{port}=3260");
    let mut ga = start("ga", &["--forward", &forward]);
    let mut gb = start("gb", &[]);
    for g in [&mut ga, &mut gb] {
        g.wait_line("IOLAB-AGENT /dev/vport", Duration::from_secs(120))
            .unwrap_or_else(|| panic!("no agent channel in the guest: {:?}", g.lines));
    }
    let profile = d.0.join("two-guests.toml");
    std::fs::write(
        &profile,
        format!(
            "format = 1\nname = \"two-guests\"\n[target]\nlisten = [\"0.0.0.0:3260\"]\n\
             [[target.targets]]\niqn = \"iqn.2026-12.io.iolab:two-guests\"\n\
             [[target.targets.luns]]\nlun = 0\nbackstore = {{ kind = \"ramdisk\", size = 67108864 }}\n\
             [workload]\nmodes = [\"write\", \"read\"]\nconnections = [1, 2]\nblock_size = \"64k\"\n\
             threads = 8\ntime = \"2s\"\nverify = true\nrange = \"8M\"\n\
             initiators = [\"iolab\", \"open-iscsi\"]\n\
             [[hosts]]\nname = \"ga\"\nguest = \"{}\"\nportal = \"10.0.2.2:{port}\"\n\
             [[hosts]]\nname = \"gb\"\nguest = \"{}\"\n\
             [roles]\ntarget = \"ga\"\ninitiator = \"gb\"\n",
            d.0.join("ga").display(),
            d.0.join("gb").display()
        ),
    )
    .unwrap();
    let db = d.0.join("lab.db");
    let (ok, out) = run(
        iolab().arg("--db").arg(&db).arg("run").arg(&profile),
        Duration::from_secs(300),
    );
    assert!(ok, "{out}");
    // Both hosts are the guests: their own kernel and NIC.
    for h in [
        "host ga (target): kernel 6.",
        "host gb (initiator): kernel 6.",
    ] {
        assert!(out.contains(h), "{h} in {out}");
    }
    assert_eq!(out.matches("via eth0 (virtio_net)").count(), 2, "{out}");
    assert_eq!(
        out.matches("the target saw: cid 0 10.0.2.2:").count(),
        6,
        "{out}"
    );
    // The kernel's initiator in guest B ran its own rows, as the seed
    // compared Open-iSCSI with Core-iSCSI.
    let rows: Vec<String> = out
        .lines()
        .filter(|l| l.starts_with("iolab ") || l.starts_with("open-iscsi "))
        .map(|l| l.split_whitespace().take(4).collect::<Vec<_>>().join(" "))
        .collect();
    assert_eq!(
        rows,
        [
            "iolab 0 write 1",
            "iolab 0 write 2",
            "iolab 0 read 1",
            "iolab 0 read 2",
            "open-iscsi 0 write 1",
            "open-iscsi 0 read 1",
        ],
        "{out}"
    );
    let run = iolab_tests::stored_run(&db, &out);
    assert_eq!(iolab_tests::sides_agree(&run), 6, "connections compared");
    for (g, name) in [(&mut ga, "ga"), (&mut gb, "gb")] {
        iolab_tests::kill_guest_qemu(&d.0.join(name));
        g.kill();
        assert_eq!(qemus_in(&d.0.join(name)), "", "qemu left running");
    }
}

fn tap_netns(tag: &str, taps: &[&str], bridge: Option<&str>) -> NetnsPair {
    let n = NetnsPair::new(tag);
    let ip = |args: &[&str]| {
        let st = Command::new("ip").args(args).status().unwrap();
        assert!(st.success(), "ip {args:?}");
    };
    for t in taps {
        ip(&["-n", &n.a, "tuntap", "add", "dev", t, "mode", "tap"]);
        ip(&["-n", &n.a, "link", "set", t, "up"]);
    }
    match bridge {
        Some(br) => {
            ip(&["-n", &n.a, "link", "add", br, "type", "bridge"]);
            for t in taps {
                ip(&["-n", &n.a, "link", "set", t, "master", br]);
            }
            ip(&["-n", &n.a, "link", "set", br, "up"]);
        }
        None => ip(&["-n", &n.a, "addr", "add", "10.77.5.1/24", "dev", taps[0]]),
    }
    n
}

#[test]
fn a_guest_on_a_tap_in_a_namespace_benches_a_target_there() {
    let Some((k, i)) = image() else { return };
    if !require_peer("ip") {
        return;
    }
    let n = tap_netns("gtap", &["tap0"], None);
    let d = TempDir::new("guest-tap");
    let mut target = NetnsPair::exec(&n.a, iolab_bin());
    target.args([
        "target",
        "serve",
        "--listen",
        "10.77.5.1:3260",
        "--ramdisk",
        "64M",
        "--stats",
        "500ms",
    ]);
    let (mut srv, urls) = serve_cmd(target);
    let args = bench_args(&urls[0]);
    let mut boot = NetnsPair::exec(&n.a, iolab_bin());
    boot.args(["guest", "boot", "--kernel"])
        .arg(&k)
        .arg("--initrd")
        .arg(&i)
        .arg("--dir")
        .arg(&d.0)
        .args([
            "--nic",
            "tap:tap0",
            "--ip",
            "10.77.5.2/24",
            "--gateway",
            "",
            "--",
        ])
        .args(&args)
        .env("IOLAB_LOG", "warn")
        .env("XDG_DATA_HOME", d.0.join("data"));
    let (ok, out) = run(&mut boot, Duration::from_secs(300));
    assert!(ok, "{out}");
    assert!(out.contains("Test Done (Passed)"), "{out}");
    let line = srv
        .wait_line(&format!("initiator={GUEST_IQN}"), Duration::from_secs(5))
        .unwrap_or_else(|| panic!("no guest connection at the target: {:?}", srv.lines));
    assert!(line.contains("peer=10.77.5.2:"), "{line}");
    assert_eq!(qemus_in(&d.0), "");
}

#[test]
fn two_guests_talk_over_a_bridge_in_a_namespace() {
    let Some((k, i)) = image() else { return };
    if !require_peer("ip") {
        return;
    }
    let n = tap_netns("gbr", &["tap0", "tap1"], Some("br0"));
    let d = TempDir::new("guest-pair");
    let boot_in = |dir: &Path, name: &str, tap: &str, ip: &str, args: &[String]| {
        let mut c = NetnsPair::exec(&n.a, iolab_bin());
        c.args(["guest", "boot", "--name", name, "--kernel"])
            .arg(&k)
            .arg("--initrd")
            .arg(&i)
            .arg("--dir")
            .arg(dir)
            .args([
                "--nic",
                &format!("tap:{tap}"),
                "--ip",
                ip,
                "--gateway",
                "",
                "--",
            ])
            .args(args)
            .env("IOLAB_LOG", "warn")
            .env("XDG_DATA_HOME", d.0.join("data"));
        c
    };
    // The seed's target guest...
    let target_args: Vec<String> = [
        "target",
        "serve",
        "--listen",
        "10.77.6.1:3260",
        "--ramdisk",
        "64M",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let mut target = Proc::spawn(&mut boot_in(
        &d.0.join("t"),
        "seed-target",
        "tap0",
        "10.77.6.1/24",
        &target_args,
    ));
    let lun = target
        .wait_line("lun iscsi://", Duration::from_secs(180))
        .unwrap_or_else(|| panic!("the target guest did not come up: {:?}", target.lines));
    let url = lun.trim().trim_start_matches("lun ").to_string();
    assert!(url.starts_with("iscsi://10.77.6.1:3260/"), "{url}");
    // ...and its initiator guest.
    let (ok, out) = run(
        &mut boot_in(
            &d.0.join("i"),
            "seed-initiator",
            "tap1",
            "10.77.6.2/24",
            &bench_args(&url),
        ),
        Duration::from_secs(300),
    );
    assert!(ok, "{out}");
    assert!(out.contains("Test Done (Passed)"), "{out}");
    drop(target); // SIGKILL to `guest boot`; its qemu dies with it
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !qemus_in(&d.0).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(qemus_in(&d.0), "", "qemu outlived its iolab");
}

/// A notebook with one profile defining `guests` (TOML array entries).
fn profile_with_guests(d: &Path, guests: &str) -> PathBuf {
    let db = d.join("lab.db");
    let file = d.join("p.toml");
    std::fs::write(
        &file,
        format!(
            "format = 1\nname = \"guests\"\n[target]\nlisten = [\"127.0.0.1:0\"]\n[[target.targets]]\n\
             iqn = \"iqn.2026-11.io.iolab:g\"\n[[target.targets.luns]]\nlun = 0\n\
             backstore = {{ kind = \"ramdisk\", size = 16777216 }}\n[workload]\nmodes = [\"read\"]\n\
             block_size = \"4k\"\nthreads = 1\ntime = \"1s\"\n{guests}"
        ),
    )
    .unwrap();
    let (ok, out) = run(
        iolab()
            .arg("--db")
            .arg(&db)
            .args(["profile", "import", file.to_str().unwrap()]),
        Duration::from_secs(30),
    );
    assert!(ok, "{out}");
    db
}

fn guest(db: &Path, state: &Path, args: &[&str]) -> (bool, String) {
    let mut c = iolab();
    c.arg("--db")
        .arg(db)
        .arg("guest")
        .args(args)
        .env("XDG_STATE_HOME", state);
    run(&mut c, Duration::from_secs(120))
}

/// The first PCI function `iolab pci list` shows on this machine, if any.
fn first_pci_function() -> Option<String> {
    let (ok, list) = run(iolab().args(["pci", "list"]), Duration::from_secs(30));
    assert!(ok, "{list}");
    let first = list.split_whitespace().next().map(str::to_owned);
    if first.is_none() {
        missing_or_skip("this machine's PCI bus has no functions to pass through");
    }
    first
}

#[test]
fn passthrough_without_vfio_and_unknown_addresses_fail_before_launch() {
    let d = TempDir::new("guest-pt");
    let Some(present) = first_pci_function() else {
        return;
    };
    let db = profile_with_guests(
        &d.0,
        &format!(
            "[[guests]]\nname = \"pt\"\nmemory_mib = 256\nvcpus = 1\nkernel = \"/nonexistent/vmlinuz\"\npci = [\"{present}\"]\n\
             [[guests]]\nname = \"ghost\"\nmemory_mib = 256\nvcpus = 1\ndisk = \"{}\"\npci = [\"0000:42:00.0\"]\n",
            d.0.join("p.toml").display()
        ),
    );
    let state = d.0.join("state");
    let (ok, out) = guest(&db, &state, &["show", "pt"]);
    assert!(
        ok && out.contains(&format!("vfio-pci,host={present},")),
        "{out}"
    );
    let (ok, out) = guest(&db, &state, &["start", "ghost"]);
    assert!(
        !ok && out.contains("passthrough of 0000:42:00.0: there is no PCI device"),
        "{out}"
    );
    // The kernel is missing too; the file check comes first and names it.
    let (ok, out) = guest(&db, &state, &["start", "pt"]);
    assert!(
        !ok && out.contains("kernel /nonexistent/vmlinuz does not exist"),
        "{out}"
    );
    assert_eq!(qemus_in(&state), "");
}

#[test]
fn passthrough_of_a_real_device_names_what_is_missing() {
    let Some((k, i)) = image() else { return };
    let d = TempDir::new("guest-pt2");
    let Some(present) = first_pci_function() else {
        return;
    };
    let db = profile_with_guests(
        &d.0,
        &format!(
            "[[guests]]\nname = \"pt\"\nmemory_mib = 256\nvcpus = 1\nkernel = \"{}\"\ninitrd = \"{}\"\npci = [\"{present}\"]\n",
            k.display(),
            i.display()
        ),
    );
    let state = d.0.join("state");
    let (ok, out) = guest(&db, &state, &["start", "pt"]);
    assert!(!ok, "{out}");
    assert!(out.contains(&format!("passthrough of {present}")), "{out}");
    assert!(
        out.contains("no IOMMU")
            || out.contains("iolab pci bind")
            || out.contains("in use by the host")
            || out.contains("bridge"),
        "{out}"
    );
    assert_eq!(qemus_in(&state), "");
}

#[test]
fn lifecycle_start_status_stop_and_bad_input() {
    let Some((k, i)) = image() else { return };
    let d = TempDir::new("guest-life");
    let db = profile_with_guests(
        &d.0,
        &format!(
            "[[guests]]\nname = \"idle\"\nmemory_mib = 256\nvcpus = 1\nkernel = \"{k}\"\ninitrd = \"{i}\"\n\
             append = \"iolab.ip=10.0.2.15/24\"\nnics = [{{ kind = \"user\" }}]\n\
             [[guests]]\nname = \"broken\"\nmemory_mib = 256\nvcpus = 1\nkernel = \"{k}\"\ninitrd = \"{i}\"\n\
             extra_args = [\"-no-such-qemu-option\"]\n",
            k = k.display(),
            i = i.display()
        ),
    );
    let state = d.0.join("state");
    // A stale socket from an earlier run: reported as stopped, and cleared by start.
    let gdir = state.join("iolab/guests/idle");
    std::fs::create_dir_all(&gdir).unwrap();
    drop(std::os::unix::net::UnixListener::bind(gdir.join("qmp.sock")).unwrap());
    let (ok, out) = guest(&db, &state, &["stop", "idle"]);
    assert!(!ok && out.contains("not running"), "{out}");
    let (ok, out) = guest(&db, &state, &["list"]);
    assert!(
        ok && out
            .lines()
            .any(|l| l.starts_with("idle") && l.contains("stopped")),
        "{out}"
    );
    let (ok, out) = guest(&db, &state, &["start", "idle"]);
    assert!(ok, "{out}");
    assert!(out.contains("qemu-system-x86_64 -name idle"), "{out}");
    let (ok, out) = guest(&db, &state, &["start", "idle"]);
    assert!(!ok && out.contains("already running"), "{out}");
    // The guest boots to its idle init; its serial console says so.
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    loop {
        let (_, out) = guest(&db, &state, &["console", "idle"]);
        if out.contains("IOLAB-IDLE") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never idle: {out}");
        std::thread::sleep(Duration::from_millis(300));
    }
    let (ok, out) = guest(&db, &state, &["show", "idle"]);
    assert!(ok && out.contains("state: running"), "{out}");
    // qemu reports the virtio NIC it gave the guest (1af4:1000 or 1af4:1041).
    assert!(out.contains("[1af4:10"), "{out}");
    let (ok, out) = guest(&db, &state, &["stop", "idle", "--grace", "2s"]);
    assert!(ok, "{out}");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !qemus_in(&state).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(qemus_in(&state), "");
    let (ok, out) = guest(&db, &state, &["list"]);
    assert!(
        ok && out
            .lines()
            .any(|l| l.starts_with("idle") && l.contains("stopped")),
        "{out}"
    );
    // qemu that exits at once, a missing kernel.
    let (ok, out) = guest(&db, &state, &["start", "broken"]);
    assert!(!ok && out.contains("qemu exited at once"), "{out}");
    let (ok, out) = run(
        &mut boot_cmd(
            &d.0.join("b"),
            Path::new("/nonexistent/vmlinuz"),
            &i,
            &[],
            &["discover", "iscsi://10.0.2.2"],
        ),
        Duration::from_secs(30),
    );
    assert!(
        !ok && out.contains("kernel /nonexistent/vmlinuz does not exist"),
        "{out}"
    );
    assert_eq!(qemus_in(&state), "");
    assert_eq!(qemus_in(&d.0), "");
}

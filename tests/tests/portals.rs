//! Portals as initiators see them: a wildcard portal (0.0.0.0, [::]) is
//! named by the address each initiator reached, in SendTargets and in the
//! printed URLs; an advertised address (NAT) replaces the bound one; IPv6
//! end to end. The multi-host cases run in test-owned network namespaces.

use std::process::Command;
use std::time::Duration;

use iolab_tests::netns::NetnsPair;
use iolab_tests::raw::RawConn;
use iolab_tests::{free_port, iolab, iolab_bin, require_peer, run, serve_cmd};

const IQN: &str = "iqn.2026-11.io.iolab:target0";

fn in_ns(ns: &str, program: &str, args: &[&str]) -> (bool, String) {
    let mut c = NetnsPair::exec(ns, program);
    c.args(args).env("IOLAB_LOG", "warn");
    if let Some(dir) = iolab_bin().parent() {
        c.env("XDG_DATA_HOME", dir.join("test-data"));
    }
    run(&mut c, Duration::from_secs(60))
}

/// `iscsi-ls` from namespace `ns` against `portal`: the portals it lists.
fn iscsi_ls_portals(ns: &str, portal: &str) -> Vec<String> {
    let (ok, out) = in_ns(ns, "iscsi-ls", &[&format!("iscsi://{portal}")]);
    assert!(ok, "iscsi-ls {portal}: {out}");
    out.lines()
        .filter_map(|l| l.split("Portal:").nth(1))
        .map(|p| p.trim().to_string())
        .collect()
}

/// Our initiator from namespace `ns`: discover through `portal`, then log in
/// to what discovery named and run a verified write.
fn discover_then_bench(ns: &str, portal: &str) -> String {
    let bin = iolab_bin();
    let bin = bin.to_str().expect("UTF-8 path");
    let (ok, out) = in_ns(ns, bin, &["discover", &format!("iscsi://{portal}")]);
    assert!(ok, "discover {portal}: {out}");
    let named = out
        .lines()
        .find_map(|l| l.strip_suffix(&format!(" {IQN}")))
        .and_then(|a| a.rsplit_once(',').map(|(hp, _)| hp.to_string()))
        .unwrap_or_else(|| panic!("discovery named no portal for {IQN}: {out}"));
    let url = format!("iscsi://{named}/{IQN}/0");
    let (ok, out) = in_ns(
        ns,
        bin,
        &[
            "bench",
            &url,
            "--mode",
            "write",
            "--verify",
            "--bs",
            "64k",
            "--threads",
            "4",
            "--time",
            "1s",
            "--range",
            "8M",
        ],
    );
    assert!(
        ok && out.contains("Test Done (Passed)"),
        "bench {url}: {out}"
    );
    named
}

fn serve_in(ns: &str, listen: &str) -> (iolab_tests::Proc, Vec<String>) {
    let mut c = NetnsPair::exec(ns, iolab_bin());
    c.args(["target", "serve", "--listen", listen, "--ramdisk", "32M"]);
    serve_cmd(c)
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip");
    assert!(st.success(), "ip {args:?}");
}

#[test]
fn a_wildcard_ipv4_portal_is_named_by_the_address_each_initiator_reached() {
    if !require_peer("ip") || !require_peer("iscsi-ls") {
        return;
    }
    let n = NetnsPair::new("wild4");
    let (_srv, urls) = serve_in(&n.a, "0.0.0.0:3260");
    // The printed URLs are ones a client can use: loopback first, then the
    // namespace's veth address; never 0.0.0.0.
    assert_eq!(
        urls[0],
        format!("iscsi://127.0.0.1:3260/{IQN}/0"),
        "{urls:?}"
    );
    assert!(
        urls.contains(&format!("iscsi://10.77.0.1:3260/{IQN}/0")),
        "{urls:?}"
    );
    assert!(!urls.iter().any(|u| u.contains("0.0.0.0")), "{urls:?}");

    assert_eq!(
        iscsi_ls_portals(&n.a, "127.0.0.1:3260"),
        ["127.0.0.1:3260,1"]
    );
    assert_eq!(
        iscsi_ls_portals(&n.b, "10.77.0.1:3260"),
        ["10.77.0.1:3260,1"]
    );
    assert_eq!(
        discover_then_bench(&n.b, "10.77.0.1:3260"),
        "10.77.0.1:3260"
    );
    assert_eq!(
        discover_then_bench(&n.a, "127.0.0.1:3260"),
        "127.0.0.1:3260"
    );
}

#[test]
fn a_wildcard_ipv6_portal_is_named_by_the_address_each_initiator_reached() {
    if !require_peer("ip") || !require_peer("iscsi-ls") {
        return;
    }
    let n = NetnsPair::new("wild6");
    ip(&[
        "-n",
        &n.a,
        "addr",
        "add",
        "fd77::1/64",
        "dev",
        "va",
        "nodad",
    ]);
    ip(&[
        "-n",
        &n.b,
        "addr",
        "add",
        "fd77::2/64",
        "dev",
        "vb",
        "nodad",
    ]);
    let (_srv, urls) = serve_in(&n.a, "[::]:3260");
    for want in [
        "127.0.0.1:3260",
        "[::1]:3260",
        "10.77.0.1:3260",
        "[fd77::1]:3260",
    ] {
        assert!(
            urls.contains(&format!("iscsi://{want}/{IQN}/0")),
            "{want} not in {urls:?}"
        );
    }
    assert!(!urls.iter().any(|u| u.contains("[::]")), "{urls:?}");
    assert_eq!(iscsi_ls_portals(&n.a, "[::1]:3260"), ["[::1]:3260,1"]);
    assert_eq!(
        iscsi_ls_portals(&n.b, "[fd77::1]:3260"),
        ["[fd77::1]:3260,1"]
    );
    // An IPv4 client of the dual-stack listener is told its IPv4 address.
    assert_eq!(
        iscsi_ls_portals(&n.b, "10.77.0.1:3260"),
        ["10.77.0.1:3260,1"]
    );
    assert_eq!(
        discover_then_bench(&n.b, "[fd77::1]:3260"),
        "[fd77::1]:3260"
    );
    assert_eq!(discover_then_bench(&n.a, "[::1]:3260"), "[::1]:3260");
}

/// A discovery session by hand: SendTargets=`value`, the TargetAddress values.
fn send_targets(portal: &str, value: &str) -> Vec<String> {
    let (mut c, _) = RawConn::discovery(portal);
    let mut t = [0u8; 48];
    t[0] = 0x04;
    t[1] = 0x80;
    t[16..20].copy_from_slice(&0x51u32.to_be_bytes());
    t[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
    t[24..28].copy_from_slice(&c.cmd_sn.to_be_bytes());
    t[28..32].copy_from_slice(&c.exp_stat_sn.to_be_bytes());
    c.send(&t, format!("SendTargets={value}\0").as_bytes());
    let r = c.recv().expect("text response");
    assert_eq!(r.opcode(), 0x24, "text response expected");
    r.text()
        .lines()
        .filter_map(|l| l.strip_prefix("TargetAddress="))
        .map(str::to_owned)
        .collect()
}

#[test]
fn an_advertised_address_replaces_the_bound_one() {
    if !require_peer("iscsi-ls") {
        return;
    }
    let port = free_port();
    let mut c = iolab();
    c.args(["target", "serve", "--listen"])
        .arg(format!("127.0.0.1:{port}=10.0.2.2:3260"))
        .args(["--ramdisk", "16M"]);
    let (_srv, urls) = serve_cmd(c);
    assert_eq!(urls, [format!("iscsi://10.0.2.2:3260/{IQN}/0")]);
    let portal = format!("127.0.0.1:{port}");
    for v in ["All", IQN] {
        assert_eq!(
            send_targets(&portal, v),
            ["10.0.2.2:3260,1"],
            "SendTargets={v}"
        );
    }
    let (ok, out) = run(
        Command::new("iscsi-ls").arg(format!("iscsi://{portal}")),
        Duration::from_secs(30),
    );
    assert!(ok && out.contains("Portal:10.0.2.2:3260,1"), "{out}");
    // Bad advertised addresses are refused with the reason.
    for bad in ["127.0.0.1:0=0.0.0.0:3260", "127.0.0.1:0=nowhere"] {
        let (ok, out) = run(
            iolab().args(["target", "serve", "--listen", bad]),
            Duration::from_secs(10),
        );
        assert!(
            !ok && out.contains(bad) && !out.contains("panicked"),
            "{bad}: {out}"
        );
    }
}

#[test]
fn ipv6_loopback_end_to_end() {
    if !require_peer("iscsi-ls") || !require_peer("qemu-img") {
        return;
    }
    let mut c = iolab();
    c.args(["target", "serve", "--listen", "[::1]:0", "--ramdisk", "32M"]);
    let (_srv, urls) = serve_cmd(c);
    assert!(urls[0].starts_with("iscsi://[::1]:"), "{urls:?}");
    let portal = iolab_tests::portal_of(&urls[0]);
    let (ok, out) = run(
        Command::new("iscsi-ls").args(["-s", &format!("iscsi://{portal}")]),
        Duration::from_secs(30),
    );
    assert!(ok && out.contains(&format!("Portal:{portal},1")), "{out}");
    let (ok, out) = run(
        Command::new("qemu-img").args(["info", &urls[0]]),
        Duration::from_secs(30),
    );
    assert!(
        ok && out.contains("33554432 bytes"),
        "qemu-img info {}: {out}",
        urls[0]
    );
    let (ok, out) = run(
        iolab().args([
            "bench", &urls[0], "--mode", "write", "--verify", "--time", "1s", "--range", "8M",
        ]),
        Duration::from_secs(60),
    );
    assert!(ok && out.contains("Test Done (Passed)"), "{out}");
    let (ok, out) = run(
        iolab().args(["discover", &format!("iscsi://{portal}")]),
        Duration::from_secs(30),
    );
    assert!(ok && out.contains(&format!("{portal},1 {IQN}")), "{out}");
}

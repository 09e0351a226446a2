//! Configurations people already have: targetcli's `saveconfig.json` and
//! tgt's `targets.conf` (fixtures written from the formats' documentation
//! in `tests/fixtures/`), imported, served by `iolab target serve --config`,
//! and checked with libiscsi's `iscsi-ls` (LUNs and sizes) and CHAP logins,
//! mutual CHAP by our initiator; what iolab cannot represent is listed.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use iolab_tests::{TempDir, free_port, iolab, require_peer, run, serve_cmd};

fn fixture(name: &str, dir: &Path, port: u16) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(name);
    std::fs::read_to_string(&path)
        .expect("fixture")
        .replace("@DIR@", &dir.display().to_string())
        .replace("@PORT@", &port.to_string())
}

fn sized_file(path: &Path, bytes: u64) {
    std::fs::File::create(path)
        .and_then(|f| f.set_len(bytes))
        .expect("backing file");
}

/// `iscsi-ls -s` as `initiator` with CHAP `user%secret` and the mutual
/// credentials `query` (`?target_user=..&target_password=..`, or empty).
fn iscsi_ls(port: u16, initiator: &str, chap: &str, query: &str) -> (bool, String) {
    run(
        Command::new("iscsi-ls")
            .args(["-i", initiator, "-s"])
            .arg(format!("iscsi://{chap}@127.0.0.1:{port}{query}")),
        Duration::from_secs(20),
    )
}

/// libiscsi's READ CAPACITY(16) of one LUN: its size in bytes.
fn capacity(url: &str, initiator: &str) -> u64 {
    let (ok, out) = run(
        Command::new("iscsi-readcapacity16").args(["-i", initiator, url]),
        Duration::from_secs(20),
    );
    assert!(ok, "iscsi-readcapacity16 {url}: {out}");
    out.lines()
        .find_map(|l| l.strip_prefix("Total size:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no size in: {out}"))
}

/// A verified 1 MiB write through our initiator, with mutual CHAP.
fn mutual_chap_write(url: &str, initiator: &str) -> (bool, String) {
    run(
        iolab().args([
            "bench",
            url,
            "--initiator-name",
            initiator,
            "--mode",
            "write",
            "--verify",
            "--time",
            "1s",
            "--range",
            "1M",
            "--threads",
            "4",
        ]),
        Duration::from_secs(30),
    )
}

fn import_notes(file: &Path) -> String {
    let (ok, out) = run(
        iolab().args(["target", "import"]).arg(file),
        Duration::from_secs(10),
    );
    assert!(ok, "target import: {out}");
    out
}

#[test]
fn targetcli_saveconfig_is_served_with_its_acls_and_mutual_chap() {
    if !require_peer("iscsi-ls") {
        return;
    }
    let dir = TempDir::new("saveconfig");
    let port = free_port();
    let file = dir.0.join("saveconfig.json");
    std::fs::write(&file, fixture("lio-saveconfig.json", &dir.0, port)).unwrap();

    let out = import_notes(&file);
    assert!(
        out.contains("TPG attribute 'fancy_new_attribute' is not represented"),
        "unknown keys must be listed: {out}"
    );
    assert!(
        out.contains("kind = \"fileio\"") && out.contains("kind = \"ramdisk\""),
        "{out}"
    );

    let mut cmd = iolab();
    cmd.args(["target", "serve", "--config"]).arg(&file);
    let (mut target, urls) = serve_cmd(cmd);
    let t1 = "iqn.2003-01.org.linux-iscsi.lab.x8664:sn.0123456789ab";
    let t2 = "iqn.2003-01.org.linux-iscsi.lab.x8664:sn.ba9876543210";
    assert_eq!(
        urls,
        vec![
            format!("iscsi://127.0.0.1:{port}/{t1}/0"),
            format!("iscsi://127.0.0.1:{port}/{t2}/0")
        ]
    );
    // The FILEIO object was created at its size.
    assert_eq!(
        std::fs::metadata(dir.0.join("disk1.img")).unwrap().len(),
        64 << 20
    );

    // Each ACL sees its own target (SendTargets lists only those), with the
    // LUN's size; chap_userid and userid spellings both work.
    // The ACLs have mutual CHAP: the target must prove itself as well.
    let (ok, out) = iscsi_ls(
        port,
        "iqn.2026-12.org.example:host1",
        "alice%initsecret123",
        "?target_user=tgt1&target_password=targetsecret1",
    );
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("Target:{t1}")) && !out.contains(t2),
        "{out}"
    );
    assert!(
        out.contains("Lun:0    Type:DIRECT_ACCESS (Size:63M)"),
        "{out}"
    );
    let (ok, out) = iscsi_ls(
        port,
        "iqn.2026-12.org.example:host2",
        "bob%bobsecret1234",
        "?target_user=tgt2&target_password=targetsecret2",
    );
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("Target:{t2}")) && !out.contains(t1),
        "{out}"
    );
    assert!(
        out.contains("Lun:0    Type:DIRECT_ACCESS (Size:31M)"),
        "{out}"
    );
    // A wrong secret is refused.
    let (ok, out) = iscsi_ls(
        port,
        "iqn.2026-12.org.example:host1",
        "alice%wrongsecret12",
        "?target_user=tgt1&target_password=targetsecret1",
    );
    assert!(!ok && out.contains("failure"), "{out}");

    // Mutual CHAP: the target proves itself with the ACL's mutual secret.
    let url = format!(
        "iscsi://alice%initsecret123@127.0.0.1:{port}/{t1}/0?target_user=tgt1&target_password=targetsecret1"
    );
    let (ok, out) = mutual_chap_write(&url, "iqn.2026-12.org.example:host1");
    assert!(ok && out.contains("Total write throughput"), "{out}");
    let wrong = url.replace("targetsecret1", "notthesecret9");
    let (ok, out) = mutual_chap_write(&wrong, "iqn.2026-12.org.example:host1");
    assert!(
        !ok,
        "a target answering with another secret must be refused: {out}"
    );
    target.kill();
}

#[test]
fn tgt_targets_conf_is_served_with_tgt_lun_numbers_and_chap() {
    if !require_peer("iscsi-ls") {
        return;
    }
    let dir = TempDir::new("targets-conf");
    let file = dir.0.join("targets.conf");
    std::fs::write(&file, fixture("tgt-targets.conf", &dir.0, 0)).unwrap();
    sized_file(&dir.0.join("a.img"), 16 << 20);
    sized_file(&dir.0.join("b.img"), 32 << 20);
    sized_file(&dir.0.join("c.img"), 8 << 20);

    let out = import_notes(&file);
    for listed in [
        "initiator-address 127.0.0.1 is not represented",
        "'frobnicate 7' is not represented",
        "write-cache off is not represented",
        "names no portal",
    ] {
        assert!(out.contains(listed), "not listed: {listed}\n{out}");
    }

    let port = free_port();
    let mut cmd = iolab();
    cmd.args(["target", "serve", "--config"])
        .arg(&file)
        .args(["--listen", &format!("127.0.0.1:{port}")]);
    let (mut target, urls) = serve_cmd(cmd);
    let (first, second) = (
        "iqn.2026-12.org.example:tgt.first",
        "iqn.2026-12.org.example:tgt.second",
    );
    assert_eq!(
        urls,
        vec![
            format!("iscsi://127.0.0.1:{port}/{first}/1"),
            format!("iscsi://127.0.0.1:{port}/{first}/2"),
            format!("iscsi://127.0.0.1:{port}/{second}/5"),
        ],
        "LUNs as tgt-admin numbers them: sorted paths from 1, an explicit lun kept"
    );

    // The first target allows host3 by name, with carol's CHAP (and tgt3 as
    // the mutual answer): a.img is LUN 1, b.img LUN 2.
    let host3 = "iqn.2026-12.org.example:host3";
    let lun = |n: u32| {
        format!(
            "iscsi://carol%carolsecret12@127.0.0.1:{port}/{first}/{n}?target_user=tgt3&target_password=target3secret"
        )
    };
    assert_eq!(capacity(&lun(1), host3), 16 << 20);
    assert_eq!(capacity(&lun(2), host3), 32 << 20);
    // The second is open to any initiator name, with dave's CHAP; discovery
    // shows another initiator only that one.
    let (ok, out) = iscsi_ls(
        port,
        "iqn.2026-12.org.example:other",
        "dave%davesecret123",
        "",
    );
    assert!(ok, "{out}");
    assert!(
        out.contains(&format!("Target:{second}")) && !out.contains(first),
        "{out}"
    );
    assert!(
        out.contains("Lun:5    Type:DIRECT_ACCESS (Size:7M)"),
        "{out}"
    );
    // outgoinguser is the mutual secret.
    let url = format!(
        "iscsi://carol%carolsecret12@127.0.0.1:{port}/{first}/1?target_user=tgt3&target_password=target3secret"
    );
    let (ok, out) = mutual_chap_write(&url, "iqn.2026-12.org.example:host3");
    assert!(ok && out.contains("Total write throughput"), "{out}");
    // An initiator the target does not name is refused even with the secret.
    let (ok, out) = mutual_chap_write(&url, "iqn.2026-12.org.example:stranger");
    assert!(!ok, "{out}");
    target.kill();
}

#[test]
fn export_writes_what_import_reads_back() {
    let dir = TempDir::new("export");
    let port = free_port();
    let file = dir.0.join("saveconfig.json");
    std::fs::write(&file, fixture("lio-saveconfig.json", &dir.0, port)).unwrap();
    let toml_of = |path: &Path| {
        let (ok, out) = run(
            iolab()
                .args(["target", "import", "-o"])
                .arg(dir.0.join("out.toml"))
                .arg(path),
            Duration::from_secs(10),
        );
        assert!(ok, "{out}");
        std::fs::read_to_string(dir.0.join("out.toml")).unwrap()
    };
    let original = toml_of(&file);
    // saveconfig -> saveconfig: the same configuration.
    let again = dir.0.join("again.json");
    let (ok, out) = run(
        iolab()
            .args(["target", "export", "--format", "saveconfig", "--config"])
            .arg(&file)
            .arg("-o")
            .arg(&again),
        Duration::from_secs(10),
    );
    assert!(ok, "{out}");
    assert_eq!(toml_of(&again), original);
    // -> targets.conf: the tgt view of it, with what tgt cannot say listed.
    let conf = dir.0.join("targets.conf");
    let (ok, out) = run(
        iolab()
            .args(["target", "export", "--format", "targets.conf", "--config"])
            .arg(&file)
            .arg("-o")
            .arg(&conf),
        Duration::from_secs(10),
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("RAMDISK") && out.contains("no tgt equivalent"),
        "{out}"
    );
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("incominguser alice initsecret123"), "{text}");
    assert!(text.contains("outgoinguser tgt1 targetsecret1"), "{text}");
    assert!(
        text.contains("initiator-name iqn.2026-12.org.example:host1"),
        "{text}"
    );
}

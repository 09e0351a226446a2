//! CHAP (one-way and mutual) and ACLs of `iolab target serve`, checked with libiscsi's iscsi-ls.

use std::process::Command;
use std::time::Duration;

use iolab_tests::{portal_of, require_peer, run, serve};

fn ls(url: &str, initiator: Option<&str>) -> (bool, String) {
    let mut cmd = Command::new("iscsi-ls");
    if let Some(i) = initiator {
        cmd.arg(format!("--initiator-name={i}"));
    }
    cmd.args(["-s", url]);
    let (ok, out) = run(&mut cmd, Duration::from_secs(20));
    (ok && out.contains("Lun:0"), out)
}

#[test]
fn one_way_chap_accepts_the_right_secret_only() {
    if !require_peer("iscsi-ls") {
        return;
    }
    let (_srv, urls) = serve(&["--ramdisk", "16M", "--chap", "labuser:labsecret123"]);
    let portal = portal_of(&urls[0]);
    let (ok, out) = ls(&format!("iscsi://labuser%labsecret123@{portal}"), None);
    assert!(ok, "right secret refused: {out}");
    let (ok, out) = ls(&format!("iscsi://labuser%wrongsecret99@{portal}"), None);
    assert!(!ok, "wrong secret accepted: {out}");
    assert!(out.contains("Authentication failure"), "{out}");
    let (ok, out) = ls(&format!("iscsi://otheruser%labsecret123@{portal}"), None);
    assert!(!ok, "wrong user accepted: {out}");
    let (ok, out) = ls(&format!("iscsi://{portal}"), None);
    assert!(!ok, "login without CHAP accepted: {out}");
}

#[test]
fn mutual_chap_checks_both_directions() {
    if !require_peer("iscsi-ls") {
        return;
    }
    let (_srv, urls) = serve(&[
        "--ramdisk",
        "16M",
        "--chap",
        "labuser:labsecret123",
        "--mutual-chap",
        "tgtuser:tgtsecret456",
    ]);
    let portal = portal_of(&urls[0]);
    let good = format!(
        "iscsi://labuser%labsecret123@{portal}?target_user=tgtuser&target_password=tgtsecret456"
    );
    let (ok, out) = ls(&good, None);
    assert!(ok, "mutual CHAP with the right secrets refused: {out}");
    // The initiator expects another target secret: it must refuse our CHAP_R.
    let bad_target = format!(
        "iscsi://labuser%labsecret123@{portal}?target_user=tgtuser&target_password=notthetarget"
    );
    let (ok, out) = ls(&bad_target, None);
    assert!(
        !ok,
        "initiator accepted a target that proved the wrong secret: {out}"
    );
    assert!(out.contains("Invalid CHAP_R"), "{out}");
    let bad_init = format!(
        "iscsi://labuser%nottheinit1@{portal}?target_user=tgtuser&target_password=tgtsecret456"
    );
    let (ok, out) = ls(&bad_init, None);
    assert!(
        !ok,
        "wrong initiator secret accepted under mutual CHAP: {out}"
    );
}

/// `qemu-img info` logging in to LUN 0 under a given initiator name.
fn qemu_info(portal: &str, iqn: &str, initiator: &str) -> (bool, String) {
    let opts = format!(
        "driver=iscsi,transport=tcp,portal={portal},target={iqn},lun=0,initiator-name={initiator}"
    );
    let (ok, out) = run(
        Command::new("qemu-img").args(["info", "--image-opts", &opts]),
        Duration::from_secs(20),
    );
    (ok && out.contains("16 MiB"), out)
}

#[test]
fn acl_admits_only_the_listed_initiator() {
    if !require_peer("qemu-img") {
        return;
    }
    let allowed = "iqn.2026-11.org.example:allowed";
    let (_srv, urls) = serve(&["--ramdisk", "16M", "--acl", allowed]);
    let portal = portal_of(&urls[0]);
    let iqn = "iqn.2026-11.io.iolab:target0";
    let (ok, out) = qemu_info(&portal, iqn, allowed);
    assert!(ok, "the ACL's initiator was refused: {out}");
    let (ok, out) = qemu_info(&portal, iqn, "iqn.2026-11.org.example:intruder");
    assert!(!ok, "an initiator outside the ACL logged in: {out}");
    assert!(out.contains("Authorization failure"), "{out}");
}

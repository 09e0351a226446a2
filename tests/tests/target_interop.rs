//! `iolab target serve` against real initiators: libiscsi's tools and qemu-img.

use std::process::Command;
use std::time::Duration;

use iolab_tests::proxy::Proxy;
use iolab_tests::{TempDir, portal_of, require_peer, run, serve};

#[test]
fn iscsi_ls_lists_target_and_luns() {
    if !require_peer("iscsi-ls") {
        return;
    }
    let (_srv, urls) = serve(&["--ramdisk", "64M", "--ramdisk", "32M"]);
    assert_eq!(urls.len(), 2);
    let portal = portal_of(&urls[0]);
    let (ok, out) = run(
        Command::new("iscsi-ls").args(["-s", &format!("iscsi://{portal}")]),
        Duration::from_secs(20),
    );
    assert!(ok, "iscsi-ls failed: {out}");
    assert!(out.contains("Target:iqn.2026-11.io.iolab:target0"), "{out}");
    assert!(out.contains("Lun:0") && out.contains("Lun:1"), "{out}");
    assert!(out.contains("DIRECT_ACCESS"), "{out}");
}

#[test]
fn qemu_img_convert_round_trip_is_bit_identical() {
    if !require_peer("qemu-img") {
        return;
    }
    let dir = TempDir::new("qemu-img");
    let (_srv, urls) = serve(&["--ramdisk", "256M"]);
    let url = &urls[0];
    let (ok, out) = run(
        Command::new("qemu-img").args(["info", url]),
        Duration::from_secs(20),
    );
    assert!(ok && out.contains("256 MiB"), "qemu-img info: {out}");

    // 256 MiB of non-trivial data: an LCG stream.
    let src = dir.0.join("src.raw");
    let mut data = vec![0u8; 256 << 20];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for chunk in data.chunks_mut(8) {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    std::fs::write(&src, &data).unwrap();
    let (ok, out) = run(
        Command::new("qemu-img")
            .args(["convert", "-n", "-f", "raw", "-O", "raw"])
            .arg(&src)
            .arg(url),
        Duration::from_secs(120),
    );
    assert!(ok, "qemu-img convert to iscsi: {out}");
    let back = dir.0.join("back.raw");
    let (ok, out) = run(
        Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "raw", url])
            .arg(&back),
        Duration::from_secs(120),
    );
    assert!(ok, "qemu-img convert from iscsi: {out}");
    let got = std::fs::read(&back).unwrap();
    assert_eq!(got.len(), data.len());
    assert!(got == data, "data read back differs from data written");
}

/// qemu-img (libiscsi) acknowledges our StatSNs in every session: its
/// commands' ExpStatSN moves on with each answer. (With a first StatSN of
/// 2^31 or more it stayed at 1, so the target could not tell that it waits
/// for each answer; the first StatSN is random, so eight sessions are run.)
#[test]
fn qemu_img_acknowledges_our_stat_sn_in_every_session() {
    if !require_peer("qemu-img") {
        return;
    }
    let (_srv, urls) = serve(&["--ramdisk", "16M"]);
    let proxy = Proxy::start(&portal_of(&urls[0]));
    let url = proxy.url_for(&urls[0]);
    const SESSIONS: usize = 8;
    const READS: usize = 50;
    for _ in 0..SESSIONS {
        let (ok, out) = run(
            Command::new("qemu-img").args([
                "bench",
                "-f",
                "raw",
                "-c",
                &READS.to_string(),
                "-d",
                "1",
                "-s",
                "4096",
                &url,
            ]),
            Duration::from_secs(30),
        );
        assert!(ok, "qemu-img bench: {out}");
    }
    // Each session starts with a Login Request; collect the ExpStatSN of its
    // SCSI commands (opcode 0x01; bytes 28..32).
    let mut sessions: Vec<Vec<u32>> = Vec::new();
    for (h, _) in proxy.headers_sent() {
        match h[0] & 0x3f {
            // The first Login Request after commands starts the next session.
            0x03 if sessions.last().is_none_or(|s| !s.is_empty()) => {
                sessions.push(Vec::new());
            }
            0x01 => {
                if let Some(s) = sessions.last_mut() {
                    s.push(u32::from_be_bytes([h[28], h[29], h[30], h[31]]));
                }
            }
            _ => {}
        }
    }
    assert_eq!(sessions.len(), SESSIONS, "{sessions:?}");
    for s in &sessions {
        assert!(s.len() >= READS, "{} commands", s.len());
        let mut distinct = s.clone();
        distinct.sort_unstable();
        distinct.dedup();
        // One outstanding command at a time: every answer moves ExpStatSN on.
        assert!(
            distinct.len() >= READS,
            "ExpStatSN took {} values over {} commands: {:?}",
            distinct.len(),
            s.len(),
            &s[..s.len().min(8)]
        );
    }
}

//! Malformed and hostile PDUs against a live `iolab target serve`: each gets the
//! RFC 7143 answer (Reject, login failure or a dropped connection), the target
//! never dies, and another session keeps working throughout.

use iolab_tests::raw::{RawConn, crc32c};
use iolab_tests::{portal_of, serve};

const IQN: &str = "iqn.2026-11.io.iolab:target0";

fn logged_in(portal: &str) -> RawConn {
    let mut c = RawConn::connect(portal);
    let r = c.login(IQN, &[("MaxRecvDataSegmentLength", "262144")]);
    assert_eq!(r.opcode(), 0x23, "login response expected");
    assert_eq!((r.bhs[36], r.bhs[37]), (0, 0), "login failed: {}", r.text());
    c
}

fn tur(c: &mut RawConn) -> Option<u8> {
    let itt = c.scsi(&[0u8; 6], 0, false, false, &[]);
    c.wait_status(itt).map(|(s, _)| s)
}

#[test]
fn hostile_pdus_get_rfc_answers_and_other_sessions_live_on() {
    let (mut srv, urls) = serve(&["--ramdisk", "16M"]);
    let portal = portal_of(&urls[0]);
    let mut witness = logged_in(&portal);
    assert_eq!(tur(&mut witness), Some(0));

    // Unknown opcode: Reject (command not supported), the connection stays usable.
    let mut c = logged_in(&portal);
    let mut b = [0u8; 48];
    b[0] = 0x1e;
    b[1] = 0x80;
    b[16..20].copy_from_slice(&77u32.to_be_bytes());
    c.send(&b, &[]);
    let r = c.recv().expect("reject for an unknown opcode");
    assert_eq!(r.opcode(), 0x3f);
    assert_eq!(r.bhs[2], 0x05, "reason: command not supported");
    assert_eq!(&r.data[..48], &b[..], "Reject carries the offending header");
    assert!(c.ping(), "connection unusable after a rejected PDU");

    // Data-Out for a task that does not exist: Reject (invalid PDU field).
    let mut d = [0u8; 48];
    d[0] = 0x05;
    d[1] = 0x80;
    d[16..20].copy_from_slice(&0xdead_beefu32.to_be_bytes());
    d[20..24].copy_from_slice(&(!0u32).to_be_bytes());
    c.send(&d, &[0u8; 512]);
    let r = c.recv().expect("reject for a stray Data-Out");
    assert_eq!((r.opcode(), r.bhs[2]), (0x3f, 0x09));

    // CmdSN far outside the window: silently ignored, then a good one is answered.
    let good_sn = c.cmd_sn;
    c.cmd_sn = good_sn.wrapping_add(100_000);
    let itt = c.scsi(&[0u8; 6], 0, false, false, &[]);
    c.stream
        .set_read_timeout(Some(std::time::Duration::from_millis(500)))
        .ok();
    assert!(
        c.wait_status(itt).is_none(),
        "a command outside the CmdSN window was executed"
    );
    c.stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .ok();
    c.cmd_sn = good_sn;
    assert_eq!(
        tur(&mut c),
        Some(0),
        "the window is intact after the ignored command"
    );

    // A data segment longer than our MaxRecvDataSegmentLength: the connection is dropped.
    let mut big = [0u8; 48];
    big[0] = 0x40;
    big[1] = 0x80;
    big[5..8].copy_from_slice(&[0x10, 0x00, 0x00]); // 1 MiB claimed
    big[16..20].copy_from_slice(&5u32.to_be_bytes());
    c.send_raw(&big, &[0u8; 64]);
    assert!(
        c.closed_by_peer(),
        "oversized data segment did not end the connection"
    );

    // A truncated PDU followed by a close: the target cleans up.
    let mut t = logged_in(&portal);
    use std::io::Write;
    t.stream.write_all(&[0x01, 0x80, 0, 0, 0, 0]).unwrap();
    drop(t);

    // A wrong header digest: the connection is dropped (no recovery at ERL 0).
    let mut h = RawConn::connect(&portal);
    let r = h.login(IQN, &[("HeaderDigest", "CRC32C"), ("DataDigest", "None")]);
    assert!(r.text().contains("HeaderDigest=CRC32C"), "{}", r.text());
    h.header_digest = true;
    assert!(h.ping(), "ping with a correct header digest");
    let mut nop = [0u8; 48];
    nop[0] = 0x40;
    nop[1] = 0x80;
    nop[16..20].copy_from_slice(&9u32.to_be_bytes());
    let mut wire = nop.to_vec();
    wire.extend_from_slice(&(crc32c(&nop) ^ 1).to_le_bytes());
    h.stream.write_all(&wire).unwrap();
    assert!(
        h.closed_by_peer(),
        "a bad header digest did not end the connection"
    );

    // A wrong data digest: the PDU is rejected (reason: data digest error).
    let mut dd = RawConn::connect(&portal);
    let r = dd.login(IQN, &[("HeaderDigest", "None"), ("DataDigest", "CRC32C")]);
    assert!(r.text().contains("DataDigest=CRC32C"), "{}", r.text());
    let mut ping = [0u8; 48];
    ping[0] = 0x40;
    ping[1] = 0x80;
    ping[5..8].copy_from_slice(&[0, 0, 4]);
    ping[16..20].copy_from_slice(&11u32.to_be_bytes());
    ping[20..24].copy_from_slice(&(!0u32).to_be_bytes());
    let mut wire = ping.to_vec();
    wire.extend_from_slice(b"ping");
    wire.extend_from_slice(&(crc32c(b"ping") ^ 0xffff).to_le_bytes());
    dd.stream.write_all(&wire).unwrap();
    let r = dd.recv().expect("reject for a data digest error");
    assert_eq!((r.opcode(), r.bhs[2]), (0x3f, 0x02));

    // The witness session never noticed any of it, and the target is alive.
    assert_eq!(tur(&mut witness), Some(0));
    assert!(witness.ping());
    assert!(
        srv.child.try_wait().unwrap().is_none(),
        "target process exited"
    );
}

#[test]
fn bad_login_keys_are_answered_without_harm() {
    let (_srv, urls) = serve(&["--ramdisk", "16M"]);
    let portal = portal_of(&urls[0]);

    // Out-of-range values are answered with Reject and the RFC default stays.
    let mut c = RawConn::connect(&portal);
    let r = c.login(
        IQN,
        &[("MaxBurstLength", "7"), ("MaxRecvDataSegmentLength", "1")],
    );
    assert_eq!(r.bhs[36], 0, "login should proceed: {}", r.text());
    assert!(r.text().contains("MaxBurstLength=Reject"), "{}", r.text());
    assert!(
        r.text().contains("MaxRecvDataSegmentLength=Reject"),
        "{}",
        r.text()
    );
    assert!(c.ping());

    // A key negotiated twice is a protocol error: initiator error, connection closed.
    let mut c = RawConn::connect(&portal);
    let r = c.login(
        IQN,
        &[("MaxBurstLength", "262144"), ("MaxBurstLength", "65536")],
    );
    assert_eq!((r.bhs[36], r.bhs[37]), (0x02, 0x00), "{}", r.text());
    assert!(c.closed_by_peer());

    // Unknown target: status 0x0203; missing InitiatorName: 0x0207.
    let mut c = RawConn::connect(&portal);
    let r = c.login("iqn.2026-11.org.example:nosuchtarget", &[]);
    assert_eq!((r.bhs[36], r.bhs[37]), (0x02, 0x03));
    let mut c = RawConn::connect(&portal);
    let (b, data) = c.login_pdu(&[("TargetName", IQN)]);
    c.send(&b, &data);
    let r = c.recv().expect("login response");
    assert_eq!((r.bhs[36], r.bhs[37]), (0x02, 0x07));

    // Something sent before the last Login Response (RFC 7143 6.3): an
    // initiator error, not a session (the PDU used to be read as the
    // session's first, then went unanswered when the socket changed threads).
    let mut c = RawConn::connect(&portal);
    let (b, data) = c.login_pdu(&[
        ("InitiatorName", "iqn.2026-11.io.iolab:rawtest"),
        ("TargetName", IQN),
        ("SessionType", "Normal"),
    ]);
    let mut nop = [0u8; 48];
    nop[0] = 0x40; // immediate NOP-Out, right behind the Login Request
    nop[1] = 0x80;
    nop[16..20].copy_from_slice(&7u32.to_be_bytes());
    nop[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
    let mut both = b.to_vec();
    both[5..8].copy_from_slice(&(data.len() as u32).to_be_bytes()[1..4]);
    both.extend_from_slice(&data);
    both.resize(both.len().div_ceil(4) * 4, 0);
    both.extend_from_slice(&nop);
    c.send_raw(&both[..48].try_into().unwrap(), &both[48..]);
    let r = c.recv().expect("a Login Response");
    assert_eq!((r.opcode(), r.bhs[36], r.bhs[37]), (0x23, 0x02, 0x00));
    assert!(c.closed_by_peer());

    // Unknown keys are NotUnderstood, and login continues.
    let mut c = RawConn::connect(&portal);
    let r = c.login(IQN, &[("X-com.example.Frobnicate", "Yes")]);
    assert_eq!(r.bhs[36], 0);
    assert!(
        r.text().contains("X-com.example.Frobnicate=NotUnderstood"),
        "{}",
        r.text()
    );
}

#[test]
fn target_pings_silent_connections_and_drops_dead_ones() {
    let (_srv, urls) = serve(&["--ramdisk", "16M", "--nop-interval", "1"]);
    let portal = portal_of(&urls[0]);

    // One that stays silent is dropped.
    let mut dead = logged_in(&portal);
    let ping = dead.recv().expect("ping");
    assert_eq!(ping.opcode(), 0x20);
    assert!(
        dead.closed_by_peer(),
        "an unanswered ping did not end the connection"
    );

    // One that answers keeps its connection (checked right away, before the next ping is due).
    let mut alive = logged_in(&portal);
    let ping = alive
        .recv()
        .expect("a NOP-In ping after a second of silence");
    assert_eq!(ping.opcode(), 0x20);
    assert_eq!(ping.word(16), !0, "ping ITT is reserved");
    let ttt = ping.word(20);
    assert_ne!(ttt, !0, "ping asks for an answer");
    let mut reply = [0u8; 48];
    reply[0] = 0x40;
    reply[1] = 0x80;
    reply[16..20].copy_from_slice(&(!0u32).to_be_bytes());
    reply[20..24].copy_from_slice(&ttt.to_be_bytes());
    alive.send(&reply, &[]);
    assert!(alive.ping(), "the answering connection was dropped");
    // Past the timeout of the answered ping, it is still there.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert!(alive.ping(), "the answering connection was dropped later");
}

/// A Text Request in two PDUs (RFC 7143 11.10.2: C set on the first): the
/// target asks for the rest with an empty Text Response carrying a TTT
/// (neither F nor C), then answers the whole request; F and C together are
/// rejected and the session lives on. (Before: the first part was parsed
/// alone and refused as a protocol error.)
#[test]
fn a_text_request_may_come_in_several_pdus() {
    let (_srv, urls) = serve(&["--ramdisk", "16M"]);
    let portal = portal_of(&urls[0]);
    let mut c = logged_in(&portal);
    let itt = 0x7100u32;
    let text = |c: &mut RawConn, flags: u8, ttt: u32, data: &[u8]| {
        let mut b = [0u8; 48];
        b[0] = 0x04; // Text Request
        b[1] = flags;
        b[16..20].copy_from_slice(&itt.to_be_bytes());
        b[20..24].copy_from_slice(&ttt.to_be_bytes());
        b[24..28].copy_from_slice(&c.cmd_sn.to_be_bytes());
        c.cmd_sn = c.cmd_sn.wrapping_add(1);
        b[28..32].copy_from_slice(&c.exp_stat_sn.to_be_bytes());
        c.send(&b, data);
        let r = c.recv().expect("an answer");
        c.exp_stat_sn = r.word(24).wrapping_add(1);
        r
    };
    let first = text(&mut c, 0x40, u32::MAX, b"SendTar");
    assert_eq!(first.opcode(), 0x24, "Text Response expected");
    assert_eq!(
        first.bhs[1] & 0xc0,
        0,
        "neither F nor C while asking for more"
    );
    assert!(first.data.is_empty());
    let ttt = first.word(20);
    assert_ne!(ttt, u32::MAX, "no tag to continue with");
    let whole = text(&mut c, 0x80, ttt, b"gets=All\0");
    assert_eq!(whole.opcode(), 0x24);
    assert_eq!(whole.bhs[1] & 0x80, 0x80, "the answer is final");
    assert!(
        whole.text().contains(&format!("TargetName={IQN}")),
        "{}",
        whole.text()
    );
    // F and C together: a Reject, and the session goes on.
    let bad = text(&mut c, 0xc0, u32::MAX, b"SendTargets=All\0");
    assert_eq!(bad.opcode(), 0x3f, "Reject expected");
    assert_eq!(bad.bhs[2], 0x04, "protocol error");
    assert_eq!(tur(&mut c), Some(0));
}

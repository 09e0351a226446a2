//! What an independent network fuzzer and soak found, each sent again with
//! the project's raw client against a live `iolab target serve`: a denial of
//! service by a huge Expected Data Transfer Length, a WRITE that hung when
//! the initiator sent less unsolicited data than FirstBurstLength, an MC/S
//! command left unanswered after its CmdSN gap was given up on, a two-level
//! LUN taken for LUN 0, FirstBurstLength above MaxBurstLength, a Text
//! renegotiation of MaxRecvDataSegmentLength refused, and a login naming a
//! session that does not exist.

use std::time::{Duration, Instant};

use iolab_tests::raw::{RawConn, RawPdu};
use iolab_tests::{portal_of, serve};

const IQN: &str = "iqn.2026-11.io.iolab:target0";

fn rss_kib(pid: u32) -> u64 {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("target status");
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

fn login(portal: &str, keys: &[(&str, &str)]) -> (RawConn, RawPdu) {
    let mut c = RawConn::connect(portal);
    let r = c.login(IQN, keys);
    assert_eq!(r.opcode(), 0x23, "login response expected");
    assert_eq!((r.bhs[36], r.bhs[37]), (0, 0), "login failed: {}", r.text());
    (c, r)
}

fn key(r: &RawPdu, k: &str) -> Option<String> {
    r.text()
        .split('\n')
        .find_map(|kv| kv.strip_prefix(&format!("{k}=")).map(str::to_owned))
}

fn write16(lba: u64, blocks: u32) -> [u8; 16] {
    let mut c = [0u8; 16];
    c[0] = 0x8a;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x28;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = read10(lba, blocks);
    c[0] = 0x2a;
    c
}

/// Reads until the response of `itt`, answering every R2T for it from `data`;
/// returns the status and the offsets of the R2Ts seen, in order.
fn answer_r2ts(c: &mut RawConn, itt: u32, data: &[u8]) -> (Option<u8>, Vec<(u32, u32)>) {
    let mut r2ts = Vec::new();
    loop {
        let Some(p) = c.recv() else {
            return (None, r2ts);
        };
        if p.word(16) != itt {
            continue;
        }
        match p.opcode() {
            0x31 => {
                let (ttt, offset, len) = (p.word(20), p.word(40), p.word(44));
                r2ts.push((offset, len));
                let mut sent = 0;
                let mut sn = 0;
                while sent < len {
                    let n = (len - sent).min(8192);
                    let at = (offset + sent) as usize;
                    c.data_out(
                        itt,
                        ttt,
                        sn,
                        offset + sent,
                        &data[at..at + n as usize],
                        sent + n == len,
                    );
                    sent += n;
                    sn += 1;
                }
            }
            0x21 => return (Some(p.bhs[3]), r2ts),
            _ => {}
        }
    }
}

#[test]
fn a_huge_expected_length_allocates_only_what_the_cdb_takes() {
    let (srv, urls) = serve(&["--ramdisk", "64M"]);
    let portal = portal_of(&urls[0]);
    let pid = srv.child.id();
    let (mut c, _) = login(&portal, &[("MaxRecvDataSegmentLength", "262144")]);
    let before = rss_kib(pid);

    // TEST UNIT READY with W and EDTL 0xFFFFFFFF: nothing to receive, answered
    // at once, with the whole EDTL as residual underflow.
    let itt = c.scsi_cmd([0; 8], &[0u8; 6], u32::MAX, (false, true, true), &[]);
    let status = loop {
        let p = c.recv().expect("TUR response");
        if p.word(16) == itt && p.opcode() == 0x21 {
            assert_eq!(p.bhs[1] & 0x02, 0x02, "residual underflow flag");
            assert_eq!(p.word(44), u32::MAX, "residual count");
            break p.bhs[3];
        }
    };
    assert_eq!(status, 0);
    // A WRITE to a LUN that does not exist, with the same EDTL.
    let mut lun5 = [0u8; 8];
    lun5[1] = 5;
    let itt = c.scsi_cmd(lun5, &write10(0, 8), u32::MAX, (false, true, true), &[]);
    assert_eq!(
        c.wait_status(itt).map(|s| s.0),
        Some(0x02),
        "unmapped LUN: CHECK CONDITION"
    );
    // 64 whole-LUN writes whose data never comes: one session may hold only
    // so much pending write data; the rest get TASK SET FULL.
    let blocks = (64u32 << 20) / 512;
    let mut full = 0;
    let mut itts = Vec::new();
    for _ in 0..64 {
        itts.push(c.scsi_cmd(
            [0; 8],
            &write16(0, blocks),
            u32::MAX,
            (false, true, true),
            &[],
        ));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        let Some(p) = c.recv() else { break };
        if p.opcode() == 0x21 && itts.contains(&p.word(16)) {
            assert_eq!(
                p.bhs[3], 0x28,
                "status of a write beyond the session's pending limit"
            );
            full += 1;
            if full == 63 {
                break;
            }
        }
    }
    assert_eq!(
        full, 63,
        "all but one pending whole-LUN write refused with TASK SET FULL"
    );
    let grown = rss_kib(pid).saturating_sub(before);
    assert!(
        grown <= (64 + 64) * 1024,
        "the target grew by {grown} KiB for commands that sent no data (LUN 64 MiB)"
    );
    // Others are still served at once.
    let t = Instant::now();
    let (mut other, _) = login(&portal, &[]);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "login took {:?}",
        t.elapsed()
    );
    let itt = other.scsi(&[0u8; 6], 0, false, false, &[]);
    assert_eq!(other.wait_status(itt).map(|s| s.0), Some(0));
}

#[test]
fn a_write_with_less_unsolicited_data_than_first_burst_completes() {
    let (_srv, urls) = serve(&["--ramdisk", "16M"]);
    let portal = portal_of(&urls[0]);
    let (mut c, r) = login(
        &portal,
        &[
            ("ImmediateData", "Yes"),
            ("InitialR2T", "No"),
            ("FirstBurstLength", "65536"),
            ("MaxBurstLength", "262144"),
            ("MaxRecvDataSegmentLength", "262144"),
        ],
    );
    assert_eq!(key(&r, "InitialR2T").as_deref(), Some("No"), "{}", r.text());
    assert_eq!(
        key(&r, "ImmediateData").as_deref(),
        Some("Yes"),
        "{}",
        r.text()
    );
    let data: Vec<u8> = (0..131072u32).map(|i| (i * 13 + 5) as u8).collect();
    for imm in [0usize, 4096] {
        // F=1: no unsolicited Data-Out follows, so the R2Ts start at `imm`.
        let itt = c.scsi_cmd(
            [0; 8],
            &write10(0, 256),
            131072,
            (false, true, true),
            &data[..imm],
        );
        c.stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
        let (status, r2ts) = answer_r2ts(&mut c, itt, &data);
        assert_eq!(
            status,
            Some(0),
            "WRITE with {imm} bytes of immediate data: R2Ts {r2ts:?}"
        );
        assert_eq!(
            r2ts.first().map(|r| r.0),
            Some(imm as u32),
            "first R2T offset"
        );
        let covered: u32 = r2ts.iter().map(|r| r.1).sum();
        assert_eq!(covered as usize, 131072 - imm, "R2Ts {r2ts:?}");
    }
    // F=0 with one short unsolicited Data-Out (8 KiB of the 64 KiB first burst):
    // the R2Ts start where it ended.
    let itt = c.scsi_cmd(
        [0; 8],
        &write10(0, 256),
        131072,
        (false, true, false),
        &data[..4096],
    );
    c.data_out(itt, u32::MAX, 0, 4096, &data[4096..12288], true);
    let (status, r2ts) = answer_r2ts(&mut c, itt, &data);
    assert_eq!(status, Some(0), "R2Ts {r2ts:?}");
    assert_eq!(r2ts.first().map(|r| r.0), Some(12288), "R2Ts {r2ts:?}");
    let itt = c.scsi(&read10(0, 256), 131072, true, false, &[]);
    let (status, got) = c.wait_status(itt).expect("read back");
    assert_eq!(status, 0);
    assert!(got == data, "read back differs from what was written");
}

#[test]
fn an_mcs_command_arriving_after_its_gap_was_given_up_is_answered() {
    let (_srv, urls) = serve(&["--ramdisk", "16M"]);
    let portal = portal_of(&urls[0]);
    let (mut a, _) = login(&portal, &[("MaxConnections", "2")]);
    let mut b = RawConn::connect(&portal);
    b.isid_low = a.isid_low;
    b.tsih = a.tsih;
    b.cid = 1;
    b.cmd_sn = a.cmd_sn;
    let r = b.login(IQN, &[]);
    assert_eq!(
        (r.bhs[36], r.bhs[37]),
        (0, 0),
        "second connection: {}",
        r.text()
    );
    let late = a.cmd_sn;
    // Connection A sends CmdSN late+1; late itself is "lost" for 3 s.
    a.cmd_sn = late.wrapping_add(1);
    let first = a.scsi(&[0u8; 6], 0, false, false, &[]);
    a.stream.set_read_timeout(Some(Duration::from_secs(8))).ok();
    assert_eq!(
        a.wait_status(first).map(|s| s.0),
        Some(0),
        "the command after the gap"
    );
    std::thread::sleep(Duration::from_secs(1));
    b.cmd_sn = late;
    let second = b.scsi(&[0u8; 6], 0, false, false, &[]);
    b.stream.set_read_timeout(Some(Duration::from_secs(5))).ok();
    assert_eq!(
        b.wait_status(second).map(|s| s.0),
        Some(0),
        "the late command got no answer"
    );
    // The window is intact: the next command in sequence runs too.
    a.cmd_sn = late.wrapping_add(2);
    let third = a.scsi(&[0u8; 6], 0, false, false, &[]);
    assert_eq!(a.wait_status(third).map(|s| s.0), Some(0));
}

#[test]
fn a_lun_with_a_second_level_is_not_lun_0() {
    let (_srv, urls) = serve(&["--ramdisk", "16M"]);
    let portal = portal_of(&urls[0]);
    let (mut c, _) = login(&portal, &[("ImmediateData", "Yes")]);
    let data = vec![0xa5u8; 4096];
    let itt = c.scsi_cmd(
        [0, 0, 1, 0, 0, 0, 0, 0],
        &write10(0, 8),
        4096,
        (false, true, true),
        &data,
    );
    assert_eq!(
        c.wait_status(itt).map(|s| s.0),
        Some(0x02),
        "a WRITE to LUN 0000010000000000"
    );
    let itt = c.scsi(&read10(0, 8), 4096, true, false, &[]);
    let (status, got) = c.wait_status(itt).expect("read LUN 0");
    assert_eq!(status, 0);
    assert!(got.iter().all(|&b| b == 0), "the write landed on LUN 0");
}

#[test]
fn first_burst_is_held_to_max_burst() {
    let (_srv, urls) = serve(&["--ramdisk", "16M"]);
    let portal = portal_of(&urls[0]);
    let (mut c, r) = login(
        &portal,
        &[
            ("ImmediateData", "Yes"),
            ("MaxBurstLength", "16384"),
            ("FirstBurstLength", "65536"),
            ("MaxRecvDataSegmentLength", "262144"),
        ],
    );
    let fb: u32 = key(&r, "FirstBurstLength")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no FirstBurstLength answered: {}", r.text()));
    let mb: u32 = key(&r, "MaxBurstLength")
        .and_then(|v| v.parse().ok())
        .unwrap_or(16384);
    assert!(
        fb <= mb,
        "FirstBurstLength {fb} > MaxBurstLength {mb}: {}",
        r.text()
    );
    // Immediate data up to the answered FirstBurstLength is accepted.
    let data = vec![7u8; fb as usize];
    let itt = c.scsi(&write10(0, (fb / 512) as u16), fb, false, true, &data);
    assert_eq!(c.wait_status(itt).map(|s| s.0), Some(0));
}

#[test]
fn max_recv_data_segment_length_may_be_declared_again_in_full_feature_phase() {
    let (_srv, urls) = serve(&["--ramdisk", "16M"]);
    let portal = portal_of(&urls[0]);
    let (mut c, _) = login(&portal, &[("MaxRecvDataSegmentLength", "262144")]);
    let mut b = [0u8; 48];
    b[0] = 0x04; // Text Request
    b[1] = 0x80;
    let itt = 0x7000u32;
    b[16..20].copy_from_slice(&itt.to_be_bytes());
    b[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
    b[24..28].copy_from_slice(&c.cmd_sn.to_be_bytes());
    c.cmd_sn = c.cmd_sn.wrapping_add(1);
    b[28..32].copy_from_slice(&c.exp_stat_sn.to_be_bytes());
    c.send(&b, b"MaxRecvDataSegmentLength=4096\0");
    let r = c.recv().expect("Text Response");
    assert_eq!(r.opcode(), 0x24, "Text Response expected");
    let answer = key(&r, "MaxRecvDataSegmentLength").unwrap_or_default();
    assert!(
        answer.parse::<u32>().is_ok(),
        "answered '{answer}': {}",
        r.text()
    );
    // Data-In now comes in segments of at most 4096 bytes.
    let itt = c.scsi(&read10(0, 128), 65536, true, false, &[]);
    let mut total = 0;
    loop {
        let p = c.recv().expect("Data-In");
        if p.word(16) != itt {
            continue;
        }
        if p.opcode() == 0x25 {
            assert!(p.data.len() <= 4096, "a Data-In of {} bytes", p.data.len());
            total += p.data.len();
            if p.bhs[1] & 0x01 != 0 {
                break;
            }
        } else if p.opcode() == 0x21 {
            break;
        }
    }
    assert_eq!(total, 65536);
}

#[test]
fn a_login_naming_a_session_that_does_not_exist_is_refused() {
    let (_srv, urls) = serve(&["--ramdisk", "16M"]);
    let portal = portal_of(&urls[0]);
    for session_type in ["Normal", "Discovery"] {
        let mut c = RawConn::connect(&portal);
        c.tsih = 0x4242;
        c.cid = 1;
        let mut keys = vec![
            ("InitiatorName", "iqn.2026-11.io.iolab:rawtest"),
            ("SessionType", session_type),
        ];
        if session_type == "Normal" {
            keys.push(("TargetName", IQN));
        }
        let (b, data) = c.login_pdu(&keys);
        c.send(&b, &data);
        let r = c.recv().expect("login response");
        assert_eq!(r.opcode(), 0x23);
        assert_eq!(
            (r.bhs[36], r.bhs[37]),
            (0x02, 0x0a),
            "{session_type} login with TSIH 0x4242: {}",
            r.text()
        );
    }
}

#[test]
fn a_login_request_too_long_to_read_gets_a_login_response() {
    let (_srv, urls) = serve(&["--ramdisk", "16M"]);
    let portal = portal_of(&urls[0]);
    let mut c = RawConn::connect(&portal);
    let (mut b, _) = c.login_pdu(&[("InitiatorName", "iqn.2026-11.io.iolab:rawtest")]);
    b[5..8].copy_from_slice(&[0xff, 0xff, 0xff]); // 16 MiB of login text announced
    c.send_raw(&b, &[]);
    let r = c.recv().expect("a Login Response, not a silent close");
    assert_eq!(
        r.opcode(),
        0x23,
        "Login Response expected, got opcode {:#x}",
        r.opcode()
    );
    assert_eq!((r.bhs[36], r.bhs[37]), (0x02, 0x00), "initiator error");
    assert_eq!(
        &r.bhs[16..20],
        &b[16..20],
        "the response carries the request's ITT"
    );
    assert!(c.closed_by_peer(), "the connection ends after the refusal");
}

/// Found by coverage-guided fuzzing (fuzz target `text`): a CHAP_R whose
/// "0x..." value holds a multi-byte character made the hex decoder slice
/// inside the character, and the panic took the login's connection down
/// without an answer. Now it is an authentication failure like any wrong
/// response.
#[test]
fn a_chap_response_that_is_not_hex_is_an_authentication_failure() {
    let (_srv, urls) = serve(&["--ramdisk", "16M", "--chap", "alice:secret12345"]);
    let portal = portal_of(&urls[0]);
    let mut c = RawConn::connect(&portal);
    let step = |c: &mut RawConn, transit: bool, keys: &[(&str, &str)]| {
        let (mut b, data) = c.login_pdu(keys);
        // Security negotiation toward the operational stage.
        b[1] = if transit { 0x80 } else { 0 } | 1;
        c.send(&b, &data);
        c.recv()
    };
    let r = step(
        &mut c,
        false,
        &[
            ("InitiatorName", "iqn.2026-11.io.iolab:rawtest"),
            ("TargetName", IQN),
            ("SessionType", "Normal"),
            ("AuthMethod", "CHAP"),
        ],
    )
    .expect("AuthMethod answer");
    assert_eq!(
        key(&r, "AuthMethod").as_deref(),
        Some("CHAP"),
        "{}",
        r.text()
    );
    let r = step(&mut c, false, &[("CHAP_A", "5")]).expect("a challenge");
    assert!(key(&r, "CHAP_C").is_some(), "{}", r.text());
    let r = step(&mut c, true, &[("CHAP_N", "alice"), ("CHAP_R", "0x€1")])
        .expect("a Login Response, not a dropped connection");
    assert_eq!(r.opcode(), 0x23);
    assert_eq!(
        (r.bhs[36], r.bhs[37]),
        (0x02, 0x01),
        "authentication failure"
    );
}

/// A LOGICAL UNIT RESET aborts every task of the LU, whichever I_T nexus
/// sent it (SAM-5 6.4): a write of another session still waiting for its
/// data is gone, and its data, when it comes, lands nowhere. Before, only
/// the connection that received the reset dropped its pending writes, so
/// session A's write went to the disk after session B's reset.
#[test]
fn a_lun_reset_aborts_the_writes_other_sessions_have_pending() {
    let (_srv, urls) = serve(&["--ramdisk", "16M"]);
    let portal = portal_of(&urls[0]);
    // Session A: no immediate data, so the write waits for an R2T's data.
    let (mut a, _) = login(&portal, &[("ImmediateData", "No"), ("InitialR2T", "Yes")]);
    let data = vec![0x5Au8; 8 * 512];
    let itt = a.scsi(&write10(100, 8), data.len() as u32, false, true, &[]);
    let r2t = loop {
        let p = a.recv().expect("an R2T");
        if p.opcode() == 0x31 && p.word(16) == itt {
            break p;
        }
    };
    // Session B resets LUN 0.
    let mut b = RawConn::connect(&portal);
    b.isid_low = 0x77;
    let r = b.login(IQN, &[]);
    assert_eq!((r.bhs[36], r.bhs[37]), (0, 0), "{}", r.text());
    let mut tmf = [0u8; 48];
    tmf[0] = 0x42; // immediate Task Management Function Request
    tmf[1] = 0x80 | 5; // LOGICAL UNIT RESET
    tmf[16..20].copy_from_slice(&0x99u32.to_be_bytes());
    tmf[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
    tmf[24..28].copy_from_slice(&b.cmd_sn.to_be_bytes());
    tmf[28..32].copy_from_slice(&b.exp_stat_sn.to_be_bytes());
    b.send(&tmf, &[]);
    let resp = b.recv().expect("TMF response");
    assert_eq!((resp.opcode(), resp.bhs[2]), (0x22, 0), "function complete");
    // A takes the reset's unit attention, then sends the solicited data of
    // its aborted write: nothing is written, and no response comes for it.
    let (st, key, asc, ascq) = a.test_unit_ready(0).expect("TUR");
    assert_eq!(
        (st, key, asc, ascq),
        (2, 6, 0x29, 0x03),
        "BUS DEVICE RESET attention"
    );
    let (ttt, offset, len) = (r2t.word(20), r2t.word(40), r2t.word(44));
    a.data_out(
        itt,
        ttt,
        0,
        offset,
        &data[offset as usize..(offset + len) as usize],
        true,
    );
    let rd = a.scsi(&read10(100, 8), 8 * 512, true, false, &[]);
    let mut saw_write_status = false;
    let got = loop {
        let p = a.recv().expect("read data");
        if p.word(16) == itt && p.opcode() == 0x21 {
            saw_write_status = true;
            continue;
        }
        if p.word(16) == rd && p.opcode() == 0x25 {
            break p.data;
        }
    };
    assert!(!saw_write_status, "an aborted task gets no response");
    assert!(
        got.iter().all(|b| *b == 0),
        "the aborted write reached the LU"
    );
    // A's session still writes (its pending-write memory was given back).
    let itt = a.scsi(&write10(200, 8), data.len() as u32, false, true, &[]);
    let (status, _) = answer_r2ts(&mut a, itt, &data);
    assert_eq!(status, Some(0));
}

/// A discovery session follows the CmdSN rules of any session (RFC 7143
/// 4.2.2.1) with one window throughout: the login response already grants
/// what full feature phase grants (it said MaxCmdSN = CmdSN, then 15 more),
/// and a Text Request outside the window or repeated is ignored, not
/// answered (it was answered whatever its CmdSN).
#[test]
fn a_discovery_session_keeps_its_cmdsn_window() {
    let (_srv, urls) = serve(&["--ramdisk", "16M"]);
    let (mut c, r) = RawConn::discovery(&portal_of(&urls[0]));
    let (exp, max) = (r.word(28), r.word(32));
    assert_eq!(
        max.wrapping_sub(exp),
        15,
        "login grants the session's window"
    );
    let send_targets = |c: &mut RawConn, cmd_sn: u32, itt: u32| {
        let mut t = [0u8; 48];
        t[0] = 0x04; // Text Request
        t[1] = 0x80;
        t[16..20].copy_from_slice(&itt.to_be_bytes());
        t[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
        t[24..28].copy_from_slice(&cmd_sn.to_be_bytes());
        t[28..32].copy_from_slice(&c.exp_stat_sn.to_be_bytes());
        c.send(&t, b"SendTargets=All\0");
    };
    // Beyond MaxCmdSN: ignored. Then the right one: answered, and nothing
    // for the one before it.
    send_targets(&mut c, exp.wrapping_add(100), 0x10);
    send_targets(&mut c, exp, 0x11);
    let r = c.recv().expect("a Text Response");
    assert_eq!(
        (r.opcode(), r.word(16)),
        (0x24, 0x11),
        "only the in-window request"
    );
    assert!(
        r.text().contains("TargetName=iqn.2026-11.io.iolab:target0"),
        "{}",
        r.text()
    );
    assert_eq!(
        (r.word(28), r.word(32)),
        (exp.wrapping_add(1), exp.wrapping_add(16))
    );
    // The same CmdSN again: a duplicate, ignored; a ping still answers.
    send_targets(&mut c, exp, 0x12);
    c.cmd_sn = exp.wrapping_add(1); // an immediate ping carries the next CmdSN
    assert!(c.ping(), "the session is alive");
    send_targets(&mut c, exp.wrapping_add(1), 0x13);
    let r = c.recv().expect("a Text Response");
    assert_eq!(
        (r.opcode(), r.word(16)),
        (0x24, 0x13),
        "not the duplicate's"
    );
}

/// Found while sharing the Logout decision between normal and discovery
/// sessions: a discovery session answered every Logout Request with
/// "closed" and closed, whatever it asked (another CID, removal for
/// recovery). It now answers as a normal session does (RFC 7143 11.15.1):
/// CID not found, recovery not supported, and the session goes on.
#[test]
fn a_discovery_session_answers_a_logout_by_its_reason() {
    let (_srv, urls) = serve(&["--ramdisk", "16M"]);
    let (mut c, _) = RawConn::discovery(&portal_of(&urls[0]));
    let logout = |c: &mut RawConn, reason: u8, cid: u16, itt: u32| {
        let mut l = [0u8; 48];
        l[0] = 0x46; // immediate Logout Request
        l[1] = 0x80 | reason;
        l[16..20].copy_from_slice(&itt.to_be_bytes());
        l[20..22].copy_from_slice(&cid.to_be_bytes());
        l[24..28].copy_from_slice(&c.cmd_sn.to_be_bytes());
        l[28..32].copy_from_slice(&c.exp_stat_sn.to_be_bytes());
        c.send(&l, &[]);
        let r = c.recv().expect("a Logout Response");
        assert_eq!((r.opcode(), r.word(16)), (0x26, itt));
        r.bhs[2]
    };
    assert_eq!(logout(&mut c, 1, 5, 0x20), 1, "CID 5 is not this session's");
    assert!(c.ping(), "the session goes on");
    assert_eq!(logout(&mut c, 2, 0, 0x21), 2, "no recovery at ERL 0");
    assert!(c.ping(), "the session goes on");
    assert_eq!(logout(&mut c, 0, 0, 0x22), 0, "close the session");
    assert!(c.closed_by_peer());
}

/// Found while moving the write transfer into a state machine: Data-Out
/// with a hole in its R2T sequence (DataPDUInOrder=Yes) was taken, its
/// bytes counted, and the final PDU closed the sequence; the task then
/// waited for bytes no R2T would ever ask for again, so the command never
/// answered. Now the sequence fails the task at once with a data phase
/// error, as any Data-Out out of order does.
#[test]
fn a_data_out_sequence_with_a_hole_fails_instead_of_hanging() {
    let (_srv, urls) = serve(&["--ramdisk", "16M"]);
    let portal = portal_of(&urls[0]);
    let (mut a, _) = login(&portal, &[("ImmediateData", "No"), ("InitialR2T", "Yes")]);
    let data = vec![0x33u8; 16 * 512];
    let itt = a.scsi(&write10(300, 16), data.len() as u32, false, true, &[]);
    let r2t = loop {
        let p = a.recv().expect("an R2T");
        if p.opcode() == 0x31 && p.word(16) == itt {
            break p;
        }
    };
    let (ttt, offset, len) = (r2t.word(20), r2t.word(40), r2t.word(44));
    assert_eq!((offset, len), (0, 8192));
    // The second half only, as the final PDU of the sequence.
    a.data_out(itt, ttt, 0, 4096, &data[4096..8192], true);
    let (status, sense) = a.wait_sense(itt).expect("an answer, not a hang");
    assert_eq!(status, 2, "CHECK CONDITION");
    assert_eq!(
        (sense[2] & 0x0f, sense[12], sense[13]),
        (0x0b, 0x4b, 0x00),
        "data phase error"
    );
}

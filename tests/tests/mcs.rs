//! Multiple connections per session (MC/S) on `iolab target serve`: joining by
//! TSIH, one CmdSN window across connections, MaxConnections enforced.

use iolab_tests::raw::RawConn;
use iolab_tests::{portal_of, serve};

const IQN: &str = "iqn.2026-11.io.iolab:target0";

fn join(portal: &str, leader: &RawConn, cid: u16, cmd_sn: u32) -> (RawConn, (u8, u8)) {
    let mut c = RawConn::connect(portal);
    c.isid_low = leader.isid_low;
    c.tsih = leader.tsih;
    c.cid = cid;
    c.cmd_sn = cmd_sn;
    let r = c.login(IQN, &[]);
    (c, (r.bhs[36], r.bhs[37]))
}

#[test]
fn connections_join_a_session_and_share_its_window() {
    let (_srv, urls) = serve(&["--ramdisk", "16M"]);
    let portal = portal_of(&urls[0]);
    let mut a = RawConn::connect(&portal);
    let r = a.login(IQN, &[("MaxConnections", "4"), ("ImmediateData", "Yes")]);
    assert_eq!(r.bhs[36], 0, "{}", r.text());
    assert!(r.text().contains("MaxConnections=4"), "{}", r.text());
    assert_ne!(a.tsih, 0);

    let (mut b, status) = join(&portal, &a, 1, a.cmd_sn);
    assert_eq!(status, (0, 0), "second connection refused");
    assert_eq!(b.tsih, a.tsih, "joined a different session");

    // One CmdSN sequence across both connections; each command is answered on its own connection.
    b.cmd_sn = a.cmd_sn + 1;
    let data: Vec<u8> = (0..4096u32).map(|i| (i * 7) as u8).collect();
    let mut w = [0u8; 10];
    w[0] = 0x2a;
    w[5] = 100; // LBA 100
    w[8] = 8; // 8 blocks
    let wi = a.scsi(&w, 4096, false, true, &data);
    let mut rd = w;
    rd[0] = 0x28;
    let ri = b.scsi(&rd, 4096, true, false, &[]);
    assert_eq!(
        a.wait_status(wi).map(|s| s.0),
        Some(0),
        "write over connection 0"
    );
    let (status, got) = b.wait_status(ri).expect("read over connection 1");
    assert_eq!(status, 0);
    assert!(
        got == data,
        "connection 1 read back different data than connection 0 wrote"
    );
    a.cmd_sn = b.cmd_sn;

    let (_c, s) = join(&portal, &a, 2, a.cmd_sn);
    assert_eq!(s, (0, 0));
    let (_d, s) = join(&portal, &a, 3, a.cmd_sn);
    assert_eq!(s, (0, 0));
    let (_e, s) = join(&portal, &a, 4, a.cmd_sn);
    assert_eq!(
        s,
        (0x02, 0x06),
        "a fifth connection beyond MaxConnections=4 must be refused"
    );

    // Joining a session that does not exist.
    let mut bogus = RawConn::connect(&portal);
    bogus.isid_low = a.isid_low;
    bogus.tsih = a.tsih.wrapping_add(77);
    bogus.cid = 9;
    let r = bogus.login(IQN, &[]);
    assert_eq!((r.bhs[36], r.bhs[37]), (0x02, 0x0a));

    assert!(
        a.ping() && b.ping(),
        "the session's connections still answer"
    );
}

/// A Logout Request "close the connection" (reason 1) names a CID (RFC 7143
/// 11.14.1): sent on one connection for another of the session, the target
/// answers on the connection it came on and closes the other, while this
/// one carries on. A CID the session does not have gets "CID not found".
/// (Before: any CID but the receiving connection's was "not found".)
#[test]
fn a_connection_logs_out_another_connection_of_its_session() {
    let (_srv, urls) = serve(&["--ramdisk", "16M"]);
    let portal = portal_of(&urls[0]);
    let mut a = RawConn::connect(&portal);
    let r = a.login(IQN, &[("MaxConnections", "2")]);
    assert_eq!(r.bhs[36], 0, "{}", r.text());
    let (mut b, status) = join(&portal, &a, 1, a.cmd_sn);
    assert_eq!(status, (0, 0));
    assert!(b.ping(), "the second connection answers before the logout");

    let logout = |c: &mut RawConn, cid: u16| -> u8 {
        let mut h = [0u8; 48];
        h[0] = 0x46; // immediate Logout Request
        h[1] = 0x80 | 1; // close the connection
        let itt = c.itt;
        c.itt += 1;
        h[16..20].copy_from_slice(&itt.to_be_bytes());
        h[20..22].copy_from_slice(&cid.to_be_bytes());
        h[24..28].copy_from_slice(&c.cmd_sn.to_be_bytes());
        h[28..32].copy_from_slice(&c.exp_stat_sn.to_be_bytes());
        c.send(&h, &[]);
        loop {
            let p = c.recv().expect("a Logout Response");
            if p.opcode() == 0x26 && p.word(16) == itt {
                c.exp_stat_sn = p.word(24).wrapping_add(1);
                return p.bhs[2];
            }
        }
    };
    // No connection 7: CID not found, and nothing ends.
    assert_eq!(logout(&mut a, 7), 1);
    assert!(a.ping() && b.ping());
    // Connection 1 from connection 0.
    assert_eq!(
        logout(&mut a, 1),
        0,
        "closing connection 1 from connection 0"
    );
    assert!(b.closed_by_peer(), "connection 1 was not closed");
    assert!(a.ping(), "connection 0 must carry on");
    // The session lost connection 1: its CID may log in again.
    let (mut c, status) = join(&portal, &a, 1, a.cmd_sn);
    assert_eq!(status, (0, 0), "CID 1 could not join again");
    assert!(c.ping());
}

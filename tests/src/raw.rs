//! A minimal hand-rolled iSCSI initiator over a blocking socket, for sending
//! well-formed and deliberately malformed PDUs to a target. PDUs are built
//! byte by byte here, independent of the crate's own codec.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A parsed incoming PDU.
#[derive(Debug, Clone)]
pub struct RawPdu {
    pub bhs: [u8; 48],
    pub data: Vec<u8>,
}

impl RawPdu {
    pub fn opcode(&self) -> u8 {
        self.bhs[0] & 0x3f
    }
    pub fn word(&self, at: usize) -> u32 {
        u32::from_be_bytes([
            self.bhs[at],
            self.bhs[at + 1],
            self.bhs[at + 2],
            self.bhs[at + 3],
        ])
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.data).replace('\0', "\n")
    }
}

pub struct RawConn {
    pub stream: TcpStream,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub itt: u32,
    pub header_digest: bool,
    /// The low bytes of this connection's ISID: distinct per connection, so
    /// logins do not reinstate each other's sessions.
    pub isid_low: u32,
    /// TSIH to log in with (0: a new session) and this connection's CID.
    pub tsih: u16,
    pub cid: u16,
}

/// CRC32C (Castagnoli), bitwise: slow and independent of the crate under test.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

impl RawConn {
    pub fn connect(portal: &str) -> RawConn {
        let stream = TcpStream::connect(portal).expect("connect to target");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        stream.set_nodelay(true).expect("nodelay");
        let isid_low = (std::process::id() << 12) ^ crate::unique() as u32;
        RawConn {
            stream,
            cmd_sn: 1,
            exp_stat_sn: 0,
            itt: 1,
            header_digest: false,
            isid_low,
            tsih: 0,
            cid: 0,
        }
    }

    /// Sends a BHS and data (padded), with a header digest when negotiated.
    pub fn send(&mut self, bhs: &[u8; 48], data: &[u8]) {
        let mut b = *bhs;
        let len = (data.len() as u32).to_be_bytes();
        b[5..8].copy_from_slice(&len[1..4]);
        self.send_raw(&b, data);
    }

    /// Sends exactly the BHS given (data length field untouched) and the data.
    pub fn send_raw(&mut self, b: &[u8; 48], data: &[u8]) {
        let mut wire = b.to_vec();
        if self.header_digest {
            wire.extend_from_slice(&crc32c(b).to_le_bytes());
        }
        wire.extend_from_slice(data);
        wire.resize(wire.len() + (4 - data.len() % 4) % 4, 0);
        let _ = self.stream.write_all(&wire);
    }

    /// Reads one PDU; None on EOF, reset or timeout.
    pub fn recv(&mut self) -> Option<RawPdu> {
        let mut bhs = [0u8; 48];
        self.stream.read_exact(&mut bhs).ok()?;
        if self.header_digest {
            let mut d = [0u8; 4];
            self.stream.read_exact(&mut d).ok()?;
        }
        let len = u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]) as usize;
        let mut data = vec![0u8; len + (4 - len % 4) % 4];
        self.stream.read_exact(&mut data).ok()?;
        data.truncate(len);
        let p = RawPdu { bhs, data };
        if matches!(p.opcode(), 0x21 | 0x23 | 0x24 | 0x26 | 0x22 | 0x3f)
            || (p.opcode() == 0x20 && p.word(16) != !0)
        {
            self.exp_stat_sn = p.word(24).wrapping_add(1);
        }
        Some(p)
    }

    /// Whether the target closes the connection within a few seconds
    /// (anything it still sends first is drained).
    pub fn closed_by_peer(&mut self) -> bool {
        let mut b = [0u8; 4096];
        self.stream
            .set_read_timeout(Some(Duration::from_secs(3)))
            .ok();
        loop {
            match self.stream.read(&mut b) {
                Ok(0) => return true,
                Ok(_) => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return false;
                }
                Err(_) => return true,
            }
        }
    }

    /// A Login Request from the operational stage straight to full feature phase.
    pub fn login_pdu(&self, keys: &[(&str, &str)]) -> ([u8; 48], Vec<u8>) {
        let mut b = [0u8; 48];
        b[0] = 0x43; // immediate + Login Request
        b[1] = 0x80 | (1 << 2) | 3; // T, CSG=operational, NSG=full feature
        b[8] = 0x80; // ISID type: random
        b[9] = 0x12;
        b[10..14].copy_from_slice(&self.isid_low.to_be_bytes());
        b[14..16].copy_from_slice(&self.tsih.to_be_bytes());
        b[20..22].copy_from_slice(&self.cid.to_be_bytes());
        b[16..20].copy_from_slice(&self.itt.to_be_bytes());
        b[24..28].copy_from_slice(&self.cmd_sn.to_be_bytes());
        let mut data = Vec::new();
        for (k, v) in keys {
            data.extend_from_slice(format!("{k}={v}").as_bytes());
            data.push(0);
        }
        (b, data)
    }

    /// A discovery session's connection, logged in, and its login response.
    pub fn discovery(portal: &str) -> (RawConn, RawPdu) {
        let mut c = RawConn::connect(portal);
        let (b, data) = c.login_pdu(&[
            ("InitiatorName", "iqn.2026-11.io.iolab:rawtest"),
            ("SessionType", "Discovery"),
        ]);
        c.send(&b, &data);
        let r = c.recv().expect("login response");
        assert_eq!(
            (r.bhs[36], r.bhs[37]),
            (0, 0),
            "discovery login: {}",
            r.text()
        );
        (c, r)
    }

    /// Logs in to `target` with the given extra keys; returns the final response.
    pub fn login(&mut self, target: &str, extra: &[(&str, &str)]) -> RawPdu {
        let mut keys = vec![
            ("InitiatorName", "iqn.2026-11.io.iolab:rawtest"),
            ("TargetName", target),
            ("SessionType", "Normal"),
        ];
        keys.extend_from_slice(extra);
        let (b, data) = self.login_pdu(&keys);
        self.send(&b, &data);
        let r = self.recv().expect("login response");
        if r.bhs[36] == 0 {
            self.exp_stat_sn = r.word(24).wrapping_add(1);
            self.tsih = u16::from_be_bytes([r.bhs[14], r.bhs[15]]);
        }
        self.itt += 1;
        r
    }

    /// A SCSI Command PDU (LUN 0) with immediate data; returns the ITT used.
    pub fn scsi(&mut self, cdb: &[u8], edtl: u32, read: bool, write: bool, data: &[u8]) -> u32 {
        self.scsi_lun(0, cdb, edtl, read, write, data)
    }

    /// [`RawConn::scsi`] to another LUN (below 256, peripheral addressing).
    pub fn scsi_lun(
        &mut self,
        lun: u8,
        cdb: &[u8],
        edtl: u32,
        read: bool,
        write: bool,
        data: &[u8],
    ) -> u32 {
        let mut l = [0u8; 8];
        l[1] = lun;
        self.scsi_cmd(l, cdb, edtl, (read, write, true), data)
    }

    /// A SCSI Command PDU with the LUN field exactly as given and the
    /// (R, W, F) flags; returns the ITT used.
    pub fn scsi_cmd(
        &mut self,
        lun: [u8; 8],
        cdb: &[u8],
        edtl: u32,
        (read, write, fin): (bool, bool, bool),
        data: &[u8],
    ) -> u32 {
        let mut b = [0u8; 48];
        b[0] = 0x01;
        b[1] = if fin { 0x80 } else { 0 }
            | if read { 0x40 } else { 0 }
            | if write { 0x20 } else { 0 }
            | 0x01;
        b[8..16].copy_from_slice(&lun);
        let itt = self.itt;
        self.itt += 1;
        b[16..20].copy_from_slice(&itt.to_be_bytes());
        b[20..24].copy_from_slice(&edtl.to_be_bytes());
        b[24..28].copy_from_slice(&self.cmd_sn.to_be_bytes());
        self.cmd_sn = self.cmd_sn.wrapping_add(1);
        b[28..32].copy_from_slice(&self.exp_stat_sn.to_be_bytes());
        b[32..32 + cdb.len()].copy_from_slice(cdb);
        self.send(&b, data);
        itt
    }

    /// A SCSI Data-Out PDU (LUN 0): `ttt` 0xffffffff for unsolicited data.
    pub fn data_out(
        &mut self,
        itt: u32,
        ttt: u32,
        data_sn: u32,
        offset: u32,
        data: &[u8],
        fin: bool,
    ) {
        let mut b = [0u8; 48];
        b[0] = 0x05;
        b[1] = if fin { 0x80 } else { 0 };
        b[16..20].copy_from_slice(&itt.to_be_bytes());
        b[20..24].copy_from_slice(&ttt.to_be_bytes());
        b[28..32].copy_from_slice(&self.exp_stat_sn.to_be_bytes());
        b[36..40].copy_from_slice(&data_sn.to_be_bytes());
        b[40..44].copy_from_slice(&offset.to_be_bytes());
        self.send(&b, data);
    }

    /// Reads PDUs until the SCSI Response (or Data-In with status) for `itt`;
    /// returns (status, Data-In bytes).
    pub fn wait_status(&mut self, itt: u32) -> Option<(u8, Vec<u8>)> {
        let mut data = Vec::new();
        loop {
            let p = self.recv()?;
            if p.word(16) != itt {
                continue;
            }
            match p.opcode() {
                0x25 => {
                    data.extend_from_slice(&p.data);
                    if p.bhs[1] & 0x01 != 0 {
                        return Some((p.bhs[3], data));
                    }
                }
                0x21 => return Some((p.bhs[3], data)),
                _ => {}
            }
        }
    }

    /// Reads PDUs until the SCSI Response for `itt`; returns its status and
    /// sense data (empty without).
    pub fn wait_sense(&mut self, itt: u32) -> Option<(u8, Vec<u8>)> {
        loop {
            let p = self.recv()?;
            if p.word(16) != itt {
                continue;
            }
            match p.opcode() {
                0x25 if p.bhs[1] & 0x01 != 0 => return Some((p.bhs[3], Vec::new())),
                0x21 => {
                    let len = p
                        .data
                        .get(..2)
                        .map_or(0, |l| u16::from_be_bytes([l[0], l[1]]));
                    let sense = p.data.get(2..2 + len as usize).unwrap_or_default();
                    return Some((p.bhs[3], sense.to_vec()));
                }
                _ => {}
            }
        }
    }

    /// TEST UNIT READY on a LUN: (status, sense key, ASC, ASCQ) from fixed
    /// or descriptor sense (zeros without sense).
    pub fn test_unit_ready(&mut self, lun: u8) -> Option<(u8, u8, u8, u8)> {
        let itt = self.scsi_lun(lun, &[0u8; 6], 0, false, false, &[]);
        let (status, s) = self.wait_sense(itt)?;
        let code = match s.first().map(|b| b & 0x7f) {
            Some(0x70 | 0x71) if s.len() >= 14 => (s[2] & 0x0f, s[12], s[13]),
            Some(0x72 | 0x73) if s.len() >= 4 => (s[1] & 0x0f, s[2], s[3]),
            _ => (0, 0, 0),
        };
        Some((status, code.0, code.1, code.2))
    }

    /// NOP-Out ping; true when the matching NOP-In arrives.
    pub fn ping(&mut self) -> bool {
        let mut b = [0u8; 48];
        b[0] = 0x40; // immediate NOP-Out
        b[1] = 0x80;
        let itt = self.itt;
        self.itt += 1;
        b[16..20].copy_from_slice(&itt.to_be_bytes());
        b[20..24].copy_from_slice(&(!0u32).to_be_bytes());
        b[24..28].copy_from_slice(&self.cmd_sn.to_be_bytes());
        b[28..32].copy_from_slice(&self.exp_stat_sn.to_be_bytes());
        self.send(&b, b"ping");
        loop {
            match self.recv() {
                Some(p) if p.opcode() == 0x20 && p.word(16) == itt => return p.data == b"ping",
                Some(_) => continue,
                None => return false,
            }
        }
    }
}

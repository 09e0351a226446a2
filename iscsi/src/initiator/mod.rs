//! The iSCSI initiator engine: discovery (SendTargets), login with CHAP and
//! full negotiation, sessions with multiple connections, and SCSI helpers.

mod login;
mod session;
pub mod task;
mod url;
pub mod window;

use std::time::Duration;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;

use crate::inbox::Inbox;

pub use session::{CommandResult, Session, SessionFacts, new_isid};
pub use url::IscsiUrl;

use crate::error::IscsiError;
use crate::pdu::{Opcode, Pdu, RESERVED_TAG, ReadLimits, ReadOutcome, read_pdu};
use crate::text;
use crate::typed::{self, Typed};

/// Default initiator name of the embedded initiator.
pub const DEFAULT_INITIATOR: &str = "iqn.2026-11.io.iolab:initiator";

/// The initiator's settings: what it offers and its queue limits.
#[derive(Debug, Clone)]
pub struct InitiatorOptions {
    pub initiator_name: String,
    /// Connections per session (MC/S), as many as the target grants up to this.
    pub connections: u32,
    /// Commands in flight per session (the SCSI host's `can_queue`).
    pub queue_depth: u32,
    /// Commands in flight per LUN (the SCSI device's `cmd_per_lun`), at most `queue_depth`.
    pub cmd_per_lun: u32,
    pub header_digest: bool,
    pub data_digest: bool,
    pub max_recv_data_segment: u32,
    pub max_burst: u32,
    pub first_burst: u32,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    pub login_timeout: Duration,
    pub io_timeout: Duration,
    /// A fixed ISID (otherwise a random one per session).
    pub isid: Option<u64>,
}

impl Default for InitiatorOptions {
    fn default() -> Self {
        InitiatorOptions {
            initiator_name: DEFAULT_INITIATOR.into(),
            connections: 1,
            queue_depth: 128,
            cmd_per_lun: 128,
            header_digest: false,
            data_digest: false,
            max_recv_data_segment: 262_144,
            max_burst: 16_776_192,
            first_burst: 262_144,
            immediate_data: true,
            initial_r2t: false,
            login_timeout: Duration::from_secs(10),
            io_timeout: Duration::from_secs(30),
            isid: None,
        }
    }
}

/// One target a portal reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredTarget {
    pub name: String,
    pub addresses: Vec<String>,
}

/// SendTargets=All on a discovery session.
pub async fn discover(
    portal: &IscsiUrl,
    opts: &InitiatorOptions,
) -> Result<Vec<DiscoveredTarget>, IscsiError> {
    let stream = login::connect(portal, opts.login_timeout).await?;
    let (rd, mut wr) = stream.into_split();
    let mut rd = Inbox::with_capacity(64 * 1024, rd);
    let isid = match opts.isid {
        Some(i) => i,
        None => new_isid()?,
    };
    let req = login::LoginRequest {
        url: portal,
        opts,
        discovery: true,
        isid,
        tsih: 0,
        cid: 0,
        cmd_sn: 1,
        leading: true,
    };
    let out = login::login(&mut rd, &mut wr, &req).await?;
    let mut all = Vec::new();
    let mut ttt = RESERVED_TAG;
    let mut exp_stat_sn = out.exp_stat_sn;
    let cmd_sn = out.exp_cmd_sn;
    let limits = ReadLimits {
        max_data: 1 << 20,
        header_digest: out.params.header_digest,
        data_digest: out.params.data_digest,
    };
    let fut = async {
        loop {
            let b = typed::TextRequest {
                immediate: true,
                final_: true,
                continue_: false,
                lun: [0; 8],
                itt: 7,
                ttt,
                cmd_sn,
                exp_stat_sn,
            }
            .encode();
            let data = if ttt == RESERVED_TAG {
                b"SendTargets=All\0".to_vec()
            } else {
                Vec::new()
            };
            wr.write_all(
                &Pdu::new(b, data).encode(out.params.header_digest, out.params.data_digest),
            )
            .await?;
            let r = match read_pdu(&mut rd, limits).await? {
                Some(ReadOutcome::Pdu(p)) if p.bhs.opcode() == Some(Opcode::TextResponse) => p,
                Some(_) => {
                    return Err(crate::error::Violation::UnexpectedSendTargetsReply.into());
                }
                None => {
                    return Err(crate::error::Violation::DiscoveryClosed.into());
                }
            };
            let Some(t) = typed::TextResponse::decode(&r.bhs) else {
                return Err(crate::error::Violation::UnexpectedSendTargetsReply.into());
            };
            exp_stat_sn = t.sn.stat_sn.wrapping_add(1);
            all.extend_from_slice(&r.data);
            if !t.continue_ {
                break;
            }
            ttt = t.ttt;
        }
        let b = typed::LogoutRequest {
            immediate: true,
            reason: 0,
            itt: 8,
            cid: 0,
            cmd_sn,
            exp_stat_sn,
        }
        .encode();
        let _ = wr
            .write_all(
                &Pdu::new(b, Vec::new()).encode(out.params.header_digest, out.params.data_digest),
            )
            .await;
        Ok::<(), IscsiError>(())
    };
    tokio::time::timeout(opts.io_timeout, fut)
        .await
        .map_err(|_| IscsiError::Timeout(crate::error::Waiting::SendTargets))??;
    let mut targets: Vec<DiscoveredTarget> = Vec::new();
    for (k, v) in text::parse(&all)? {
        match k.as_str() {
            "TargetName" => targets.push(DiscoveredTarget {
                name: v,
                addresses: Vec::new(),
            }),
            "TargetAddress" => {
                if let Some(t) = targets.last_mut() {
                    t.addresses.push(v);
                }
            }
            _ => {}
        }
    }
    Ok(targets)
}

fn check(cmd: &str, r: &CommandResult) -> Result<(), IscsiError> {
    if r.good() {
        return Ok(());
    }
    Err(IscsiError::Protocol(match r.sense_code() {
        Some((key, asc, ascq)) => crate::error::Violation::CheckCondition {
            command: cmd.to_string(),
            key,
            asc,
            ascq,
        },
        None => crate::error::Violation::ScsiStatus {
            command: cmd.to_string(),
            status: r.status,
        },
    }))
}

impl Session {
    /// READ CAPACITY(16): (number of blocks, block size).
    pub async fn capacity(&self) -> Result<(u64, u32), IscsiError> {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x9e;
        cdb[1] = 0x10;
        cdb[13] = 32;
        let r = self.command(&cdb, Bytes::new(), 32).await?;
        check("READ CAPACITY(16)", &r)?;
        if r.data.len() < 12 {
            return Err(crate::error::Violation::ShortData("READ CAPACITY(16)").into());
        }
        let last = u64::from_be_bytes(r.data[0..8].try_into().unwrap_or_default());
        let bs = u32::from_be_bytes(r.data[8..12].try_into().unwrap_or_default());
        Ok((last + 1, bs))
    }

    /// REPORT LUNS (sent to this session's LUN, as any LUN answers it): the
    /// LUN numbers the target shows this initiator.
    pub async fn report_luns(&self) -> Result<Vec<u64>, IscsiError> {
        const ALLOC: u32 = 16 * 1024;
        let mut cdb = [0u8; 12];
        cdb[0] = 0xa0;
        cdb[6..10].copy_from_slice(&ALLOC.to_be_bytes());
        let r = self.command(&cdb, Bytes::new(), ALLOC).await?;
        check("REPORT LUNS", &r)?;
        let listed = r
            .data
            .get(0..4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .ok_or(crate::error::Violation::ShortData("REPORT LUNS"))?;
        let end = (8 + listed).min(r.data.len());
        Ok(r.data[8.min(end)..end]
            .chunks_exact(8)
            .map(|c| {
                let mut b = [0u8; 8];
                b.copy_from_slice(c);
                iolab_storage::scsi::decode_lun(b)
            })
            .collect())
    }

    /// TEST UNIT READY, retried past unit attentions (as a SCSI host does after login).
    pub async fn test_unit_ready(&self) -> Result<(), IscsiError> {
        for _ in 0..8 {
            let r = self.command(&[0u8; 6], Bytes::new(), 0).await?;
            if r.good() {
                return Ok(());
            }
            if r.sense_code().map(|s| s.0) != Some(0x06) {
                return check("TEST UNIT READY", &r);
            }
        }
        Err(crate::error::Violation::EndlessUnitAttention.into())
    }

    /// READ(16) of `blocks` blocks at `lba`.
    pub async fn read(&self, lba: u64, blocks: u32, block_size: u32) -> Result<Bytes, IscsiError> {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x88;
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
        let r = self
            .command(&cdb, Bytes::new(), blocks * block_size)
            .await?;
        check("READ(16)", &r)?;
        Ok(r.data)
    }

    /// WRITE(16) of `data` at `lba`.
    pub async fn write(&self, lba: u64, data: Bytes, block_size: u32) -> Result<(), IscsiError> {
        let blocks = (data.len() / block_size as usize) as u32;
        let mut cdb = [0u8; 16];
        cdb[0] = 0x8a;
        cdb[2..10].copy_from_slice(&lba.to_be_bytes());
        cdb[10..14].copy_from_slice(&blocks.to_be_bytes());
        let r = self.command(&cdb, data, 0).await?;
        check("WRITE(16)", &r)
    }
}

//! A discovery session (RFC 7143 4.3): SendTargets through the text
//! exchange, NOP and Logout, with the same CmdSN rules and the same
//! Logout decision as a normal session.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use tokio::io::BufReader;
use tokio::net::tcp::OwnedReadHalf;

use super::Registry;
use super::connection::{send, send_text};
use super::logout::{self, LogoutEffect};
use super::text_exchange::{self, TextExchange, TextStep};
use crate::error::IscsiError;
use crate::pdu::{Opcode, RESERVED_TAG, ReadLimits, ReadOutcome, RejectReason, read_pdu};
use crate::text;
use crate::transport::{Frame, Outbox};
use crate::typed::{self, Sn, Typed};

/// The command window a discovery session grants (login response and
/// after): SendTargets, pings and a logout need few at a time.
pub(super) const DISCOVERY_DEPTH: u32 = 16;

/// The answer to a Text Request's SendTargets (and NotUnderstood for other
/// keys). `local` is the address the initiator reached: a wildcard portal
/// is named by it.
pub(super) fn send_targets(
    reg: &Registry,
    current: Option<&str>,
    initiator: &str,
    pairs: &[(String, String)],
    local: SocketAddr,
) -> Vec<u8> {
    let mut out: Vec<(String, String)> = Vec::new();
    for (k, v) in pairs {
        if k == "SendTargets" {
            for t in reg.targets() {
                let wanted = match v.as_str() {
                    "All" => current.is_none(),
                    "" => current == Some(t.iqn.as_str()),
                    name => name == t.iqn,
                } || (v == "All" && current.is_some());
                // Only the targets this initiator may access (RFC 7143
                // appendix C), as tgt does: an ACL or demo mode lets it in.
                if !wanted || !t.allows(initiator) {
                    continue;
                }
                out.push(("TargetName".into(), t.iqn.clone()));
                for p in reg.portals() {
                    let addr = super::portal::url_host_port(p.seen_from(local));
                    out.push(("TargetAddress".into(), format!("{addr},{}", t.cfg().tpgt)));
                }
            }
        } else {
            out.push((k.clone(), "NotUnderstood".into()));
        }
    }
    text::encode(&out)
}

/// A discovery session: SendTargets, NOP and Logout only.
pub(super) struct Discovery {
    pub(super) reg: Arc<Registry>,
    pub(super) tx: Outbox,
    /// This connection's own address: what a wildcard portal is named by.
    pub(super) local: SocketAddr,
    /// Its CID, for a Logout that names a connection.
    pub(super) cid: u16,
    /// Who asks: SendTargets lists only the targets it may log in to.
    pub(super) initiator: String,
    /// The initiator's MaxRecvDataSegmentLength: text answers are cut to it.
    pub(super) peer_mrdsl: usize,
    pub(super) stat_sn: u32,
    /// The same CmdSN rules as a normal session's (outside the window or a
    /// duplicate: ignored), with [`DISCOVERY_DEPTH`].
    pub(super) window: super::cmdsn::CmdWindow,
    pub(super) text: TextExchange,
    /// Target transfer tags of its text answers.
    pub(super) tags: u32,
}

impl Discovery {
    fn window(&self) -> (u32, u32) {
        self.window.bounds()
    }

    /// The next response's StatSN (advanced) and the window.
    fn next_sn(&mut self) -> Sn {
        let window = self.window();
        Sn::take(&mut self.stat_sn, true, window)
    }

    pub(super) async fn run(
        mut self,
        rd: &mut BufReader<OwnedReadHalf>,
        max_data: usize,
        hd: bool,
        dd: bool,
    ) -> Result<(), IscsiError> {
        let limits = ReadLimits {
            max_data,
            header_digest: hd,
            data_digest: dd,
        };
        loop {
            let pdu = match read_pdu(rd, limits).await? {
                Some(ReadOutcome::Pdu(p)) => p,
                Some(ReadOutcome::DataDigestError(_)) => {
                    return Err(crate::error::Violation::DataDigest.into());
                }
                None => return Ok(()),
            };
            let b = pdu.bhs.clone();
            let carries_cmd_sn = matches!(
                b.opcode(),
                Some(Opcode::TextRequest | Opcode::LogoutRequest | Opcode::NopOut)
            );
            if carries_cmd_sn && !self.window.accept(b.cmd_sn(), b.immediate()) {
                // RFC 7143 4.2.2.1: outside the window, or a duplicate.
                tracing::debug!(cmd_sn = b.cmd_sn(), window = ?self.window(), "discovery: CmdSN ignored");
                continue;
            }
            if let Some(t) = typed::TextRequest::decode(&b) {
                let piece = match self.text.take(&t, &pdu.data, &mut self.tags) {
                    TextStep::Reject(RejectReason::InvalidPduField) => {
                        return Err(crate::error::Violation::UnknownTextContinuation.into());
                    }
                    TextStep::Reject(r) => {
                        return Err(crate::error::Violation::TextRequest(r).into());
                    }
                    TextStep::MoreRequest { ttt } => text_exchange::Piece::ask(ttt),
                    TextStep::Piece(p) => p,
                    TextStep::Request(data) => {
                        let pairs = text::parse(&data)?;
                        let reply =
                            send_targets(&self.reg, None, &self.initiator, &pairs, self.local);
                        self.text
                            .answer(t.itt, reply, self.peer_mrdsl, &mut self.tags)
                    }
                };
                let sn = self.next_sn();
                send_text(&self.tx, piece, &b, sn, hd, dd).await?;
            } else if let Some(n) = typed::NopOut::decode(&b) {
                // A NOP-Out with the reserved ITT wants no answer.
                if n.itt != RESERVED_TAG {
                    let r = typed::NopIn::answer(n.lun, n.itt, self.next_sn()).encode();
                    send(&self.tx, Frame::new(&r, Bytes::from(pdu.data), hd, dd)).await?;
                }
            } else if let Some(l) = typed::LogoutRequest::decode(&b) {
                self.reg.logins.logouts.fetch_add(1, Relaxed);
                let this = self.cid;
                let sn = self.next_sn();
                let (r, effect) = logout::answer(&l, this, |c| c == this, sn, (0, 0));
                send(&self.tx, Frame::new(&r.encode(), Bytes::new(), hd, dd)).await?;
                if effect != LogoutEffect::None {
                    return Ok(());
                }
            } else {
                let r = typed::Reject {
                    reason: RejectReason::ProtocolError,
                    sn: self.next_sn(),
                    data_sn: 0,
                }
                .encode();
                send(
                    &self.tx,
                    Frame::new(&r, Bytes::copy_from_slice(&b.0), hd, dd),
                )
                .await?;
            }
        }
    }
}

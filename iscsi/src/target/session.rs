//! A session: its I_T nexus, the CmdSN window shared by all its connections
//! (MC/S), and the connections themselves.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use iolab_storage::scsi::Nexus;
use tokio::sync::watch;

use super::cmdsn::{CmdWindow, Delivery};
use super::login::LoginResult;
use super::{ConnectionInfo, SessionInfo, TargetNode};
use crate::negotiation::Params;
use crate::pdu::LoginStatus;
use crate::stats::ConnStats;

/// Write data a session may hold for commands still receiving Data-Out. A
/// command beyond it gets TASK SET FULL, unless it is the only one pending
/// (so that one large write always makes progress).
pub(super) const PENDING_WRITE_LIMIT: u64 = 64 << 20;

/// A write command's share of its session's pending-write memory, given
/// back when the command's task goes (completed, aborted or its connection gone).
pub(super) struct WriteCredit {
    pending: Arc<AtomicU64>,
    bytes: u64,
}

impl Drop for WriteCredit {
    fn drop(&mut self) {
        self.pending.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

/// A connection as its session sees it.
pub(super) struct ConnEntry {
    pub cid: u16,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub params: Params,
    pub mss: Option<u32>,
    pub stats: Arc<ConnStats>,
    pub close: watch::Sender<bool>,
}

impl ConnEntry {
    fn info(&self) -> ConnectionInfo {
        ConnectionInfo {
            cid: self.cid,
            peer: self.peer,
            local: self.local,
            params: self.params.clone(),
            mss: self.mss,
            stats: self.stats.snapshot(),
        }
    }
}

pub struct Session {
    pub tsih: u16,
    pub isid: u64,
    pub initiator_name: String,
    pub target: Arc<TargetNode>,
    pub nexus: Nexus,
    /// Session-wide parameters negotiated on the leading connection.
    pub params: Params,
    window: Mutex<CmdWindow>,
    conns: Mutex<Vec<ConnEntry>>,
    /// CIDs whose login completed but whose connection has not registered yet.
    reserved: Mutex<Vec<u16>>,
    /// The next CmdSN to hand to the SCSI layer: commands are delivered in
    /// CmdSN order across all connections (RFC 7143 3.2.2.1).
    next_delivery: Mutex<Delivery>,
    turn: tokio::sync::Notify,
    /// When a connection of this session last died while others lived on:
    /// CmdSN gaps after that are presumed lost with it and not waited for.
    lost_connection_at: Mutex<Option<std::time::Instant>>,
    /// Bytes of write buffers held by this session's pending write tasks.
    pending_write_bytes: Arc<AtomicU64>,
}

/// How long after a connection loss gaps are skipped without waiting.
const LOST_CONNECTION_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// How long a command waits for a lower CmdSN that another connection still
/// owes before it is delivered anyway (ERL 0 has no way to ask for it again).
const DELIVERY_GAP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl Session {
    pub(super) fn new(tsih: u16, r: &LoginResult, target: Arc<TargetNode>) -> Self {
        let depth = target.cfg().queue_depth;
        Session {
            tsih,
            isid: r.isid,
            initiator_name: r.initiator_name.clone(),
            nexus: Nexus::new(&r.initiator_name, r.isid),
            target,
            params: r.params.clone(),
            window: Mutex::new(CmdWindow::new(r.cmd_sn, depth)),
            conns: Mutex::new(Vec::new()),
            reserved: Mutex::new(Vec::new()),
            next_delivery: Mutex::new(Delivery::new(r.cmd_sn)),
            turn: tokio::sync::Notify::new(),
            lost_connection_at: Mutex::new(None),
            pending_write_bytes: Arc::new(AtomicU64::new(0)),
        }
    }

    /// Reserves `bytes` of pending-write memory, or None when the session
    /// holds too much already (see [`PENDING_WRITE_LIMIT`]).
    pub(super) fn write_credit(&self, bytes: u64) -> Option<WriteCredit> {
        let before = self.pending_write_bytes.fetch_add(bytes, Ordering::AcqRel);
        if before > 0 && before + bytes > PENDING_WRITE_LIMIT {
            self.pending_write_bytes.fetch_sub(bytes, Ordering::AcqRel);
            return None;
        }
        Some(WriteCredit {
            pending: self.pending_write_bytes.clone(),
            bytes,
        })
    }

    fn next(&self) -> std::sync::MutexGuard<'_, Delivery> {
        self.next_delivery.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether `cmd_sn` may be delivered now (what [`Session::wait_turn`]
    /// returns at once for). Beyond the MaxCmdSN this session has granted a
    /// command will be ignored, so it does not wait for its turn. (The bound
    /// is the window itself, not `next + depth`: ExpCmdSN moves on when a
    /// command is accepted, just before it counts as delivered, so the
    /// initiator may already use MaxCmdSN = next + depth.)
    pub fn is_turn(&self, cmd_sn: u32) -> bool {
        let (_, max) = self.window();
        self.next().is_turn(cmd_sn, max)
    }

    /// Waits until every lower CmdSN has been delivered (or the gap wait ends).
    /// Returns at once for CmdSNs outside the window: their handler drops them.
    pub async fn wait_turn(&self, cmd_sn: u32) {
        let deadline = tokio::time::Instant::now() + DELIVERY_GAP_WAIT;
        loop {
            let notified = self.turn.notified();
            {
                let (_, max) = self.window();
                let mut next = self.next();
                if next.is_turn(cmd_sn, max) {
                    return;
                }
                let recently_lost = self
                    .lost_connection_at
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_some_and(|t| t.elapsed() < LOST_CONNECTION_GRACE);
                if recently_lost || tokio::time::Instant::now() >= deadline {
                    tracing::warn!(
                        tsih = self.tsih,
                        cmd_sn,
                        waiting_for = next.waiting_for(),
                        "CmdSN gap not filled: skipping it"
                    );
                    next.skip_to(cmd_sn);
                    drop(next);
                    self.w().skip_to(cmd_sn);
                    return;
                }
            }
            let _ = tokio::time::timeout_at(deadline, notified).await;
        }
    }

    /// Marks a CmdSN delivered and wakes commands waiting behind it.
    pub fn done_turn(&self, cmd_sn: u32) {
        let moved = self.next().done(cmd_sn);
        if moved {
            self.turn.notify_waiters();
        }
    }

    fn w(&self) -> std::sync::MutexGuard<'_, CmdWindow> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// (ExpCmdSN, MaxCmdSN).
    pub fn window(&self) -> (u32, u32) {
        self.w().bounds()
    }

    /// The session's command window (the target's queue depth when it logged in).
    pub fn window_depth(&self) -> u32 {
        self.w().depth()
    }

    /// Accepts a command's CmdSN. Returns false when it must be ignored
    /// (outside the window, or a duplicate).
    pub fn accept_cmd_sn(&self, cmd_sn: u32, immediate: bool) -> bool {
        self.w().accept(cmd_sn, immediate)
    }

    fn conns(&self) -> std::sync::MutexGuard<'_, Vec<ConnEntry>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Claims a CID for a connection that is finishing its login.
    pub(super) fn reserve_connection(&self, cid: u16) -> Result<(), LoginStatus> {
        let conns = self.conns();
        let mut reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        let count = conns.len() + reserved.len();
        if count as u32 >= self.params.max_connections.max(1) {
            return Err(LoginStatus::TOO_MANY_CONNECTIONS);
        }
        if let Some(old) = conns.iter().find(|c| c.cid == cid) {
            // Connection reinstatement with the same CID: the old one goes.
            let _ = old.close.send(true);
        }
        reserved.push(cid);
        Ok(())
    }

    pub(super) fn add_connection(&self, entry: ConnEntry) {
        self.reserved
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|c| *c != entry.cid);
        self.conns().push(entry);
    }

    /// This session with only the connection of `stats`, as it stands (its
    /// final figures when it has ended; in flight counted as 0 then).
    pub(super) fn info_of(&self, stats: &Arc<ConnStats>) -> SessionInfo {
        SessionInfo {
            connections: self
                .conns()
                .iter()
                .filter(|c| Arc::ptr_eq(&c.stats, stats))
                .map(|c| {
                    let mut info = c.info();
                    info.stats.in_flight = 0;
                    info
                })
                .collect(),
            ..self.header()
        }
    }

    /// Removes a connection; returns true when it was the last one.
    pub(super) fn remove_connection(&self, stats: &Arc<ConnStats>) -> bool {
        let mut conns = self.conns();
        conns.retain(|c| !Arc::ptr_eq(&c.stats, stats));
        if !conns.is_empty() {
            *self
                .lost_connection_at
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = Some(std::time::Instant::now());
            self.turn.notify_waiters();
        }
        conns.is_empty()
            && self
                .reserved
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_empty()
    }

    /// Gives up a CID reserved by a login that never became a connection;
    /// returns true when the session is left with nothing.
    pub(super) fn unreserve(&self, cid: u16) -> bool {
        let conns = self.conns();
        let mut reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        reserved.retain(|c| *c != cid);
        conns.is_empty() && reserved.is_empty()
    }

    /// Asks every connection to close.
    pub fn close_all(&self) {
        for c in self.conns().iter() {
            let _ = c.close.send(true);
        }
    }

    /// Whether connection `cid` is logged in.
    pub fn has_connection(&self, cid: u16) -> bool {
        self.conns().iter().any(|c| c.cid == cid)
    }

    /// Ends connection `cid` (an implicit logout from another connection);
    /// false when there is none.
    pub fn close_connection(&self, cid: u16) -> bool {
        let conns = self.conns();
        let found = conns.iter().find(|c| c.cid == cid);
        if let Some(c) = found {
            let _ = c.close.send(true);
        }
        found.is_some()
    }

    pub fn connection_count(&self) -> usize {
        self.conns().len()
    }

    /// The session's identity, without its connections.
    fn header(&self) -> SessionInfo {
        SessionInfo {
            tsih: self.tsih,
            isid: self.isid,
            initiator: self.initiator_name.clone(),
            target: self.target.iqn.clone(),
            queue_depth: self.window_depth(),
            connections: Vec::new(),
        }
    }

    pub fn info(&self) -> SessionInfo {
        SessionInfo {
            connections: self.conns().iter().map(ConnEntry::info).collect(),
            ..self.header()
        }
    }
}

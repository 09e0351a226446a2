//! An initiator session: one or more connections (MC/S), the CmdSN window,
//! task tags, and SCSI commands with immediate, unsolicited and solicited data.

use std::collections::HashMap;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::error::{Lost, Violation, Waiting};
use crate::inbox::Inbox;
use bytes::Bytes;
use tokio::net::tcp::OwnedReadHalf;
use tokio::sync::{Notify, Semaphore, oneshot};

use super::login::{LoginOutcome, LoginRequest, connect, login};
use super::{InitiatorOptions, IscsiUrl};
use super::{task, window};
use crate::error::IscsiError;
use crate::negotiation::Params;
use crate::pdu::{
    BHS_LEN, Bhs, Header, LogoutReason, Opcode, Pdu, RESERVED_TAG, ReadLimits, ReadOutcome,
    TmfFunction, TmfResponse, pad_len, read_body, read_data_into, read_header,
};
use crate::stats::{ConnStats, ConnStatsSnapshot};
use crate::transport::{Frame, Outbox, tcp_mss};
use crate::typed::{self, TaskAttribute, Typed};

/// Commands carrying at most this much data wait one scheduler turn before
/// writing, so that commands issued together share one socket write.
const BATCH_DATA_MAX: usize = 64 * 1024;

/// Consecutive commands sent on one connection before the next takes over.
/// Targets deliver commands in CmdSN order across connections, so a command
/// on one connection waits for the lower ones on the others; runs of
/// commands make those hand-overs rarer and let a run share one write.
/// Writes carry their data with the command, so a hand-over costs the target
/// more than a read's: measured on iolab's target over 2 connections, 256 KiB
/// writes at 64 outstanding went from 0.64-0.71x of one connection with runs
/// of 16 to 0.87-0.91x with 32-64, while reads fell from 0.97-0.98x to
/// 0.88-0.90x with runs longer than 16.
const MCS_RUN: usize = 16;
const MCS_WRITE_RUN: usize = 64;

/// How many times a command is re-issued after losing its connection.
pub const REISSUE_LIMIT: u32 = 3;

/// The outcome of one SCSI command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    pub status: u8,
    pub data: Bytes,
    pub sense: Vec<u8>,
    /// Residual count with its direction (overflow: positive, underflow: negative).
    pub residual: i64,
}

impl CommandResult {
    pub fn good(&self) -> bool {
        self.status == 0
    }
    /// (sense key, ASC, ASCQ) for fixed or descriptor sense data.
    pub fn sense_code(&self) -> Option<(u8, u8, u8)> {
        let s = &self.sense;
        match s.first().map(|b| b & 0x7f) {
            Some(0x70 | 0x71) if s.len() >= 14 => Some((s[2] & 0x0f, s[12], s[13])),
            Some(0x72 | 0x73) if s.len() >= 4 => Some((s[1] & 0x0f, s[2], s[3])),
            _ => None,
        }
    }
}

struct Pending {
    tx: oneshot::Sender<Result<CommandResult, IscsiError>>,
    /// Data-In received so far (filled in order; gaps, if any, are zero-filled).
    /// Data-In collected so far (a pooled buffer, returned when the caller drops the result).
    data_in: Vec<u8>,
    expected_in: usize,
    data_out: Bytes,
    lun: [u8; 8],
    /// When the command was sent and its operation code, for the watchdog.
    started: Instant,
    opcode: u8,
    /// Its CmdSN: an ABORT TASK names it as RefCmdSN (RFC 7143 11.5.1).
    cmd_sn: u32,
}

/// One connection of the session.
pub(crate) struct Conn {
    pub cid: u16,
    pub params: Params,
    pub mss: Option<u32>,
    /// The target's address and ours.
    pub peer: Option<std::net::SocketAddr>,
    pub local: Option<std::net::SocketAddr>,
    out: Outbox,
    /// Serializes CmdSN assignment and queueing, so one connection sends in CmdSN order.
    send_lock: Mutex<()>,
    pending: Mutex<HashMap<u32, Pending>>,
    pub stats: Arc<ConnStats>,
    exp_stat_sn: AtomicU32,
    alive: AtomicBool,
}

impl Conn {
    /// A response's StatSN: ExpStatSN moves on past it, never back (only
    /// this connection's reader calls this).
    fn note_stat_sn(&self, stat_sn: u32) {
        let cur = self.exp_stat_sn.load(Relaxed);
        self.exp_stat_sn
            .store(window::exp_stat_sn(cur, stat_sn), Relaxed);
    }

    /// Queues one PDU to this connection's writer, with the negotiated digests.
    fn send(&self, b: &Bhs, data: Bytes) {
        let _ = self.out.push([self.frame(b, data)]);
    }

    fn frame(&self, b: &Bhs, data: Bytes) -> Frame {
        Frame::new(b, data, self.params.header_digest, self.params.data_digest)
    }

    fn fail_all(&self, why: &str) {
        self.alive.store(false, Relaxed);
        let drained: Vec<Pending> = {
            let mut p = self.pending.lock().unwrap_or_else(|e| e.into_inner());
            p.drain().map(|(_, v)| v).collect()
        };
        for p in drained {
            let _ = p.tx.send(Err(IscsiError::ConnectionLost(Lost::Connection {
                cid: self.cid,
                why: why.to_string(),
            })));
        }
    }
}

/// Session-wide state shared by its connections.
struct Shared {
    cmd_sn: Mutex<u32>,
    max_cmd_sn: AtomicU32,
    exp_cmd_sn: AtomicU32,
    window_open: Notify,
    /// Commands waiting for the window to open (notified only when some are).
    window_waiters: AtomicU32,
    next_itt: AtomicU32,
    /// Task management and logout requests waiting for their response, by ITT.
    control: Mutex<HashMap<u32, oneshot::Sender<Bhs>>>,
}

/// How long a task management or logout request waits for its response.
const CONTROL_TIMEOUT: Duration = Duration::from_secs(10);

impl Shared {
    fn expect_control(&self, itt: u32) -> oneshot::Receiver<Bhs> {
        let (tx, rx) = oneshot::channel();
        self.control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(itt, tx);
        rx
    }

    /// Hands a task management or logout response to whoever waits for it.
    fn control_response(&self, b: &Bhs) {
        let waiter = self
            .control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&b.itt());
        if let Some(tx) = waiter {
            let _ = tx.send(b.clone());
        }
    }

    fn forget_control(&self, itt: u32) {
        self.control
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&itt);
    }

    /// A new session's window, whatever the old one was.
    fn reset(&self, exp: u32, max: u32) {
        *self.cmd_sn.lock().unwrap_or_else(|e| e.into_inner()) = exp;
        self.exp_cmd_sn.store(exp, Relaxed);
        self.max_cmd_sn.store(max, Relaxed);
        self.window_open.notify_waiters();
    }

    /// Whether CmdSN `next` lies in the window the target granted.
    fn room_for(&self, next: u32) -> bool {
        window::room_for(next, self.max_cmd_sn.load(SeqCst))
    }

    fn update_window(&self, exp: u32, max: u32) {
        let a = window::advance(
            self.exp_cmd_sn.load(Relaxed),
            self.max_cmd_sn.load(Relaxed),
            exp,
            max,
        );
        if let Some(max) = a.max {
            // SeqCst with the waiter's announce-then-recheck in
            // `command_once`: either it sees the new window or we see it.
            self.max_cmd_sn.store(max, SeqCst);
            if self.window_waiters.load(SeqCst) > 0 {
                self.window_open.notify_waiters();
            }
        }
        if let Some(exp) = a.exp {
            self.exp_cmd_sn.store(exp, Relaxed);
        }
    }
}

/// Negotiated facts of a running session, for display.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionFacts {
    pub tsih: u16,
    pub target_portal_group: Option<u16>,
    pub isid: u64,
    pub params: Params,
    pub connections: Vec<(u16, Option<u32>, Params)>,
}

/// A logged-in normal session to one LUN.
pub struct Session {
    pub url: IscsiUrl,
    opts: InitiatorOptions,
    tsih: AtomicU32,
    tpgt: Option<u16>,
    isid: u64,
    params: Params,
    /// Shared with the session's watchdog, which ends when the session is dropped.
    conns: Arc<std::sync::RwLock<Vec<Arc<Conn>>>>,
    /// Serializes session reinstatement; counts reinstatements.
    reconnects: tokio::sync::Mutex<u32>,
    shared: Arc<Shared>,
    rr: AtomicUsize,
    queue: Arc<Semaphore>,
    /// Commands in flight to the LUN (the SCSI device's `cmd_per_lun`).
    per_lun: Arc<Semaphore>,
    lun_raw: [u8; 8],
}

/// A new random-format ISID (type 01b with random qualifier bytes).
pub fn new_isid() -> std::io::Result<u64> {
    let r = crate::chap::random_bytes(5)?;
    Ok((0x40u64 << 40)
        | ((r[0] as u64) << 32)
        | u32::from_be_bytes([r[1], r[2], r[3], r[4]]) as u64)
}

impl Session {
    /// Logs in (leading connection first, then up to `opts.connections` - 1 more).
    pub async fn connect(url: &IscsiUrl, opts: &InitiatorOptions) -> Result<Session, IscsiError> {
        if url.target.is_none() {
            return Err(IscsiError::Config(crate::error::ConfigError::NoTargetLun(
                url.to_string(),
            )));
        }
        let isid = match opts.isid {
            Some(i) => i,
            None => new_isid()?,
        };
        let shared = Arc::new(Shared {
            cmd_sn: Mutex::new(1),
            max_cmd_sn: AtomicU32::new(1),
            exp_cmd_sn: AtomicU32::new(1),
            window_open: Notify::new(),
            window_waiters: AtomicU32::new(0),
            next_itt: AtomicU32::new(1),
            control: Mutex::new(HashMap::new()),
        });
        let (conns, outcome) = login_all(url, opts, isid, &shared).await?;
        let params = outcome.params.clone();
        let tsih = outcome.tsih;
        let depth = opts.queue_depth.max(1) as usize;
        let conns = Arc::new(std::sync::RwLock::new(conns));
        tokio::spawn(watchdog(
            Arc::downgrade(&conns),
            shared.clone(),
            opts.io_timeout,
        ));
        Ok(Session {
            url: url.clone(),
            opts: opts.clone(),
            tsih: AtomicU32::new(tsih as u32),
            tpgt: outcome.target_portal_group,
            isid,
            params,
            conns,
            reconnects: tokio::sync::Mutex::new(0),
            shared,
            rr: AtomicUsize::new(0),
            queue: Arc::new(Semaphore::new(depth)),
            per_lun: Arc::new(Semaphore::new(
                opts.cmd_per_lun.clamp(1, opts.queue_depth.max(1)) as usize,
            )),
            lun_raw: iolab_storage::scsi::encode_lun(url.lun),
        })
    }

    pub fn params(&self) -> &Params {
        &self.params
    }
    pub fn connection_count(&self) -> usize {
        self.conns_now().len()
    }

    fn conns_now(&self) -> Vec<Arc<Conn>> {
        self.conns.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn any_alive(&self) -> bool {
        self.conns_now().iter().any(|c| c.alive.load(Relaxed))
    }

    /// How many times the session was reinstated after losing every connection.
    pub async fn reinstatements(&self) -> u32 {
        *self.reconnects.lock().await
    }

    /// Session reinstatement (ERL 0): log in again with the same ISID and
    /// TSIH 0, which makes the target close what is left of the old session.
    async fn reinstate(&self) -> Result<(), IscsiError> {
        let mut count = self.reconnects.lock().await;
        if self.any_alive() {
            return Ok(()); // another task already did it
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let (conns, outcome) = login_all(&self.url, &self.opts, self.isid, &self.shared).await?;
        tracing::info!(
            tsih = outcome.tsih,
            connections = conns.len(),
            "session reinstated"
        );
        self.tsih.store(outcome.tsih as u32, Relaxed);
        *self.conns.write().unwrap_or_else(|e| e.into_inner()) = conns;
        *count += 1;
        Ok(())
    }

    pub fn facts(&self) -> SessionFacts {
        SessionFacts {
            tsih: self.tsih.load(Relaxed) as u16,
            target_portal_group: self.tpgt,
            isid: self.isid,
            params: self.params.clone(),
            connections: self
                .conns_now()
                .iter()
                .map(|c| (c.cid, c.mss, c.params.clone()))
                .collect(),
        }
    }

    /// The session as the initiator sees it, in the shape the target
    /// reports its sessions (so one sampler turns either into rates):
    /// every live connection with its addresses, parameters and counters.
    pub fn info(&self, initiator: &str) -> crate::target::SessionInfo {
        let unspecified = std::net::SocketAddr::from(([0, 0, 0, 0], 0));
        crate::target::SessionInfo {
            tsih: self.tsih.load(Relaxed) as u16,
            isid: self.isid,
            initiator: initiator.to_string(),
            target: self.url.target.clone().unwrap_or_default(),
            queue_depth: self.opts.queue_depth,
            connections: self
                .conns_now()
                .iter()
                .filter(|c| c.alive.load(Relaxed))
                .map(|c| crate::target::ConnectionInfo {
                    cid: c.cid,
                    peer: c.peer.unwrap_or(unspecified),
                    local: c.local.unwrap_or(unspecified),
                    params: c.params.clone(),
                    mss: c.mss,
                    stats: c.stats.snapshot(),
                })
                .collect(),
        }
    }

    /// Per-connection counters (CID, snapshot).
    pub fn connection_stats(&self) -> Vec<(u16, ConnStatsSnapshot)> {
        self.conns_now()
            .iter()
            .map(|c| (c.cid, c.stats.snapshot()))
            .collect()
    }

    /// The connection for the next command: runs of `run` commands share one.
    fn pick(&self, run: usize) -> Result<Arc<Conn>, IscsiError> {
        let conns = self.conns.read().unwrap_or_else(|e| e.into_inner());
        let n = conns.len();
        let start = self.rr.fetch_add(1, Relaxed) / run.max(1);
        for k in 0..n {
            let i = (start + k) % n;
            if conns[i].alive.load(Relaxed) {
                return Ok(conns[i].clone());
            }
        }
        Err(IscsiError::ConnectionLost(Lost::AllDown))
    }

    /// Sends one SCSI command and waits for its completion. A command whose
    /// connection dies is issued again on a surviving connection of the
    /// session (at most [`REISSUE_LIMIT`] times), as a SCSI host retries it.
    pub async fn command(
        &self,
        cdb: &[u8],
        data_out: Bytes,
        expected_in: u32,
    ) -> Result<CommandResult, IscsiError> {
        let mut attempt = 0;
        loop {
            let outcome = self.command_once(cdb, data_out.clone(), expected_in).await;
            let next = task::after(&outcome, attempt, REISSUE_LIMIT, self.any_alive());
            if next == task::Next::Done {
                return outcome;
            }
            // Only a lost connection is issued again.
            let why = outcome.err().map(|e| e.to_string()).unwrap_or_default();
            attempt += 1;
            if next == task::Next::Reinstate {
                tracing::info!(
                    attempt,
                    "every connection lost ({why}): reinstating the session"
                );
                self.reinstate().await?;
            }
            tracing::info!(
                attempt,
                "re-issuing a command after a lost connection: {why}"
            );
        }
    }

    async fn command_once(
        &self,
        cdb: &[u8],
        data_out: Bytes,
        expected_in: u32,
    ) -> Result<CommandResult, IscsiError> {
        if cdb.len() > 16 {
            return Err(IscsiError::Config(crate::error::ConfigError::LongCdb));
        }
        let _permit = self
            .queue
            .acquire()
            .await
            .map_err(|_| Violation::SessionClosed)?;
        let _lun_permit = self
            .per_lun
            .acquire()
            .await
            .map_err(|_| Violation::SessionClosed)?;
        let conn = self.pick(if data_out.is_empty() {
            MCS_RUN
        } else {
            MCS_WRITE_RUN
        })?;
        let itt = self.shared.next_itt.fetch_add(1, Relaxed) & 0x7fff_ffff;
        let read = expected_in > 0;
        let write = !data_out.is_empty();
        let edtl = if write {
            data_out.len() as u32
        } else {
            expected_in
        };
        let (tx, rx) = oneshot::channel();
        let started = Instant::now();
        // Registered when its CmdSN is assigned, before it is sent.
        let mut entry = Some(Pending {
            tx,
            data_in: {
                let mut v = iolab_storage::pool::take(expected_in as usize);
                v.clear();
                v
            },
            expected_in: expected_in as usize,
            data_out: data_out.clone(),
            lun: self.lun_raw,
            started,
            opcode: cdb[0],
            cmd_sn: 0,
        });
        conn.stats.commands.fetch_add(1, Relaxed);
        conn.stats.in_flight.fetch_add(1, Relaxed);
        if write {
            conn.stats.write_commands.fetch_add(1, Relaxed);
        } else if read {
            conn.stats.read_commands.fetch_add(1, Relaxed);
        }

        let p = &self.params;
        let peer_max = conn.params.peer_max_recv_data_segment.max(512) as usize;
        let imm = if write && p.immediate_data {
            data_out.len().min(p.first_burst as usize).min(peer_max)
        } else {
            0
        };
        let unsolicited_end = if write && !p.initial_r2t {
            data_out.len().min(p.first_burst as usize)
        } else {
            imm
        };

        // Wait for room in the CmdSN window, then assign and queue atomically
        // per connection; the socket write happens after the lock is released.
        let deadline = tokio::time::Instant::now() + self.opts.io_timeout;
        loop {
            let opened = self.shared.window_open.notified();
            let turn = {
                let _g = conn.send_lock.lock().unwrap_or_else(|e| e.into_inner());
                let mut sn = self.shared.cmd_sn.lock().unwrap_or_else(|e| e.into_inner());
                if self.shared.room_for(*sn) {
                    let cmd_sn = *sn;
                    *sn = sn.wrapping_add(1);
                    drop(sn);
                    if let Some(mut p) = entry.take() {
                        p.cmd_sn = cmd_sn;
                        let mut pending = conn.pending.lock().unwrap_or_else(|e| e.into_inner());
                        // A connection failing now drains this after the
                        // insert; one that failed already never answers, so
                        // the entry is dropped and the caller hears it lost.
                        if conn.alive.load(Relaxed) {
                            pending.insert(itt, p);
                        }
                    }
                    let mut cdb16 = [0u8; 16];
                    cdb16[..cdb.len()].copy_from_slice(cdb);
                    let b = typed::ScsiCommand {
                        immediate: false,
                        // F: no unsolicited Data-Out follows.
                        final_: unsolicited_end <= imm,
                        read,
                        write,
                        // Every command may run beside the others (SAM).
                        attr: TaskAttribute::Simple as u8,
                        lun: self.lun_raw,
                        itt,
                        edtl,
                        cmd_sn,
                        exp_stat_sn: conn.exp_stat_sn.load(Relaxed),
                        cdb: cdb16,
                    }
                    .encode();
                    let command = conn.frame(&b, data_out.slice(..imm));
                    // Unsolicited Data-Out up to FirstBurstLength (an empty
                    // Vec, which allocates nothing, for most commands).
                    let mut frames = Vec::new();
                    if unsolicited_end > imm {
                        data_out_frames(
                            &conn,
                            self.lun_raw,
                            itt,
                            RESERVED_TAG,
                            &data_out,
                            window::sequence(imm..unsolicited_end, peer_max),
                            &mut frames,
                        );
                    }
                    conn.stats
                        .write_bytes
                        .fetch_add(unsolicited_end as u64, Relaxed);
                    Some(conn.out.append(std::iter::once(command).chain(frames)))
                } else {
                    None
                }
            };
            if let Some(turn) = turn {
                if let Ok(Some(turn)) = turn {
                    // Let the commands that are ready to go now (woken by
                    // the same batch of responses) join this one write;
                    // large data goes at once.
                    if unsolicited_end <= BATCH_DATA_MAX {
                        tokio::task::yield_now().await;
                    }
                    let _ = turn.write();
                }
                break;
            }
            // Announce the wait, then look again: a window update between the
            // check above and the announcement would otherwise notify nobody.
            self.shared.window_waiters.fetch_add(1, SeqCst);
            let now_open = self
                .shared
                .room_for(*self.shared.cmd_sn.lock().unwrap_or_else(|e| e.into_inner()));
            let waited = if now_open {
                Ok(())
            } else {
                tokio::time::timeout_at(deadline, opened)
                    .await
                    .map_err(|_| ())
            };
            self.shared.window_waiters.fetch_sub(1, SeqCst);
            if waited.is_err() {
                conn.stats.in_flight.fetch_sub(1, Relaxed);
                return Err(IscsiError::Timeout(Waiting::CommandWindow));
            }
        }
        // The session's watchdog answers a command that takes longer than
        // the I/O timeout (no timer per command).
        let r = match rx.await {
            Ok(r) => r,
            Err(_) => Err(IscsiError::ConnectionLost(Lost::BeforeCompletion {
                cid: conn.cid,
            })),
        };
        conn.stats.in_flight.fetch_sub(1, Relaxed);
        conn.stats.latency.record(started.elapsed());
        if let Ok(res) = &r {
            conn.stats
                .read_bytes
                .fetch_add(res.data.len() as u64, Relaxed);
        } else {
            conn.stats.errors.fetch_add(1, Relaxed);
        }
        r
    }

    /// LOGICAL UNIT RESET of the session's LUN; returns when the target
    /// answered (an error for any answer but "function complete").
    pub async fn lun_reset(&self) -> Result<(), IscsiError> {
        let conn = self.pick(MCS_RUN)?;
        let itt = self.shared.next_itt.fetch_add(1, Relaxed) & 0x7fff_ffff;
        let answer = self.shared.expect_control(itt);
        task_mgmt(
            &conn,
            &self.shared,
            self.lun_raw,
            TmfFunction::LogicalUnitReset,
            None,
            itt,
        );
        let b = match tokio::time::timeout(CONTROL_TIMEOUT, answer).await {
            Ok(Ok(b)) => b,
            Ok(Err(_)) => {
                return Err(IscsiError::ConnectionLost(Lost::BeforeLunReset));
            }
            Err(_) => {
                self.shared.forget_control(itt);
                return Err(IscsiError::Timeout(Waiting::LunReset));
            }
        };
        match typed::TaskMgmtResponse::decode(&b).map(|r| r.response) {
            Some(TmfResponse::Complete) => Ok(()),
            other => Err(IscsiError::TaskManagement {
                function: "LOGICAL UNIT RESET",
                response: other.unwrap_or(TmfResponse::Rejected) as u8,
            }),
        }
    }

    /// Logs out every connection (close the session).
    pub async fn logout(self) -> Result<(), IscsiError> {
        let conns = self.conns_now();
        for c in &conns {
            if !c.alive.load(Relaxed) {
                continue;
            }
            let b = typed::LogoutRequest {
                immediate: true,
                reason: LogoutReason::CloseSession as u8,
                itt: 0x7fff_fff0 | c.cid as u32,
                cid: c.cid,
                cmd_sn: *self.shared.cmd_sn.lock().unwrap_or_else(|e| e.into_inner()),
                exp_stat_sn: c.exp_stat_sn.load(Relaxed),
            }
            .encode();
            // Wait for the Logout Response (the session is closed then), not a guess of time.
            let answer = self.shared.expect_control(b.itt());
            c.send(&b, Bytes::new());
            if tokio::time::timeout(CONTROL_TIMEOUT, answer).await.is_err() {
                tracing::warn!(
                    cid = c.cid,
                    "no Logout Response: closing the connections anyway"
                );
            }
            break;
        }
        for c in &conns {
            c.fail_all("logged out");
        }
        Ok(())
    }
}

/// Sends a Task Management Function request on `conn` with `itt`; its
/// response goes to a waiter registered for `itt`, if any.
fn task_mgmt(
    conn: &Conn,
    shared: &Shared,
    lun: [u8; 8],
    function: TmfFunction,
    referenced: Option<(u32, u32)>,
    itt: u32,
) {
    let sn = *shared.cmd_sn.lock().unwrap_or_else(|e| e.into_inner());
    // The referenced task's ITT and CmdSN (ABORT TASK); RefCmdSN is
    // otherwise unused and carries this request's own CmdSN.
    let (rtt, ref_cmd_sn) = referenced.unwrap_or((RESERVED_TAG, sn));
    let b = typed::TaskMgmtRequest {
        immediate: true,
        function: function as u8,
        lun,
        itt,
        rtt,
        cmd_sn: sn,
        exp_stat_sn: conn.exp_stat_sn.load(Relaxed),
        ref_cmd_sn,
        exp_data_sn: 0,
    }
    .encode();
    conn.send(&b, Bytes::new());
}

/// Fails the commands that got no response within `timeout` and tells the
/// target to forget them (ABORT TASK), as a SCSI host's error handler does.
/// Runs until the session is dropped.
async fn watchdog(
    conns: std::sync::Weak<std::sync::RwLock<Vec<Arc<Conn>>>>,
    shared: Arc<Shared>,
    timeout: Duration,
) {
    let period = (timeout / 8).clamp(Duration::from_millis(10), Duration::from_secs(1));
    loop {
        tokio::time::sleep(period).await;
        let Some(conns) = conns.upgrade() else {
            return;
        };
        let conns = conns.read().unwrap_or_else(|e| e.into_inner()).clone();
        for conn in conns {
            let overdue: Vec<(u32, Pending)> = conn
                .pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .extract_if(|_, p| p.started.elapsed() >= timeout)
                .collect();
            for (itt, p) in overdue {
                let tmf_itt = shared.next_itt.fetch_add(1, Relaxed) & 0x7fff_ffff;
                task_mgmt(
                    &conn,
                    &shared,
                    p.lun,
                    TmfFunction::AbortTask,
                    Some((itt, p.cmd_sn)),
                    tmf_itt,
                );
                let _ = p.tx.send(Err(IscsiError::Timeout(Waiting::Command {
                    opcode: p.opcode,
                    after: timeout,
                })));
            }
        }
    }
}

/// Logs in the leading connection (TSIH 0) and as many more as granted,
/// and starts the session's CmdSN window from the target's answer.
async fn login_all(
    url: &IscsiUrl,
    opts: &InitiatorOptions,
    isid: u64,
    shared: &Arc<Shared>,
) -> Result<(Vec<Arc<Conn>>, LoginOutcome), IscsiError> {
    let (lead, outcome) = open_conn(url, opts, isid, 0, 0, 1, true, shared.clone()).await?;
    shared.reset(outcome.exp_cmd_sn, outcome.max_cmd_sn);
    let mut conns = vec![lead];
    let granted = outcome
        .params
        .max_connections
        .max(1)
        .min(opts.connections.max(1));
    for cid in 1..granted as u16 {
        let sn = *shared.cmd_sn.lock().unwrap_or_else(|e| e.into_inner());
        let (c, _) = open_conn(
            url,
            opts,
            isid,
            outcome.tsih,
            cid,
            sn,
            false,
            shared.clone(),
        )
        .await?;
        conns.push(c);
    }
    Ok((conns, outcome))
}

/// Data-Out PDUs for a sequence of the write's `data`.
fn data_out_frames(
    conn: &Conn,
    lun: [u8; 8],
    itt: u32,
    ttt: u32,
    data: &Bytes,
    pieces: impl Iterator<Item = window::DataOut>,
    frames: &mut Vec<Frame>,
) {
    for p in pieces {
        let b = typed::DataOut {
            final_: p.last,
            lun,
            itt,
            ttt,
            exp_stat_sn: conn.exp_stat_sn.load(Relaxed),
            data_sn: p.data_sn,
            offset: p.range.start as u32,
        }
        .encode();
        frames.push(conn.frame(&b, data.slice(p.range)));
    }
}

#[allow(clippy::too_many_arguments)]
async fn open_conn(
    url: &IscsiUrl,
    opts: &InitiatorOptions,
    isid: u64,
    tsih: u16,
    cid: u16,
    cmd_sn: u32,
    leading: bool,
    shared: Arc<Shared>,
) -> Result<(Arc<Conn>, LoginOutcome), IscsiError> {
    let stream = connect(url, opts.login_timeout).await?;
    let mss = tcp_mss(&stream);
    let (peer, local) = (stream.peer_addr().ok(), stream.local_addr().ok());
    let (rd, mut wr) = stream.into_split();
    let mut rd = Inbox::with_capacity(256 * 1024, rd);
    let req = LoginRequest {
        url,
        opts,
        discovery: false,
        isid,
        tsih,
        cid,
        cmd_sn,
        leading,
    };
    let outcome = login(&mut rd, &mut wr, &req).await?;
    let mut params = outcome.params.clone();
    if !leading {
        params.max_connections = opts.connections;
    }
    let stats = Arc::new(ConnStats::default());
    let out = Outbox::new(wr, stats.clone());
    let conn = Arc::new(Conn {
        cid,
        params,
        mss,
        peer,
        local,
        out,
        send_lock: Mutex::new(()),
        pending: Mutex::new(HashMap::new()),
        stats,
        exp_stat_sn: AtomicU32::new(outcome.exp_stat_sn),
        alive: AtomicBool::new(true),
    });
    shared.update_window(outcome.exp_cmd_sn, outcome.max_cmd_sn);
    let c = conn.clone();
    tokio::spawn(async move {
        let why = match reader(&c, rd, &shared).await {
            Ok(()) => "closed by the target".to_string(),
            Err(e) => e.to_string(),
        };
        tracing::debug!(cid = c.cid, "connection ended: {why}");
        c.fail_all(&why);
    });
    Ok((conn, outcome))
}

/// Reads a Data-In segment straight onto its task's buffer when it is the
/// next in order and fits; false (nothing read) otherwise. The buffer is taken
/// out of the task while the socket is read, so no lock is held across it.
async fn place_data_in(
    conn: &Conn,
    rd: &mut Inbox<OwnedReadHalf>,
    h: &Header,
    data_digest: bool,
) -> Result<bool, IscsiError> {
    let itt = h.bhs.itt();
    let off = h.bhs.buffer_offset() as usize;
    let taken = {
        let mut pending = conn.pending.lock().unwrap_or_else(|e| e.into_inner());
        match pending.get_mut(&itt) {
            Some(p) if off == p.data_in.len() && off + h.dlen <= p.expected_in => {
                Some(std::mem::take(&mut p.data_in))
            }
            _ => None,
        }
    };
    let Some(mut buf) = taken else {
        return Ok(false);
    };
    let ok = read_data_into(rd, &mut buf, h.dlen, data_digest).await?;
    if let Some(p) = conn
        .pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get_mut(&itt)
    {
        p.data_in = buf;
    }
    if !ok {
        return Err(Violation::DataDigest.into());
    }
    Ok(true)
}

/// Reads responses for one connection and completes its tasks.
async fn reader(
    conn: &Conn,
    mut rd: Inbox<OwnedReadHalf>,
    shared: &Shared,
) -> Result<(), IscsiError> {
    let limits = ReadLimits {
        max_data: conn.params.max_recv_data_segment.max(8192) as usize,
        header_digest: conn.params.header_digest,
        data_digest: conn.params.data_digest,
    };
    loop {
        let Some(h) = read_header(&mut rd, limits).await? else {
            return Ok(());
        };
        // In-order Data-In goes straight into its task's buffer (one copy fewer).
        let placed = h.bhs.opcode() == Some(Opcode::DataIn)
            && h.dlen > 0
            && place_data_in(conn, &mut rd, &h, limits.data_digest).await?;
        let dlen = h.dlen;
        let mut pdu = if placed {
            Pdu {
                bhs: h.bhs,
                ahs: h.ahs,
                data: Vec::new(),
            }
        } else {
            match read_body(&mut rd, h, limits).await? {
                ReadOutcome::Pdu(p) => p,
                ReadOutcome::DataDigestError(_) => {
                    return Err(Violation::DataDigest.into());
                }
            }
        };
        conn.stats.pdus_in.fetch_add(1, Relaxed);
        conn.stats.bytes_in.fetch_add(
            (BHS_LEN + pdu.ahs.len() + dlen + pad_len(dlen)) as u64,
            Relaxed,
        );
        let b = &pdu.bhs;
        let itt = b.itt();
        match b.opcode() {
            Some(Opcode::DataIn) => {
                let Some(d) = typed::DataIn::decode(b) else {
                    continue;
                };
                if d.status.is_some() {
                    conn.note_stat_sn(d.sn.stat_sn);
                }
                shared.update_window(d.sn.exp_cmd_sn, d.sn.max_cmd_sn);
                let mut pending = conn.pending.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(p) = pending.get_mut(&itt) {
                    let off = d.offset as usize;
                    let at = task::place(itt, p.data_in.len(), off, dlen, p.expected_in)?;
                    // In-order Data-In (DataPDUInOrder=Yes) appends without zero-filling first.
                    match at {
                        _ if placed => {} // already in place
                        task::Placement::Append => p.data_in.extend_from_slice(&pdu.data),
                        task::Placement::At(r) => {
                            if r.end > p.data_in.len() {
                                p.data_in.resize(r.end, 0);
                            }
                            p.data_in[r].copy_from_slice(&pdu.data);
                        }
                    }
                    iolab_storage::pool::give(std::mem::take(&mut pdu.data));
                    if let Some(st) = d.status {
                        let residual = task::residual(st.residual_flags, st.residual);
                        if let Some(p) = pending.remove(&itt) {
                            let mut data = p.data_in;
                            data.truncate(task::delivered(p.expected_in, residual));
                            let _ = p.tx.send(Ok(CommandResult {
                                status: st.status,
                                data: iolab_storage::pool::into_bytes(data),
                                sense: Vec::new(),
                                residual,
                            }));
                        }
                    }
                }
            }
            Some(Opcode::ScsiResponse) => {
                let Some(r) = typed::ScsiResponse::decode(b) else {
                    continue;
                };
                conn.note_stat_sn(r.sn.stat_sn);
                shared.update_window(r.sn.exp_cmd_sn, r.sn.max_cmd_sn);
                if let Some(p) = conn
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&itt)
                {
                    let sense = task::sense_of(&pdu.data);
                    let residual = task::residual(r.residual_flags, r.residual);
                    let mut data = p.data_in;
                    if r.response != 0 {
                        let _ = p.tx.send(Err(Violation::TargetFailure {
                            response: r.response,
                        }
                        .into()));
                        continue;
                    }
                    data.truncate(task::delivered(p.expected_in, residual));
                    let _ = p.tx.send(Ok(CommandResult {
                        status: r.status,
                        data: iolab_storage::pool::into_bytes(data),
                        sense,
                        residual,
                    }));
                }
            }
            Some(Opcode::R2t) => {
                let Some(r2t) = typed::R2t::decode(b) else {
                    continue;
                };
                shared.update_window(r2t.sn.exp_cmd_sn, r2t.sn.max_cmd_sn);
                let (data, lun) = match conn
                    .pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .get(&itt)
                {
                    Some(p) => (p.data_out.clone(), p.lun),
                    None => continue,
                };
                let off = r2t.offset as usize;
                let len = r2t.length as usize;
                let chunk = conn.params.peer_max_recv_data_segment.max(512) as usize;
                let pieces = window::answer_r2t(
                    itt,
                    off,
                    len,
                    data.len(),
                    chunk,
                    conn.params.max_burst as usize,
                )?;
                let mut frames = Vec::with_capacity(len.div_ceil(chunk));
                data_out_frames(conn, lun, itt, r2t.ttt, &data, pieces, &mut frames);
                let _ = conn.out.push(frames);
                conn.stats.write_bytes.fetch_add(len as u64, Relaxed);
            }
            Some(Opcode::NopIn) => {
                let Some(n) = typed::NopIn::decode(b) else {
                    continue;
                };
                shared.update_window(n.sn.exp_cmd_sn, n.sn.max_cmd_sn);
                if n.ttt != RESERVED_TAG {
                    // The target pings us (its StatSN does not advance):
                    // answer with the same TTT.
                    let r = typed::NopOut {
                        immediate: true,
                        lun: n.lun,
                        itt: RESERVED_TAG,
                        ttt: n.ttt,
                        cmd_sn: *shared.cmd_sn.lock().unwrap_or_else(|e| e.into_inner()),
                        exp_stat_sn: conn.exp_stat_sn.load(Relaxed),
                    }
                    .encode();
                    conn.send(&r, Bytes::new());
                } else {
                    conn.note_stat_sn(n.sn.stat_sn);
                }
            }
            Some(Opcode::Reject) => {
                let Some(r) = typed::Reject::decode(b) else {
                    continue;
                };
                conn.note_stat_sn(r.sn.stat_sn);
                shared.update_window(r.sn.exp_cmd_sn, r.sn.max_cmd_sn);
                // Its data is the rejected PDU's header: fail that command.
                let rejected = pdu
                    .data
                    .get(..BHS_LEN)
                    .and_then(|h| <[u8; BHS_LEN]>::try_from(h).ok())
                    .map(|h| Bhs(h).itt());
                if let Some(p) = rejected.and_then(|itt| {
                    conn.pending
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&itt)
                }) {
                    let _ =
                        p.tx.send(Err(Violation::Rejected { reason: r.reason }.into()));
                }
            }
            Some(Opcode::TaskMgmtResponse) => {
                let Some(r) = typed::TaskMgmtResponse::decode(b) else {
                    continue;
                };
                conn.note_stat_sn(r.sn.stat_sn);
                shared.update_window(r.sn.exp_cmd_sn, r.sn.max_cmd_sn);
                shared.control_response(b);
            }
            Some(Opcode::LogoutResponse) => {
                let Some(r) = typed::LogoutResponse::decode(b) else {
                    continue;
                };
                conn.note_stat_sn(r.sn.stat_sn);
                shared.control_response(b);
                return Ok(());
            }
            Some(Opcode::AsyncMessage) => {
                let Some(m) = typed::AsyncMessage::decode(b) else {
                    continue;
                };
                conn.note_stat_sn(m.sn.stat_sn);
                shared.update_window(m.sn.exp_cmd_sn, m.sn.max_cmd_sn);
                tracing::info!(
                    event = m.event,
                    parameters = ?m.parameters,
                    "asynchronous message from the target"
                );
            }
            _ => {
                // Every target PDU carries a StatSN where a response does.
                conn.note_stat_sn(b.stat_sn());
            }
        }
    }
}

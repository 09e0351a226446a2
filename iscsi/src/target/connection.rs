//! One TCP connection of the target: login, then the full-feature phase
//! (SCSI commands, Data-Out/R2T, NOP, Text, Task Management, Logout).
//!
//! A reader task (this module's `serve`) decodes PDUs and executes commands;
//! a writer task batches outgoing PDUs into vectored socket writes.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::{Duration, Instant};

use bytes::Bytes;
use iolab_storage::BackstoreKind;
use iolab_storage::pool::IoBuf;
use iolab_storage::scsi::{
    self, Asc, BlockIo, Completion, LogicalUnit, Prepared, ScsiResponse, ScsiStatus,
};
use tokio::io::AsyncWriteExt;
use tokio::io::BufReader;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{mpsc, watch};

use super::command::{self, Admit};
use super::data_in::{self, Residual};
use super::discovery::{DISCOVERY_DEPTH, Discovery, send_targets};
use super::login::{Reply, SessionType, Step, TargetLogin};
use super::logout::{self, LogoutEffect};
use super::session::ConnEntry;
use super::shards::Shards;
use super::text_exchange::{self, TextExchange, TextStep, next_tag};
use super::tmf::{self, Tasks, TmfEffect, TmfRequest};
use super::uring::{self, Ring, Unsubmitted};
use super::{Registry, Session};
use crate::error::IscsiError;
use crate::pdu::{
    BHS_LEN, Bhs, LoginStatus, Opcode, Pdu, RESERVED_TAG, ReadLimits, ReadOutcome, RejectReason,
    pad_len, read_body, read_header, read_pdu,
};
use crate::stats::ConnStats;
use crate::text;
use crate::transport::{Frame, Outbox, tcp_mss};
use crate::typed::{self, Sn, TaskAttribute, Typed};

/// How long a login may take before the connection is dropped.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(15);
/// Largest login or text data segment accepted before negotiation.
const LOGIN_MAX_DATA: usize = 65_536;
/// Requests answered from the read buffer before corked answers must go out.
const MAX_BATCHED_REQUESTS: u32 = 64;
/// Commands in a row from an initiator with nothing else outstanding before
/// the connection polls for the next one instead of sleeping at once.
const ALONE_BEFORE_POLLING: u32 = 4;
/// How long it then polls.
const ALONE_POLL: Duration = Duration::from_micros(50);
/// Corked bytes that are sent without waiting for the read buffer to empty.
const CORK_BYTES: usize = 512 * 1024;

/// Serves one accepted connection: its login here, a discovery session
/// here, a normal session's full-feature phase on the session's shard.
pub(super) async fn serve(
    reg: Arc<Registry>,
    stream: TcpStream,
    peer: SocketAddr,
    shards: Arc<Shards>,
) -> Result<(), IscsiError> {
    stream.set_nodelay(true)?;
    let local = stream.local_addr()?;
    let mss = tcp_mss(&stream);
    let (rd, mut wr) = stream.into_split();
    let mut rd = BufReader::with_capacity(LOGIN_MAX_DATA + BHS_LEN, rd);
    let stats = Arc::new(ConnStats::default());

    let mut login = TargetLogin::new(reg.clone(), initial_stat_sn()?);
    let limits = ReadLimits {
        max_data: LOGIN_MAX_DATA,
        header_digest: false,
        data_digest: false,
    };
    let (resp, result) = loop {
        // The header first, without its length check: a Login Request whose
        // data segment is too long gets a Login Response saying so, not a
        // silent close (and nothing of its data is read or allocated).
        let any_len = ReadLimits {
            max_data: usize::MAX,
            ..limits
        };
        let read = async {
            match read_header(&mut rd, any_len).await? {
                None => Ok(None),
                Some(h) if h.dlen > LOGIN_MAX_DATA => Ok(Some(Err(h))),
                Some(h) => read_body(&mut rd, h, limits).await.map(|p| Some(Ok(p))),
            }
        };
        let pdu = match tokio::time::timeout(LOGIN_TIMEOUT, read).await {
            Err(_) => return Err(IscsiError::Timeout(crate::error::Waiting::Login)),
            Ok(Ok(Some(Ok(ReadOutcome::Pdu(p))))) => p,
            Ok(Ok(Some(Ok(ReadOutcome::DataDigestError(_))))) => {
                return Err(crate::error::Violation::DigestDuringLogin.into());
            }
            Ok(Ok(Some(Err(h)))) => {
                reg.logins.failures.fetch_add(1, Relaxed);
                let p = login.refuse(&h.bhs, LoginStatus::INITIATOR_ERROR);
                refuse_login(&mut wr, &stats, p).await;
                return Err(IscsiError::DataSegmentTooLong {
                    len: h.dlen,
                    max: LOGIN_MAX_DATA,
                });
            }
            Ok(Ok(None)) => return Ok(()),
            Ok(Err(e)) => return Err(e),
        };
        stats
            .bytes_in
            .fetch_add((BHS_LEN + pdu.data.len()) as u64, Relaxed);
        match login.step(&pdu) {
            Step::Continue(p) => write_login(&mut wr, &stats, p).await?,
            Step::Fail(p, status) => {
                reg.logins.failures.fetch_add(1, Relaxed);
                refuse_login(&mut wr, &stats, p).await;
                return Err(IscsiError::Login(status));
            }
            Step::Complete(p, r) => break (p, r),
        }
    };
    let stat_sn = login.stat_sn;
    let params = result.params.clone();
    let counter = match result.session_type {
        SessionType::Discovery => &reg.logins.discovery,
        _ => &reg.logins.normal,
    };
    counter.fetch_add(1, Relaxed);

    if result.session_type == SessionType::Discovery {
        write_login(&mut wr, &stats, resp).await?;
        let conn = Discovery {
            reg,
            tx: Outbox::new(wr, stats),
            local,
            cid: result.cid,
            initiator: result.initiator_name.clone(),
            peer_mrdsl: params.peer_max_recv_data_segment.max(512) as usize,
            stat_sn,
            window: super::cmdsn::CmdWindow::new(result.cmd_sn, DISCOVERY_DEPTH),
            text: TextExchange::default(),
            tags: 1,
        };
        return conn
            .run(
                &mut rd,
                LOGIN_MAX_DATA,
                params.header_digest,
                params.data_digest,
            )
            .await;
    }

    let session = match reg.bind(&result) {
        Ok(s) => s,
        Err(status) => {
            // The session refuses the connection.
            refuse_login(&mut wr, &stats, resp.failed(status)).await;
            return Err(IscsiError::Login(status));
        }
    };
    // The initiator sends nothing more before the last Login Response
    // (RFC 7143 6.3): the read buffer is empty, and the socket moves to the
    // session's thread. One that did gets an initiator error.
    if !rd.buffer().is_empty() {
        reg.abandon(&session, result.cid);
        reg.logins.failures.fetch_add(1, Relaxed);
        refuse_login(&mut wr, &stats, resp.failed(LoginStatus::INITIATOR_ERROR)).await;
        return Err(crate::error::Violation::BeforeLoginResponse.into());
    }
    let stream = match rd.into_inner().reunite(wr).map(|s| s.into_std()) {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            reg.abandon(&session, result.cid);
            return Err(e.into());
        }
        Err(e) => {
            reg.abandon(&session, result.cid);
            return Err(std::io::Error::other(e.to_string()).into());
        }
    };
    let start = FullFeature {
        peer,
        local,
        mss,
        stats,
        stat_sn,
        session,
        result,
        resp,
    };
    shards
        .for_session(start.session.tsih)
        .spawn(full_feature(reg, stream, start));
    Ok(())
}

/// A Login Response during login (no Outbox yet: one small PDU at a time).
async fn write_login(
    wr: &mut OwnedWriteHalf,
    stats: &ConnStats,
    r: Reply,
) -> Result<(), IscsiError> {
    let bytes = r.pdu().encode(false, false);
    wr.write_all(&bytes).await?;
    stats.bytes_out.fetch_add(bytes.len() as u64, Relaxed);
    stats.pdus_out.fetch_add(1, Relaxed);
    Ok(())
}

/// The last Login Response of a failed login; then the write side closes.
async fn refuse_login(wr: &mut OwnedWriteHalf, stats: &ConnStats, r: Reply) {
    let _ = write_login(wr, stats, r).await;
    let _ = wr.shutdown().await;
}

/// What the login hands to the full-feature phase.
struct FullFeature {
    peer: SocketAddr,
    local: SocketAddr,
    mss: Option<u32>,
    stats: Arc<ConnStats>,
    stat_sn: u32,
    session: Arc<Session>,
    result: Box<super::login::LoginResult>,
    /// The last Login Response, completed with the session's TSIH.
    resp: Reply,
}

/// A normal session's connection from its last Login Response to its end,
/// on the session's shard (whose reactor takes the socket over here).
async fn full_feature(reg: Arc<Registry>, stream: std::net::TcpStream, start: FullFeature) {
    let peer = start.peer;
    if let Err(e) = full_feature_on(reg, stream, start).await {
        tracing::debug!(%peer, "connection ended: {e}");
    }
}

async fn full_feature_on(
    reg: Arc<Registry>,
    stream: std::net::TcpStream,
    start: FullFeature,
) -> Result<(), IscsiError> {
    let (peer, local, mss, stat_sn) = (start.peer, start.local, start.mss, start.stat_sn);
    let (session, result, stats) = (start.session, start.result, start.stats);
    let mut resp = start.resp;
    let stream = match TcpStream::from_std(stream) {
        Ok(s) => s,
        Err(e) => {
            reg.abandon(&session, result.cid);
            return Err(e.into());
        }
    };
    let (rd, wr) = stream.into_split();
    let rd = BufReader::with_capacity(256 * 1024, rd);
    let tx = Outbox::new(wr, stats.clone());
    let params = result.params.clone();
    resp.head.tsih = session.tsih;
    (resp.head.sn.exp_cmd_sn, resp.head.sn.max_cmd_sn) = session.window();
    if let Err(e) = send(&tx, login_frame(resp)).await {
        reg.abandon(&session, result.cid);
        return Err(e);
    }

    let (close_tx, close_rx) = watch::channel(false);
    session.add_connection(ConnEntry {
        cid: result.cid,
        peer,
        local,
        params: params.clone(),
        mss,
        stats: stats.clone(),
        close: close_tx,
    });
    tracing::info!(%peer, tsih = session.tsih, cid = result.cid, initiator = %result.initiator_name, "login complete");
    tracing::debug!(?params, "negotiated");

    let (deferred_tx, deferred_rx) = mpsc::unbounded_channel();
    let mut conn = Conn {
        reg: reg.clone(),
        session: session.clone(),
        local,
        cid: result.cid,
        tx,
        stat_sn,
        hd: params.header_digest,
        dd: params.data_digest,
        peer_mrdsl: params.peer_max_recv_data_segment.max(512) as usize,
        params,
        stats: stats.clone(),
        pending: HashMap::new(),
        seen_resets: session.target.resets(),
        next_ttt: 1,
        text: TextExchange::default(),
        done: false,
        ping: None,
        deferred_tx,
        deferred_rx,
        offloaded: 0,
        queued_on: Unsubmitted::default(),
        cork: Vec::with_capacity(64),
        cork_bytes: 0,
        alone_streak: 0,
        live: super::shards::Live::here(),
    };
    let r = conn.run(rd, close_rx).await;
    reg.connection_ended(session.info_of(&stats));
    let last = session.remove_connection(&stats);
    if last {
        reg.end_session(&session);
    }
    // What was answered before the end still goes out (a Logout Response, a Reject).
    let _ = conn.flush().await;
    conn.tx.close().await;
    r
}

/// A Login Response as it goes out (no digests during login).
fn login_frame(r: Reply) -> Frame {
    Frame::new(&r.head.encode(), Bytes::from(r.data), false, false)
}

/// Polls `fut` once: its output if it is ready now.
async fn poll_now<F: std::future::Future + Unpin>(fut: &mut F) -> Option<F::Output> {
    std::future::poll_fn(|cx| {
        std::task::Poll::Ready(match std::pin::Pin::new(&mut *fut).poll(cx) {
            std::task::Poll::Ready(v) => Some(v),
            std::task::Poll::Pending => None,
        })
    })
    .await
}

/// A random first StatSN for a connection, below 2^31 (as tgtd's).
///
/// Any value is valid (RFC 7143 4.2.2.2), but libiscsi (qemu's initiator)
/// sent ExpStatSN 1 with every command of each session whose first StatSN
/// was 2^31 or more (seen with 0x9466774e, 0xc94bb1d9, 0xebefda9f: as if it
/// followed StatSN from 0 in serial arithmetic), so the target could not tell
/// from ExpStatSN that such an initiator waits for every answer before its
/// next command, and would sleep between its commands instead of looking
/// for the next one (half of all qemu-img sessions, at random, had twice the
/// latency at one outstanding I/O).
fn initial_stat_sn() -> std::io::Result<u32> {
    let r = crate::chap::random_bytes(4)?;
    let v = u32::from_be_bytes(r.try_into().unwrap_or([0, 0, 0, 1]));
    Ok((v & 0x7fff_ffff).max(1))
}

pub(super) async fn send(tx: &Outbox, f: Frame) -> Result<(), IscsiError> {
    Ok(tx.send([f]).await?)
}

/// How a command runs: its data directions and whether its task
/// attribute lets it run beside others.
#[derive(Clone, Copy)]
struct Run {
    read: bool,
    write: bool,
    unordered: bool,
}

/// What is needed to answer a command once it completes.
#[derive(Clone)]
struct Deferred {
    itt: u32,
    lun_raw: [u8; 8],
    edtl: u32,
    read: bool,
    needed_out: Option<u64>,
    started: Instant,
    /// Whether an I/O worker ran it (counted in `Conn::offloaded`).
    offloaded: bool,
}

/// A write command waiting for its Data-Out.
struct WriteTask {
    lun: u64,
    lun_raw: [u8; 8],
    cdb: crate::pdu::Cdb,
    buf: Vec<u8>,
    /// Where its data stands: unsolicited data, R2Ts, Data-Out order.
    xfer: super::write_task::Transfer,
    started: Instant,
    /// The LU's reset count when the command arrived: a later reset (from
    /// any session) aborted it.
    lu_resets: u64,
    /// SIMPLE or untagged: it may run beside other such commands.
    unordered: bool,
    /// This task's share of the session's pending-write memory.
    _credit: super::session::WriteCredit,
}

/// The connection's writes waiting for data, as task management sees them.
struct PendingTasks<'a>(&'a mut HashMap<u32, WriteTask>);

impl Tasks for PendingTasks<'_> {
    fn abort(&mut self, itt: u32) -> bool {
        self.0.remove(&itt).is_some()
    }
    fn abort_lun(&mut self, lun: u64) -> usize {
        let before = self.0.len();
        self.0.retain(|_, t| t.lun != lun);
        before - self.0.len()
    }
    fn abort_all(&mut self) -> usize {
        let n = self.0.len();
        self.0.clear();
        n
    }
}

struct Conn {
    reg: Arc<Registry>,
    session: Arc<Session>,
    /// This connection's own address: what a wildcard portal is named by.
    local: SocketAddr,
    cid: u16,
    tx: Outbox,
    stat_sn: u32,
    hd: bool,
    dd: bool,
    peer_mrdsl: usize,
    params: crate::negotiation::Params,
    stats: Arc<ConnStats>,
    pending: HashMap<u32, WriteTask>,
    /// The target's reset count when `pending` was last checked against it.
    seen_resets: u64,
    next_ttt: u32,
    text: TextExchange,
    done: bool,
    /// An outstanding target-initiated ping: its TTT and when it was sent.
    ping: Option<(u32, Instant)>,
    deferred_tx: mpsc::UnboundedSender<(Deferred, ScsiResponse)>,
    /// Where the answers of commands that finish elsewhere arrive (I/O
    /// workers, SANITIZE).
    deferred_rx: mpsc::UnboundedReceiver<(Deferred, ScsiResponse)>,
    /// Commands running on I/O workers whose answers have not arrived.
    offloaded: usize,
    /// The ring holding transfers this connection queued and has not
    /// submitted yet: they go to the kernel together before it waits (or
    /// when the connection ends).
    queued_on: Unsubmitted,
    /// Answers held back while more requests are already buffered, so that
    /// one vectored write carries many of them.
    cork: Vec<Frame>,
    cork_bytes: usize,
    /// Consecutive commands whose ExpStatSN showed that the initiator had
    /// seen every answer before sending them: it keeps one command at a time
    /// outstanding with us.
    alone_streak: u32,
    /// Counted among the connections of its shard while it runs.
    live: super::shards::Live,
}

impl Conn {
    async fn run(
        &mut self,
        rd: BufReader<OwnedReadHalf>,
        mut close: watch::Receiver<bool>,
    ) -> Result<(), IscsiError> {
        let limits = ReadLimits {
            max_data: self.params.max_recv_data_segment.max(8192) as usize,
            header_digest: self.hd,
            data_digest: self.dd,
        };
        // The read future owns the reader and survives the other select! arms,
        // so a PDU is never left half-read (read_pdu is not cancel-safe).
        async fn read_owned(
            mut rd: BufReader<OwnedReadHalf>,
            limits: ReadLimits,
        ) -> (
            BufReader<OwnedReadHalf>,
            Result<Option<ReadOutcome>, IscsiError>,
        ) {
            let r = read_pdu(&mut rd, limits).await;
            (rd, r)
        }
        // Pinned in place and refilled with `set` (no allocation per PDU).
        let mut reading = std::pin::pin!(read_owned(rd, limits));
        // Target-initiated NOP-In pings on a silent connection (RFC 7143 11.19).
        let interval = self.session.target.cfg().nop_in_interval;
        let period = Duration::from_secs(interval.max(1) as u64);
        let mut last_heard = Instant::now();
        let mut tick = tokio::time::interval(period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Requests handled since the corked answers began.
        let mut batched = 0;
        while !self.done {
            // Commands finished by I/O workers meanwhile are answered first.
            while let Ok((d, resp)) = self.deferred_rx.try_recv() {
                self.complete(d, resp).await?;
            }
            // While the next request is already here, keep the answers corked
            // (bounded, so pings and close requests still get their turn);
            // before waiting for the socket, send them.
            let mut early = None;
            if self.cork.is_empty() {
                batched = 0;
            } else {
                if batched < MAX_BATCHED_REQUESTS {
                    early = poll_now(&mut reading).await;
                }
                if early.is_none() {
                    self.queued_on.submit();
                    self.flush().await?;
                    // An initiator with one command at a time outstanding sends
                    // the next right after our answer reaches it: look for it a
                    // little before the thread sleeps, since waking up costs
                    // more than the command (with more outstanding commands
                    // this never runs, so it takes no CPU from busy peers;
                    // nor beside other connections on the shard: 64 sessions
                    // at one command each measured 200-217K IOPS polling,
                    // 251-263K not).
                    if self.alone_streak >= ALONE_BEFORE_POLLING && self.live.alone() {
                        let until = Instant::now() + ALONE_POLL;
                        while early.is_none() && Instant::now() < until {
                            tokio::task::yield_now().await;
                            early = poll_now(&mut reading).await;
                        }
                    }
                }
            }
            let outcome = if let Some((rd, r)) = early {
                reading.set(read_owned(rd, limits));
                last_heard = Instant::now();
                r
            } else {
                batched = 0;
                self.queued_on.submit();
                tokio::select! {
                (rd, r) = &mut reading => {
                    reading.set(read_owned(rd, limits));
                    last_heard = Instant::now();
                    r
                }
                _ = tick.tick(), if interval > 0 => {
                    if let Some((_, sent)) = self.ping {
                        if sent.elapsed() >= period {
                            tracing::info!(tsih = self.session.tsih, cid = self.cid, "NOP-In ping unanswered: closing the connection");
                            return Err(IscsiError::Timeout(crate::error::Waiting::NopInPing));
                        }
                    } else if last_heard.elapsed() >= period {
                        self.send_ping().await?;
                    }
                    continue;
                }
                _ = close.changed() => return Ok(()),
                Some((d, resp)) = self.deferred_rx.recv() => {
                    self.complete(d, resp).await?;
                    continue;
                }
                }
            };
            let pdu = match outcome {
                Ok(Some(ReadOutcome::Pdu(p))) => p,
                Ok(Some(ReadOutcome::DataDigestError(p))) => {
                    // RFC 7143 7.8: discard the PDU and reject it; at ERL 0 the task fails later.
                    self.stats.errors.fetch_add(1, Relaxed);
                    self.reject(&p.bhs, RejectReason::DataDigestError).await?;
                    continue;
                }
                Ok(None) => return Ok(()),
                Err(e) => {
                    self.stats.errors.fetch_add(1, Relaxed);
                    return Err(e);
                }
            };
            let size = BHS_LEN + pdu.ahs.len() + pdu.data.len() + pad_len(pdu.data.len());
            self.stats.pdus_in.fetch_add(1, Relaxed);
            self.stats.bytes_in.fetch_add(size as u64, Relaxed);
            batched += 1;
            self.handle(pdu).await?;
        }
        Ok(())
    }

    /// StatSN (advanced when `advance`: a response that counts), ExpCmdSN
    /// and MaxCmdSN for the next response.
    fn sn(&mut self, advance: bool) -> Sn {
        let window = self.session.window();
        Sn::take(&mut self.stat_sn, advance, window)
    }

    /// Queues one PDU; it leaves with the next flush (at the latest before
    /// the connection waits for the socket again).
    async fn out(&mut self, b: &Bhs, data: Bytes) -> Result<(), IscsiError> {
        let f = Frame::new(b, data, self.hd, self.dd);
        self.cork_bytes += f.len();
        self.cork.push(f);
        if self.cork_bytes >= CORK_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    /// Sends the corked PDUs in one go (waiting while the peer is too slow).
    async fn flush(&mut self) -> Result<(), IscsiError> {
        self.cork_bytes = 0;
        Ok(self.tx.send(self.cork.drain(..)).await?)
    }

    async fn reject(&mut self, bad: &Bhs, reason: RejectReason) -> Result<(), IscsiError> {
        let b = typed::Reject {
            reason,
            sn: self.sn(true),
            data_sn: 0,
        }
        .encode();
        self.out(&b, Bytes::copy_from_slice(&bad.0)).await
    }

    async fn handle(&mut self, pdu: Pdu) -> Result<(), IscsiError> {
        let Some(op) = pdu.bhs.opcode() else {
            return self
                .reject(&pdu.bhs, RejectReason::CommandNotSupported)
                .await;
        };
        // Non-immediate requests carry a CmdSN and are delivered in CmdSN order
        // across the session's connections.
        let ordered = !pdu.bhs.immediate()
            && match op {
                Opcode::ScsiCommand
                | Opcode::TextRequest
                | Opcode::TaskMgmtRequest
                | Opcode::LogoutRequest => true,
                Opcode::NopOut => pdu.bhs.itt() != RESERVED_TAG,
                _ => false,
            };
        let cmd_sn = pdu.bhs.cmd_sn();
        if ordered && !self.session.is_turn(cmd_sn) {
            // Answers already made need not wait while this connection
            // waits for another connection's command.
            self.flush().await?;
            self.session.wait_turn(cmd_sn).await;
        }
        let r = self.dispatch(op, pdu).await;
        if ordered {
            self.session.done_turn(cmd_sn);
        }
        r
    }

    async fn dispatch(&mut self, op: Opcode, pdu: Pdu) -> Result<(), IscsiError> {
        match op {
            Opcode::ScsiCommand => self.scsi_command(pdu).await,
            Opcode::DataOut => self.data_out(pdu).await,
            Opcode::NopOut => self.nop_out(pdu).await,
            Opcode::TextRequest => self.text_request(pdu).await,
            Opcode::TaskMgmtRequest => self.task_mgmt(pdu).await,
            Opcode::LogoutRequest => self.logout(pdu).await,
            Opcode::LoginRequest => self.reject(&pdu.bhs, RejectReason::ProtocolError).await,
            Opcode::Snack => {
                self.reject(&pdu.bhs, RejectReason::CommandNotSupported)
                    .await
            }
            _ => self.reject(&pdu.bhs, RejectReason::ProtocolError).await,
        }
    }

    fn lu(&self, lun: u64) -> Option<Arc<LogicalUnit>> {
        self.session.target.lu(lun)
    }

    /// Drops the pending writes that a LOGICAL UNIT RESET or target reset
    /// received on another connection or session aborted (SAM-5: a reset
    /// aborts every task of the LU, whichever I_T nexus it came from; an
    /// aborted task gets no response). One atomic load when none happened.
    fn drop_reset_tasks(&mut self) {
        let now = self.session.target.resets();
        if now == self.seen_resets {
            return;
        }
        self.seen_resets = now;
        let luns = self.session.target.luns();
        let before = self.pending.len();
        self.pending.retain(|_, t| {
            luns.get(&t.lun)
                .is_some_and(|lu| lu.resets() == t.lu_resets)
        });
        let gone = before - self.pending.len();
        if gone > 0 {
            tracing::debug!(gone, "pending writes aborted by a reset elsewhere");
            self.stats.in_flight.fetch_sub(gone as u64, Relaxed);
        }
    }

    async fn scsi_command(&mut self, pdu: Pdu) -> Result<(), IscsiError> {
        self.drop_reset_tasks();
        let b = &pdu.bhs;
        if !self.session.accept_cmd_sn(b.cmd_sn(), b.immediate()) {
            tracing::debug!(
                cmd_sn = b.cmd_sn(),
                "command outside the CmdSN window ignored"
            );
            return Ok(());
        }
        if b.exp_stat_sn() == self.stat_sn {
            self.alone_streak = self.alone_streak.saturating_add(1);
        } else {
            self.alone_streak = 0;
        }
        let Some(c) = typed::ScsiCommand::decode(b) else {
            return Ok(());
        };
        let (read, write, edtl, itt, lun_raw) = (c.read, c.write, c.edtl, c.itt, c.lun);
        let unordered = TaskAttribute::of(c.attr).is_some_and(TaskAttribute::unordered);
        let lun = scsi::decode_lun(lun_raw);
        let cdb = pdu.full_cdb();
        let imm = pdu.data.len() as u32;
        // What the CDB can move to the LU bounds a write's buffer (looked
        // up only for a write with more to take than its immediate data).
        let cdb_can_take = || {
            self.lu(lun).map_or(0, |lu| {
                let size = lu.num_blocks().saturating_mul(lu.block_size() as u64);
                scsi::data_out_limit(&cdb, lu.block_size()).min(size)
            })
        };
        let admit = command::admit(
            &c,
            imm,
            &self.session.params,
            self.pending.contains_key(&itt),
            cdb_can_take,
        );
        if let Admit::Reject(r) = admit {
            return self.reject(b, r).await;
        }
        self.stats.commands.fetch_add(1, Relaxed);
        if write {
            self.stats.write_commands.fetch_add(1, Relaxed);
        } else if read {
            self.stats.read_commands.fetch_add(1, Relaxed);
        }
        let started = Instant::now();
        tracing::trace!(
            itt,
            edtl,
            imm,
            read,
            write,
            cmd_sn = c.cmd_sn,
            op = cdb[0],
            "SCSI command"
        );
        if let Admit::Gather {
            want,
            unsolicited_open,
            unsolicited_end,
        } = admit
        {
            let Some(credit) = self.session.write_credit(want as u64) else {
                // Too much write data pending in this session: the initiator retries.
                tracing::debug!(itt, want, "pending-write memory full: TASK SET FULL");
                self.stats.in_flight.fetch_add(1, Relaxed);
                let done = Deferred {
                    itt,
                    lun_raw,
                    edtl,
                    read: false,
                    needed_out: None,
                    started,
                    offloaded: false,
                };
                return self
                    .complete(done, ScsiResponse::status(ScsiStatus::TaskSetFull))
                    .await;
            };
            // Zeroed: Data-Out may leave gaps, and stale bytes must never reach the medium.
            let mut buf = iolab_storage::pool::take(want as usize);
            buf[..imm as usize].copy_from_slice(&pdu.data);
            buf[imm as usize..].fill(0);
            self.stats.write_bytes.fetch_add(imm as u64, Relaxed);
            self.stats.in_flight.fetch_add(1, Relaxed);
            let task = WriteTask {
                lun,
                lun_raw,
                cdb,
                buf,
                xfer: super::write_task::Transfer::new(
                    edtl,
                    want,
                    imm,
                    unsolicited_open,
                    unsolicited_end,
                ),
                started,
                lu_resets: self.lu(lun).map_or(0, |l| l.resets()),
                unordered,
                _credit: credit,
            };
            self.pending.insert(itt, task);
            return self.issue_r2ts(itt, lun_raw).await;
        }
        self.stats.write_bytes.fetch_add(imm as u64, Relaxed);
        self.stats.in_flight.fetch_add(1, Relaxed);
        let how = Run {
            read,
            write,
            unordered,
        };
        self.execute(itt, lun, lun_raw, &cdb, edtl, how, pdu.data, started)
            .await
    }

    /// Solicits what is still missing below `want`, in order, once the
    /// unsolicited data has ended (R2Ts start where it ended).
    async fn issue_r2ts(&mut self, itt: u32, lun_raw: [u8; 8]) -> Result<(), IscsiError> {
        let max_burst = self.session.params.max_burst.max(512);
        let max_out = self.session.params.max_outstanding_r2t.max(1) as usize;
        loop {
            let Some(t) = self.pending.get_mut(&itt) else {
                return Ok(());
            };
            let counter = &mut self.next_ttt;
            let Some(r2t) = t.xfer.next_r2t(max_burst, max_out, || next_tag(counter)) else {
                return Ok(());
            };
            let b = typed::R2t {
                lun: lun_raw,
                itt,
                ttt: r2t.ttt,
                sn: self.sn(false),
                r2t_sn: r2t.r2tsn,
                offset: r2t.offset,
                length: r2t.len,
            }
            .encode();
            self.out(&b, Bytes::new()).await?;
        }
    }

    async fn data_out(&mut self, pdu: Pdu) -> Result<(), IscsiError> {
        self.drop_reset_tasks();
        let b = &pdu.bhs;
        let itt = b.itt();
        let ttt = b.ttt();
        let offset = b.buffer_offset();
        let len = pdu.data.len() as u32;
        let data_sn = b.data_sn();
        tracing::trace!(
            itt,
            ttt,
            offset,
            len,
            data_sn,
            final_pdu = b.final_bit(),
            "Data-Out"
        );
        let Some(t) = self.pending.get_mut(&itt) else {
            return self.reject(b, RejectReason::InvalidPduField).await;
        };
        // A Data-Out that does not fit its sequence (offset, length, DataSN, TTT)
        // fails its task; at ErrorRecoveryLevel 0 there is no within-command recovery.
        let final_pdu = b.final_bit();
        let range = match t.xfer.data_out(ttt, data_sn, offset, len, final_pdu) {
            Ok(range) => range,
            Err(why) => {
                tracing::debug!(itt, "{why}: task failed");
                self.stats.errors.fetch_add(1, Relaxed);
                let Some(t) = self.pending.remove(&itt) else {
                    return Ok(());
                };
                self.reject(b, RejectReason::ProtocolError).await?;
                let sense =
                    scsi::Sense::new(scsi::SenseKey::AbortedCommand, scsi::Asc::DATA_PHASE_ERROR);
                let resp = ScsiResponse::check(&sense, false);
                self.respond(itt, t.lun_raw, t.xfer.edtl(), false, None, resp)
                    .await?;
                self.stats.in_flight.fetch_sub(1, Relaxed);
                return Ok(());
            }
        };
        let n = range.len();
        t.buf[range].copy_from_slice(&pdu.data[..n]);
        iolab_storage::pool::give(pdu.data);
        self.stats.write_bytes.fetch_add(len as u64, Relaxed);
        let lun_raw = t.lun_raw;
        if t.xfer.complete() {
            let Some(t) = self.pending.remove(&itt) else {
                return Ok(());
            };
            let how = Run {
                read: false,
                write: true,
                unordered: t.unordered,
            };
            let edtl = t.xfer.edtl();
            return self
                .execute(itt, t.lun, t.lun_raw, &t.cdb, edtl, how, t.buf, t.started)
                .await;
        }
        if final_pdu {
            self.issue_r2ts(itt, lun_raw).await?;
        }
        Ok(())
    }

    /// Runs a command and answers it: here, or, for a READ or WRITE (or
    /// SYNCHRONIZE CACHE) of SIMPLE attribute that would wait for a disk
    /// (O_DIRECT, a block device, an uncached buffered read, a flush),
    /// checked here and transferred by the shard's io_uring (or, without
    /// one, run on an I/O worker) while this connection goes on reading (the
    /// answer comes back through `deferred_rx`), so one connection keeps as
    /// many disk I/Os in flight as its initiator sends. Any other command
    /// first waits for the offloaded ones, so it sees the state they leave.
    #[allow(clippy::too_many_arguments)]
    async fn execute(
        &mut self,
        itt: u32,
        lun: u64,
        lun_raw: [u8; 8],
        cdb: &[u8],
        edtl: u32,
        how: Run,
        data_out: Vec<u8>,
        started: Instant,
    ) -> Result<(), IscsiError> {
        let lu = self.lu(lun);
        let needed_out = if how.write {
            // What the CDB takes, against the EDTL, for the residual.
            let bs = lu.as_ref().map(|l| l.block_size()).unwrap_or(512);
            Some(scsi::data_out_limit(cdb, bs))
        } else {
            None
        };
        let mut done = Deferred {
            itt,
            lun_raw,
            edtl,
            read: how.read,
            needed_out,
            started,
            offloaded: false,
        };
        if let Some(lu) = &lu {
            // An initiator that waits for each answer gains nothing from a
            // worker but the hand-over's latency.
            let alone = self.alone_streak >= ALONE_BEFORE_POLLING && self.offloaded == 0;
            if how.unordered && !alone && lu.would_block(cdb) {
                if let Some(ring) = Ring::here().filter(|r| r.has_room())
                    && let Some(prepared) = lu.prepare_io(&self.session.nexus, cdb, &data_out)
                {
                    // A write's data was copied into the transfer's buffer.
                    iolab_storage::pool::give(data_out);
                    return match prepared {
                        Prepared::Done(resp) => self.complete(done, resp).await,
                        Prepared::Io(io, buf) => self.start_on_ring(&ring, lu, io, buf, done).await,
                    };
                }
                done.offloaded = true;
                self.offloaded += 1;
                let (lu, nexus, cdb) = (lu.clone(), self.session.nexus.clone(), cdb.to_vec());
                let tx = self.deferred_tx.clone();
                tokio::task::spawn_blocking(move || {
                    // Whatever happens, an answer comes back: the connection
                    // counts on it before its next ordered command.
                    let run = std::panic::AssertUnwindSafe(|| lu.execute(&nexus, &cdb, &data_out));
                    let resp = std::panic::catch_unwind(run).unwrap_or_else(|_| {
                        tracing::error!(
                            op = cdb.first(),
                            "the backstore panicked: INTERNAL TARGET FAILURE"
                        );
                        internal_failure()
                    });
                    iolab_storage::pool::give(data_out);
                    let _ = tx.send((done, resp));
                });
                return Ok(());
            }
        }
        self.drain_offloaded().await?;
        let completion = self.run_here(lu.as_ref(), cdb, &data_out);
        iolab_storage::pool::give(data_out);
        match completion {
            Completion::Now(resp) => self.complete(done, resp).await,
            Completion::Later(job) => {
                // A long operation (SANITIZE): the connection keeps serving other
                // commands; the response goes out when the job ends.
                let tx = self.deferred_tx.clone();
                tokio::task::spawn_blocking(move || {
                    let resp = job.wait_response(false);
                    let _ = tx.send((done, resp));
                });
                Ok(())
            }
        }
    }

    /// Hands a checked transfer to the shard's ring; its answer comes back
    /// through `deferred_rx` like a worker's.
    async fn start_on_ring(
        &mut self,
        ring: &Arc<Ring>,
        lu: &Arc<LogicalUnit>,
        io: BlockIo,
        buf: IoBuf,
        mut done: Deferred,
    ) -> Result<(), IscsiError> {
        done.offloaded = true;
        let unstarted = Deferred {
            offloaded: false,
            ..done.clone()
        };
        let (lu, tx) = (lu.clone(), self.deferred_tx.clone());
        let op = io.transfer;
        let answer: uring::Done = Box::new(move |moved, buf| {
            // `lu` keeps the file open until here.
            let finish = std::panic::AssertUnwindSafe(|| lu.finish_io(&io, moved, buf));
            let resp = std::panic::catch_unwind(finish).unwrap_or_else(|_| {
                tracing::error!(
                    ?op,
                    "finishing a transfer panicked: INTERNAL TARGET FAILURE"
                );
                internal_failure()
            });
            let _ = tx.send((done, resp));
        });
        match ring.start(&io, buf, answer) {
            Ok(()) => {
                self.offloaded += 1;
                self.queued_on.note(ring);
                Ok(())
            }
            Err((buf, _)) => {
                // Full after all (checked just before): the initiator retries.
                buf.give();
                self.complete(unstarted, ScsiResponse::status(ScsiStatus::TaskSetFull))
                    .await
            }
        }
    }

    /// Runs a command on this connection's thread.
    fn run_here(&self, lu: Option<&Arc<LogicalUnit>>, cdb: &[u8], data_out: &[u8]) -> Completion {
        if cdb.first() == Some(&scsi::opcode::op::REPORT_LUNS) {
            let map = self.session.target.luns();
            // Reading the inventory clears the notice that it changed.
            for lu in map.values() {
                lu.clear_unit_attention(&self.session.nexus.id, Asc::REPORTED_LUNS_DATA_CHANGED);
            }
            let luns: Vec<u64> = map.keys().copied().collect();
            return Completion::Now(
                scsi::report_luns(&luns, cdb).unwrap_or_else(|s| ScsiResponse::check(&s, false)),
            );
        }
        let Some(lu) = lu else {
            return Completion::Now(scsi::unmapped_lun_response(cdb));
        };
        let multi = tokio::runtime::Handle::current().runtime_flavor()
            == tokio::runtime::RuntimeFlavor::MultiThread;
        let nexus = &self.session.nexus;
        // EXTENDED COPY may name any LU of the target, and moves up to a
        // few hundred MiB: off the reactor, whatever the backstore.
        if cdb.first() == Some(&scsi::opcode::op::EXTENDED_COPY) {
            let peers: Vec<_> = self
                .session
                .target
                .luns()
                .values()
                .filter(|l| !Arc::ptr_eq(l, lu))
                .cloned()
                .collect();
            if multi {
                tokio::task::block_in_place(|| lu.start_with(nexus, cdb, data_out, &peers))
            } else {
                lu.start_with(nexus, cdb, data_out, &peers)
            }
        } else if multi && lu.backstore().kind() != BackstoreKind::Ramdisk {
            tokio::task::block_in_place(|| lu.start(nexus, cdb, data_out))
        } else {
            lu.start(nexus, cdb, data_out)
        }
    }

    /// Waits for the commands on I/O workers and answers them.
    async fn drain_offloaded(&mut self) -> Result<(), IscsiError> {
        self.queued_on.submit();
        while self.offloaded > 0 {
            let Some((d, resp)) = self.deferred_rx.recv().await else {
                break;
            };
            self.complete(d, resp).await?;
        }
        Ok(())
    }

    async fn complete(&mut self, d: Deferred, resp: ScsiResponse) -> Result<(), IscsiError> {
        if d.offloaded {
            self.offloaded = self.offloaded.saturating_sub(1);
        }
        self.respond(d.itt, d.lun_raw, d.edtl, d.read, d.needed_out, resp)
            .await?;
        self.stats.in_flight.fetch_sub(1, Relaxed);
        self.stats.latency.record(d.started.elapsed());
        Ok(())
    }

    /// Sends Data-In (with status in the last PDU when possible) and/or SCSI Response.
    async fn respond(
        &mut self,
        itt: u32,
        lun_raw: [u8; 8],
        edtl: u32,
        read: bool,
        needed_out: Option<u64>,
        resp: ScsiResponse,
    ) -> Result<(), IscsiError> {
        let produced = resp.data_len() as u64;
        let ScsiResponse {
            status,
            data,
            shared,
            sense,
        } = resp;
        let good = status == ScsiStatus::Good;
        let residual = Residual::of(read, edtl, produced, needed_out, good);
        // The data as segments (views of RAMDISK memory, or one pooled buffer),
        // cut to what the initiator expects.
        // Without data (writes, most non-data commands) `shared` is empty
        // too: nothing is allocated.
        let mut segments = if shared.is_empty() && !data.is_empty() {
            vec![iolab_storage::pool::into_bytes(data)]
        } else {
            iolab_storage::pool::give(data);
            shared
        };
        let total = data_in::fit(&mut segments, if read { edtl as usize } else { 0 });
        let status_in_data = data_in::status_in_data(good, sense.is_some(), total);
        let mut data_sn = 0u32;
        if total > 0 {
            self.stats.read_bytes.fetch_add(total as u64, Relaxed);
            for piece in data_in::pieces(&segments, self.peer_mrdsl) {
                let with_status = piece.last && status_in_data;
                let b = typed::DataIn {
                    final_: piece.last,
                    lun: lun_raw,
                    itt,
                    ttt: RESERVED_TAG,
                    // StatSN goes (and counts) only with the status.
                    sn: if with_status {
                        self.sn(true)
                    } else {
                        Sn {
                            stat_sn: 0,
                            ..self.sn(false)
                        }
                    },
                    data_sn: piece.data_sn,
                    offset: piece.offset,
                    status: with_status.then(|| typed::DataInStatus {
                        status: status as u8,
                        residual_flags: residual.flags(),
                        residual: residual.count(),
                    }),
                }
                .encode();
                data_sn = piece.data_sn + 1;
                let data = segments[piece.segment].slice(piece.range);
                self.out(&b, data).await?;
            }
            if status_in_data {
                return Ok(());
            }
        }
        let b = typed::ScsiResponse {
            residual_flags: residual.flags(),
            response: 0, // command completed at target
            status: status as u8,
            itt,
            sn: self.sn(true),
            exp_data_sn: data_sn,
            residual: residual.count(),
        }
        .encode();
        let payload = match sense {
            Some(s) => {
                let mut v = Vec::with_capacity(2 + s.len());
                v.extend_from_slice(&(s.len() as u16).to_be_bytes());
                v.extend_from_slice(&s);
                Bytes::from(v)
            }
            None => Bytes::new(),
        };
        self.out(&b, payload).await
    }

    /// Sends a NOP-In that asks for an answer (TTT set, ITT reserved).
    async fn send_ping(&mut self) -> Result<(), IscsiError> {
        let ttt = next_tag(&mut self.next_ttt);
        let b = typed::NopIn {
            lun: [0; 8],
            itt: RESERVED_TAG,
            ttt,
            sn: self.sn(false),
        }
        .encode();
        self.ping = Some((ttt, Instant::now()));
        self.out(&b, Bytes::new()).await
    }

    async fn nop_out(&mut self, pdu: Pdu) -> Result<(), IscsiError> {
        let Some(n) = typed::NopOut::decode(&pdu.bhs) else {
            return Ok(());
        };
        if n.itt == RESERVED_TAG {
            // A reply to our ping (or a ping that wants no answer).
            if self.ping.is_some_and(|(ttt, _)| ttt == n.ttt) {
                self.ping = None;
            }
            return Ok(());
        }
        if !n.immediate {
            self.session.accept_cmd_sn(n.cmd_sn, false);
        }
        let r = typed::NopIn::answer(n.lun, n.itt, self.sn(true)).encode();
        self.out(&r, Bytes::from(pdu.data)).await
    }

    async fn text_request(&mut self, pdu: Pdu) -> Result<(), IscsiError> {
        let b = &pdu.bhs;
        let Some(t) = typed::TextRequest::decode(b) else {
            return Ok(());
        };
        if !t.immediate {
            self.session.accept_cmd_sn(t.cmd_sn, false);
        }
        let piece = match self.text.take(&t, &pdu.data, &mut self.next_ttt) {
            TextStep::Reject(r) => return self.reject(b, r).await,
            TextStep::MoreRequest { ttt } => text_exchange::Piece::ask(ttt),
            TextStep::Piece(p) => p,
            TextStep::Request(data) => {
                let pairs = match text::parse(&data) {
                    Ok(p) => p,
                    Err(_) => return self.reject(b, RejectReason::ProtocolError).await,
                };
                // MaxRecvDataSegmentLength is declarative and may be declared
                // again in full feature phase (RFC 7143 13.12): take the
                // initiator's new value and declare ours back.
                let (mrdsl, rest): (Vec<_>, Vec<_>) = pairs
                    .into_iter()
                    .partition(|(k, _)| k == "MaxRecvDataSegmentLength");
                let mut reply = send_targets(
                    &self.reg,
                    Some(&self.session.target.iqn),
                    &self.session.initiator_name,
                    &rest,
                    self.local,
                );
                if let Some((k, v)) = mrdsl.last() {
                    let answer = match v.parse::<u32>() {
                        Ok(n) if (512..=16_777_215).contains(&n) => {
                            self.peer_mrdsl = n as usize;
                            self.params.max_recv_data_segment.to_string()
                        }
                        _ => "Reject".to_string(),
                    };
                    reply.extend_from_slice(&text::encode(&[(k.clone(), answer)]));
                }
                self.text
                    .answer(b.itt(), reply, self.peer_mrdsl, &mut self.next_ttt)
            }
        };
        // Answers still corked go first: StatSN leaves in order.
        self.flush().await?;
        let sn = self.sn(true);
        send_text(&self.tx, piece, b, sn, self.hd, self.dd).await
    }

    async fn task_mgmt(&mut self, pdu: Pdu) -> Result<(), IscsiError> {
        let Some(t) = typed::TaskMgmtRequest::decode(&pdu.bhs) else {
            return Ok(());
        };
        // Commands on I/O workers end first: task management sees each
        // task either waiting for its data or answered.
        self.drain_offloaded().await?;
        if !t.immediate {
            self.session.accept_cmd_sn(t.cmd_sn, false);
        }
        let target = self.session.target.clone();
        let req = TmfRequest {
            function: t.function(),
            lun: scsi::decode_lun(t.lun),
            rtt: t.rtt,
            ref_cmd_sn: t.ref_cmd_sn,
        };
        let lu = target.lu(req.lun);
        let outcome = tmf::decide(
            &req,
            &mut PendingTasks(&mut self.pending),
            self.session.window(),
            lu.is_some(),
        );
        self.stats
            .in_flight
            .fetch_sub(outcome.aborted as u64, Relaxed);
        let mut cold = false;
        match outcome.effect {
            TmfEffect::None => {}
            TmfEffect::ResetLu(_) => {
                if let Some(lu) = lu {
                    lu.reset(&self.reg.nexuses_of(&target));
                }
                target.note_reset();
                self.seen_resets = target.resets();
            }
            TmfEffect::ResetTarget { cold: c } => {
                let nexuses = self.reg.nexuses_of(&target);
                for lu in target.luns().values() {
                    lu.reset(&nexuses);
                }
                target.note_reset();
                self.seen_resets = target.resets();
                cold = c;
            }
        }
        let response = outcome.response;
        let r = typed::TaskMgmtResponse {
            response,
            itt: t.itt,
            sn: self.sn(true),
        }
        .encode();
        self.out(&r, Bytes::new()).await?;
        if cold {
            // A cold reset ends every session of the target after the
            // response: it goes to the socket first (was: a 10 ms sleep,
            // with the response still corked).
            self.flush().await?;
            self.reg.drop_sessions_of(&target);
        }
        Ok(())
    }

    async fn logout(&mut self, pdu: Pdu) -> Result<(), IscsiError> {
        let Some(l) = typed::LogoutRequest::decode(&pdu.bhs) else {
            return Ok(());
        };
        // Commands on I/O workers are answered before the Logout Response.
        self.drain_offloaded().await?;
        self.reg.logins.logouts.fetch_add(1, Relaxed);
        if !l.immediate {
            self.session.accept_cmd_sn(l.cmd_sn, false);
        }
        let sn = self.sn(true);
        let params = &self.session.params;
        let times = (
            params.default_time2wait.min(0xffff) as u16,
            params.default_time2retain.min(0xffff) as u16,
        );
        let session = self.session.clone();
        let (r, effect) = logout::answer(&l, self.cid, |c| session.has_connection(c), sn, times);
        self.out(&r.encode(), Bytes::new()).await?;
        match effect {
            LogoutEffect::None => {}
            LogoutEffect::CloseSession => {
                self.session.close_all();
                self.done = true;
            }
            LogoutEffect::CloseThis => self.done = true,
            LogoutEffect::CloseOther(cid) => {
                // Its answer first, then the other connection ends (its
                // writes waiting for data go with it: ERL 0).
                self.flush().await?;
                self.session.close_connection(cid);
            }
        }
        Ok(())
    }
}

/// Sends one Text Response: a piece of an answer, or an empty one asking
/// for the rest of the request (neither F nor C).
pub(super) async fn send_text(
    tx: &Outbox,
    piece: text_exchange::Piece,
    req: &Bhs,
    sn: Sn,
    hd: bool,
    dd: bool,
) -> Result<(), IscsiError> {
    let b = piece.response(req.lun_raw(), req.itt(), sn).encode();
    send(tx, Frame::new(&b, Bytes::from(piece.data), hd, dd)).await
}

/// CHECK CONDITION, HARDWARE ERROR / INTERNAL TARGET FAILURE: the answer
/// to a command whose execution panicked.
fn internal_failure() -> ScsiResponse {
    let sense = scsi::Sense::new(scsi::SenseKey::HardwareError, Asc::INTERNAL_TARGET_FAILURE);
    ScsiResponse::check(&sense, false)
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};
    use std::sync::{Arc, Condvar, Mutex};
    use std::time::Duration;

    use bytes::Bytes;
    use iolab_storage::scsi::{LogicalUnit, LuConfig};
    use iolab_storage::{Backstore, BackstoreKind, IoKind, StorageError};

    use crate::initiator::{InitiatorOptions, IscsiUrl, Session};
    use crate::target::{ServerConfig, Target};

    /// A test disk on which every read and write waits for a device, and
    /// whose reads do what `Reads` says.
    enum Reads {
        /// Each waits until `want` reads are in progress at once (or fails
        /// after five seconds): reads that a connection runs one at a time
        /// never get there.
        Gate {
            want: u32,
            inside: Mutex<u32>,
            arrived: Condvar,
        },
        /// Each panics (a bug in a backstore).
        Panic,
    }

    impl Reads {
        fn gate(want: u32) -> Reads {
            Reads::Gate {
                want,
                inside: Mutex::new(0),
                arrived: Condvar::new(),
            }
        }
    }

    impl Backstore for Reads {
        fn kind(&self) -> BackstoreKind {
            BackstoreKind::Block
        }
        fn describe(&self) -> String {
            "test disk".into()
        }
        fn size_bytes(&self) -> u64 {
            1 << 20
        }
        fn read_at(&self, buf: &mut [u8], _offset: u64) -> Result<(), StorageError> {
            let Reads::Gate {
                want,
                inside,
                arrived,
            } = self
            else {
                panic!("a backstore bug");
            };
            let mut n = inside.lock().unwrap();
            *n += 1;
            arrived.notify_all();
            let (n, timeout) = arrived
                .wait_timeout_while(n, Duration::from_secs(5), |n| *n < *want)
                .unwrap();
            if timeout.timed_out() {
                return Err(StorageError::BadSize(*n as u64, 0));
            }
            buf.fill(0x5a);
            Ok(())
        }
        fn write_at(&self, _: &[u8], _: u64, _: bool) -> Result<(), StorageError> {
            Ok(())
        }
        fn flush(&self) -> Result<(), StorageError> {
            Ok(())
        }
        fn unmap(&self, _: u64, _: u64) -> Result<(), StorageError> {
            Ok(())
        }
        fn would_block(&self, _: u64, _: usize, _: IoKind) -> bool {
            true
        }
    }

    /// A target whose LUN 0 is `store`, and a session to it.
    async fn target_with(store: Box<dyn Backstore>) -> (Target, Session) {
        let target = Target::start(ServerConfig::default_lab(
            "127.0.0.1:0".parse().unwrap(),
            1 << 20,
        ))
        .await
        .unwrap();
        let url = IscsiUrl::parse(&target.lun_urls()[0], false).unwrap();
        let node = target
            .registry()
            .find_target(url.target.as_deref().unwrap())
            .unwrap();
        let lu = LogicalUnit::new(store, LuConfig::default()).unwrap();
        *node.luns.write().unwrap() = Arc::new(BTreeMap::from([(url.lun, Arc::new(lu))]));
        let s = Session::connect(&url, &InitiatorOptions::default())
            .await
            .unwrap();
        (target, s)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_backstore_that_panics_fails_its_command_and_the_session_goes_on() {
        let (_target, s) = target_with(Box::new(Reads::Panic)).await;
        let r = tokio::time::timeout(Duration::from_secs(10), s.read(0, 8, 512)).await;
        assert!(r.expect("the read was answered").is_err(), "a failed read");
        // Commands that run on the connection wait for the offloaded ones:
        // none may be left uncounted.
        let c = tokio::time::timeout(Duration::from_secs(10), s.capacity()).await;
        assert_eq!(c.expect("READ CAPACITY answered").unwrap(), (2048, 512));
        let bye = tokio::time::timeout(Duration::from_secs(10), s.logout()).await;
        bye.expect("logout answered").unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn reads_that_wait_for_a_disk_run_side_by_side_on_one_connection() {
        let (_target, s) = target_with(Box::new(Reads::gate(4))).await;
        let (a, b, c, d) = tokio::join!(
            s.read(0, 8, 512),
            s.read(8, 8, 512),
            s.read(16, 8, 512),
            s.read(24, 8, 512)
        );
        for r in [a, b, c, d] {
            let got: Bytes = r.expect("every read answered GOOD");
            assert!(got.iter().all(|&x| x == 0x5a));
        }
        s.logout().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_o_direct_file_serves_many_commands_at_once_through_the_shard_ring() {
        let dir = std::env::temp_dir().join(format!("iolab-conn-ring-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = iolab_storage::FileIo::open(&dir.join("lun"), Some(1 << 20), true)
            .unwrap()
            .with_async_writes();
        let (target, s) = target_with(Box::new(store)).await;
        let before = target.shards().ring_transfers().await;
        let block = |k: u64| Bytes::from(vec![k as u8 ^ 0xa5; 4096]);
        let writes = (0..32u64).map(|k| s.write(k * 8, block(k), 512));
        for r in futures_util::future::join_all(writes).await {
            r.expect("every write answered GOOD");
        }
        let reads = (0..32u64).map(|k| s.read(k * 8, 8, 512));
        for (k, r) in futures_util::future::join_all(reads)
            .await
            .into_iter()
            .enumerate()
        {
            assert_eq!(
                r.expect("every read answered GOOD"),
                block(k as u64),
                "block {k}"
            );
        }
        let after = target.shards().ring_transfers().await;
        if let (Some(b), Some(a)) = (before, after) {
            // Commands issued one at a time run inline; at least the rest
            // went through the ring.
            assert!(a - b >= 32, "{b} -> {a} transfers on the ring");
        } else {
            super::uring::skip_without_io_uring();
        }
        s.logout().await.unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_first_stat_sn_is_random_below_2_pow_31() {
        let draws: Vec<u32> = (0..4096)
            .map(|_| super::initial_stat_sn().unwrap())
            .collect();
        assert!(draws.iter().all(|v| (1..0x8000_0000).contains(v)));
        assert!(draws.iter().collect::<HashSet<_>>().len() > 4000);
    }
}

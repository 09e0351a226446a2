//! The socket side shared by the target and the initiator: outgoing frames,
//! the outbox that writes them (straight from the sender while the socket
//! takes them, vectored), and TCP facts of a connection.

use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::Notify;

use crate::pdu::{BHS_LEN, Bhs, crc32c_padded, pad_len};
use crate::stats::ConnStats;

/// One outgoing PDU: header (+digest), payload, padding (+digest).
pub(crate) struct Frame {
    head: [u8; BHS_LEN + 4],
    head_len: usize,
    data: Bytes,
    tail: [u8; 8],
    tail_len: usize,
}

impl Frame {
    pub(crate) fn new(bhs: &Bhs, data: Bytes, hd: bool, dd: bool) -> Frame {
        let mut b = bhs.clone();
        b.set_data_segment_len(data.len());
        let mut head = [0u8; BHS_LEN + 4];
        head[..BHS_LEN].copy_from_slice(&b.0);
        let mut head_len = BHS_LEN;
        if hd {
            let d = crc32c::crc32c(&head[..BHS_LEN]);
            head[BHS_LEN..].copy_from_slice(&d.to_le_bytes());
            head_len += 4;
        }
        let mut tail = [0u8; 8];
        let mut tail_len = 0;
        if !data.is_empty() {
            tail_len = pad_len(data.len());
            if dd {
                tail[tail_len..tail_len + 4].copy_from_slice(&crc32c_padded(&data).to_le_bytes());
                tail_len += 4;
            }
        }
        Frame {
            head,
            head_len,
            data,
            tail,
            tail_len,
        }
    }

    /// Bytes on the wire.
    pub(crate) fn len(&self) -> usize {
        self.head_len + self.data.len() + self.tail_len
    }

    /// The frame's bytes from `skip` on, as up to three slices.
    fn slices<'a>(&'a self, mut skip: usize, out: &mut Vec<IoSlice<'a>>) {
        for part in [
            &self.head[..self.head_len],
            &self.data[..],
            &self.tail[..self.tail_len],
        ] {
            if skip >= part.len() {
                skip -= part.len();
            } else {
                out.push(IoSlice::new(&part[skip..]));
                skip = 0;
            }
        }
    }
}

/// Bytes queued behind a slow socket before senders that can wait are held back.
const HIGH_WATER: usize = 8 << 20;
/// Slices per vectored write (below Linux's IOV_MAX of 1024).
const MAX_SLICES: usize = 512;

/// The sending side of one connection.
///
/// Whoever sends writes straight to the socket (no hand-over to another
/// task, no wake-up per PDU). One writer at a time holds the write turn and
/// writes without holding the lock; PDUs sent meanwhile by other tasks are
/// appended and go out with the holder's next vectored write, in order. When
/// the socket is full, the turn passes to a flusher task that writes the rest
/// as the socket drains.
pub(crate) struct Outbox {
    shared: Arc<OutShared>,
    flusher: Option<tokio::task::JoinHandle<()>>,
}

struct OutShared {
    sock: OwnedWriteHalf,
    queue: Mutex<OutQueue>,
    /// Wakes the flusher: it was given the write turn, or the outbox closes.
    more: Notify,
    /// Wakes senders waiting for the queue to fall below [`HIGH_WATER`].
    room: Notify,
    stats: Arc<ConnStats>,
}

/// Who may write to the socket now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Turn {
    /// Nobody: the queue is empty.
    #[default]
    Free,
    /// A sender is writing (without the lock).
    Sender,
    /// The socket was full: the flusher writes when it drains.
    Flusher,
}

#[derive(Default)]
struct OutQueue {
    frames: VecDeque<Frame>,
    /// Bytes of the front frame already written.
    front_sent: usize,
    /// Bytes sent but not yet written (queued, or being written).
    bytes: usize,
    turn: Turn,
    /// The socket failed: nothing more is written.
    failed: bool,
    closing: bool,
}

/// How a round of writing ended.
enum Wrote {
    /// Everything queued is written.
    All,
    /// The socket is full; what is left stays queued.
    Full,
    Failed,
}

/// The right to write the queue to the socket (see [`Outbox::append`]).
/// The queue is written when the turn is used or dropped, so a holder that
/// is cancelled still releases it.
#[must_use]
pub(crate) struct WriteTurn(Option<Arc<OutShared>>);

impl WriteTurn {
    /// Writes what is queued (everyone's), then frees the turn or hands it
    /// to the flusher when the socket is full.
    pub(crate) fn write(mut self) -> Result<(), Closed> {
        match self.0.take() {
            Some(out) => out.write_turn(),
            None => Ok(()),
        }
    }
}

impl Drop for WriteTurn {
    fn drop(&mut self) {
        if let Some(out) = self.0.take() {
            let _ = out.write_turn();
        }
    }
}

/// The connection's socket failed or was closed.
#[derive(Debug)]
pub(crate) struct Closed;

impl From<Closed> for crate::error::IscsiError {
    fn from(_: Closed) -> Self {
        crate::error::Violation::WriterClosed.into()
    }
}

impl Outbox {
    /// Takes the socket's write half and starts the flusher task.
    pub(crate) fn new(sock: OwnedWriteHalf, stats: Arc<ConnStats>) -> Outbox {
        let shared = Arc::new(OutShared {
            sock,
            queue: Mutex::new(OutQueue::default()),
            more: Notify::new(),
            room: Notify::new(),
            stats,
        });
        let flusher = Some(tokio::spawn(flush_loop(shared.clone())));
        Outbox { shared, flusher }
    }

    /// Sends `frames` in order without waiting: written at once while the
    /// socket takes them, queued for the flusher otherwise.
    pub(crate) fn push(&self, frames: impl IntoIterator<Item = Frame>) -> Result<(), Closed> {
        match self.append(frames)? {
            Some(turn) => turn.write(),
            None => Ok(()),
        }
    }

    /// The first half of [`Outbox::push`]: puts `frames` in line (cheap, so a
    /// caller may hold its own ordering lock) and, when nobody is writing,
    /// hands the caller the write turn to use after releasing that lock (and,
    /// perhaps, after letting other senders add theirs).
    pub(crate) fn append(
        &self,
        frames: impl IntoIterator<Item = Frame>,
    ) -> Result<Option<WriteTurn>, Closed> {
        let mut q = self.shared.lock();
        if q.failed {
            return Err(Closed);
        }
        for f in frames {
            q.bytes += f.len();
            q.frames.push_back(f);
        }
        if q.turn != Turn::Free {
            // The writer holding the turn takes these with its next write.
            return Ok(None);
        }
        q.turn = Turn::Sender;
        Ok(Some(WriteTurn(Some(self.shared.clone()))))
    }

    /// Sends `frames`, then waits while too much is queued behind a slow peer.
    pub(crate) async fn send(&self, frames: impl IntoIterator<Item = Frame>) -> Result<(), Closed> {
        self.push(frames)?;
        self.shared.wait_room().await
    }

    /// Writes what is still queued, then shuts the socket's write side.
    pub(crate) async fn close(mut self) {
        self.shared.begin_close();
        if let Some(f) = self.flusher.take() {
            let _ = f.await;
        }
    }
}

impl Drop for Outbox {
    fn drop(&mut self) {
        // Not closed explicitly: the flusher still writes what is queued, then ends.
        self.shared.begin_close();
    }
}

impl OutShared {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutQueue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes the queue for the sender holding the turn.
    fn write_turn(&self) -> Result<(), Closed> {
        match self.write_out(self.lock()) {
            Wrote::All => Ok(()),
            Wrote::Full => {
                self.more.notify_one();
                Ok(())
            }
            Wrote::Failed => Err(Closed),
        }
    }

    fn begin_close(&self) {
        self.lock().closing = true;
        self.more.notify_one();
    }

    /// Writes queued frames (the caller holds the write turn) until the
    /// queue is empty, the socket is full or fails. The lock is released
    /// during each write. On `All` the turn is free again; on `Full` it is
    /// the flusher's.
    fn write_out<'a>(&'a self, mut q: std::sync::MutexGuard<'a, OutQueue>) -> Wrote {
        loop {
            if q.frames.is_empty() {
                q.turn = Turn::Free;
                drop(q);
                self.room.notify_waiters();
                return Wrote::All;
            }
            let mut batch = std::mem::take(&mut q.frames);
            let mut sent = std::mem::take(&mut q.front_sent);
            drop(q);
            let (written, full, failed) = self.write_batch(&mut batch, &mut sent);
            q = self.lock();
            q.bytes -= written;
            if failed || q.failed {
                self.fail(q);
                return Wrote::Failed;
            }
            if full {
                // What is left goes first, then what was appended meanwhile.
                batch.extend(q.frames.drain(..));
                q.frames = batch;
                q.front_sent = sent;
                q.turn = Turn::Flusher;
                return Wrote::Full;
            }
        }
    }

    /// The socket failed: drops what is queued, frees the turn for good
    /// (every later send fails) and releases senders waiting for room.
    fn fail(&self, mut q: std::sync::MutexGuard<'_, OutQueue>) {
        q.failed = true;
        q.frames.clear();
        q.bytes = 0;
        q.turn = Turn::Free;
        drop(q);
        self.room.notify_waiters();
    }

    /// Writes `batch` from `sent` bytes into its front frame, dropping
    /// written frames. Returns (bytes written, socket full, failed).
    fn write_batch(&self, batch: &mut VecDeque<Frame>, sent: &mut usize) -> (usize, bool, bool) {
        let mut total = 0;
        let mut slices: Vec<IoSlice<'_>> = Vec::new();
        while !batch.is_empty() {
            slices.clear();
            let mut skip = *sent;
            for f in batch.iter() {
                if slices.len() + 3 > MAX_SLICES {
                    break;
                }
                f.slices(skip, &mut slices);
                skip = 0;
            }
            let r = self.sock.try_write_vectored(&slices);
            slices = Vec::new();
            let mut n = match r {
                Ok(0) => return (total, false, true),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    return (total, true, false);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => return (total, false, true),
            };
            total += n;
            self.stats.bytes_out.fetch_add(n as u64, Relaxed);
            while n > 0 {
                let Some(front) = batch.front() else { break };
                let rest = front.len() - *sent;
                if n >= rest {
                    n -= rest;
                    *sent = 0;
                    batch.pop_front();
                    self.stats.pdus_out.fetch_add(1, Relaxed);
                } else {
                    *sent += n;
                    n = 0;
                }
            }
        }
        (total, false, false)
    }

    async fn wait_room(&self) -> Result<(), Closed> {
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            {
                let q = self.lock();
                if q.failed {
                    return Err(Closed);
                }
                if q.bytes <= HIGH_WATER {
                    return Ok(());
                }
            }
            room.await;
        }
    }
}

/// Writes what senders could not, as the socket drains; ends (shutting the
/// write side) once closing with nothing queued, or when the socket fails.
async fn flush_loop(out: Arc<OutShared>) {
    loop {
        let (mine, done) = {
            let q = out.lock();
            (
                q.turn == Turn::Flusher,
                q.failed || (q.closing && q.turn == Turn::Free),
            )
        };
        if done {
            break;
        }
        if !mine {
            out.more.notified().await;
            continue;
        }
        if out.sock.writable().await.is_err() {
            out.fail(out.lock());
            break;
        }
        if let Wrote::Failed = out.write_out(out.lock()) {
            break;
        }
    }
    shutdown_write(&out.sock);
}

/// Shuts the write side of the connection (FIN), so the peer sees the end
/// even while other handles to the socket remain.
fn shutdown_write(sock: &OwnedWriteHalf) {
    use std::os::fd::AsRawFd;
    let fd = AsRef::<TcpStream>::as_ref(sock).as_raw_fd();
    let _ = nix::sys::socket::shutdown(fd, nix::sys::socket::Shutdown::Write);
}

/// TCP_MAXSEG of a connected socket.
pub(crate) fn tcp_mss(stream: &TcpStream) -> Option<u32> {
    nix::sys::socket::getsockopt(stream, nix::sys::socket::sockopt::TcpMaxSeg)
        .ok()
        .filter(|v| *v > 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pdu::{Opcode, ReadLimits, ReadOutcome, read_pdu};
    use tokio::net::TcpListener;

    /// Several tasks push numbered PDUs while the peer does not read, so the
    /// socket fills and the flusher takes over; every PDU arrives once and
    /// intact, each sender's in order, and closing ends the stream after the
    /// last one.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_senders_keep_order_through_a_full_socket() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(l.local_addr().unwrap()).await.unwrap();
        let (server, _) = l.accept().await.unwrap();
        let (_rd, wr) = client.into_split();
        let out = Arc::new(Outbox::new(wr, Arc::new(ConnStats::default())));
        const SENDERS: u32 = 4;
        const EACH: u32 = 300;
        let payload = Bytes::from((0..16 * 1024).map(|i| i as u8).collect::<Vec<u8>>());
        let tasks: Vec<_> = (0..SENDERS)
            .map(|s| {
                let (out, payload) = (out.clone(), payload.clone());
                tokio::spawn(async move {
                    for i in 0..EACH {
                        let mut b = Bhs::new(Opcode::DataIn);
                        b.set_itt((s << 16) | (i << 1));
                        let mut b2 = b.clone();
                        b2.set_itt((s << 16) | (i << 1) | 1);
                        // A data PDU (with a data digest) and an empty one, in one push.
                        out.push([
                            Frame::new(&b, payload.clone(), false, true),
                            Frame::new(&b2, Bytes::new(), false, true),
                        ])
                        .unwrap();
                        if i % 50 == 0 {
                            tokio::task::yield_now().await;
                        }
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        // Nothing was read yet: the socket is full and the rest waits in the queue.
        assert!(out.shared.lock().bytes > 0);
        assert_eq!(out.shared.lock().turn, Turn::Flusher);
        let reader = tokio::spawn(async move {
            let mut rd = tokio::io::BufReader::new(server);
            let limits = ReadLimits {
                max_data: 1 << 20,
                header_digest: false,
                data_digest: true,
            };
            let mut seen = Vec::new();
            while let Some(o) = read_pdu(&mut rd, limits).await.unwrap() {
                match o {
                    ReadOutcome::Pdu(p) => seen.push((p.bhs.itt(), p.data)),
                    ReadOutcome::DataDigestError(_) => panic!("data digest error"),
                }
            }
            seen
        });
        let out = Arc::try_unwrap(out).ok().unwrap();
        out.close().await;
        let seen = reader.await.unwrap();
        assert_eq!(seen.len(), (SENDERS * EACH * 2) as usize);
        let mut next = [0u32; SENDERS as usize];
        for (itt, data) in seen {
            let (s, n) = ((itt >> 16) as usize, itt & 0xffff);
            assert_eq!(n, next[s], "sender {s} out of order");
            next[s] += 1;
            if n & 1 == 0 {
                assert_eq!(data, payload[..]);
            } else {
                assert!(data.is_empty());
            }
        }
    }
}

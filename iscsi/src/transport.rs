//! The socket side shared by the target and the initiator: outgoing frames,
//! the batching vectored writer, and TCP facts of a connection.

use std::io::IoSlice;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::mpsc;

use crate::pdu::{BHS_LEN, Bhs, crc32c_padded, pad_len};
use crate::stats::ConnStats;

/// Where a writer takes its frames from: a bounded (target) or unbounded (initiator) channel.
pub(crate) trait FrameSource: Send {
    fn next(&mut self) -> impl std::future::Future<Output = Option<Frame>> + Send;
    fn ready(&mut self) -> Option<Frame>;
}

impl FrameSource for mpsc::Receiver<Frame> {
    async fn next(&mut self) -> Option<Frame> {
        self.recv().await
    }
    fn ready(&mut self) -> Option<Frame> {
        self.try_recv().ok()
    }
}

impl FrameSource for mpsc::UnboundedReceiver<Frame> {
    async fn next(&mut self) -> Option<Frame> {
        self.recv().await
    }
    fn ready(&mut self) -> Option<Frame> {
        self.try_recv().ok()
    }
}

/// One outgoing PDU: header (+digest), payload, padding (+digest).
pub(crate) struct Frame {
    head: Vec<u8>,
    data: Bytes,
    tail: [u8; 8],
    tail_len: usize,
}

impl Frame {
    pub(crate) fn new(bhs: &Bhs, data: Bytes, hd: bool, dd: bool) -> Frame {
        let mut b = bhs.clone();
        b.set_data_segment_len(data.len());
        let mut head = Vec::with_capacity(BHS_LEN + 4);
        head.extend_from_slice(&b.0);
        if hd {
            let d = crc32c::crc32c(&head);
            head.extend_from_slice(&d.to_le_bytes());
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
            data,
            tail,
            tail_len,
        }
    }
    fn len(&self) -> usize {
        self.head.len() + self.data.len() + self.tail_len
    }
}

/// Writes batches of frames with vectored writes until the channel closes.
pub(crate) async fn writer_loop(
    mut w: OwnedWriteHalf,
    mut rx: impl FrameSource,
    stats: Arc<ConnStats>,
) {
    let mut batch: Vec<Frame> = Vec::with_capacity(64);
    while let Some(f) = rx.next().await {
        batch.push(f);
        while batch.len() < 64 {
            match rx.ready() {
                Some(f) => batch.push(f),
                None => break,
            }
        }
        let total: usize = batch.iter().map(Frame::len).sum();
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(batch.len() * 3);
        for f in &batch {
            slices.push(IoSlice::new(&f.head));
            if !f.data.is_empty() {
                slices.push(IoSlice::new(&f.data));
            }
            if f.tail_len > 0 {
                slices.push(IoSlice::new(&f.tail[..f.tail_len]));
            }
        }
        let mut rest: &mut [IoSlice<'_>] = &mut slices;
        let mut failed = false;
        while !rest.is_empty() {
            match w.write_vectored(rest).await {
                Ok(0) | Err(_) => {
                    failed = true;
                    break;
                }
                Ok(n) => IoSlice::advance_slices(&mut rest, n),
            }
        }
        stats.bytes_out.fetch_add(total as u64, Relaxed);
        stats.pdus_out.fetch_add(batch.len() as u64, Relaxed);
        batch.clear();
        if failed {
            break;
        }
    }
    let _ = w.shutdown().await;
}

/// TCP_MAXSEG of a connected socket.
pub(crate) fn tcp_mss(stream: &TcpStream) -> Option<u32> {
    use std::os::fd::AsRawFd;
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are valid for writes of the sizes given; the fd is
    // owned by `stream`, which outlives the call.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_MAXSEG,
            (&mut v as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    (rc == 0 && v > 0).then_some(v as u32)
}

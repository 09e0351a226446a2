//! One io_uring per connection thread (shard) for the file and block-device
//! transfers of its sessions. A connection hands a checked READ, WRITE or
//! SYNCHRONIZE CACHE ([`iolab_storage::scsi::BlockIo`]) to the ring and reads
//! on; the kernel queues the transfer on the device itself (O_DIRECT, a block
//! device, an uncached buffered read) and the shard learns of completions
//! through an eventfd on its own reactor. No thread is woken per I/O, which
//! is what the blocking-pool workers cost: on a 2-core VM a cold 4 KiB
//! random read spent a third of the target's CPU in the hand-over to a worker
//! and back.
//!
//! Where io_uring is unavailable (an old kernel, a seccomp filter that
//! forbids it), [`Ring::here`] is None and transfers go to the workers.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::{Arc, Mutex, MutexGuard};

use io_uring::{IoUring, opcode, types};
use iolab_storage::pool::IoBuf;
use iolab_storage::scsi::{BlockIo, Transfer};
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;

/// Submission queue entries per ring. Connections submit what they queued
/// before they wait, and a queue of [`SUBMIT_AT`] is submitted at once, so
/// it never fills.
const SQ_ENTRIES: u32 = 256;
/// Queued transfers that are submitted at once, whether or not the
/// connection has asked yet.
const SUBMIT_AT: usize = 32;
/// Transfers in flight at most (the completion queue, twice the submission
/// queue, never overflows); beyond it connections use the workers.
const MAX_IN_FLIGHT: usize = 2 * SQ_ENTRIES as usize;

/// What runs when a transfer ends: bytes moved or the error, and the buffer.
pub(super) type Done = Box<dyn FnOnce(io::Result<usize>, IoBuf) + Send>;

struct Slot {
    buf: IoBuf,
    done: Done,
}

struct Inner {
    uring: IoUring,
    /// Transfers in flight, by the index their entry carries as user data.
    slots: Vec<Option<Slot>>,
    free: Vec<usize>,
    in_flight: usize,
    /// Transfers started so far.
    started: u64,
}

pub(super) struct Ring {
    inner: Mutex<Inner>,
    /// Signalled by the kernel for every completion.
    event: OwnedFd,
}

thread_local! {
    static HERE: RefCell<Option<Arc<Ring>>> = const { RefCell::new(None) };
}

/// Keeps a thread's ring installed; dropping it takes the ring away (the
/// ring itself ends when its reaper does, after the transfers in flight).
pub(super) struct Installed(());

impl Drop for Installed {
    fn drop(&mut self) {
        HERE.with(|h| h.borrow_mut().take());
    }
}

impl Ring {
    /// Makes a ring for this thread, whose completions a task on the current
    /// runtime reaps. None (logged) where io_uring cannot be set up.
    pub(super) fn install() -> Option<Installed> {
        let ring = match Ring::new() {
            Ok(r) => Arc::new(r),
            Err(e) => {
                tracing::info!(error = %e, "no io_uring: file and block I/O on worker threads");
                return None;
            }
        };
        tokio::spawn(reap(ring.clone()));
        HERE.with(|h| *h.borrow_mut() = Some(ring));
        Some(Installed(()))
    }

    /// This thread's ring, if it has one.
    pub(super) fn here() -> Option<Arc<Ring>> {
        HERE.with(|h| h.borrow().clone())
    }

    fn new() -> io::Result<Ring> {
        let uring = IoUring::new(SQ_ENTRIES)?;
        // SAFETY: eventfd takes no pointers; the descriptor it returns (when
        // not -1) is new and owned by nobody else.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd and is owned here only.
        let event = unsafe { OwnedFd::from_raw_fd(fd) };
        uring.submitter().register_eventfd(event.as_raw_fd())?;
        Ok(Ring {
            inner: Mutex::new(Inner {
                uring,
                slots: Vec::new(),
                free: Vec::new(),
                in_flight: 0,
                started: 0,
            }),
            event,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Transfers started on this ring so far.
    #[cfg(test)]
    pub(super) fn started(&self) -> u64 {
        self.lock().started
    }

    /// Whether another transfer may start now.
    pub(super) fn has_room(&self) -> bool {
        self.lock().in_flight < MAX_IN_FLIGHT
    }

    /// Queues `io` through `buf` (see [`Ring::submit`]); `done` runs on the
    /// ring's thread when it ends. Refused (everything given back, nothing started) when
    /// [`MAX_IN_FLIGHT`] transfers are in flight.
    pub(super) fn start(
        &self,
        io: &BlockIo,
        mut buf: IoBuf,
        done: Done,
    ) -> Result<(), (IoBuf, Done)> {
        let mut g = self.lock();
        let inner = &mut *g;
        if inner.in_flight >= MAX_IN_FLIGHT {
            return Err((buf, done));
        }
        let fd = types::Fd(io.file.fd);
        // The buffer's heap memory stays where it is while the IoBuf moves
        // into its slot below.
        let ptr = buf.as_mut_slice().as_mut_ptr();
        let len = io.len.min(buf.len()) as u32;
        let entry = match io.transfer {
            Transfer::Read => opcode::Read::new(fd, ptr, len).offset(io.offset).build(),
            Transfer::Write { durable } => opcode::Write::new(fd, ptr, len)
                .offset(io.offset)
                .rw_flags(if durable { libc::RWF_DSYNC } else { 0 })
                .build(),
            Transfer::Flush => opcode::Fsync::new(fd)
                .flags(types::FsyncFlags::DATASYNC)
                .build(),
        };
        let i = inner.free.pop().unwrap_or_else(|| {
            inner.slots.push(None);
            inner.slots.len() - 1
        });
        // SAFETY: the entry points at `buf`'s memory and names `fd`. The
        // buffer is kept in slot `i` until the entry's completion has been
        // reaped (also when the ring is dropped: `Drop` waits), and the
        // caller keeps the file open until `done` runs (it holds the LU).
        let pushed = unsafe { inner.uring.submission().push(&entry.user_data(i as u64)) };
        if pushed.is_err() {
            inner.free.push(i);
            return Err((buf, done));
        }
        inner.slots[i] = Some(Slot { buf, done });
        inner.in_flight += 1;
        inner.started += 1;
        if inner.uring.submission().len() >= SUBMIT_AT {
            Self::submit_locked(inner);
        }
        Ok(())
    }

    /// Hands the queued transfers to the kernel: one system call for all
    /// that were started since the last (the caller does so before it
    /// waits for anything).
    pub(super) fn submit(&self) {
        Self::submit_locked(&mut self.lock());
    }

    fn submit_locked(inner: &mut Inner) {
        if inner.uring.submission().is_empty() {
            return;
        }
        if let Err(e) = inner.uring.submit() {
            // The entries stay queued; the next submit or the reaper tries again.
            tracing::debug!(error = %e, "io_uring submit deferred");
        }
    }

    /// Takes the ended transfers off the ring (and submits what a failed
    /// submit left queued), then runs their completions without the lock.
    fn complete(&self) {
        let ended = {
            let mut g = self.lock();
            let inner = &mut *g;
            let mut ended = Vec::new();
            for cqe in inner.uring.completion() {
                let i = cqe.user_data() as usize;
                if let Some(slot) = inner.slots.get_mut(i).and_then(Option::take) {
                    inner.free.push(i);
                    inner.in_flight -= 1;
                    ended.push((slot, cqe.result()));
                }
            }
            Self::submit_locked(inner);
            ended
        };
        for (slot, res) in ended {
            let moved = if res < 0 {
                Err(io::Error::from_raw_os_error(-res))
            } else {
                Ok(res as usize)
            };
            (slot.done)(moved, slot.buf);
        }
    }
}

/// The transfers in flight end before their buffers are freed: the kernel
/// may still write into them (O_DIRECT pins them for the device).
impl Drop for Ring {
    fn drop(&mut self) {
        loop {
            let inner = self.inner.get_mut().unwrap_or_else(|e| e.into_inner());
            if inner.in_flight == 0 {
                return;
            }
            if let Err(e) = inner.uring.submit_and_wait(1)
                && e.kind() != io::ErrorKind::Interrupted
            {
                // Cannot wait: leak the buffers rather than free memory
                // the kernel may still use.
                tracing::error!(error = %e, "io_uring: leaving transfers in flight");
                std::mem::forget(std::mem::take(&mut inner.slots));
                return;
            }
            self.complete();
        }
    }
}

/// Transfers a connection queued on a ring and has not submitted yet:
/// submitted when asked, or when dropped (a connection that ends between
/// queuing and submitting still lets its transfers run and end).
#[derive(Default)]
pub(super) struct Unsubmitted(Option<Arc<Ring>>);

impl Unsubmitted {
    pub(super) fn note(&mut self, ring: &Arc<Ring>) {
        if self.0.is_none() {
            self.0 = Some(ring.clone());
        }
    }

    pub(super) fn submit(&mut self) {
        if let Some(ring) = self.0.take() {
            ring.submit();
        }
    }
}

impl Drop for Unsubmitted {
    fn drop(&mut self) {
        self.submit();
    }
}

/// A ring as the reactor sees it: its eventfd.
struct Reaped(Arc<Ring>);

impl AsRawFd for Reaped {
    fn as_raw_fd(&self) -> RawFd {
        self.0.event.as_raw_fd()
    }
}

/// Waits for the ring's completions on the current runtime and runs them.
async fn reap(ring: Arc<Ring>) {
    // SAFETY: the eventfd is owned by the ring that `Reaped` holds, so it
    // stays open, and is the same descriptor, for as long as the AsyncFd.
    let registered = unsafe { AsyncFd::register_with_interest(Reaped(ring), Interest::READABLE) };
    let event = match registered {
        Ok(e) => e,
        Err(e) => {
            tracing::error!(error = %e, "io_uring eventfd not pollable");
            return;
        }
    };
    loop {
        let Ok(mut ready) = event.readable().await else {
            return;
        };
        ready.clear_ready();
        let mut count = 0u64;
        // SAFETY: reads 8 bytes into a live local u64 from the open
        // eventfd (non-blocking: EAGAIN when nothing was signalled).
        let _ = unsafe { libc::read(event.as_raw_fd(), (&raw mut count).cast(), 8) };
        event.get_ref().0.complete();
    }
}

/// For a test that found no ring: fails unless the kernel says io_uring is
/// switched off (`kernel.io_uring_disabled` 1 or 2), then says it skips.
#[cfg(test)]
pub(super) fn skip_without_io_uring() {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .is_ok_and(|v| v.trim() != "0");
    assert!(
        disabled,
        "io_uring is allowed here, yet no ring could be set up"
    );
    eprintln!("kernel.io_uring_disabled is set: the io_uring path is not tested");
}

#[cfg(test)]
mod tests {
    use super::*;
    use iolab_storage::scsi::{LogicalUnit, LuConfig, Nexus, Prepared, ScsiStatus};
    use iolab_storage::{FileIo, ScsiResponse};
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
    use tokio::sync::mpsc;

    fn read10(lba: u32, n: u16, write: bool) -> Vec<u8> {
        let mut c = vec![if write { 0x2a } else { 0x28 }, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        c[2..6].copy_from_slice(&lba.to_be_bytes());
        c[7..9].copy_from_slice(&n.to_be_bytes());
        c
    }

    /// This thread's ring, installed, and a scratch directory; None (said)
    /// where io_uring is unavailable.
    fn installed(tag: &str) -> Option<(Installed, Arc<Ring>, std::path::PathBuf)> {
        let Some(installed) = Ring::install() else {
            skip_without_io_uring();
            return None;
        };
        let dir = std::env::temp_dir().join(format!("{tag}{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Some((installed, Ring::here()?, dir))
    }

    /// Queues command `k` on `ring`; its answer goes to `tx`.
    fn start_one(
        ring: &Ring,
        lu: &Arc<LogicalUnit>,
        cdb: &[u8],
        data: &[u8],
        k: u32,
        tx: &mpsc::UnboundedSender<(u32, ScsiResponse)>,
    ) {
        let nexus = Nexus::new("iqn.test:uring", 1);
        let Some(Prepared::Io(io, buf)) = lu.prepare_io(&nexus, cdb, data) else {
            panic!("a transfer is handed out");
        };
        let (lu, tx) = (lu.clone(), tx.clone());
        let done: Done = Box::new(move |moved, buf| {
            let _ = tx.send((k, lu.finish_io(&io, moved, buf)));
        });
        assert!(ring.start(&io, buf, done).is_ok());
    }

    #[tokio::test(flavor = "current_thread")]
    async fn transfers_through_the_ring_end_and_move_the_right_blocks() {
        let Some((_installed, ring, dir)) = installed("iolab-uring-") else {
            return;
        };
        for direct in [true, false] {
            let store = FileIo::open(&dir.join("lun"), Some(4 << 20), direct)
                .unwrap()
                .with_async_writes();
            let lu = Arc::new(LogicalUnit::new(Box::new(store), LuConfig::default()).unwrap());
            let (tx, mut rx) = mpsc::unbounded_channel::<(u32, ScsiResponse)>();
            let before = ring.started();
            // 64 writes of 8 blocks each, all in flight at once.
            for k in 0..64u32 {
                let data = vec![k as u8 ^ direct as u8; 4096];
                start_one(&ring, &lu, &read10(k * 8, 8, true), &data, k, &tx);
            }
            ring.submit();
            for _ in 0..64 {
                let (_, r) = rx.recv().await.unwrap();
                assert_eq!(r.status, ScsiStatus::Good);
            }
            assert_eq!(ring.started() - before, 64);
            for k in 0..64u32 {
                start_one(&ring, &lu, &read10(k * 8, 8, false), &[], k, &tx);
            }
            ring.submit();
            for _ in 0..64 {
                let (k, r) = rx.recv().await.unwrap();
                assert_eq!(r.status, ScsiStatus::Good);
                let data: Vec<u8> = r.shared.iter().flat_map(|b| b.iter().copied()).collect();
                assert_eq!(
                    data,
                    vec![k as u8 ^ direct as u8; 4096],
                    "block {k} direct={direct}"
                );
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_queued_transfer_goes_to_the_kernel_when_its_connection_ends() {
        let Some((_installed, ring, dir)) = installed("iolab-uring-q-") else {
            return;
        };
        let store = FileIo::open(&dir.join("lun"), Some(1 << 20), true).unwrap();
        let lu = Arc::new(LogicalUnit::new(Box::new(store), LuConfig::default()).unwrap());
        let (tx, mut rx) = mpsc::unbounded_channel::<(u32, ScsiResponse)>();
        start_one(&ring, &lu, &read10(0, 8, false), &[], 0, &tx);
        let mut pending = Unsubmitted::default();
        pending.note(&ring);
        // Queued only: nothing reaches the kernel yet.
        let early = tokio::time::timeout(std::time::Duration::from_millis(200), rx.recv()).await;
        assert!(
            early.is_err(),
            "a queued transfer ran before it was submitted"
        );
        drop(pending);
        let answer = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv()).await;
        let (_, resp) = answer.expect("ended after the drop").unwrap();
        assert_eq!(resp.status, ScsiStatus::Good);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_dropped_ring_runs_every_transfer_to_its_end_first() {
        // No reaper: only the drop can see the completions.
        let Ok(ring) = Ring::new() else {
            skip_without_io_uring();
            return;
        };
        let dir = std::env::temp_dir().join(format!("iolab-uring-drop-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = FileIo::open(&dir.join("lun"), Some(1 << 20), true).unwrap();
        let lu = Arc::new(LogicalUnit::new(Box::new(store), LuConfig::default()).unwrap());
        let nexus = Nexus::new("iqn.test:uring", 1);
        let ended = Arc::new(AtomicU64::new(0));
        for k in 0..32u32 {
            let Some(Prepared::Io(io, buf)) = lu.prepare_io(&nexus, &read10(k, 1, false), &[])
            else {
                panic!("a read is handed out");
            };
            let (lu, ended) = (lu.clone(), ended.clone());
            let done: Done = Box::new(move |moved, buf| {
                assert_eq!(lu.finish_io(&io, moved, buf).status, ScsiStatus::Good);
                ended.fetch_add(1, Relaxed);
            });
            assert!(ring.start(&io, buf, done).is_ok());
        }
        drop(ring);
        assert_eq!(ended.load(Relaxed), 32);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

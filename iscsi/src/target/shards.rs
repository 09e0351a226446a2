//! The threads the target's sessions run on: one single-threaded tokio
//! runtime per core, each session placed by its TSIH once its leading
//! connection has logged in. The connections of one session (MC/S) share a
//! thread, so handing the CmdSN turn from one to the next is a task switch,
//! not the wake-up of another thread (measured on 2 cores, 256 KiB reads
//! over 2 connections: 19,700 context switches in 3 s and 0.80-0.88x of one
//! connection on the multi-threaded runtime; 235 and 0.93-1.00x here).
//! Sessions spread over the cores.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use tokio::runtime::{Builder, Handle};

/// I/O workers per shard: the file and block-device reads and writes its
/// sessions keep in flight at once; more wait in the runtime's queue. Idle
/// workers end after 10 s. Measured on 2 cores with O_DIRECT 4 KiB random
/// I/O at 64 outstanding: 8 workers 0.72-0.84x of 16, 32 0.92-0.99x, 64
/// 0.66-0.68x (the threads compete with the connections for the cores).
const IO_WORKERS: usize = 16;
use tokio::sync::oneshot;

/// The connection threads; they end when this is dropped (their
/// connections with them).
pub(super) struct Shards {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
}

impl Shards {
    /// `n` threads (at least one), each running its own runtime.
    pub(super) fn start(n: usize) -> std::io::Result<Shards> {
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        for i in 0..n.max(1) {
            let rt = Builder::new_current_thread()
                .enable_all()
                .max_blocking_threads(IO_WORKERS)
                .build()?;
            handles.push(rt.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            std::thread::Builder::new()
                .name(format!("iolab-conn-{i}"))
                .spawn(move || {
                    // Runs the connections spawned onto it until told to
                    // stop (or the sender is gone); dropping the runtime
                    // then drops them.
                    rt.block_on(async {
                        // The shard's file and block transfers (workers
                        // where io_uring is unavailable).
                        let _ring = super::uring::Ring::install();
                        let _ = stopped.await;
                    });
                })?;
        }
        Ok(Shards { handles, stops })
    }

    /// One per core this process may use.
    pub(super) fn per_core() -> std::io::Result<Shards> {
        Shards::start(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// The runtime for the connections of session `tsih`.
    pub(super) fn for_session(&self, tsih: u16) -> &Handle {
        &self.handles[tsih as usize % self.handles.len()]
    }
}

thread_local! {
    /// Full-feature connections that started on this thread and still run.
    static LIVE: Arc<AtomicUsize> = Arc::new(AtomicUsize::new(0));
}

/// A connection counted on the thread (the shard) it started on, for as
/// long as it lives.
pub(super) struct Live(Arc<AtomicUsize>);

impl Live {
    pub(super) fn here() -> Live {
        let count = LIVE.with(Arc::clone);
        count.fetch_add(1, Relaxed);
        Live(count)
    }

    /// Whether no other connection shares this one's shard: the only case
    /// where spinning for its next command takes a core from nobody.
    pub(super) fn alone(&self) -> bool {
        self.0.load(Relaxed) == 1
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
impl Shards {
    /// Transfers started on the shards' rings; None when no shard has one
    /// (io_uring unavailable).
    pub(super) async fn ring_transfers(&self) -> Option<u64> {
        let mut sum = None;
        for h in &self.handles {
            let started = h
                .spawn(async { super::uring::Ring::here().map(|r| r.started()) })
                .await
                .ok()
                .flatten();
            if let Some(n) = started {
                sum = Some(sum.unwrap_or(0) + n);
            }
        }
        sum
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_is_alone_only_while_no_other_runs_on_its_thread() {
        let first = Live::here();
        assert!(first.alone());
        let second = Live::here();
        assert!(!first.alone() && !second.alone());
        // Another thread's connections are not counted here.
        let elsewhere = std::thread::spawn(|| Live::here().alone()).join().unwrap();
        assert!(elsewhere);
        drop(second);
        assert!(first.alone());
    }

    #[test]
    fn a_session_always_gets_one_shard_and_sessions_spread() {
        let shards = Shards::start(3).unwrap();
        let id = |h: &Handle| h.id();
        assert_eq!(id(shards.for_session(7)), id(shards.for_session(7)));
        let used: std::collections::HashSet<_> =
            (1..=6).map(|t| id(shards.for_session(t))).collect();
        assert_eq!(used.len(), 3, "consecutive sessions use every shard");
    }

    #[test]
    fn spawned_work_runs_on_the_shard_and_stops_with_it() {
        let shards = Shards::start(2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        shards.for_session(1).spawn(async move {
            let name = std::thread::current().name().map(str::to_string);
            let _ = tx.send(name);
        });
        let name = rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .unwrap()
            .unwrap();
        assert!(name.starts_with("iolab-conn-"), "{name}");
        let handle = shards.for_session(1).clone();
        drop(shards);
        // The runtime is gone once its thread has ended.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !runtime_gone(&handle) {
            assert!(
                std::time::Instant::now() < deadline,
                "the shard did not stop"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Whether a runtime no longer runs what is spawned onto it.
    fn runtime_gone(handle: &Handle) -> bool {
        let (tx, rx) = std::sync::mpsc::channel();
        handle.spawn(async move {
            let _ = tx.send(());
        });
        rx.recv_timeout(std::time::Duration::from_millis(200))
            .is_err()
    }
}

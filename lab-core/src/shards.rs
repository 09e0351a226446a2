//! Single-threaded runtimes, one per core, for a load over many sessions:
//! a session logged in on a shard has its reader there, and the workers
//! that use it are spawned there too, so an answer wakes its worker on the
//! thread that read it (no hand-over between threads per I/O, as the
//! target's own shards serve connections).

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// Threads named `iolab-load-N`, each driving a current-thread runtime
/// until the `Shards` is dropped (which ends their tasks and joins them).
pub struct Shards {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Shards {
    /// Starts `n` (at least one) shards.
    pub fn start(n: usize) -> std::io::Result<Shards> {
        let mut shards = Shards {
            handles: Vec::new(),
            stops: Vec::new(),
            threads: Vec::new(),
        };
        for i in 0..n.max(1) {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let (stop, stopped) = oneshot::channel::<()>();
            shards.handles.push(rt.handle().clone());
            shards.stops.push(stop);
            shards.threads.push(
                std::thread::Builder::new()
                    .name(format!("iolab-load-{i}"))
                    .spawn(move || {
                        let _ = rt.block_on(stopped);
                    })?,
            );
        }
        Ok(shards)
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.handles.len()
    }

    /// Never: [`Shards::start`] makes at least one.
    pub fn is_empty(&self) -> bool {
        self.handles.is_empty()
    }

    /// The runtime of shard `i` (modulo their number).
    pub fn handle(&self, i: usize) -> &Handle {
        &self.handles[i % self.handles.len()]
    }
}

impl Drop for Shards {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn tasks_run_on_their_shards_thread_and_end_with_it() {
        let shards = Shards::start(2).unwrap();
        assert_eq!(shards.len(), 2);
        let mut names = Vec::new();
        for i in 0..4 {
            let name = shards
                .handle(i)
                .spawn(async { std::thread::current().name().map(str::to_owned) })
                .await
                .unwrap();
            names.push(name.unwrap_or_default());
        }
        assert_eq!(
            names,
            [
                "iolab-load-0",
                "iolab-load-1",
                "iolab-load-0",
                "iolab-load-1"
            ]
        );
        // A task still waiting when the shards go is dropped, not leaked.
        let (_keep, never) = oneshot::channel::<()>();
        let waiting = shards.handle(0).spawn(async move {
            let _ = never.await;
        });
        drop(shards);
        assert!(waiting.await.unwrap_err().is_cancelled());
    }
}

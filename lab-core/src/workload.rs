//! The disktest-style load generator: outstanding I/Os over one or more
//! sessions, sequential or random, read / write / 50:50, with an optional
//! self-checking pattern. No terminal code: callers format the report.

use crate::LabError;
use crate::shards::Shards;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::time::{Duration, Instant};

use bytes::Bytes;
use iolab_iscsi::initiator::{InitiatorOptions, IscsiUrl, Session};
use iolab_iscsi::stats::{LatencyHistogram, LatencySnapshot};
use serde::{Deserialize, Serialize};

/// Read, write, or both 50/50 (disktest `-D 50:50`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Read,
    Write,
    Rw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    Seq,
    Random,
}

/// One workload.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Workload {
    pub mode: Mode,
    pub block_bytes: u32,
    /// Outstanding I/Os (disktest -K).
    pub threads: u32,
    pub duration: Duration,
    pub pattern: Pattern,
    pub verify: bool,
    /// Bytes of the LUN to use from LBA 0 (0: all of it).
    pub range_bytes: u64,
}

/// Totals of one direction.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Totals {
    pub bytes: u64,
    pub transfers: u64,
}

/// What a run measured.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    pub seconds: f64,
    pub read: Totals,
    pub write: Totals,
    pub latency: LatencySnapshot,
    pub errors: u64,
    pub first_error: Option<String>,
    pub mismatches: u64,
    pub first_mismatch_lba: Option<u64>,
}

impl Report {
    pub fn passed(&self) -> bool {
        self.errors == 0 && self.mismatches == 0
    }
}

#[derive(Default)]
struct Counters {
    read_bytes: AtomicU64,
    read_ios: AtomicU64,
    write_bytes: AtomicU64,
    write_ios: AtomicU64,
    errors: AtomicU64,
    mismatches: AtomicU64,
    first_mismatch: std::sync::Mutex<Option<u64>>,
    first_error: std::sync::Mutex<Option<String>>,
}

/// Live totals while a run goes on (for heartbeats).
#[derive(Debug, Clone, Copy, Default)]
pub struct Progress {
    pub elapsed: Duration,
    pub read_bytes: u64,
    pub read_ios: u64,
    pub write_bytes: u64,
    pub write_ios: u64,
}

/// The self-checking block: LBA, pass, payload, CRC32C of the rest.
pub fn fill_block(buf: &mut [u8], lba: u64, pass: u64) {
    let n = buf.len();
    buf[0..8].copy_from_slice(&lba.to_le_bytes());
    buf[8..16].copy_from_slice(&pass.to_le_bytes());
    let mut x = lba ^ pass.rotate_left(32) ^ 0x9E37_79B9_7F4A_7C15;
    for chunk in buf[16..n - 4].chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let b = x.to_le_bytes();
        chunk.copy_from_slice(&b[..chunk.len()]);
    }
    let c = crc32c::crc32c(&buf[..n - 4]);
    buf[n - 4..].copy_from_slice(&c.to_le_bytes());
}

/// Whether a block read back is the self-checking block of `lba` (any pass).
pub fn check_block(buf: &[u8], lba: u64) -> bool {
    let n = buf.len();
    n >= 24
        && buf[0..8] == lba.to_le_bytes()
        && crc32c::crc32c(&buf[..n - 4]).to_le_bytes() == buf[n - 4..]
}

/// What a workload runs on: iSCSI sessions of the embedded initiator, or a
/// block device (or file) such as a disk the kernel's initiator made.
pub trait Volume: Send + Sync + 'static {
    /// Ready for I/O; its size in blocks and the block size.
    fn capacity(&self) -> impl std::future::Future<Output = Result<(u64, u32), LabError>> + Send;
    /// Reads `blocks` blocks at `lba`; `pick` spreads I/Os over paths.
    fn read(
        &self,
        pick: usize,
        lba: u64,
        blocks: u32,
        bs: u32,
    ) -> impl std::future::Future<Output = Result<Bytes, LabError>> + Send;
    fn write(
        &self,
        pick: usize,
        lba: u64,
        data: Bytes,
        bs: u32,
    ) -> impl std::future::Future<Output = Result<(), LabError>> + Send;
}

impl Volume for Vec<Session> {
    async fn capacity(&self) -> Result<(u64, u32), LabError> {
        let first = self.first().ok_or(LabError::NoSession)?;
        first.test_unit_ready().await?;
        Ok(first.capacity().await?)
    }
    async fn read(&self, pick: usize, lba: u64, blocks: u32, bs: u32) -> Result<Bytes, LabError> {
        Ok(self[pick % self.len()].read(lba, blocks, bs).await?)
    }
    async fn write(&self, pick: usize, lba: u64, data: Bytes, bs: u32) -> Result<(), LabError> {
        Ok(self[pick % self.len()].write(lba, data, bs).await?)
    }
}

/// A block device or file, read and written with `O_DIRECT` from blocking
/// threads (disktest's way of working on a disk).
pub struct Device {
    store: Arc<dyn iolab_storage::backstore::Backstore>,
    block: u32,
}

impl Device {
    /// Opens `path`: a block device (its logical block size) or a regular file (512).
    pub fn open(path: &std::path::Path) -> Result<Device, LabError> {
        use std::os::unix::fs::FileTypeExt;
        let meta = std::fs::metadata(path).map_err(|cause| {
            LabError::Device(iolab_storage::StorageError::Io {
                path: path.to_owned(),
                cause,
            })
        })?;
        if meta.file_type().is_block_device() {
            let d = iolab_storage::backstore::BlockDev::open(path, true)?;
            use iolab_storage::backstore::Backstore;
            let block = d.device_block_sizes().map_or(512, |(l, _)| l);
            Ok(Device {
                store: Arc::new(d),
                block,
            })
        } else {
            let f = iolab_storage::backstore::FileIo::open(path, None, true)?;
            Ok(Device {
                store: Arc::new(f),
                block: 512,
            })
        }
    }
}

impl Volume for Device {
    async fn capacity(&self) -> Result<(u64, u32), LabError> {
        Ok((self.store.size_bytes() / u64::from(self.block), self.block))
    }
    async fn read(&self, _pick: usize, lba: u64, blocks: u32, bs: u32) -> Result<Bytes, LabError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            let mut buf = iolab_storage::pool::take(blocks as usize * bs as usize);
            store.read_at(&mut buf, lba * u64::from(bs))?;
            Ok(iolab_storage::pool::into_bytes(buf))
        })
        .await
        .map_err(LabError::Thread)?
    }
    async fn write(&self, _pick: usize, lba: u64, data: Bytes, bs: u32) -> Result<(), LabError> {
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || {
            store.write_at(&data, lba * u64::from(bs), false)?;
            Ok(())
        })
        .await
        .map_err(LabError::Thread)?
    }
}

/// Which path (session) worker `worker` of `threads` uses for its `nth`
/// I/O, before the volume takes it modulo its paths: the workers are dealt
/// over the paths like cards, so every path carries the same share of the
/// I/Os in flight at any moment (as multipath's queue-length selector keeps
/// them), and a worker moves on by `threads` paths each I/O, so that with
/// fewer workers than paths every path still gets its turn. With as many
/// workers as paths, or a multiple, each worker keeps its one path.
///
/// Measured on loopback with 64 workers (2 cores, against spreading each
/// I/O by its block number, which left some sessions idle while others
/// queued several): 16 sessions 4 KiB reads 258K -> 345K IOPS, 256 KiB
/// 21.8K -> 32.6K; 64 sessions 256 KiB 22.6K -> 27-33K; 64 sessions 4 KiB
/// 196K -> 182K (one command per session every time, none to batch).
pub fn path_for(worker: usize, threads: usize, nth: u64) -> usize {
    worker.wrapping_add(threads.wrapping_mul(nth as usize))
}

/// Logs in `n` (at least one) sessions to `url`, one after another. With
/// more than one, and more than one core, session i logs in on shard i of
/// the [`Shards`] returned with them, where its reader runs; keep them
/// until the sessions have logged out, and give them to [`run`].
pub async fn connect(
    url: &IscsiUrl,
    opts: &InitiatorOptions,
    n: u32,
) -> Result<(Vec<Session>, Option<Shards>), LabError> {
    let n = n.max(1) as usize;
    let cores = std::thread::available_parallelism().map_or(1, |c| c.get());
    let shards = match n.min(cores) {
        1 => None,
        k => Some(Shards::start(k).map_err(LabError::LoadThreads)?),
    };
    let mut sessions = Vec::with_capacity(n);
    for i in 0..n {
        let session = match &shards {
            Some(shards) => {
                let (url, opts) = (url.clone(), opts.clone());
                shards
                    .handle(i)
                    .spawn(async move { Session::connect(&url, &opts).await })
                    .await
                    .map_err(LabError::Thread)??
            }
            None => Session::connect(url, opts).await?,
        };
        sessions.push(session);
    }
    Ok((sessions, shards))
}

/// Runs a workload over the sessions (one path per I/O: [`path_for`]), calling `tick`
/// every `heartbeat` with the running totals; with the `shards` the
/// sessions logged in on ([`connect`]), each worker runs on the shard of
/// the session it starts with, beside that session's reader.
pub async fn run(
    sessions: Arc<Vec<Session>>,
    shards: Option<&Shards>,
    w: Workload,
    heartbeat: Duration,
    tick: impl FnMut(Progress),
) -> Result<Report, LabError> {
    let place = placement(shards, w.threads, sessions.len());
    run_placed(sessions, w, heartbeat, tick, place).await
}

/// Where worker `t` of `threads` runs over `paths` sessions logged in on
/// `shards` (session i on shard i): on the shard of the session its first
/// I/O goes to.
fn placement(
    shards: Option<&Shards>,
    threads: u32,
    paths: usize,
) -> impl Fn(usize) -> Option<tokio::runtime::Handle> + '_ {
    let (threads, paths) = (threads.max(1) as usize, paths.max(1));
    move |t| shards.map(|s| s.handle(path_for(t, threads, 0) % paths).clone())
}

/// [`run`] on any [`Volume`].
pub async fn run_on<V: Volume>(
    volume: Arc<V>,
    w: Workload,
    heartbeat: Duration,
    tick: impl FnMut(Progress),
) -> Result<Report, LabError> {
    run_placed(volume, w, heartbeat, tick, |_| None).await
}

/// [`run_on`] with worker `t` spawned on the runtime `place(t)` names (the
/// current one for `None`).
async fn run_placed<V: Volume>(
    volume: Arc<V>,
    w: Workload,
    heartbeat: Duration,
    mut tick: impl FnMut(Progress),
    place: impl Fn(usize) -> Option<tokio::runtime::Handle>,
) -> Result<Report, LabError> {
    let (blocks, bs) = volume.capacity().await?;
    if w.block_bytes == 0 || !w.block_bytes.is_multiple_of(bs) {
        return Err(LabError::IoSize {
            io: w.block_bytes,
            block: bs,
        });
    }
    let per_io = (w.block_bytes / bs) as u64;
    let range_blocks = if w.range_bytes == 0 {
        blocks
    } else {
        (w.range_bytes / bs as u64).min(blocks)
    };
    let slots = range_blocks / per_io;
    if slots == 0 {
        return Err(LabError::LunTooSmall {
            lun_bytes: blocks * bs as u64,
            io: w.block_bytes,
        });
    }
    let counters = Arc::new(Counters::default());
    let latency = Arc::new(LatencyHistogram::default());
    let stop = Arc::new(AtomicBool::new(false));
    let cursor = Arc::new(AtomicU64::new(0));
    // A verifying write run covers its whole range at least once.
    let must_cover = w.verify && w.mode == Mode::Write && w.pattern == Pattern::Seq;
    let pass = Instant::now().elapsed().as_nanos() as u64 ^ std::process::id() as u64;
    let started = Instant::now();
    // Unverified writes of every worker send this one block (shared, no copy);
    // verified ones fill a pooled buffer per I/O.
    let constant = Bytes::from(vec![0u8; w.block_bytes as usize]);
    let mut handles = Vec::new();
    let threads = w.threads.max(1) as usize;
    for t in 0..w.threads.max(1) {
        let constant = constant.clone();
        let volume = volume.clone();
        let counters = counters.clone();
        let latency = latency.clone();
        let stop = stop.clone();
        let cursor = cursor.clone();
        let w = w.clone();
        let place = place(t as usize);
        let worker = async move {
            let mut rng = 0x2545_F491_4F6C_DD1Du64 ^ ((t as u64 + 1) * 0x9E37_79B9);
            let mut n = 0u64;
            loop {
                let slot = match w.pattern {
                    Pattern::Seq => {
                        let c = cursor.fetch_add(1, Relaxed);
                        if stop.load(Relaxed) && !(must_cover && c < slots) {
                            break;
                        }
                        c % slots
                    }
                    Pattern::Random => {
                        if stop.load(Relaxed) {
                            break;
                        }
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        rng % slots
                    }
                };
                let lba = slot * per_io;
                let is_write = match w.mode {
                    Mode::Read => false,
                    Mode::Write => true,
                    Mode::Rw => (n + t as u64).is_multiple_of(2),
                };
                let pick = path_for(t as usize, threads, n);
                n += 1;
                let t0 = Instant::now();
                let r = if is_write {
                    let payload = if w.verify {
                        let mut buf = iolab_storage::pool::take(w.block_bytes as usize);
                        for (i, b) in buf.chunks_mut(bs as usize).enumerate() {
                            fill_block(b, lba + i as u64, pass);
                        }
                        iolab_storage::pool::into_bytes(buf)
                    } else {
                        constant.clone()
                    };
                    volume.write(pick, lba, payload, bs).await.map(|_| None)
                } else {
                    volume.read(pick, lba, per_io as u32, bs).await.map(Some)
                };
                latency.record(t0.elapsed());
                match r {
                    Ok(None) => {
                        counters
                            .write_bytes
                            .fetch_add(w.block_bytes as u64, Relaxed);
                        counters.write_ios.fetch_add(1, Relaxed);
                    }
                    Ok(Some(data)) => {
                        counters.read_bytes.fetch_add(data.len() as u64, Relaxed);
                        counters.read_ios.fetch_add(1, Relaxed);
                        if w.verify {
                            for (i, b) in data.chunks(bs as usize).enumerate() {
                                if !check_block(b, lba + i as u64) {
                                    counters.mismatches.fetch_add(1, Relaxed);
                                    let mut f = counters
                                        .first_mismatch
                                        .lock()
                                        .unwrap_or_else(|e| e.into_inner());
                                    if f.is_none() {
                                        *f = Some(lba + i as u64);
                                    }
                                    break;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        counters.errors.fetch_add(1, Relaxed);
                        let mut f = counters
                            .first_error
                            .lock()
                            .unwrap_or_else(|e| e.into_inner());
                        if f.is_none() {
                            *f = Some(e.to_string());
                        }
                        // A dead session ends this worker; others carry on.
                        if counters.errors.load(Relaxed) > 16 {
                            stop.store(true, Relaxed);
                            break;
                        }
                    }
                }
            }
        };
        handles.push(match place {
            Some(rt) => rt.spawn(worker),
            None => tokio::spawn(worker),
        });
    }
    let mut beat = tokio::time::interval(heartbeat.max(Duration::from_millis(100)));
    beat.tick().await;
    let end = started + w.duration;
    loop {
        tokio::select! {
            _ = beat.tick() => {
                tick(Progress {
                    elapsed: started.elapsed(),
                    read_bytes: counters.read_bytes.load(Relaxed),
                    read_ios: counters.read_ios.load(Relaxed),
                    write_bytes: counters.write_bytes.load(Relaxed),
                    write_ios: counters.write_ios.load(Relaxed),
                });
            }
            _ = tokio::time::sleep_until(end.into()) => break,
        }
        if stop.load(Relaxed) {
            break;
        }
    }
    stop.store(true, Relaxed);
    for h in handles {
        let _ = h.await;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Report {
        seconds,
        read: Totals {
            bytes: counters.read_bytes.load(Relaxed),
            transfers: counters.read_ios.load(Relaxed),
        },
        write: Totals {
            bytes: counters.write_bytes.load(Relaxed),
            transfers: counters.write_ios.load(Relaxed),
        },
        latency: latency.snapshot(),
        errors: counters.errors.load(Relaxed),
        first_error: counters
            .first_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone(),
        mismatches: counters.mismatches.load(Relaxed),
        first_mismatch_lba: *counters
            .first_mismatch
            .lock()
            .unwrap_or_else(|e| e.into_inner()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn self_checking_blocks_detect_corruption_and_misplacement() {
        let mut b = vec![0u8; 512];
        fill_block(&mut b, 77, 5);
        assert!(check_block(&b, 77));
        assert!(!check_block(&b, 78), "a block at the wrong LBA");
        b[100] ^= 1;
        assert!(!check_block(&b, 77), "a flipped bit");
        assert!(!check_block(&[0u8; 512], 0), "an unwritten block");
    }

    /// How many I/Os each of `paths` paths has in flight when every worker
    /// is at its `nth` I/O (`nth[w]` for worker w).
    fn load(threads: usize, paths: usize, nth: impl Fn(usize) -> u64) -> Vec<usize> {
        let mut per = vec![0; paths];
        for w in 0..threads {
            per[path_for(w, threads, nth(w)) % paths] += 1;
        }
        per
    }

    #[test]
    fn workers_are_dealt_evenly_over_the_paths_at_every_step() {
        // 64 workers over 16 sessions: 4 each, whatever I/O each worker is at.
        for skew in [0u64, 1, 7, 1000] {
            let per = load(64, 16, |w| (w as u64 * skew) % 13);
            assert_eq!(per, vec![4; 16], "skew {skew}");
        }
        // 256 workers over 256 sessions: one each.
        assert_eq!(load(256, 256, |w| w as u64), vec![1; 256]);
        // As many workers as paths, a multiple: each worker keeps its path.
        for nth in 0..5 {
            assert_eq!(path_for(3, 64, nth) % 16, 3);
        }
    }

    #[test]
    fn fewer_workers_than_paths_still_visit_every_path() {
        // One worker over 4 sessions goes round them all.
        let seen: Vec<usize> = (0..8).map(|n| path_for(0, 1, n) % 4).collect();
        assert_eq!(seen, [0, 1, 2, 3, 0, 1, 2, 3]);
        // 4 workers over 8 sessions: every session is used, 2 steps apart.
        let mut used = [false; 8];
        for w in 0..4 {
            for n in 0..2 {
                used[path_for(w, 4, n) % 8] = true;
            }
        }
        assert!(used.iter().all(|&u| u), "{used:?}");
    }

    /// Records which thread served each path.
    struct Paths(std::sync::Mutex<Vec<(usize, String)>>);

    impl Volume for Paths {
        async fn capacity(&self) -> Result<(u64, u32), LabError> {
            Ok((1 << 20, 512))
        }
        async fn read(&self, pick: usize, _: u64, blocks: u32, bs: u32) -> Result<Bytes, LabError> {
            let thread = std::thread::current().name().unwrap_or("").to_owned();
            self.0.lock().unwrap().push((pick % 4, thread));
            tokio::task::yield_now().await;
            Ok(Bytes::from(vec![0; (blocks * bs) as usize]))
        }
        async fn write(&self, _: usize, _: u64, _: Bytes, _: u32) -> Result<(), LabError> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn every_worker_runs_on_the_shard_of_its_session() {
        let shards = Shards::start(2).unwrap();
        let paths = Arc::new(Paths(Default::default()));
        let w = Workload {
            mode: Mode::Read,
            block_bytes: 4096,
            threads: 8,
            duration: Duration::from_millis(100),
            pattern: Pattern::Random,
            verify: false,
            range_bytes: 0,
        };
        let place = placement(Some(&shards), w.threads, 4);
        let r = run_placed(paths.clone(), w, Duration::from_secs(1), |_| {}, place)
            .await
            .unwrap();
        assert!(r.read.transfers > 0);
        // 8 workers over 4 sessions (session i on shard i mod 2): every I/O
        // of a session ran on that session's shard's thread.
        let seen = paths.0.lock().unwrap();
        assert!(!seen.is_empty());
        for (path, thread) in seen.iter() {
            assert_eq!(thread, &format!("iolab-load-{}", path % 2), "path {path}");
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_is_written_and_read_back_verified_with_o_direct() {
        // /var/tmp: O_DIRECT needs a real file system (tmpfs refuses it).
        let path = std::path::PathBuf::from(format!(
            "/var/tmp/iolab-device-test-{}.img",
            std::process::id()
        ));
        std::fs::File::create(&path)
            .and_then(|f| f.set_len(4 << 20))
            .unwrap();
        let dev = Arc::new(Device::open(&path).unwrap());
        let mut w = Workload {
            mode: Mode::Write,
            block_bytes: 65536,
            threads: 4,
            duration: Duration::from_millis(200),
            pattern: Pattern::Seq,
            verify: true,
            range_bytes: 0,
        };
        let wrote = run_on(dev.clone(), w.clone(), Duration::from_millis(100), |_| {})
            .await
            .unwrap();
        // A verified write covers the whole range at least once.
        assert!(wrote.write.bytes >= 4 << 20, "{wrote:?}");
        w.mode = Mode::Read;
        let read = run_on(dev.clone(), w.clone(), Duration::from_millis(100), |_| {})
            .await
            .unwrap();
        assert!(read.passed() && read.read.bytes > 0, "{read:?}");
        // A block changed behind its back is found.
        {
            use std::os::unix::fs::FileExt;
            let f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
            f.write_at(b"garbage", 3 * 65536 + 100).unwrap();
        }
        let bad = run_on(dev, w, Duration::from_millis(100), |_| {})
            .await
            .unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(bad.mismatches > 0, "{bad:?}");
        assert_eq!(bad.first_mismatch_lba, Some(3 * 128));
    }
}

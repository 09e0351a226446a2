//! Backstores, modelled on LIO's: RAMDISK, FILEIO and BLOCK.

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::error::StorageError;

/// Which kind of backstore, as targetcli names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackstoreKind {
    Ramdisk,
    Fileio,
    Block,
}

impl std::fmt::Display for BackstoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BackstoreKind::Ramdisk => "ramdisk",
            BackstoreKind::Fileio => "fileio",
            BackstoreKind::Block => "block",
        })
    }
}

/// An access a transport asks [`Backstore::would_block`] about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoKind {
    Read,
    /// `durable`: with FUA, or while the write cache is off.
    Write {
        durable: bool,
    },
    Flush,
}

/// An open file a transport may read, write and flush itself (io_uring)
/// instead of through [`Backstore::read_at`] and friends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncFile {
    pub fd: RawFd,
    /// The buffer alignment its transfers need (O_DIRECT), or 1.
    pub align: usize,
    /// Whether writes go through the engine too. False for a regular file:
    /// a file system completes an asynchronous O_DIRECT write through a
    /// workqueue, which measured slower than blocking writes from workers
    /// (ext4 on a virtio disk, 4 KiB random writes at 64 outstanding: 60-76K
    /// IOPS through io_uring against 82-93K from 16 workers, which also
    /// beat fio's io_uring and libaio at the same depth); a block device
    /// completes them in place.
    pub writes: bool,
}

/// Byte-addressed storage behind one logical unit.
///
/// Offsets and lengths are in bytes and already range-checked by the caller;
/// implementations still refuse out-of-range access with an error.
pub trait Backstore: Send + Sync {
    fn kind(&self) -> BackstoreKind;
    /// Human-readable origin: `ramdisk`, or the file or device path.
    fn describe(&self) -> String;
    fn size_bytes(&self) -> u64;
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), StorageError>;
    /// `len` bytes at `offset` as views of the backstore's own memory, in
    /// order, without copying (RAMDISK); `None` when the backstore cannot
    /// (the caller then uses [`Backstore::read_at`]). The views stay valid
    /// and unchanged after later writes.
    fn read_shared(&self, _offset: u64, _len: usize) -> Option<Result<Vec<Bytes>, StorageError>> {
        None
    }
    /// Writes `buf` at `offset`; with `fua` the data is on stable storage on return.
    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> Result<(), StorageError>;
    /// Makes every completed write durable (SYNCHRONIZE CACHE).
    fn flush(&self) -> Result<(), StorageError>;
    /// Whether this access may wait for a device (a disk read, O_DIRECT, a
    /// flush) rather than only copy memory: a transport then runs it on an
    /// I/O worker instead of its connection's thread. A guess, never a
    /// promise: a `false` access may still block briefly.
    fn would_block(&self, _offset: u64, _len: usize, _access: IoKind) -> bool {
        false
    }
    /// The file behind this backstore for an asynchronous engine: its
    /// reads and writes are plain `pread`/`pwrite` at the same offsets
    /// (a durable write is `RWF_DSYNC`, a flush `fdatasync`). The fd stays
    /// open as long as the backstore. None when only the calls will do.
    fn async_file(&self) -> Option<AsyncFile> {
        None
    }
    /// Deallocates a range; it then reads back as zeros.
    fn unmap(&self, offset: u64, len: u64) -> Result<(), StorageError>;
    /// Whether the byte at `offset` is backed by allocated storage.
    fn is_mapped(&self, offset: u64) -> bool {
        self.extent(offset).0
    }
    /// The allocation run containing `offset`: (mapped, end offset of the run).
    /// GET LBA STATUS reports these runs.
    fn extent(&self, _offset: u64) -> (bool, u64) {
        (true, self.size_bytes())
    }
    /// A block device's (logical, physical) block sizes, which the LU then
    /// reports (READ CAPACITY, Block Limits VPD); None for RAMDISK and files.
    fn device_block_sizes(&self) -> Option<(u32, u32)> {
        None
    }
    /// Bytes of memory this backstore holds (RAMDISK: allocated chunks).
    fn resident_bytes(&self) -> u64 {
        0
    }
}

fn check_range(offset: u64, len: usize, size: u64) -> Result<(), StorageError> {
    let len = len as u64;
    match offset.checked_add(len) {
        Some(end) if end <= size => Ok(()),
        _ => Err(StorageError::OutOfRange { offset, len, size }),
    }
}

/// Chunk granularity of the RAM disk: allocation on first write and locking
/// happen per chunk, so I/O to different chunks never contends.
pub const RAM_CHUNK: usize = 1 << 20;

/// Memory-backed storage, allocated on first write; unwritten ranges read as zeros.
///
/// Chunks are shared with readers: a read hands out views of the chunk
/// (no copy), and a write to a chunk that a reader still holds (a Data-In
/// still being sent) copies the chunk first, so every view keeps the data
/// it was read with.
pub struct RamDisk {
    size: u64,
    chunks: Vec<RwLock<Option<Arc<Vec<u8>>>>>,
}

/// What unwritten chunks read as.
static ZEROS: [u8; RAM_CHUNK] = [0; RAM_CHUNK];

/// A view of part of a RAM disk chunk, kept alive by its `Bytes`.
struct ChunkView {
    chunk: Arc<Vec<u8>>,
    start: usize,
    end: usize,
}

impl AsRef<[u8]> for ChunkView {
    fn as_ref(&self) -> &[u8] {
        &self.chunk[self.start..self.end]
    }
}

impl RamDisk {
    pub fn new(size: u64) -> Result<Self, StorageError> {
        if size == 0 || !size.is_multiple_of(512) {
            return Err(StorageError::BadSize(size, 512));
        }
        let n = size.div_ceil(RAM_CHUNK as u64) as usize;
        let chunks = (0..n).map(|_| RwLock::new(None)).collect();
        Ok(RamDisk { size, chunks })
    }

    fn chunk_len(&self, idx: usize) -> usize {
        let start = idx as u64 * RAM_CHUNK as u64;
        (self.size - start).min(RAM_CHUNK as u64) as usize
    }

    /// Splits `[offset, offset+len)` into (chunk index, offset in chunk, position in buffer, length).
    fn pieces(offset: u64, len: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
        let mut pos = 0usize;
        std::iter::from_fn(move || {
            if pos >= len {
                return None;
            }
            let abs = offset + pos as u64;
            let idx = (abs / RAM_CHUNK as u64) as usize;
            let within = (abs % RAM_CHUNK as u64) as usize;
            let n = (RAM_CHUNK - within).min(len - pos);
            let item = (idx, within, pos, n);
            pos += n;
            Some(item)
        })
    }
}

impl Backstore for RamDisk {
    fn kind(&self) -> BackstoreKind {
        BackstoreKind::Ramdisk
    }
    fn describe(&self) -> String {
        "ramdisk".into()
    }
    fn size_bytes(&self) -> u64 {
        self.size
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), StorageError> {
        check_range(offset, buf.len(), self.size)?;
        for (idx, within, pos, n) in Self::pieces(offset, buf.len()) {
            let guard = self.chunks[idx].read().unwrap_or_else(|e| e.into_inner());
            match guard.as_deref() {
                Some(chunk) => buf[pos..pos + n].copy_from_slice(&chunk[within..within + n]),
                None => buf[pos..pos + n].fill(0),
            }
        }
        Ok(())
    }
    fn read_shared(&self, offset: u64, len: usize) -> Option<Result<Vec<Bytes>, StorageError>> {
        if let Err(e) = check_range(offset, len, self.size) {
            return Some(Err(e));
        }
        let views = Self::pieces(offset, len)
            .map(|(idx, within, _pos, n)| {
                let guard = self.chunks[idx].read().unwrap_or_else(|e| e.into_inner());
                match guard.as_ref() {
                    Some(chunk) => Bytes::from_owner(ChunkView {
                        chunk: chunk.clone(),
                        start: within,
                        end: within + n,
                    }),
                    None => Bytes::from_static(&ZEROS[..n]),
                }
            })
            .collect();
        Some(Ok(views))
    }
    fn write_at(&self, buf: &[u8], offset: u64, _fua: bool) -> Result<(), StorageError> {
        check_range(offset, buf.len(), self.size)?;
        for (idx, within, pos, n) in Self::pieces(offset, buf.len()) {
            let mut guard = self.chunks[idx].write().unwrap_or_else(|e| e.into_inner());
            let len = self.chunk_len(idx);
            let chunk = guard.get_or_insert_with(|| Arc::new(vec![0u8; len]));
            // Copies the chunk first only while a reader's view holds it.
            Arc::make_mut(chunk)[within..within + n].copy_from_slice(&buf[pos..pos + n]);
        }
        Ok(())
    }
    fn flush(&self) -> Result<(), StorageError> {
        Ok(())
    }
    fn unmap(&self, offset: u64, len: u64) -> Result<(), StorageError> {
        check_range(offset, len as usize, self.size)?;
        for (idx, within, _pos, n) in Self::pieces(offset, len as usize) {
            let mut guard = self.chunks[idx].write().unwrap_or_else(|e| e.into_inner());
            if within == 0 && n == self.chunk_len(idx) {
                *guard = None;
            } else if let Some(chunk) = guard.as_mut() {
                Arc::make_mut(chunk)[within..within + n].fill(0);
            }
        }
        Ok(())
    }
    fn extent(&self, offset: u64) -> (bool, u64) {
        let allocated = |i: usize| {
            self.chunks[i]
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .is_some()
        };
        let first = (offset / RAM_CHUNK as u64) as usize;
        if first >= self.chunks.len() {
            return (false, self.size);
        }
        let state = allocated(first);
        let end = (first + 1..self.chunks.len())
            .find(|&i| allocated(i) != state)
            .unwrap_or(self.chunks.len());
        (state, (end as u64 * RAM_CHUNK as u64).min(self.size))
    }

    fn resident_bytes(&self) -> u64 {
        (0..self.chunks.len())
            .filter(|&i| {
                self.chunks[i]
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_some()
            })
            .map(|i| self.chunk_len(i) as u64)
            .sum()
    }
}

/// A regular file, buffered or with `O_DIRECT`.
pub struct FileIo {
    path: PathBuf,
    file: File,
    size: u64,
    direct: bool,
    /// Buffered reads in a row whose probe found the page cached.
    cached_streak: AtomicU32,
    /// Writes go to an asynchronous engine too: a block device opened as a
    /// file (LIO allows it), or asked for ([`FileIo::with_async_writes`]).
    async_writes: bool,
}

/// After this many cached reads in a row, only every [`PROBE_EVERY`]th
/// buffered read is probed: a file the page cache holds costs a probe
/// syscall per 16 reads instead of per read (measured: a probe per 4 KiB
/// read took 12% of cached random-read IOPS).
const HOT_STREAK: u32 = 64;
const PROBE_EVERY: u32 = 16;

impl FileIo {
    /// Opens (creating when `size` is given and the file is missing) a backing file.
    /// A given size grows a shorter file; without one the file's length is used.
    /// A block device may back a FILEIO LUN too (as in LIO): its size is the
    /// device's, and a given size may only be smaller.
    pub fn open(path: &Path, size: Option<u64>, direct: bool) -> Result<Self, StorageError> {
        let io = |source| StorageError::Io {
            path: path.to_owned(),
            cause: source,
        };
        let mut opts = OpenOptions::new();
        opts.read(true).write(true).create(size.is_some());
        if direct {
            opts.custom_flags(libc::O_DIRECT);
        }
        let file = opts.open(path).map_err(io)?;
        let meta = file.metadata().map_err(io)?;
        let device = meta.file_type().is_block_device();
        let size = if device {
            // A block device's metadata length is 0: seek to the end for its size.
            use std::io::{Seek, SeekFrom};
            let dev = (&file).seek(SeekFrom::End(0)).map_err(io)?;
            match size {
                Some(s) if s > dev => {
                    return Err(StorageError::LargerThanDevice {
                        path: path.to_owned(),
                        wanted: s,
                        size: dev,
                    });
                }
                Some(s) => s,
                None => dev,
            }
        } else {
            match size {
                Some(s) => {
                    if meta.len() < s {
                        file.set_len(s).map_err(io)?;
                    }
                    s
                }
                None => meta.len(),
            }
        };
        let size = size - size % 512;
        if size == 0 {
            return Err(StorageError::BadSize(size, 512));
        }
        Ok(FileIo {
            path: path.to_owned(),
            file,
            size,
            direct,
            cached_streak: AtomicU32::new(0),
            async_writes: device,
        })
    }

    /// Hands its writes to an asynchronous engine as well (see
    /// [`AsyncFile::writes`]; a block device does so already).
    pub fn with_async_writes(mut self) -> Self {
        self.async_writes = true;
        self
    }

    fn io_err(&self, source: std::io::Error) -> StorageError {
        StorageError::Io {
            path: self.path.clone(),
            cause: source,
        }
    }
}

/// `O_DIRECT` needs buffers aligned to the logical block size; bounce through
/// one. Each thread keeps its bounce buffer (up to [`KEEP_BOUNCE`] bytes) for
/// the next call instead of allocating and zeroing one per I/O.
fn with_aligned<R>(len: usize, f: impl FnOnce(&mut [u8]) -> R) -> R {
    const ALIGN: usize = DIRECT_ALIGN;
    thread_local! {
        static BOUNCE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    if len > KEEP_BOUNCE {
        let mut raw = vec![0u8; len + ALIGN];
        let skip = raw.as_ptr().align_offset(ALIGN);
        return f(&mut raw[skip..skip + len]);
    }
    BOUNCE.with(|cell| {
        let mut raw = cell.borrow_mut();
        if raw.len() < len + ALIGN {
            raw.resize(len + ALIGN, 0);
        }
        let skip = raw.as_ptr().align_offset(ALIGN);
        f(&mut raw[skip..skip + len])
    })
}

/// The alignment of O_DIRECT buffers: a page, enough for any logical block.
const DIRECT_ALIGN: usize = 4096;

/// The largest bounce buffer a thread keeps between O_DIRECT calls.
const KEEP_BOUNCE: usize = 1 << 20;

impl Backstore for FileIo {
    fn kind(&self) -> BackstoreKind {
        BackstoreKind::Fileio
    }
    fn describe(&self) -> String {
        format!(
            "{}{}",
            self.path.display(),
            if self.direct { " (O_DIRECT)" } else { "" }
        )
    }
    fn size_bytes(&self) -> u64 {
        self.size
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), StorageError> {
        check_range(offset, buf.len(), self.size)?;
        if self.direct {
            with_aligned(buf.len(), |b| {
                self.file
                    .read_exact_at(b, offset)
                    .map_err(|e| self.io_err(e))?;
                buf.copy_from_slice(b);
                Ok(())
            })
        } else {
            self.file
                .read_exact_at(buf, offset)
                .map_err(|e| self.io_err(e))
        }
    }
    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> Result<(), StorageError> {
        check_range(offset, buf.len(), self.size)?;
        if self.direct {
            with_aligned(buf.len(), |b| {
                b.copy_from_slice(buf);
                self.file
                    .write_all_at(b, offset)
                    .map_err(|e| self.io_err(e))
            })?;
        } else {
            self.file
                .write_all_at(buf, offset)
                .map_err(|e| self.io_err(e))?;
        }
        if fua {
            self.file.sync_data().map_err(|e| self.io_err(e))?;
        }
        Ok(())
    }
    fn flush(&self) -> Result<(), StorageError> {
        self.file.sync_data().map_err(|e| self.io_err(e))
    }
    /// O_DIRECT and flushes always wait for the device; a buffered write
    /// copies into the page cache; a buffered read waits unless its first
    /// and last byte are cached (asked with `RWF_NOWAIT`, one byte each:
    /// sequential streams are read ahead, a 4 KiB read is one page), and
    /// once the file has been found cached [`HOT_STREAK`] times in a row,
    /// only every [`PROBE_EVERY`]th read is asked about.
    fn would_block(&self, offset: u64, len: usize, access: IoKind) -> bool {
        if self.direct || access == IoKind::Flush {
            return true;
        }
        match access {
            IoKind::Write { durable } => durable,
            _ => {
                let streak = self.cached_streak.load(Relaxed);
                if streak >= HOT_STREAK && !streak.is_multiple_of(PROBE_EVERY) {
                    self.cached_streak
                        .store(streak.wrapping_add(1).max(HOT_STREAK), Relaxed);
                    return false;
                }
                let last = offset + (len.max(1) as u64 - 1);
                let hit = cached(&self.file, offset)
                    && (last / 4096 == offset / 4096 || cached(&self.file, last));
                let next = if hit {
                    streak.wrapping_add(1).max(1)
                } else {
                    0
                };
                self.cached_streak.store(next, Relaxed);
                !hit
            }
        }
    }
    fn async_file(&self) -> Option<AsyncFile> {
        Some(AsyncFile {
            fd: self.file.as_raw_fd(),
            align: if self.direct { DIRECT_ALIGN } else { 1 },
            writes: self.async_writes,
        })
    }
    fn unmap(&self, offset: u64, len: u64) -> Result<(), StorageError> {
        check_range(offset, len as usize, self.size)?;
        punch_hole(&self.file, offset, len).or_else(|_| zero_fill(self, offset, len))
    }
    fn extent(&self, offset: u64) -> (bool, u64) {
        let seek = |whence| {
            nix::unistd::lseek(&self.file, offset as libc::off_t, whence)
                .ok()
                .map(|r| r as u64)
        };
        use nix::unistd::Whence;
        match seek(Whence::SeekData) {
            // Data starts here: mapped until the next hole.
            Some(d) if d == offset => (
                true,
                seek(Whence::SeekHole).unwrap_or(self.size).min(self.size),
            ),
            // A hole up to the next data (or to the end).
            Some(d) => (false, d.min(self.size)),
            None => (false, self.size),
        }
    }
}

/// Whether the byte at `offset` of a buffered file is in the page cache:
/// a one-byte `preadv2(RWF_NOWAIT)`, which fails with EAGAIN instead of
/// reading from the device.
fn cached(file: &File, offset: u64) -> bool {
    let mut byte = 0u8;
    let iov = libc::iovec {
        iov_base: (&raw mut byte).cast(),
        iov_len: 1,
    };
    // SAFETY: `iov` names one writable byte that lives across the call, the
    // count is 1, and the descriptor is the open file's own.
    let n = unsafe {
        libc::preadv2(
            file.as_raw_fd(),
            &iov,
            1,
            offset as libc::off_t,
            libc::RWF_NOWAIT,
        )
    };
    // 0: at or past the end of the file (nothing to wait for).
    n >= 0
}

fn punch_hole(file: &File, offset: u64, len: u64) -> Result<(), std::io::Error> {
    use nix::fcntl::{FallocateFlags, fallocate};
    let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
    Ok(fallocate(
        file,
        flags,
        offset as libc::off_t,
        len as libc::off_t,
    )?)
}

fn zero_fill(store: &dyn Backstore, offset: u64, len: u64) -> Result<(), StorageError> {
    let zeros = vec![0u8; (len.min(1 << 20)) as usize];
    let mut done = 0u64;
    while done < len {
        let n = (len - done).min(zeros.len() as u64) as usize;
        store.write_at(&zeros[..n], offset + done, false)?;
        done += n as u64;
    }
    Ok(())
}

/// A block device, opened like a file; its size comes from the device.
pub struct BlockDev {
    inner: FileIo,
    logical: u32,
    physical: u32,
}

/// Block-device ioctls (linux/fs.h): the logical and physical block sizes.
mod blkdev {
    nix::ioctl_read_bad!(
        logical_block_size,
        nix::request_code_none!(0x12, 104),
        libc::c_int
    );
    nix::ioctl_read_bad!(
        physical_block_size,
        nix::request_code_none!(0x12, 123),
        libc::c_uint
    );
}

impl BlockDev {
    pub fn open(path: &Path, direct: bool) -> Result<Self, StorageError> {
        let meta = std::fs::metadata(path).map_err(|source| StorageError::Io {
            path: path.to_owned(),
            cause: source,
        })?;
        if !meta.file_type().is_block_device() {
            return Err(StorageError::NotBlockDevice {
                path: path.to_owned(),
            });
        }
        let inner = FileIo::open(path, None, direct)?;
        use std::os::fd::AsRawFd;
        let fd = inner.file.as_raw_fd();
        let mut logical: libc::c_int = 512;
        let mut physical: libc::c_uint = 512;
        // SAFETY: both ioctls write one integer through the pointer given,
        // which points at a live local of the type the kernel writes; `fd`
        // is the open block device owned by `inner`.
        let sizes = unsafe {
            blkdev::logical_block_size(fd, &mut logical)
                .and_then(|_| blkdev::physical_block_size(fd, &mut physical))
        };
        if let Err(e) = sizes {
            return Err(StorageError::Io {
                path: path.to_owned(),
                cause: e.into(),
            });
        }
        let logical = logical.max(512) as u32;
        Ok(BlockDev {
            inner,
            logical,
            physical: physical.max(logical),
        })
    }
}

impl Backstore for BlockDev {
    fn kind(&self) -> BackstoreKind {
        BackstoreKind::Block
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn size_bytes(&self) -> u64 {
        self.inner.size
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> Result<(), StorageError> {
        self.inner.read_at(buf, offset)
    }
    fn write_at(&self, buf: &[u8], offset: u64, fua: bool) -> Result<(), StorageError> {
        self.inner.write_at(buf, offset, fua)
    }
    fn flush(&self) -> Result<(), StorageError> {
        self.inner.flush()
    }
    fn would_block(&self, offset: u64, len: usize, access: IoKind) -> bool {
        self.inner.would_block(offset, len, access)
    }
    fn async_file(&self) -> Option<AsyncFile> {
        self.inner.async_file()
    }
    /// fallocate(PUNCH_HOLE) on the device: the kernel has it zero the
    /// range with a write-zeroes command that may deallocate (a virtio disk
    /// with discard=unmap punches a hole in its image), so the range reads
    /// back as zeros as UNMAP with LBPRZ promises. (BLKDISCARD promises no
    /// zeros, BLKZEROOUT never deallocates.) Written out as zeros where the
    /// device has no such command.
    fn unmap(&self, offset: u64, len: u64) -> Result<(), StorageError> {
        check_range(offset, len as usize, self.inner.size)?;
        use nix::fcntl::{FallocateFlags, fallocate};
        let flags = FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
        match fallocate(&self.inner.file, flags, offset as i64, len as i64) {
            Ok(()) => Ok(()),
            Err(_) => zero_fill(self, offset, len),
        }
    }
    fn device_block_sizes(&self) -> Option<(u32, u32)> {
        Some((self.logical, self.physical))
    }
}

/// What a LUN is backed by, as written in configuration files and on the command line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BackstoreSpec {
    Ramdisk {
        size: u64,
    },
    Fileio {
        path: PathBuf,
        size: Option<u64>,
        #[serde(default)]
        direct: bool,
    },
    Block {
        path: PathBuf,
        #[serde(default)]
        direct: bool,
    },
}

/// Opens the backstore a spec describes.
pub fn open_backstore(spec: &BackstoreSpec) -> Result<Box<dyn Backstore>, StorageError> {
    Ok(match spec {
        BackstoreSpec::Ramdisk { size } => Box::new(RamDisk::new(*size)?),
        BackstoreSpec::Fileio { path, size, direct } => {
            Box::new(FileIo::open(path, *size, *direct)?)
        }
        BackstoreSpec::Block { path, direct } => Box::new(BlockDev::open(path, *direct)?),
    })
}

/// Parses sizes like `1G`, `256M`, `512k`, `4096` (binary multiples).
pub fn parse_size(text: &str) -> Result<u64, StorageError> {
    let t = text.trim();
    let bad = || StorageError::BadSizeText(text.to_owned());
    let (num, mult) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        None => (t, 1u64),
        Some((i, _)) => {
            let suffix = t[i..].trim_end_matches(['b', 'B']).trim_end_matches(['i']);
            let m = match suffix.to_ascii_lowercase().as_str() {
                "" => 1,
                "k" => 1 << 10,
                "m" => 1 << 20,
                "g" => 1 << 30,
                "t" => 1 << 40,
                _ => return Err(bad()),
            };
            (&t[..i], m)
        }
    };
    num.parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramdisk_reads_zero_until_written_and_spans_chunks() {
        let rd = RamDisk::new(4 * RAM_CHUNK as u64).unwrap();
        let mut buf = vec![1u8; 4096];
        rd.read_at(&mut buf, 0).unwrap();
        assert!(buf.iter().all(|&b| b == 0));
        assert_eq!(rd.resident_bytes(), 0);
        let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        let off = RAM_CHUNK as u64 - 4096;
        rd.write_at(&data, off, false).unwrap();
        let mut back = vec![0u8; 8192];
        rd.read_at(&mut back, off).unwrap();
        assert_eq!(back, data);
        assert_eq!(rd.resident_bytes(), 2 * RAM_CHUNK as u64);
        rd.unmap(0, RAM_CHUNK as u64).unwrap();
        assert!(!rd.is_mapped(0));
        assert!(rd.is_mapped(RAM_CHUNK as u64));
        assert!(rd.read_at(&mut back, 4 * RAM_CHUNK as u64 - 4096).is_err());
    }

    #[test]
    fn ramdisk_shared_reads_keep_their_data_after_later_writes() {
        let rd = RamDisk::new(4 * RAM_CHUNK as u64).unwrap();
        let old: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
        let off = RAM_CHUNK as u64 - 4096;
        rd.write_at(&old, off, false).unwrap();
        // Spans two chunks, and a third never written.
        let views = rd.read_shared(off, 8192 + RAM_CHUNK).unwrap().unwrap();
        assert_eq!(
            views.iter().map(Bytes::len).collect::<Vec<_>>(),
            [4096, RAM_CHUNK, 4096]
        );
        let joined: Vec<u8> = views.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(&joined[..8192], &old[..]);
        assert!(joined[8192..].iter().all(|&b| b == 0));
        // Writing over what a view shows copies the chunk: the view keeps the old bytes.
        rd.write_at(&[0xee; 8192], off, false).unwrap();
        rd.unmap(RAM_CHUNK as u64, RAM_CHUNK as u64).unwrap();
        let again: Vec<u8> = views.iter().flat_map(|b| b.iter().copied()).collect();
        assert_eq!(again, joined);
        let mut now = vec![0u8; 8192];
        rd.read_at(&mut now, off).unwrap();
        assert_eq!(&now[..4096], &[0xee; 4096][..]);
        assert_eq!(&now[4096..], &[0u8; 4096][..]);
        assert!(
            rd.read_shared(4 * RAM_CHUNK as u64 - 512, 1024)
                .unwrap()
                .is_err()
        );
        assert!(
            FileIo::open(
                &std::env::temp_dir().join("iolab-no-shared"),
                Some(4096),
                false
            )
            .map(|f| f.read_shared(0, 512).is_none())
            .unwrap_or(true)
        );
        let _ = std::fs::remove_file(std::env::temp_dir().join("iolab-no-shared"));
    }

    #[test]
    fn fileio_round_trip_and_size() {
        let dir = std::env::temp_dir().join(format!("iolab-fileio-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("lun.img");
        let f = FileIo::open(&path, Some(1 << 20), false).unwrap();
        assert_eq!(f.size_bytes(), 1 << 20);
        f.write_at(&[7u8; 512], 4096, true).unwrap();
        let mut b = [0u8; 512];
        f.read_at(&mut b, 4096).unwrap();
        assert_eq!(b, [7u8; 512]);
        f.unmap(4096, 512).unwrap();
        f.read_at(&mut b, 4096).unwrap();
        assert_eq!(b, [0u8; 512]);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_file_says_which_accesses_wait_for_its_disk() {
        // On a disk file system (O_DIRECT and the page cache are what is tested).
        let dir = Path::new("/var/tmp").join(format!("iolab-wouldblock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("lun.img");
        let f = FileIo::open(&path, Some(4 << 20), false).unwrap();
        f.write_at(&vec![7u8; 4 << 20], 0, false).unwrap();
        // Just written: in the page cache.
        assert!(!f.would_block(0, 4096, IoKind::Read));
        assert!(!f.would_block(4096, 256 << 10, IoKind::Read));
        assert!(!f.would_block(0, 4096, IoKind::Write { durable: false }));
        assert!(f.would_block(0, 4096, IoKind::Write { durable: true }));
        assert!(f.would_block(0, 0, IoKind::Flush));
        // Written out and dropped from the cache: a read waits for the disk.
        f.flush().unwrap();
        nix::fcntl::posix_fadvise(
            &f.file,
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_DONTNEED,
        )
        .unwrap();
        assert!(f.would_block(8192, 4096, IoKind::Read));
        let mut b = vec![0u8; 4096];
        f.read_at(&mut b, 8192).unwrap();
        assert!(!f.would_block(8192, 4096, IoKind::Read));
        // A range whose first page is cached and last is not (beyond any read-ahead).
        assert!(f.would_block(8192, 3 << 20, IoKind::Read));
        // O_DIRECT: every access waits for the disk.
        let d = FileIo::open(&path, None, true).unwrap();
        assert!(d.would_block(0, 4096, IoKind::Read));
        assert!(d.would_block(0, 4096, IoKind::Write { durable: false }));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_cached_file_is_probed_once_in_a_while() {
        let dir = std::env::temp_dir().join(format!("iolab-probe-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let f = FileIo::open(&dir.join("lun.img"), Some(1 << 20), false).unwrap();
        f.write_at(&[1u8; 1 << 20], 0, false).unwrap();
        for _ in 0..HOT_STREAK + 3 * PROBE_EVERY {
            assert!(!f.would_block(0, 4096, IoKind::Read));
        }
        assert!(f.cached_streak.load(Relaxed) >= HOT_STREAK + 3 * PROBE_EVERY);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1G").unwrap(), 1 << 30);
        assert_eq!(parse_size("256MiB").unwrap(), 256 << 20);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12x").is_err());
        assert!(parse_size("").is_err());
    }
}

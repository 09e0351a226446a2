//! Block I/O that a transport transfers itself (io_uring): the checks a
//! READ, WRITE (6/10/12/16) or SYNCHRONIZE CACHE starts with and the answer
//! it ends with, the transfer between them left to the caller. The checks
//! and answers are those of [`LogicalUnit::execute`], which runs the same
//! commands with blocking calls.

use std::io;

use super::{
    LogicalUnit, Nexus, ScsiResponse, Sense, arrived_blocks, cdb_len, reads_blocks, rw_extent,
    sync_extent, syncs_cache,
};
use crate::backstore::AsyncFile;
use crate::pool::IoBuf;

/// What moves between the medium and the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// Medium to buffer (`pread`).
    Read,
    /// Buffer to medium (`pwrite`); `durable`: on stable storage when done
    /// (`RWF_DSYNC`), for FUA or while the write cache is off.
    Write { durable: bool },
    /// Every completed write to stable storage (`fdatasync`).
    Flush,
}

/// A command that passed its checks: the caller moves `len` bytes at
/// `offset` of `file` through the buffer handed out with it, then gives the
/// outcome to [`LogicalUnit::finish_io`].
#[derive(Debug, Clone, Copy)]
pub struct BlockIo {
    pub transfer: Transfer,
    pub file: AsyncFile,
    pub offset: u64,
    pub len: usize,
    opcode: u8,
    data_out: usize,
}

/// What [`LogicalUnit::prepare_io`] made of a command.
pub enum Prepared {
    /// Answered without a transfer: a check condition, a reservation
    /// conflict, nothing to move.
    Done(ScsiResponse),
    /// The transfer to run, with its buffer: a write's data, or room for a
    /// read (aligned as the file needs).
    Io(BlockIo, IoBuf),
}

impl LogicalUnit {
    /// Checks a READ, WRITE or SYNCHRONIZE CACHE as [`LogicalUnit::execute`]
    /// would (unit attention, reservations, range, transfer length, write
    /// protection) and, when it passes, hands out the transfer instead of
    /// making it. None for any other command, when the backstore has no
    /// file for an asynchronous engine, and for writes it does not take
    /// ([`AsyncFile::writes`]): run those with `execute`.
    pub fn prepare_io(&self, nexus: &Nexus, cdb: &[u8], data_out: &[u8]) -> Option<Prepared> {
        let file = self.store.async_file()?;
        let &opcode = cdb.first()?;
        if cdb.len() < cdb_len(opcode) {
            return None;
        }
        let extent = rw_extent(cdb);
        if extent.is_none() && !syncs_cache(cdb) {
            return None;
        }
        let read = reads_blocks(opcode) == Some(true);
        if extent.is_some() && !read && !file.writes {
            // A write the engine does not take: `execute` runs it, checks and all.
            return None;
        }
        let done = |r: ScsiResponse| {
            self.stats.count(opcode, data_out.len(), &r);
            Some(Prepared::Done(r))
        };
        if let Some(r) = self.admission(nexus, opcode) {
            return done(r);
        }
        let refuse = |s: Sense| done(ScsiResponse::check(&s, self.descriptor_sense()));
        let bs = self.block_size() as u64;
        let (transfer, offset, len) = match extent {
            None => {
                let (lba, n) = sync_extent(cdb);
                if let Err(s) = self.check_range(lba, n) {
                    return refuse(s);
                }
                (Transfer::Flush, 0, 0)
            }
            Some((lba, n, flags)) => {
                if let Err(s) = self.io_prologue(lba, n, flags, 7, !read) {
                    return refuse(s);
                }
                let len = if read {
                    (n * bs) as usize
                } else {
                    arrived_blocks(n, bs, data_out.len())
                };
                if len == 0 {
                    return done(ScsiResponse::good(Vec::new()));
                }
                let transfer = if read {
                    Transfer::Read
                } else {
                    Transfer::Write {
                        durable: self.fua(flags),
                    }
                };
                (transfer, lba * bs, len)
            }
        };
        let mut buf = IoBuf::aligned(len, file.align);
        if let Transfer::Write { .. } = transfer {
            buf.as_mut_slice().copy_from_slice(&data_out[..len]);
        }
        let io = BlockIo {
            transfer,
            file,
            offset,
            len,
            opcode,
            data_out: data_out.len(),
        };
        Some(Prepared::Io(io, buf))
    }

    /// The answer to a transfer handed out by [`LogicalUnit::prepare_io`]:
    /// `moved` is what the engine reported (bytes, or the error). A short
    /// transfer is completed here with the blocking calls; an error is a
    /// MEDIUM ERROR as from `execute`.
    pub fn finish_io(
        &self,
        io: &BlockIo,
        moved: io::Result<usize>,
        mut buf: IoBuf,
    ) -> ScsiResponse {
        let sense = |e: &dyn std::fmt::Display, read: bool| {
            tracing::warn!(offset = io.offset, len = io.len, error = %e, "block I/O failed");
            let s = if read {
                Self::medium_error_read(e)
            } else {
                Self::medium_error_write(e)
            };
            ScsiResponse::check(&s, self.descriptor_sense())
        };
        let r = match (io.transfer, moved) {
            (Transfer::Read, Err(e)) => {
                buf.give();
                sense(&e, true)
            }
            (_, Err(e)) => {
                buf.give();
                sense(&e, false)
            }
            (Transfer::Flush, Ok(_)) => {
                buf.give();
                ScsiResponse::good(Vec::new())
            }
            (Transfer::Read, Ok(n)) => {
                let n = n.min(io.len);
                let rest = &mut buf.as_mut_slice()[n..];
                match (n < io.len)
                    .then(|| self.store.read_at(rest, io.offset + n as u64))
                    .transpose()
                {
                    Ok(_) => ScsiResponse::good_shared(vec![buf.into_bytes(io.len)]),
                    Err(e) => {
                        buf.give();
                        sense(&e, true)
                    }
                }
            }
            (Transfer::Write { durable }, Ok(n)) => {
                let n = n.min(io.len);
                let rest = &buf.as_ref()[n..];
                let r = (n < io.len)
                    .then(|| self.store.write_at(rest, io.offset + n as u64, durable))
                    .transpose();
                buf.give();
                match r {
                    Ok(_) => ScsiResponse::good(Vec::new()),
                    Err(e) => sense(&e, false),
                }
            }
        };
        self.stats.count(io.opcode, io.data_out, &r);
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backstore::FileIo;
    use crate::scsi::{LuConfig, ScsiStatus, opcode::op};
    use std::os::unix::fs::FileExt;
    use std::sync::Arc;

    fn nexus() -> Nexus {
        Nexus::new("iqn.test:init", 1)
    }

    /// A scratch directory, removed when dropped.
    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn lu(direct: bool) -> (Dir, Arc<LogicalUnit>) {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("iolab-blockio-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = FileIo::open(&dir.join("lun"), Some(1 << 20), direct).unwrap();
        let lu =
            LogicalUnit::new(Box::new(store.with_async_writes()), LuConfig::default()).unwrap();
        (Dir(dir), Arc::new(lu))
    }

    fn read10(lba: u32, n: u16) -> Vec<u8> {
        let mut c = vec![op::READ_10, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        c[2..6].copy_from_slice(&lba.to_be_bytes());
        c[7..9].copy_from_slice(&n.to_be_bytes());
        c
    }

    fn write10(lba: u32, n: u16, flags: u8) -> Vec<u8> {
        let mut c = read10(lba, n);
        c[0] = op::WRITE_10;
        c[1] = flags;
        c
    }

    /// Runs a handed-out transfer with plain pread/pwrite, as an engine would.
    fn transfer(io: &BlockIo, buf: &mut IoBuf, short: usize) -> io::Result<usize> {
        let f = std::mem::ManuallyDrop::new(unsafe_file(io.file.fd));
        let len = io.len.saturating_sub(short);
        match io.transfer {
            Transfer::Read => f.read_at(&mut buf.as_mut_slice()[..len], io.offset),
            Transfer::Write { .. } => f.write_at(&buf.as_ref()[..len], io.offset),
            Transfer::Flush => f.sync_data().map(|_| 0),
        }
    }

    fn unsafe_file(fd: std::os::fd::RawFd) -> std::fs::File {
        use std::os::fd::FromRawFd;
        // SAFETY: `fd` is open for as long as the LU lives (the test holds
        // it); the File is wrapped in ManuallyDrop and never closes it.
        unsafe { std::fs::File::from_raw_fd(fd) }
    }

    #[test]
    fn a_handed_out_write_and_read_move_the_same_blocks_as_execute() {
        for direct in [false, true] {
            let (_d, lu) = lu(direct);
            let data: Vec<u8> = (0..8192u32).map(|i| (i % 251) as u8).collect();
            let Some(Prepared::Io(io, mut buf)) =
                lu.prepare_io(&nexus(), &write10(8, 16, 0), &data)
            else {
                panic!("a write is handed out");
            };
            assert_eq!((io.offset, io.len), (8 * 512, 8192));
            assert_eq!(io.transfer, Transfer::Write { durable: false });
            if direct {
                assert_eq!(buf.as_mut_slice().as_ptr() as usize % 4096, 0);
            }
            // A short transfer is finished by finish_io itself.
            let moved = transfer(&io, &mut buf, 4096);
            assert_eq!(lu.finish_io(&io, moved, buf).status, ScsiStatus::Good);
            let back = lu.execute(&nexus(), &read10(8, 16), &[]);
            assert_eq!(back.data_vec(), data, "direct={direct}");

            let Some(Prepared::Io(io, mut buf)) = lu.prepare_io(&nexus(), &read10(8, 16), &[])
            else {
                panic!("a read is handed out");
            };
            let moved = transfer(&io, &mut buf, 512);
            let r = lu.finish_io(&io, moved, buf);
            assert_eq!(r.status, ScsiStatus::Good);
            assert_eq!(r.data_vec(), data, "direct={direct}");
        }
    }

    #[test]
    fn commands_that_fail_their_checks_are_answered_without_a_transfer() {
        let (_d, lu) = lu(true);
        let blocks = (1u32 << 20) / 512;
        let Some(Prepared::Done(r)) = lu.prepare_io(&nexus(), &read10(blocks, 1), &[]) else {
            panic!("out of range is answered at once");
        };
        assert_eq!(r.status, ScsiStatus::CheckCondition);
        // RDPROTECT set: invalid field in CDB.
        let mut cdb = read10(0, 1);
        cdb[1] = 0x20;
        assert!(matches!(
            lu.prepare_io(&nexus(), &cdb, &[]),
            Some(Prepared::Done(r)) if r.status == ScsiStatus::CheckCondition
        ));
        // A zero-length read moves nothing.
        assert!(matches!(
            lu.prepare_io(&nexus(), &read10(0, 0), &[]),
            Some(Prepared::Done(r)) if r.status == ScsiStatus::Good && r.data_len() == 0
        ));
        // Not a block transfer: left to execute.
        assert!(
            lu.prepare_io(&nexus(), &[op::TEST_UNIT_READY, 0, 0, 0, 0, 0], &[])
                .is_none()
        );
        // FUA asks for a durable write; SYNCHRONIZE CACHE for a flush.
        let Some(Prepared::Io(io, buf)) = lu.prepare_io(&nexus(), &write10(0, 1, 0x08), &[1; 512])
        else {
            panic!("a FUA write is handed out");
        };
        assert_eq!(io.transfer, Transfer::Write { durable: true });
        buf.give();
        let sync = [op::SYNCHRONIZE_CACHE_10, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            lu.prepare_io(&nexus(), &sync, &[]),
            Some(Prepared::Io(io, _)) if io.transfer == Transfer::Flush
        ));
        // An engine's error is a MEDIUM ERROR.
        let Some(Prepared::Io(io, buf)) = lu.prepare_io(&nexus(), &read10(0, 1), &[]) else {
            panic!("a read is handed out");
        };
        let r = lu.finish_io(&io, Err(io::Error::from_raw_os_error(libc::EIO)), buf);
        assert_eq!(r.status, ScsiStatus::CheckCondition);
    }

    #[test]
    fn a_regular_file_keeps_its_writes_and_hands_out_its_reads() {
        let dir = std::env::temp_dir().join(format!("iolab-blockio-w-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let store = FileIo::open(&dir.join("lun"), Some(1 << 20), true).unwrap();
        let lu = LogicalUnit::new(Box::new(store), LuConfig::default()).unwrap();
        assert!(
            lu.prepare_io(&nexus(), &write10(0, 1, 0), &[1; 512])
                .is_none()
        );
        assert!(matches!(
            lu.prepare_io(&nexus(), &read10(0, 1), &[]),
            Some(Prepared::Io(io, _)) if io.transfer == Transfer::Read
        ));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_ramdisk_has_no_file_to_hand_out() {
        let store = crate::backstore::RamDisk::new(1 << 20).unwrap();
        let lu = LogicalUnit::new(Box::new(store), LuConfig::default()).unwrap();
        assert!(lu.prepare_io(&nexus(), &read10(0, 1), &[]).is_none());
    }
}

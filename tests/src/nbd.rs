//! A disk with a volatile write cache, served over NBD to a qemu guest, for
//! tests that must tell durable writes from merely completed ones.
//!
//! Writes are held in the server's memory, as in a disk's write cache, until
//! the client flushes (NBD_CMD_FLUSH) or sends the write with FUA; only then
//! do they reach the backing file. [`VolatileDisk::power_loss`] drops what was
//! never flushed, as the cache loses it when the power goes. Together with a
//! SIGKILL of qemu (which takes the guest's page cache with it) this is a
//! power failure of the guest's machine, seen from the host.
//!
//! The protocol is the fixed-newstyle NBD handshake (NBD_OPT_GO, INFO,
//! EXPORT_NAME) and simple replies to READ, WRITE, FLUSH and DISC: what
//! qemu's NBD client needs when structured replies are refused.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

const SECTOR: u64 = 512;

/// Handshake and transmission constants of the NBD protocol.
mod proto {
    pub const NBDMAGIC: u64 = 0x4e42_444d_4147_4943;
    pub const IHAVEOPT: u64 = 0x4948_4156_454f_5054;
    pub const OPT_REPLY_MAGIC: u64 = 0x0003_e889_0455_65a9;
    pub const REQUEST_MAGIC: u32 = 0x2560_9513;
    pub const SIMPLE_REPLY_MAGIC: u32 = 0x6744_6698;

    pub const FLAG_FIXED_NEWSTYLE: u16 = 1 << 0;
    pub const FLAG_NO_ZEROES: u16 = 1 << 1;
    pub const CLIENT_NO_ZEROES: u32 = 1 << 1;

    pub const OPT_EXPORT_NAME: u32 = 1;
    pub const OPT_ABORT: u32 = 2;
    pub const OPT_INFO: u32 = 6;
    pub const OPT_GO: u32 = 7;

    pub const REP_ACK: u32 = 1;
    pub const REP_INFO: u32 = 3;
    pub const REP_ERR_UNSUP: u32 = (1 << 31) | 1;
    pub const INFO_EXPORT: u16 = 0;

    pub const TFLAG_HAS_FLAGS: u16 = 1 << 0;
    pub const TFLAG_SEND_FLUSH: u16 = 1 << 2;
    pub const TFLAG_SEND_FUA: u16 = 1 << 3;

    pub const CMD_FLAG_FUA: u16 = 1 << 0;

    pub const CMD_READ: u16 = 0;
    pub const CMD_WRITE: u16 = 1;
    pub const CMD_DISC: u16 = 2;
    pub const CMD_FLUSH: u16 = 3;

    pub const EIO: u32 = 5;
    pub const EINVAL: u32 = 22;
}

/// What the disk was asked to do, for the test's own checks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DiskStats {
    pub writes: u64,
    pub fua_writes: u64,
    pub flushes: u64,
    /// Sectors dropped by the last power loss.
    pub lost_sectors: u64,
}

struct State {
    file: File,
    size: u64,
    /// Written but not yet flushed: sector -> data.
    cache: BTreeMap<u64, Vec<u8>>,
    stats: DiskStats,
}

impl State {
    fn read(&self, offset: u64, len: usize) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        self.file.read_exact_at(&mut buf, offset)?;
        let first = offset / SECTOR;
        let last = (offset + len as u64).div_ceil(SECTOR);
        for (&s, data) in self.cache.range(first..last) {
            let start = s * SECTOR;
            for (i, b) in data.iter().enumerate() {
                let at = start + i as u64;
                if at >= offset && at < offset + len as u64 {
                    buf[(at - offset) as usize] = *b;
                }
            }
        }
        Ok(buf)
    }

    fn write(&mut self, offset: u64, data: &[u8], fua: bool) -> std::io::Result<()> {
        self.stats.writes += 1;
        if fua {
            self.stats.fua_writes += 1;
        }
        let mut at = offset;
        let mut rest = data;
        while !rest.is_empty() {
            let sector = at / SECTOR;
            let within = (at % SECTOR) as usize;
            let n = rest.len().min(SECTOR as usize - within);
            let mut whole = match self.cache.remove(&sector) {
                Some(d) => d,
                None => self.read(sector * SECTOR, SECTOR as usize)?,
            };
            whole[within..within + n].copy_from_slice(&rest[..n]);
            if fua {
                self.file.write_all_at(&whole, sector * SECTOR)?;
            } else {
                self.cache.insert(sector, whole);
            }
            at += n as u64;
            rest = &rest[n..];
        }
        Ok(())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.stats.flushes += 1;
        for (s, data) in std::mem::take(&mut self.cache) {
            self.file.write_all_at(&data, s * SECTOR)?;
        }
        Ok(())
    }
}

/// An NBD server on a free loopback port in front of one backing file.
pub struct VolatileDisk {
    pub port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl VolatileDisk {
    /// Serves `path` (which must exist; its length is the disk's size).
    pub fn serve(path: &Path) -> VolatileDisk {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .expect("backing file");
        let size = file.metadata().expect("backing file size").len();
        assert!(
            size > 0 && size.is_multiple_of(SECTOR),
            "backing file size {size}"
        );
        let state = Arc::new(Mutex::new(State {
            file,
            size,
            cache: BTreeMap::new(),
            stats: DiskStats::default(),
        }));
        let listener = TcpListener::bind("127.0.0.1:0").expect("NBD listener");
        let port = listener.local_addr().expect("NBD address").port();
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let stop = Arc::new(AtomicBool::new(false));
        let accept = {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            let state = state.clone();
                            std::thread::spawn(move || {
                                let _ = s.set_nonblocking(false);
                                // A client that goes away (qemu killed) ends its thread.
                                let _ = serve_client(s, &state);
                            });
                        }
                        Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                    }
                }
            })
        };
        VolatileDisk {
            port,
            state,
            stop,
            accept: Some(accept),
        }
    }

    /// The URL qemu's `-drive file=` takes.
    pub fn url(&self) -> String {
        format!("nbd://127.0.0.1:{}/disk", self.port)
    }

    /// Drops every write that was not flushed (call after killing the client).
    pub fn power_loss(&self) -> DiskStats {
        let mut st = self.state.lock().expect("disk state");
        st.stats.lost_sectors = st.cache.len() as u64;
        st.cache.clear();
        st.stats
    }

    pub fn stats(&self) -> DiskStats {
        self.state.lock().expect("disk state").stats
    }
}

impl Drop for VolatileDisk {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

fn read_u16(s: &mut TcpStream) -> std::io::Result<u16> {
    let mut b = [0u8; 2];
    s.read_exact(&mut b)?;
    Ok(u16::from_be_bytes(b))
}
fn read_u32(s: &mut TcpStream) -> std::io::Result<u32> {
    let mut b = [0u8; 4];
    s.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}
fn read_u64(s: &mut TcpStream) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    s.read_exact(&mut b)?;
    Ok(u64::from_be_bytes(b))
}

fn option_reply(s: &mut TcpStream, opt: u32, kind: u32, data: &[u8]) -> std::io::Result<()> {
    let mut m = Vec::with_capacity(20 + data.len());
    m.extend_from_slice(&proto::OPT_REPLY_MAGIC.to_be_bytes());
    m.extend_from_slice(&opt.to_be_bytes());
    m.extend_from_slice(&kind.to_be_bytes());
    m.extend_from_slice(&(data.len() as u32).to_be_bytes());
    m.extend_from_slice(data);
    s.write_all(&m)
}

const TFLAGS: u16 = proto::TFLAG_HAS_FLAGS | proto::TFLAG_SEND_FLUSH | proto::TFLAG_SEND_FUA;

fn serve_client(mut s: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let size = state.lock().expect("disk state").size;
    let mut hello = Vec::new();
    hello.extend_from_slice(&proto::NBDMAGIC.to_be_bytes());
    hello.extend_from_slice(&proto::IHAVEOPT.to_be_bytes());
    hello.extend_from_slice(&(proto::FLAG_FIXED_NEWSTYLE | proto::FLAG_NO_ZEROES).to_be_bytes());
    s.write_all(&hello)?;
    let client_flags = read_u32(&mut s)?;
    // Options until the client picks the export.
    loop {
        if read_u64(&mut s)? != proto::IHAVEOPT {
            return Err(std::io::Error::other("bad option magic"));
        }
        let opt = read_u32(&mut s)?;
        let len = read_u32(&mut s)? as usize;
        if len > 4096 {
            return Err(std::io::Error::other("option too long"));
        }
        let mut data = vec![0u8; len];
        s.read_exact(&mut data)?;
        match opt {
            proto::OPT_EXPORT_NAME => {
                s.write_all(&size.to_be_bytes())?;
                s.write_all(&TFLAGS.to_be_bytes())?;
                if client_flags & proto::CLIENT_NO_ZEROES == 0 {
                    s.write_all(&[0u8; 124])?;
                }
                break;
            }
            proto::OPT_INFO | proto::OPT_GO => {
                let mut info = Vec::new();
                info.extend_from_slice(&proto::INFO_EXPORT.to_be_bytes());
                info.extend_from_slice(&size.to_be_bytes());
                info.extend_from_slice(&TFLAGS.to_be_bytes());
                option_reply(&mut s, opt, proto::REP_INFO, &info)?;
                option_reply(&mut s, opt, proto::REP_ACK, &[])?;
                if opt == proto::OPT_GO {
                    break;
                }
            }
            proto::OPT_ABORT => {
                option_reply(&mut s, opt, proto::REP_ACK, &[])?;
                return Ok(());
            }
            _ => option_reply(&mut s, opt, proto::REP_ERR_UNSUP, &[])?,
        }
    }
    // Transmission.
    loop {
        if read_u32(&mut s)? != proto::REQUEST_MAGIC {
            return Err(std::io::Error::other("bad request magic"));
        }
        let flags = read_u16(&mut s)?;
        let kind = read_u16(&mut s)?;
        let cookie = read_u64(&mut s)?;
        let offset = read_u64(&mut s)?;
        let len = read_u32(&mut s)? as usize;
        let in_range = offset.checked_add(len as u64).is_some_and(|e| e <= size);
        let mut payload = Vec::new();
        let (error, data) = match kind {
            proto::CMD_READ if in_range => {
                match state.lock().expect("disk state").read(offset, len) {
                    Ok(d) => (0, d),
                    Err(_) => (proto::EIO, Vec::new()),
                }
            }
            proto::CMD_WRITE => {
                payload.resize(len, 0);
                s.read_exact(&mut payload)?;
                let fua = flags & proto::CMD_FLAG_FUA != 0;
                if !in_range {
                    (proto::EINVAL, Vec::new())
                } else if state
                    .lock()
                    .expect("disk state")
                    .write(offset, &payload, fua)
                    .is_ok()
                {
                    (0, Vec::new())
                } else {
                    (proto::EIO, Vec::new())
                }
            }
            proto::CMD_FLUSH => match state.lock().expect("disk state").flush() {
                Ok(()) => (0, Vec::new()),
                Err(_) => (proto::EIO, Vec::new()),
            },
            proto::CMD_DISC => return Ok(()),
            _ => (proto::EINVAL, Vec::new()),
        };
        let mut reply = Vec::with_capacity(16 + data.len());
        reply.extend_from_slice(&proto::SIMPLE_REPLY_MAGIC.to_be_bytes());
        reply.extend_from_slice(&error.to_be_bytes());
        reply.extend_from_slice(&cookie.to_be_bytes());
        reply.extend_from_slice(&data);
        s.write_all(&reply)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unflushed_writes_are_lost_and_flushed_ones_kept() {
        let dir = crate::TempDir::new("nbd-unit");
        let path = dir.0.join("disk.img");
        std::fs::write(&path, vec![0u8; 8192]).unwrap();
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        let mut st = State {
            file,
            size: 8192,
            cache: BTreeMap::new(),
            stats: DiskStats::default(),
        };
        st.write(100, &[1u8; 1000], false).unwrap();
        assert_eq!(st.read(100, 1000).unwrap(), vec![1u8; 1000]);
        assert_eq!(
            std::fs::read(&path).unwrap()[100],
            0,
            "a plain write reached the file"
        );
        st.flush().unwrap();
        assert_eq!(std::fs::read(&path).unwrap()[100..1100], [1u8; 1000]);
        st.write(4096, &[2u8; 512], true).unwrap();
        assert_eq!(std::fs::read(&path).unwrap()[4096..4608], [2u8; 512]);
        st.write(2048, &[3u8; 10], false).unwrap();
        st.cache.clear(); // power loss
        assert_eq!(std::fs::read(&path).unwrap()[2048..2058], [0u8; 10]);
        assert_eq!(st.read(2048, 10).unwrap(), vec![0u8; 10]);
    }
}

//! SANITIZE (SBC-4 5.30): OVERWRITE and BLOCK ERASE run as a background job;
//! while it runs, media access gets NOT READY, SANITIZE IN PROGRESS with a
//! progress indication, and the command (without IMMED) completes at the end.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::opcode::sanitize as sa;
use super::sense::{Asc, FieldPointer, Sense, SenseKey};
use super::{Completion, LogicalUnit, Nexus, ScsiResponse, be16};

/// A running (or finished) sanitize operation.
#[derive(Debug)]
pub struct SanitizeJob {
    total: u64,
    done: AtomicU64,
    result: Mutex<Option<Result<(), Sense>>>,
    ended: Condvar,
}

impl SanitizeJob {
    fn new(total: u64) -> Self {
        SanitizeJob {
            total: total.max(1),
            done: AtomicU64::new(0),
            result: Mutex::new(None),
            ended: Condvar::new(),
        }
    }

    /// Progress as the sense-key specific PROGRESS INDICATION (65536 = done).
    pub fn progress(&self) -> u16 {
        let d = self.done.load(Ordering::Relaxed).min(self.total);
        ((d as u128 * 65535) / self.total as u128) as u16
    }

    /// NOT READY, SANITIZE IN PROGRESS, with the progress indication.
    pub fn not_ready_sense(&self) -> Sense {
        let p = self.progress();
        Sense {
            // A progress indication reuses the sense-key specific bytes: SKSV + 16 bits.
            field: Some(FieldPointer {
                in_cdb: false,
                byte: p,
                bit: None,
            }),
            ..Sense::new(SenseKey::NotReady, Asc::NOT_READY_SANITIZE)
        }
    }

    fn finish(&self, r: Result<(), Sense>) {
        let mut g = self.result.lock().unwrap_or_else(|e| e.into_inner());
        *g = Some(r);
        self.ended.notify_all();
    }

    pub fn is_finished(&self) -> bool {
        self.result
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Blocks until the job ends; returns the command's response.
    pub fn wait_response(&self, descriptor_sense: bool) -> ScsiResponse {
        let mut g = self.result.lock().unwrap_or_else(|e| e.into_inner());
        while g.is_none() {
            g = self
                .ended
                .wait_timeout(g, Duration::from_millis(200))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        match g.as_ref() {
            Some(Err(s)) => ScsiResponse::check(s, descriptor_sense),
            _ => ScsiResponse::good(Vec::new()),
        }
    }
}

impl LogicalUnit {
    /// Validates a SANITIZE CDB and parameter list, then starts the job.
    pub(super) fn sanitize(
        self: &Arc<Self>,
        nexus: &Nexus,
        cdb: &[u8],
        data: &[u8],
    ) -> Result<Completion, Sense> {
        if let Some(r) = self.admission(nexus, cdb[0]) {
            tracing::debug!(status = ?r.status, "sanitize not admitted");
            return Ok(Completion::Now(r));
        }
        let immed = cdb[1] & 0x80 != 0;
        let action = (cdb[1] & 0x1f) as u16;
        let plen = be16(&cdb[7..]) as usize;
        if cdb[1] & 0x40 != 0 {
            return Err(Sense::invalid_cdb(1, Some(6)));
        }
        if let Some(i) = (2..7).find(|&i| cdb[i] != 0) {
            return Err(Sense::invalid_cdb(i as u16, None));
        }
        let bs = self.block_size() as usize;
        let block = match action {
            sa::OVERWRITE => {
                // SBC-4 5.30.2.2: the parameter list length must be 5..=block size + 4;
                // libiscsi (like LIO) expects INVALID FIELD IN CDB for every
                // malformed OVERWRITE parameter list.
                if plen < 5 || plen > bs + 4 {
                    return Err(Sense::invalid_cdb(7, None));
                }
                if data.len() < plen {
                    return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
                }
                let pat_len = be16(&data[2..]) as usize;
                if pat_len == 0 || pat_len > bs || pat_len + 4 > plen || data[0] & 0x1f == 0 {
                    return Err(Sense::invalid_cdb(7, None));
                }
                if data[1] != 0 {
                    return Err(Sense::invalid_param(1, None));
                }
                self.check_writable()?;
                let pattern = &data[4..4 + pat_len];
                let mut block: Vec<u8> = (0..bs).map(|i| pattern[i % pat_len]).collect();
                if data[0] & 0x80 != 0 {
                    block.iter_mut().for_each(|b| *b = !*b);
                }
                Some(block)
            }
            sa::BLOCK_ERASE => {
                if plen != 0 {
                    return Err(Sense::invalid_cdb(7, None));
                }
                self.check_writable()?;
                None
            }
            sa::EXIT_FAILURE_MODE => {
                if plen != 0 {
                    return Err(Sense::invalid_cdb(7, None));
                }
                return Ok(Completion::Now(ScsiResponse::good(Vec::new())));
            }
            _ => return Err(Sense::invalid_cdb(1, Some(4))),
        };
        tracing::debug!(
            action,
            immed,
            rate_mib = self.cfg.sanitize_rate_mib,
            "sanitize started"
        );
        let job = Arc::new(SanitizeJob::new(self.store.size_bytes()));
        {
            let mut st = self.lock();
            st.sanitize = Some(job.clone());
            self.update(&st);
        }
        let lu = self.clone();
        let j = job.clone();
        let spawned = std::thread::Builder::new()
            .name("iolab-sanitize".into())
            .spawn(move || {
                let r = match &block {
                    Some(b) => lu.overwrite(b, &j),
                    None => {
                        let size = lu.store.size_bytes();
                        lu.store
                            .unmap(0, size)
                            .map_err(|_| Sense::new(SenseKey::MediumError, Asc::SANITIZE_FAILED))
                    }
                };
                tracing::debug!(ok = r.is_ok(), "sanitize finished");
                j.done.store(j.total, Ordering::Relaxed);
                {
                    let mut st = lu.lock();
                    if st.sanitize.as_ref().is_some_and(|x| Arc::ptr_eq(x, &j)) {
                        st.sanitize = None;
                    }
                    lu.update(&st);
                }
                j.finish(r);
            });
        if spawned.is_err() {
            let mut st = self.lock();
            st.sanitize = None;
            self.update(&st);
            return Err(Sense::new(SenseKey::HardwareError, Asc::SANITIZE_FAILED));
        }
        Ok(if immed {
            Completion::Now(ScsiResponse::good(Vec::new()))
        } else {
            Completion::Later(job)
        })
    }

    /// Writes `block` over every block, paced at `sanitize_rate_mib`.
    fn overwrite(&self, block: &[u8], job: &SanitizeJob) -> Result<(), Sense> {
        let bs = block.len();
        let per = ((1usize << 20) / bs).max(1);
        let buf = block.repeat(per);
        let total = self.num_blocks();
        let rate = self.cfg.sanitize_rate_mib as u64 * (1 << 20);
        let started = Instant::now();
        let mut done = 0u64;
        while done < total {
            let k = (total - done).min(per as u64) as usize;
            self.store
                .write_at(&buf[..k * bs], done * bs as u64, false)
                .map_err(|_| Sense::new(SenseKey::MediumError, Asc::SANITIZE_FAILED))?;
            done += k as u64;
            let bytes = done * bs as u64;
            job.done.store(bytes, Ordering::Relaxed);
            if rate > 0 {
                let due = Duration::from_secs_f64(bytes as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
        }
        self.store
            .flush()
            .map_err(|_| Sense::new(SenseKey::MediumError, Asc::SANITIZE_FAILED))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backstore::RamDisk;
    use crate::scsi::{LuConfig, ScsiStatus};

    #[test]
    fn overwrite_runs_in_background_and_blocks_media_access() {
        let cfg = LuConfig {
            sanitize_rate_mib: 8,
            ..LuConfig::default()
        };
        let lu = Arc::new(LogicalUnit::new(Box::new(RamDisk::new(4 << 20).unwrap()), cfg).unwrap());
        let n = Nexus::new("iqn.test:init", 1);
        let mut param = vec![0x01, 0x00, 0x00, 0x04];
        param.extend_from_slice(&[0xAB; 4]);
        let cdb = [0x48, sa::OVERWRITE as u8, 0, 0, 0, 0, 0, 0, 8, 0];
        let Completion::Later(job) = lu.start(&n, &cdb, &param) else {
            panic!("expected a background job")
        };
        let tur = lu.execute(&n, &[0, 0, 0, 0, 0, 0], &[]);
        assert_eq!(tur.status, ScsiStatus::CheckCondition);
        let s = tur.sense.unwrap();
        assert_eq!((s[2] & 0x0f, s[12], s[13]), (0x02, 0x04, 0x1B));
        let inq = lu.execute(&n, &[0x12, 0, 0, 0, 36, 0], &[]);
        assert_eq!(inq.status, ScsiStatus::Good);
        assert_eq!(job.wait_response(false).status, ScsiStatus::Good);
        let rd = lu.execute(&n, &[0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0], &[]);
        assert_eq!(rd.status, ScsiStatus::Good);
        assert!(rd.data.iter().all(|&b| b == 0xAB));
    }
}

//! The data transfer of one write command as a state machine (RFC 7143
//! 3.2.4.2, 10.7, 10.8): what the initiator may still send unsolicited, the
//! R2Ts that solicit the rest, and whether each Data-Out fits its sequence.
//! No sockets and no buffers: `connection.rs` sends the R2Ts it returns and
//! copies each Data-Out into the range it names.

use crate::pdu::RESERVED_TAG;

/// One R2T that was sent and whose data is still arriving.
#[derive(Debug, Clone, PartialEq, Eq)]
struct R2tState {
    ttt: u32,
    offset: u32,
    len: u32,
    /// Where the next Data-Out of this sequence must start (DataPDUInOrder).
    next_offset: u32,
    /// The DataSN the next Data-Out of this sequence must carry.
    next_data_sn: u32,
}

/// An R2T to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct R2t {
    pub ttt: u32,
    pub r2tsn: u32,
    pub offset: u32,
    pub len: u32,
}

/// Why a Data-Out fails its task (ErrorRecoveryLevel 0: no recovery within
/// the command).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(super) enum DataOutFault {
    #[error("Data-Out beyond the expected length (offset {offset} + {len})")]
    BeyondLength { offset: u32, len: u32 },
    #[error("unsolicited Data-Out out of bounds or order (DataSN {data_sn})")]
    Unsolicited { data_sn: u32 },
    #[error("Data-Out for an unknown TTT {ttt:#x}")]
    UnknownTtt { ttt: u32 },
    #[error("Data-Out out of order (DataSN {data_sn}, expected {expected})")]
    OutOfOrder { data_sn: u32, expected: u32 },
    #[error("Data-Out at offset {offset}, expected {expected} (data in order)")]
    Gap { offset: u32, expected: u32 },
    #[error("R2T sequence {ttt:#x} ended at {ended}, short of {wanted}")]
    ShortSequence { ttt: u32, ended: u32, wanted: u32 },
}

/// Where a write's data stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Transfer {
    /// What the initiator said it would send (Expected Data Transfer Length).
    edtl: u32,
    /// What the CDB can take (<= EDTL, <= the LU's size): the buffer's size.
    /// Unsolicited data beyond it is read and dropped; R2Ts never ask for it.
    want: u32,
    /// Bytes placed into the buffer.
    received: u32,
    /// Where the unsolicited data (immediate + unsolicited Data-Out) may end.
    unsolicited_end: u32,
    /// An unsolicited Data-Out sequence is still to come (the command had
    /// F=0): R2Ts wait for its final PDU and start where it ended.
    unsolicited_open: bool,
    /// Next offset to solicit with an R2T.
    next_r2t: u32,
    r2tsn: u32,
    r2ts: Vec<R2tState>,
    /// Next DataSN of the unsolicited sequence, and where its next PDU starts.
    unsolicited_data_sn: u32,
    unsolicited_next: u32,
}

impl Transfer {
    /// A write of `want` bytes (of `edtl` announced) whose command carried
    /// `imm` bytes of immediate data; `unsolicited_end` is where unsolicited
    /// Data-Out may end when `unsolicited_open`.
    pub(super) fn new(
        edtl: u32,
        want: u32,
        imm: u32,
        unsolicited_open: bool,
        unsolicited_end: u32,
    ) -> Self {
        Transfer {
            edtl,
            want,
            received: imm.min(want),
            unsolicited_end,
            unsolicited_open,
            next_r2t: imm,
            r2tsn: 0,
            r2ts: Vec::new(),
            unsolicited_data_sn: 0,
            unsolicited_next: imm,
        }
    }

    pub(super) fn edtl(&self) -> u32 {
        self.edtl
    }

    /// The next R2T to send, if one may go now: after the unsolicited data,
    /// in order, at most `max_burst` bytes each and `max_outstanding` at once.
    /// `tag` gives the target transfer tag.
    pub(super) fn next_r2t(
        &mut self,
        max_burst: u32,
        max_outstanding: usize,
        tag: impl FnOnce() -> u32,
    ) -> Option<R2t> {
        if self.unsolicited_open || self.next_r2t >= self.want || self.r2ts.len() >= max_outstanding
        {
            return None;
        }
        let offset = self.next_r2t;
        let len = (self.want - offset).min(max_burst.max(512));
        let ttt = tag();
        self.next_r2t += len;
        self.r2ts.push(R2tState {
            ttt,
            offset,
            len,
            next_offset: offset,
            next_data_sn: 0,
        });
        let r2tsn = self.r2tsn;
        self.r2tsn += 1;
        Some(R2t {
            ttt,
            r2tsn,
            offset,
            len,
        })
    }

    /// A Data-Out of `len` bytes at `offset` for `ttt` (RESERVED_TAG:
    /// unsolicited) with `data_sn`. Returns the range of the buffer its
    /// bytes go to (empty when all of them lie beyond what the CDB takes),
    /// or why it fails the task.
    pub(super) fn data_out(
        &mut self,
        ttt: u32,
        data_sn: u32,
        offset: u32,
        len: u32,
        final_pdu: bool,
    ) -> Result<std::ops::Range<usize>, DataOutFault> {
        let end = offset
            .checked_add(len)
            .filter(|e| *e <= self.edtl)
            .ok_or(DataOutFault::BeyondLength { offset, len })?;
        if ttt == RESERVED_TAG {
            if !self.unsolicited_open
                || end > self.unsolicited_end
                || data_sn != self.unsolicited_data_sn
            {
                return Err(DataOutFault::Unsolicited { data_sn });
            }
            if offset != self.unsolicited_next {
                return Err(DataOutFault::Gap {
                    offset,
                    expected: self.unsolicited_next,
                });
            }
            self.unsolicited_data_sn += 1;
            self.unsolicited_next = end;
            if final_pdu {
                // The unsolicited data ended here: R2Ts ask for the rest.
                self.unsolicited_open = false;
                self.next_r2t = end.min(self.want).max(self.next_r2t);
            }
        } else {
            let r = self
                .r2ts
                .iter_mut()
                .find(|r| r.ttt == ttt)
                .ok_or(DataOutFault::UnknownTtt { ttt })?;
            if data_sn != r.next_data_sn || end > r.offset + r.len {
                return Err(DataOutFault::OutOfOrder {
                    data_sn,
                    expected: r.next_data_sn,
                });
            }
            if offset != r.next_offset {
                return Err(DataOutFault::Gap {
                    offset,
                    expected: r.next_offset,
                });
            }
            if final_pdu && end != r.offset + r.len {
                return Err(DataOutFault::ShortSequence {
                    ttt,
                    ended: end,
                    wanted: r.offset + r.len,
                });
            }
            r.next_data_sn += 1;
            r.next_offset = end;
            if final_pdu {
                self.r2ts.retain(|r| r.ttt != ttt);
            }
        }
        // Only what the CDB takes is kept; bytes beyond it are dropped.
        let kept = end.min(self.want);
        if offset >= kept {
            return Ok(0..0);
        }
        self.received += kept - offset;
        Ok(offset as usize..kept as usize)
    }

    /// Everything the CDB takes has arrived and nothing more is owed.
    pub(super) fn complete(&self) -> bool {
        self.received >= self.want
            && self.r2ts.is_empty()
            && !self.unsolicited_open
            && self.next_r2t >= self.want
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Target transfer tags 1, 2, 3, ...
    fn tags() -> impl FnMut() -> u32 {
        let mut n = 0;
        move || {
            n += 1;
            n
        }
    }

    #[test]
    fn r2ts_solicit_the_rest_in_bursts_within_the_outstanding_limit() {
        // 64 KiB, 8 KiB immediate, bursts of 16 KiB, two R2Ts at a time.
        let mut t = Transfer::new(65536, 65536, 8192, false, 8192);
        let mut tag = tags();
        let a = t.next_r2t(16384, 2, &mut tag).unwrap();
        let b = t.next_r2t(16384, 2, &mut tag).unwrap();
        assert_eq!((a.r2tsn, a.offset, a.len), (0, 8192, 16384));
        assert_eq!((b.r2tsn, b.offset, b.len), (1, 24576, 16384));
        assert_eq!(t.next_r2t(16384, 2, &mut tag), None, "two outstanding");
        // The first sequence in two PDUs, DataSN 0 and 1.
        assert_eq!(t.data_out(a.ttt, 0, 8192, 8192, false), Ok(8192..16384));
        assert_eq!(t.data_out(a.ttt, 1, 16384, 8192, true), Ok(16384..24576));
        let c = t.next_r2t(16384, 2, &mut tag).unwrap();
        assert_eq!((c.r2tsn, c.offset, c.len), (2, 40960, 16384));
        let d_none = t.next_r2t(16384, 2, &mut tag);
        assert_eq!(d_none, None);
        assert_eq!(t.data_out(b.ttt, 0, 24576, 16384, true), Ok(24576..40960));
        let d = t.next_r2t(16384, 2, &mut tag).unwrap();
        assert_eq!((d.offset, d.len), (57344, 8192), "the last burst is short");
        assert_eq!(t.next_r2t(16384, 2, &mut tag), None, "nothing left to ask");
        assert!(!t.complete());
        assert_eq!(t.data_out(c.ttt, 0, 40960, 16384, true), Ok(40960..57344));
        assert_eq!(t.data_out(d.ttt, 0, 57344, 8192, true), Ok(57344..65536));
        assert!(t.complete());
    }

    #[test]
    fn data_outs_that_do_not_fit_their_sequence_fail_the_task() {
        let mut t = Transfer::new(32768, 32768, 0, false, 0);
        let r = t.next_r2t(32768, 1, || 7).unwrap();
        assert_eq!(
            t.data_out(r.ttt, 1, 0, 4096, false),
            Err(DataOutFault::OutOfOrder {
                data_sn: 1,
                expected: 0
            }),
            "DataSN must start at 0"
        );
        let mut t = Transfer::new(32768, 32768, 0, false, 0);
        let r = t.next_r2t(16384, 1, || 7).unwrap();
        assert_eq!(
            t.data_out(r.ttt, 0, 12288, 8192, true),
            Err(DataOutFault::OutOfOrder {
                data_sn: 0,
                expected: 0
            }),
            "beyond the R2T's range"
        );
        assert_eq!(
            t.data_out(r.ttt, 0, 4096, 4096, false),
            Err(DataOutFault::Gap {
                offset: 4096,
                expected: 0
            }),
            "a hole at the start of the sequence"
        );
        assert_eq!(
            t.data_out(r.ttt, 0, 0, 8192, true),
            Err(DataOutFault::ShortSequence {
                ttt: 7,
                ended: 8192,
                wanted: 16384
            }),
            "the final PDU before the burst's end"
        );
        assert_eq!(
            t.data_out(99, 0, 0, 4096, false),
            Err(DataOutFault::UnknownTtt { ttt: 99 })
        );
        assert_eq!(
            t.data_out(r.ttt, 0, 30000, 4096, false),
            Err(DataOutFault::BeyondLength {
                offset: 30000,
                len: 4096
            }),
            "beyond the EDTL"
        );
        assert_eq!(
            t.data_out(r.ttt, 0, u32::MAX - 10, 100, false),
            Err(DataOutFault::BeyondLength {
                offset: u32::MAX - 10,
                len: 100
            }),
            "offset + length overflows"
        );
        assert_eq!(
            t.data_out(RESERVED_TAG, 0, 0, 4096, true),
            Err(DataOutFault::Unsolicited { data_sn: 0 }),
            "unsolicited data when none may follow"
        );
    }

    #[test]
    fn r2ts_start_where_short_unsolicited_data_ended() {
        // FirstBurstLength 64 KiB, the initiator sends only 4 KiB of it, F=1.
        let mut t = Transfer::new(131072, 131072, 0, true, 65536);
        assert_eq!(
            t.next_r2t(262144, 1, || 1),
            None,
            "wait for the unsolicited data"
        );
        assert_eq!(
            t.data_out(RESERVED_TAG, 1, 0, 4096, true),
            Err(DataOutFault::Unsolicited { data_sn: 1 })
        );
        assert_eq!(t.data_out(RESERVED_TAG, 0, 0, 4096, true), Ok(0..4096));
        let r = t.next_r2t(262144, 1, || 1).unwrap();
        assert_eq!((r.offset, r.len), (4096, 131072 - 4096));
        assert_eq!(
            t.data_out(RESERVED_TAG, 1, 4096, 4096, true),
            Err(DataOutFault::Unsolicited { data_sn: 1 }),
            "the unsolicited sequence is over"
        );
        assert_eq!(t.data_out(r.ttt, 0, 4096, 126976, true), Ok(4096..131072));
        assert!(t.complete());
    }

    #[test]
    fn bytes_beyond_what_the_cdb_takes_are_read_and_dropped() {
        // The EDTL says 16 KiB, the CDB takes 8 KiB: 8 KiB immediate, then
        // 8 KiB of unsolicited data that is accepted and dropped.
        let mut t = Transfer::new(16384, 8192, 8192, true, 16384);
        assert_eq!(t.data_out(RESERVED_TAG, 0, 8192, 8192, true), Ok(0..0));
        assert_eq!(t.next_r2t(65536, 4, || 1), None, "nothing to ask for");
        assert!(t.complete());
        // Partly beyond: the part that fits is kept.
        let mut t = Transfer::new(16384, 10000, 0, true, 16384);
        assert_eq!(
            t.data_out(RESERVED_TAG, 0, 8192, 8192, false),
            Err(DataOutFault::Gap {
                offset: 8192,
                expected: 0
            }),
            "unsolicited data starts where the immediate data ended"
        );
        assert_eq!(t.data_out(RESERVED_TAG, 0, 0, 8192, false), Ok(0..8192));
        assert_eq!(
            t.data_out(RESERVED_TAG, 1, 8192, 8192, true),
            Ok(8192..10000)
        );
        assert_eq!(t.next_r2t(65536, 4, || 1), None);
        assert!(t.complete());
    }
}

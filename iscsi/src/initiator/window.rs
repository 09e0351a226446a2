//! The initiator's side of the command window and of solicited data,
//! decided without I/O: how a target's ExpCmdSN/MaxCmdSN move the window
//! (RFC 7143 4.2.2.1), whether a CmdSN may go, and the Data-Out PDUs that
//! answer an R2T (11.8, 11.7).

use std::ops::Range;

use crate::error::Violation;
use crate::pdu::{sn_le, sn_lt};

/// What a response's ExpCmdSN and MaxCmdSN change: each moves only
/// forward (serial arithmetic across the 2^32 wrap), and a MaxCmdSN below
/// ExpCmdSN - 1 is ignored with its ExpCmdSN.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Advance {
    pub exp: Option<u32>,
    pub max: Option<u32>,
}

pub fn advance(cur_exp: u32, cur_max: u32, exp: u32, max: u32) -> Advance {
    if sn_lt(max, exp.wrapping_sub(1)) {
        return Advance::default();
    }
    Advance {
        exp: sn_lt(cur_exp, exp).then_some(exp),
        max: sn_lt(cur_max, max).then_some(max),
    }
}

/// The connection's ExpStatSN after a response with `stat_sn`: the one
/// after it, unless that is not ahead of `cur` (a stale or repeated
/// StatSN never moves it back). Serial arithmetic across the wrap.
pub fn exp_stat_sn(cur: u32, stat_sn: u32) -> u32 {
    let next = stat_sn.wrapping_add(1);
    if sn_lt(cur, next) { next } else { cur }
}

/// Whether a non-immediate command with CmdSN `next` may be sent now.
pub fn room_for(next: u32, max: u32) -> bool {
    sn_le(next, max)
}

/// One Data-Out PDU answering an R2T: the byte range of the write's data,
/// its DataSN within the sequence, and whether it ends the sequence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataOut {
    pub range: Range<usize>,
    pub data_sn: u32,
    pub last: bool,
}

/// The Data-Out sequence for an R2T asking `len` bytes at `offset` of a
/// write of `total` bytes, in PDUs of at most `chunk` (the target's
/// MaxRecvDataSegmentLength). An R2T beyond the data, or for more than
/// `max_burst` (MaxBurstLength) at once, is the target's error.
pub fn answer_r2t(
    itt: u32,
    offset: usize,
    len: usize,
    total: usize,
    chunk: usize,
    max_burst: usize,
) -> Result<impl Iterator<Item = DataOut>, Violation> {
    let end = offset
        .checked_add(len)
        .filter(|e| *e <= total)
        .ok_or(Violation::R2tBeyondData { itt })?;
    if len > max_burst {
        return Err(Violation::R2tBeyondBurst {
            itt,
            len,
            max_burst,
        });
    }
    Ok(sequence(offset..end, chunk))
}

/// A Data-Out sequence (unsolicited, or answering an R2T) for `bytes` of
/// the write's data in PDUs of at most `chunk`, DataSN from 0.
pub fn sequence(bytes: Range<usize>, chunk: usize) -> impl Iterator<Item = DataOut> {
    let chunk = chunk.max(1);
    let end = bytes.end;
    bytes.step_by(chunk).enumerate().map(move |(i, at)| {
        let stop = (at + chunk).min(end);
        DataOut {
            range: at..stop,
            data_sn: u32::try_from(i).unwrap_or(u32::MAX),
            last: stop == end,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_moves_only_forward() {
        assert_eq!(
            advance(10, 73, 12, 75),
            Advance {
                exp: Some(12),
                max: Some(75)
            }
        );
        // Older figures (a response that overtook a newer one) change nothing.
        assert_eq!(advance(12, 75, 11, 74), Advance::default());
        // A closed window (MaxCmdSN = ExpCmdSN - 1) is a valid answer.
        assert_eq!(
            advance(10, 73, 20, 19),
            Advance {
                exp: Some(20),
                max: None
            }
        );
        // MaxCmdSN below ExpCmdSN - 1: ignored, ExpCmdSN with it.
        assert_eq!(advance(10, 73, 20, 18), Advance::default());
        // Across the wrap at 2^32.
        assert_eq!(
            advance(u32::MAX - 1, u32::MAX, 1, 64),
            Advance {
                exp: Some(1),
                max: Some(64)
            }
        );
    }

    #[test]
    fn exp_stat_sn_moves_on_and_never_back() {
        assert_eq!(exp_stat_sn(100, 100), 101);
        assert_eq!(
            exp_stat_sn(101, 105),
            106,
            "a gap: the target's numbering wins"
        );
        assert_eq!(exp_stat_sn(106, 99), 106, "a stale StatSN");
        assert_eq!(exp_stat_sn(106, 105), 106, "the same one again");
        assert_eq!(exp_stat_sn(u32::MAX, u32::MAX), 0, "across the wrap");
        assert_eq!(exp_stat_sn(0, u32::MAX - 3), 0);
    }

    #[test]
    fn room_in_the_window() {
        assert!(room_for(73, 73));
        assert!(!room_for(74, 73));
        assert!(room_for(u32::MAX, 5), "across the wrap");
        assert!(!room_for(6, 5));
    }

    #[test]
    fn an_r2t_is_answered_in_pdus_of_the_targets_size() {
        let d: Vec<DataOut> = answer_r2t(1, 65536, 20000, 262144, 8192, 262144)
            .unwrap()
            .collect();
        assert_eq!(
            d,
            [
                DataOut {
                    range: 65536..73728,
                    data_sn: 0,
                    last: false
                },
                DataOut {
                    range: 73728..81920,
                    data_sn: 1,
                    last: false
                },
                DataOut {
                    range: 81920..85536,
                    data_sn: 2,
                    last: true
                },
            ]
        );
    }

    #[test]
    fn an_r2t_beyond_the_data_or_the_burst_is_the_targets_error() {
        assert!(matches!(
            answer_r2t(9, 4096, 4097, 8192, 8192, 262144),
            Err(Violation::R2tBeyondData { itt: 9 })
        ));
        assert!(matches!(
            answer_r2t(9, usize::MAX, 2, 8192, 8192, 262144),
            Err(Violation::R2tBeyondData { .. })
        ));
        assert!(matches!(
            answer_r2t(9, 0, 524288, 1 << 20, 8192, 262144),
            Err(Violation::R2tBeyondBurst { len: 524288, .. })
        ));
        // An empty R2T asks for nothing.
        assert_eq!(answer_r2t(9, 0, 0, 8192, 8192, 262144).unwrap().count(), 0);
    }
}

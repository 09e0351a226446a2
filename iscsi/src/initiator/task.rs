//! An initiator task's bookkeeping without I/O: where a Data-In segment
//! goes in the task's buffer, what a response's residual says, how much
//! data the caller gets, the sense data of a SCSI Response, and when a
//! command is issued again after losing its connection.

use std::ops::Range;

use crate::error::{IscsiError, Violation};

/// Where a Data-In segment of `len` bytes at `offset` goes, given the
/// `received` bytes already in the buffer (in order) and the `expected`
/// length of the read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// The next bytes in order: appended.
    Append,
    /// Out of order: copied to this range, the buffer zero-filled up to its end.
    At(Range<usize>),
}

pub fn place(
    itt: u32,
    received: usize,
    offset: usize,
    len: usize,
    expected: usize,
) -> Result<Placement, Violation> {
    let end = offset
        .checked_add(len)
        .filter(|e| *e <= expected)
        .ok_or(Violation::DataInBeyondLength { itt })?;
    Ok(if offset == received {
        Placement::Append
    } else {
        Placement::At(offset..end)
    })
}

/// A response's residual: positive for overflow (O), negative for
/// underflow (U), 0 for none (RFC 7143 11.4.5).
pub fn residual(flags: u8, count: u32) -> i64 {
    let r = i64::from(count);
    if flags & crate::typed::flag::OVERFLOW != 0 {
        r
    } else if flags & crate::typed::flag::UNDERFLOW != 0 {
        -r
    } else {
        0
    }
}

/// How many bytes of an `expected`-byte read the caller gets: an
/// underflow shortens it; an overflow does not lengthen it.
pub fn delivered(expected: usize, residual: i64) -> usize {
    let short = usize::try_from(residual.min(0).unsigned_abs()).unwrap_or(usize::MAX);
    expected.saturating_sub(short)
}

/// The sense data of a SCSI Response's data segment (a 2-byte length,
/// then the sense bytes), cut to what arrived.
pub fn sense_of(data: &[u8]) -> Vec<u8> {
    if data.len() < 2 {
        return Vec::new();
    }
    let n = usize::from(u16::from_be_bytes([data[0], data[1]]));
    data[2..(2 + n).min(data.len())].to_vec()
}

/// What to do after one attempt of a command.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Give the caller this outcome.
    Done,
    /// Issue it again on a surviving connection.
    Retry,
    /// Every connection is gone: log in again (reinstating the session),
    /// then issue it again.
    Reinstate,
}

/// After attempt `attempt` (0 the first) ended with `outcome`: a command
/// whose connection was lost goes again, up to `limit` more times; any
/// other outcome (a status, a timeout, a protocol error) is final.
pub fn after<T>(
    outcome: &Result<T, IscsiError>,
    attempt: u32,
    limit: u32,
    any_alive: bool,
) -> Next {
    match outcome {
        Err(IscsiError::ConnectionLost(_)) if attempt < limit => {
            if any_alive {
                Next::Retry
            } else {
                Next::Reinstate
            }
        }
        _ => Next::Done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Lost;

    #[test]
    fn data_in_in_order_out_of_order_and_beyond() {
        assert_eq!(place(1, 0, 0, 8192, 65536), Ok(Placement::Append));
        assert_eq!(place(1, 8192, 8192, 8192, 65536), Ok(Placement::Append));
        assert_eq!(
            place(1, 8192, 32768, 8192, 65536),
            Ok(Placement::At(32768..40960))
        );
        assert_eq!(
            place(1, 0, 65536 - 512, 512, 65536),
            Ok(Placement::At(65024..65536))
        );
        assert_eq!(
            place(7, 0, 65536 - 512, 1024, 65536),
            Err(Violation::DataInBeyondLength { itt: 7 })
        );
        assert_eq!(
            place(7, 0, usize::MAX, 2, 65536),
            Err(Violation::DataInBeyondLength { itt: 7 })
        );
    }

    #[test]
    fn residuals_and_what_the_caller_gets() {
        assert_eq!(residual(0x80 | 0x04, 512), 512);
        assert_eq!(residual(0x80 | 0x02, 512), -512);
        assert_eq!(
            residual(0x80, 512),
            0,
            "a count without O or U means nothing"
        );
        assert_eq!(delivered(4096, -1024), 3072);
        assert_eq!(delivered(4096, 1024), 4096, "an overflow is not delivered");
        assert_eq!(delivered(4096, -8192), 0);
        assert_eq!(delivered(4096, 0), 4096);
    }

    #[test]
    fn sense_data_is_cut_to_what_arrived() {
        assert_eq!(sense_of(&[]), Vec::<u8>::new());
        assert_eq!(sense_of(&[0]), Vec::<u8>::new());
        assert_eq!(sense_of(&[0, 3, 0x70, 0, 5]), vec![0x70, 0, 5]);
        // A length beyond the segment: what is there.
        assert_eq!(sense_of(&[0, 18, 0x70, 0]), vec![0x70, 0]);
    }

    #[test]
    fn only_a_lost_connection_is_issued_again_and_only_so_often() {
        let lost: Result<(), IscsiError> = Err(IscsiError::ConnectionLost(Lost::AllDown));
        assert_eq!(after(&lost, 0, 3, true), Next::Retry);
        assert_eq!(after(&lost, 2, 3, false), Next::Reinstate);
        assert_eq!(after(&lost, 3, 3, true), Next::Done, "the limit");
        let ok: Result<(), IscsiError> = Ok(());
        assert_eq!(after(&ok, 0, 3, true), Next::Done);
        let timeout: Result<(), IscsiError> =
            Err(IscsiError::Timeout(crate::error::Waiting::SendTargets));
        assert_eq!(after(&timeout, 0, 3, true), Next::Done);
    }
}

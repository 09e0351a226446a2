//! A finished command's answer without I/O: the residual it reports (RFC
//! 7143 11.4.5.2 and 11.7.5), whether its status rides in the last Data-In
//! PDU (11.7.4), and how its data is cut into Data-In PDUs (offsets,
//! DataSN, the final bit). The connection's driver sends what this says.

use std::ops::Range;

use bytes::Bytes;

/// What the initiator expected (EDTL) against what the command moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Residual {
    None,
    /// More than EDTL: the O bit, with the bytes not transferred.
    Overflow(u32),
    /// Less than EDTL: the U bit, with the bytes not transferred.
    Underflow(u32),
}

/// The O and U bits of a SCSI Response or a final Data-In.
const OVERFLOW_BIT: u8 = 0x04;
const UNDERFLOW_BIT: u8 = 0x02;

impl Residual {
    /// A read compares the data the command produced with EDTL (an
    /// underflow only when it ended GOOD: a failed read moved what it
    /// moved); a write compares the bytes its CDB needed (`needed_out`)
    /// with EDTL; a command that is neither reports none.
    pub fn of(read: bool, edtl: u32, produced: u64, needed_out: Option<u64>, good: bool) -> Self {
        let edtl = u64::from(edtl);
        let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        match (read, needed_out) {
            (true, _) if produced > edtl => Residual::Overflow(count(produced - edtl)),
            (true, _) if produced < edtl && good => Residual::Underflow(count(edtl - produced)),
            (false, Some(need)) if need > edtl => Residual::Overflow(count(need - edtl)),
            (false, Some(need)) if need < edtl => Residual::Underflow(count(edtl - need)),
            _ => Residual::None,
        }
    }

    pub fn flags(self) -> u8 {
        match self {
            Residual::None => 0,
            Residual::Overflow(_) => OVERFLOW_BIT,
            Residual::Underflow(_) => UNDERFLOW_BIT,
        }
    }

    pub fn count(self) -> u32 {
        match self {
            Residual::None => 0,
            Residual::Overflow(n) | Residual::Underflow(n) => n,
        }
    }
}

/// The status goes in the last Data-In (phase collapse) only for GOOD
/// without sense data, and only when there is data to send; otherwise a
/// SCSI Response follows the data.
pub fn status_in_data(good: bool, has_sense: bool, total: usize) -> bool {
    good && !has_sense && total > 0
}

/// Cuts `segments` to the first `room` bytes (what the initiator expects:
/// EDTL for a read, nothing for a write), dropping empty ones. Returns the
/// bytes left.
pub fn fit(segments: &mut Vec<Bytes>, mut room: usize) -> usize {
    for seg in segments.iter_mut() {
        seg.truncate(room);
        room -= seg.len();
    }
    segments.retain(|s| !s.is_empty());
    segments.iter().map(Bytes::len).sum()
}

/// One Data-In PDU: a byte range of one segment, its offset in the
/// command's buffer, its DataSN, and whether it is the last.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Piece {
    pub segment: usize,
    pub range: Range<usize>,
    pub offset: u32,
    pub data_sn: u32,
    pub last: bool,
}

/// The Data-In PDUs for `segments`: at most `mrdsl` bytes each (the
/// initiator's MaxRecvDataSegmentLength), none crossing a segment (each is
/// a view of its memory), DataSN from 0, offsets back to back.
pub fn pieces<T: AsRef<[u8]>>(segments: &[T], mrdsl: usize) -> impl Iterator<Item = Piece> + '_ {
    let chunk = mrdsl.max(1);
    let total: usize = segments.iter().map(|s| s.as_ref().len()).sum();
    let mut offset = 0usize;
    let mut data_sn = 0u32;
    segments
        .iter()
        .enumerate()
        .flat_map(move |(i, s)| {
            let len = s.as_ref().len();
            (0..len)
                .step_by(chunk)
                .map(move |at| (i, at..(at + chunk).min(len)))
        })
        .map(move |(segment, range)| {
            let n = range.len();
            let p = Piece {
                segment,
                range,
                offset: u32::try_from(offset).unwrap_or(u32::MAX),
                data_sn,
                last: offset + n == total,
            };
            offset += n;
            data_sn += 1;
            p
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_residuals() {
        // Exactly what was expected.
        assert_eq!(Residual::of(true, 4096, 4096, None, true), Residual::None);
        // The CDB asked for more than EDTL: overflow, the excess not sent.
        let r = Residual::of(true, 4096, 8192, None, true);
        assert_eq!(r, Residual::Overflow(4096));
        assert_eq!((r.flags(), r.count()), (0x04, 4096));
        // Less than EDTL (e.g. INQUIRY with a short answer): underflow.
        let r = Residual::of(true, 255, 36, None, true);
        assert_eq!(r, Residual::Underflow(219));
        assert_eq!(r.flags(), 0x02);
        // A failed read reports no underflow.
        assert_eq!(Residual::of(true, 4096, 0, None, false), Residual::None);
        // ...but an overflow still.
        assert_eq!(
            Residual::of(true, 512, 1024, None, false),
            Residual::Overflow(512)
        );
    }

    #[test]
    fn write_residuals_follow_the_cdb_not_the_data() {
        assert_eq!(
            Residual::of(false, 4096, 0, Some(4096), true),
            Residual::None
        );
        assert_eq!(
            Residual::of(false, 4096, 0, Some(8192), true),
            Residual::Overflow(4096)
        );
        assert_eq!(
            Residual::of(false, 8192, 0, Some(4096), false),
            Residual::Underflow(4096)
        );
        // A non-data command (TEST UNIT READY) with an EDTL: nothing to compare.
        assert_eq!(
            Residual::of(false, 0xFFFF_FFFF, 0, None, true),
            Residual::None
        );
        // A write whose CDB moves nothing, with a huge EDTL: underflow of all of it.
        assert_eq!(
            Residual::of(false, 0xFFFF_FFFF, 0, Some(0), true),
            Residual::Underflow(0xFFFF_FFFF)
        );
    }

    #[test]
    fn huge_residuals_saturate() {
        let r = Residual::of(true, 0, u64::from(u32::MAX) + 10, None, true);
        assert_eq!(r.count(), u32::MAX);
    }

    #[test]
    fn status_rides_in_data_only_for_good_without_sense() {
        assert!(status_in_data(true, false, 1));
        assert!(!status_in_data(true, false, 0));
        assert!(!status_in_data(false, false, 512));
        assert!(!status_in_data(true, true, 512));
    }

    #[test]
    fn fit_cuts_to_what_the_initiator_expects() {
        let mut s = vec![Bytes::from(vec![1u8; 100]), Bytes::from(vec![2u8; 100])];
        assert_eq!(fit(&mut s, 150), 150);
        assert_eq!(s.iter().map(Bytes::len).collect::<Vec<_>>(), [100, 50]);
        let mut s = vec![Bytes::from(vec![1u8; 100]), Bytes::from(vec![2u8; 100])];
        assert_eq!(fit(&mut s, 50), 50);
        assert_eq!(s.len(), 1, "the empty second segment is dropped");
        let mut s = vec![Bytes::from(vec![1u8; 100])];
        assert_eq!(fit(&mut s, 0), 0);
        assert!(s.is_empty());
    }

    #[test]
    fn pieces_respect_mrdsl_and_segments() {
        // 10 KiB and 3 KiB segments, MRDSL 4 KiB: 4+4+2 then 3.
        let segs = [vec![0u8; 10 * 1024], vec![0u8; 3 * 1024]];
        let p: Vec<Piece> = pieces(&segs, 4096).collect();
        let shape: Vec<(usize, usize, u32, u32, bool)> = p
            .iter()
            .map(|p| (p.segment, p.range.len(), p.offset, p.data_sn, p.last))
            .collect();
        assert_eq!(
            shape,
            [
                (0, 4096, 0, 0, false),
                (0, 4096, 4096, 1, false),
                (0, 2048, 8192, 2, false),
                (1, 3072, 10240, 3, true),
            ]
        );
        assert_eq!(p[2].range, 8192..10240);
        // Exactly one PDU, and none for no data.
        let one: Vec<Piece> = pieces(&[vec![0u8; 512]], 8192).collect();
        assert_eq!(one.len(), 1);
        assert!(one[0].last);
        let none: Vec<Piece> = pieces::<Vec<u8>>(&[], 8192).collect();
        assert!(none.is_empty());
    }
}

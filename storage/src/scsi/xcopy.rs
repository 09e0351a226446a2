//! EXTENDED COPY (LID1) and RECEIVE COPY RESULTS (SPC-4 6.4 and 6.18) within
//! one target: the copy manager is the LU that receives the command; its
//! CSCD descriptors name logical units of the same target by an
//! identification descriptor (one of their VPD 0x83 LU designators), and
//! block-to-block segment descriptors copy blocks from one to another
//! without the data crossing the network.

use std::sync::Arc;

use super::sense::{Asc, Sense, SenseKey};
use super::{LogicalUnit, NexusId};

/// What the copy manager can take (reported by RECEIVE COPY RESULTS, OPERATING
/// PARAMETERS, and the third-party copy VPD page).
pub mod limits {
    pub const MAX_CSCD_DESCRIPTORS: u16 = 4;
    pub const MAX_SEGMENT_DESCRIPTORS: u16 = 16;
    pub const MAX_DESCRIPTOR_LIST_LENGTH: u32 = 1024;
    /// Bytes one segment may copy (the NUMBER OF BLOCKS field is 16 bits).
    pub const MAX_SEGMENT_LENGTH: u32 = 256 << 20;
    /// Copy results kept per LU for RECEIVE COPY RESULTS (oldest go first).
    pub const HELD_RESULTS: usize = 16;
}

/// Descriptor type codes (SPC-4 tables 109 and 111).
pub mod code {
    /// Segment descriptor: block device to block device.
    pub const BLOCK_TO_BLOCK: u8 = 0x02;
    /// CSCD descriptor: identification descriptor.
    pub const IDENTIFICATION: u8 = 0xE4;
}

/// RECEIVE COPY RESULTS service actions.
pub mod sa {
    pub const COPY_STATUS: u8 = 0x00;
    pub const OPERATING_PARAMETERS: u8 = 0x03;
}

const HEADER_LEN: usize = 16;
const CSCD_LEN: usize = 32;
const B2B_LEN: usize = 28;

impl Asc {
    pub const UNREACHABLE_COPY_TARGET: Asc = Asc(0x08, 0x04);
    pub const TOO_MANY_TARGET_DESCRIPTORS: Asc = Asc(0x26, 0x06);
    pub const UNSUPPORTED_TARGET_DESCRIPTOR_TYPE: Asc = Asc(0x26, 0x07);
    pub const TOO_MANY_SEGMENT_DESCRIPTORS: Asc = Asc(0x26, 0x08);
    pub const UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE: Asc = Asc(0x26, 0x09);
}

/// A finished copy, as COPY STATUS reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CopyResult {
    pub list_id: u8,
    pub segments: u16,
    pub bytes: u64,
}

fn be16(b: &[u8]) -> u64 {
    u16::from_be_bytes([b[0], b[1]]) as u64
}
fn be32(b: &[u8]) -> u64 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as u64
}
fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn copy_aborted(asc: Asc) -> Sense {
    Sense::new(SenseKey::CopyAborted, asc)
}

/// Whether `d` (a designation descriptor: code set, association/type,
/// reserved, length, designator) is one of `lu`'s LU designators.
fn names(lu: &LogicalUnit, d: &[u8]) -> bool {
    let len = d[3] as usize;
    if 4 + len > d.len() || (d[1] >> 4) & 3 != 0 {
        return false;
    }
    let want = (d[1] & 0x0F, &d[4..4 + len]);
    let ids = lu.designators();
    let mut at = 0;
    while at + 4 <= ids.len() {
        let n = ids[at + 3] as usize;
        let Some(body) = ids.get(at + 4..at + 4 + n) else {
            break;
        };
        let lu_assoc = (ids[at + 1] >> 4) & 3 == 0;
        if lu_assoc && (ids[at + 1] & 0x0F, body) == want {
            return true;
        }
        at += 4 + n;
    }
    false
}

/// What an EXTENDED COPY came to, when it was not refused with sense data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outcome {
    /// Copied; the result when the list asked for it to be held.
    Copied(Option<CopyResult>),
    /// A destination LU is reserved against this initiator: nothing copied.
    ReservationConflict,
}

/// Runs an EXTENDED COPY (LID1) parameter list. `me` received the command
/// (its own admission, reservations included, already passed); `peers`
/// are the other logical units of its target (a CSCD may name any of them,
/// or `me`); `may_write` says whether the initiator may write another LU
/// (its reservations).
pub(super) fn extended_copy(
    me: &LogicalUnit,
    peers: &[Arc<LogicalUnit>],
    cdb: &[u8],
    param: &[u8],
    may_write: &dyn Fn(&LogicalUnit) -> bool,
) -> Result<Outcome, Sense> {
    if cdb[1] & 0x1F != 0 {
        // LID4 and the other service actions of 83h are not offered.
        return Err(Sense::invalid_cdb(1, Some(4)));
    }
    let list_len = be32(&cdb[10..14]) as usize;
    if list_len == 0 {
        return Ok(Outcome::Copied(None));
    }
    if list_len < HEADER_LEN || param.len() < list_len {
        return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
    }
    let p = &param[..list_len];
    let list_id = p[0];
    let usage = (p[1] >> 3) & 3;
    let cscd_len = be16(&p[2..4]) as usize;
    let seg_len = be32(&p[8..12]) as usize;
    let inline_len = be32(&p[12..16]) as usize;
    if HEADER_LEN + cscd_len + seg_len + inline_len != list_len {
        return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
    }
    if (cscd_len + seg_len) as u64 > limits::MAX_DESCRIPTOR_LIST_LENGTH as u64 {
        return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
    }
    if inline_len != 0 {
        return Err(Sense::invalid_param(12, None));
    }
    if usage == 3 && list_id != 0 {
        // NO LIST ID: the LIST IDENTIFIER field must be zero.
        return Err(Sense::invalid_param(0, None));
    }
    if !cscd_len.is_multiple_of(CSCD_LEN) {
        return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
    }
    if cscd_len / CSCD_LEN > limits::MAX_CSCD_DESCRIPTORS as usize {
        return Err(Sense::illegal(Asc::TOO_MANY_TARGET_DESCRIPTORS));
    }

    // CSCD descriptors: identification descriptors of block devices.
    let mut cscds = Vec::new();
    for (i, d) in p[HEADER_LEN..HEADER_LEN + cscd_len]
        .chunks_exact(CSCD_LEN)
        .enumerate()
    {
        let at = (HEADER_LEN + i * CSCD_LEN) as u16;
        if d[0] != code::IDENTIFICATION {
            return Err(
                Sense::illegal(Asc::UNSUPPORTED_TARGET_DESCRIPTOR_TYPE).with_param_field(at)
            );
        }
        // Byte 1: LU ID TYPE (ignored by SPC-4 for identification
        // descriptors), NUL (obsolete), PERIPHERAL DEVICE TYPE.
        if d[1] & 0x1F != 0 {
            return Err(Sense::invalid_param(at + 1, Some(4)));
        }
        let found = std::iter::once(me)
            .chain(peers.iter().map(|p| &**p))
            .find(|lu| names(lu, &d[4..28]));
        let Some(lu) = found else {
            return Err(copy_aborted(Asc::UNREACHABLE_COPY_TARGET));
        };
        // Block device parameters: the block size must be the LU's.
        let bs = (be32(&d[28..32]) & 0x00FF_FFFF) as u32;
        if bs != lu.block_size() {
            return Err(Sense::invalid_param(at + 29, None));
        }
        cscds.push(lu);
    }

    // Segment descriptors: block to block, checked whole before any copy.
    let mut segments = Vec::new();
    let mut at = HEADER_LEN + cscd_len;
    let end = at + seg_len;
    while at < end {
        if at + 4 > end {
            return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
        }
        let d = &p[at..end];
        if segments.len() == limits::MAX_SEGMENT_DESCRIPTORS as usize {
            return Err(Sense::illegal(Asc::TOO_MANY_SEGMENT_DESCRIPTORS));
        }
        if d[0] != code::BLOCK_TO_BLOCK {
            return Err(Sense::illegal(Asc::UNSUPPORTED_SEGMENT_DESCRIPTOR_TYPE)
                .with_param_field(at as u16));
        }
        let len = be16(&d[2..4]) as usize + 4;
        if len != B2B_LEN {
            return Err(Sense::invalid_param(at as u16 + 2, None));
        }
        if d.len() < B2B_LEN {
            return Err(Sense::illegal(Asc::PARAMETER_LIST_LENGTH_ERROR));
        }
        segments.push(&d[..B2B_LEN]);
        at += B2B_LEN;
    }
    let mut plan = Vec::new();
    for s in &segments {
        let cscd = |i: u64| {
            cscds
                .get(i as usize)
                .ok_or_else(|| copy_aborted(Asc::UNREACHABLE_COPY_TARGET))
        };
        let (src, dst) = (cscd(be16(&s[4..6]))?, cscd(be16(&s[6..8]))?);
        // DC: the count is in destination blocks rather than source blocks.
        let dc = s[1] & 0x02 != 0;
        let blocks = be16(&s[10..12]);
        let bytes = blocks
            * u64::from(if dc {
                dst.block_size()
            } else {
                src.block_size()
            });
        let (src_lba, dst_lba) = (be64(&s[12..20]), be64(&s[20..28]));
        let fits = |lu: &LogicalUnit, lba: u64| {
            let bs = u64::from(lu.block_size());
            bytes.is_multiple_of(bs)
                && lba
                    .checked_add(bytes / bs)
                    .is_some_and(|e| e <= lu.num_blocks())
        };
        if !fits(src, src_lba) || !fits(dst, dst_lba) {
            return Err(copy_aborted(Asc::NO_ADDITIONAL).with_information(plan.len() as u64));
        }
        if dst.write_protected() {
            return Err(Sense::new(SenseKey::DataProtect, Asc::WRITE_PROTECTED));
        }
        if !std::ptr::eq(*dst, me) && !may_write(dst) {
            return Ok(Outcome::ReservationConflict);
        }
        plan.push((*src, src_lba, *dst, dst_lba, bytes));
    }

    // The copy, in chunks of at most 1 MiB.
    let mut copied = 0u64;
    for (n, (src, src_lba, dst, dst_lba, bytes)) in plan.iter().enumerate() {
        let mut done = 0u64;
        let mut buf = vec![0u8; (*bytes).min(1 << 20) as usize];
        while done < *bytes {
            let chunk = (*bytes - done).min(buf.len() as u64) as usize;
            let from = src_lba * u64::from(src.block_size()) + done;
            let to = dst_lba * u64::from(dst.block_size()) + done;
            let io = src
                .backstore()
                .read_at(&mut buf[..chunk], from)
                .and_then(|()| dst.backstore().write_at(&buf[..chunk], to, false));
            if let Err(e) = io {
                tracing::warn!("EXTENDED COPY segment {n}: {e}");
                return Err(copy_aborted(Asc::NO_ADDITIONAL).with_information(n as u64));
            }
            done += chunk as u64;
        }
        copied += bytes;
    }
    let result = CopyResult {
        list_id,
        segments: plan.len() as u16,
        bytes: copied,
    };
    // LIST ID USAGE 00b and 01b: the copy manager holds the results.
    Ok(Outcome::Copied((usage < 2).then_some(result)))
}

/// RECEIVE COPY RESULTS (LID1 service actions).
pub(super) fn receive_copy_results(
    cdb: &[u8],
    held: &[(NexusId, CopyResult)],
    nexus: &NexusId,
) -> Result<Vec<u8>, Sense> {
    let alloc = be32(&cdb[10..14]) as usize;
    let mut d = match cdb[1] & 0x1F {
        sa::OPERATING_PARAMETERS => operating_parameters(),
        sa::COPY_STATUS => {
            let list_id = cdb[2];
            let Some((_, r)) = held
                .iter()
                .rev()
                .find(|(n, r)| n == nexus && r.list_id == list_id)
            else {
                // No copy with that list identifier (SPC-4 6.18.2).
                return Err(Sense::invalid_cdb(2, None));
            };
            let mut d = vec![0u8; 12];
            d[0..4].copy_from_slice(&8u32.to_be_bytes());
            d[4] = 0x01; // completed, no errors
            d[5..7].copy_from_slice(&r.segments.to_be_bytes());
            // TRANSFER COUNT UNITS 01h: kibibytes (SPC-4 table 206).
            d[7] = 0x01;
            let kib = r.bytes.div_ceil(1024).min(u32::MAX as u64) as u32;
            d[8..12].copy_from_slice(&kib.to_be_bytes());
            d
        }
        _ => return Err(Sense::invalid_cdb(1, Some(4))),
    };
    d.truncate(alloc);
    Ok(d)
}

fn operating_parameters() -> Vec<u8> {
    let implemented = [code::BLOCK_TO_BLOCK, code::IDENTIFICATION];
    let mut d = vec![0u8; 44];
    d[4] = 0x01; // SNLID: copies with no list identifier are supported
    d[8..10].copy_from_slice(&limits::MAX_CSCD_DESCRIPTORS.to_be_bytes());
    d[10..12].copy_from_slice(&limits::MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    d[12..16].copy_from_slice(&limits::MAX_DESCRIPTOR_LIST_LENGTH.to_be_bytes());
    d[16..20].copy_from_slice(&limits::MAX_SEGMENT_LENGTH.to_be_bytes());
    // No inline or held data, no stream devices; one copy at a time.
    d[34..36].copy_from_slice(&1u16.to_be_bytes());
    d[36] = 1;
    d[43] = implemented.len() as u8;
    d.extend_from_slice(&implemented);
    let n = (d.len() - 4) as u32;
    d[0..4].copy_from_slice(&n.to_be_bytes());
    d
}

/// The third-party copy VPD page's descriptors (SPC-4 7.8.17): supported
/// commands, parameter data, supported descriptors, supported CSCD IDs.
pub(super) fn third_party_copy_page() -> Vec<u8> {
    fn descriptor(out: &mut Vec<u8>, kind: u16, body: &[u8]) {
        let mut b = body.to_vec();
        while !(b.len() + 4).is_multiple_of(4) {
            b.push(0);
        }
        out.extend_from_slice(&kind.to_be_bytes());
        out.extend_from_slice(&(b.len() as u16).to_be_bytes());
        out.extend_from_slice(&b);
    }
    let mut out = Vec::new();
    // Supported commands: EXTENDED COPY (LID1), RECEIVE COPY RESULTS
    // (COPY STATUS, OPERATING PARAMETERS).
    let commands: [(u8, &[u8]); 2] = [
        (super::op::EXTENDED_COPY, &[0x00]),
        (
            super::op::RECEIVE_COPY_RESULTS,
            &[sa::COPY_STATUS, sa::OPERATING_PARAMETERS],
        ),
    ];
    let mut list = Vec::new();
    for (opcode, sas) in commands {
        list.push(opcode);
        list.push(sas.len() as u8);
        list.extend_from_slice(sas);
    }
    let mut body = vec![list.len() as u8];
    body.extend_from_slice(&list);
    descriptor(&mut out, 0x0001, &body);
    // Parameter data.
    let mut pd = vec![0u8; 28];
    pd[4..6].copy_from_slice(&limits::MAX_CSCD_DESCRIPTORS.to_be_bytes());
    pd[8..10].copy_from_slice(&limits::MAX_SEGMENT_DESCRIPTORS.to_be_bytes());
    pd[10..14].copy_from_slice(&limits::MAX_DESCRIPTOR_LIST_LENGTH.to_be_bytes());
    descriptor(&mut out, 0x0008, &pd);
    // Supported descriptors.
    descriptor(
        &mut out,
        0x0004,
        &[2, code::BLOCK_TO_BLOCK, code::IDENTIFICATION],
    );
    // Supported CSCD descriptor IDs: none beyond the descriptors' own.
    descriptor(&mut out, 0x000C, &[0, 0]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backstore::RamDisk;
    use crate::scsi::{LuConfig, Nexus, ScsiStatus};

    fn lu(naa: u64) -> Arc<LogicalUnit> {
        let cfg = LuConfig {
            naa,
            ..LuConfig::default()
        };
        Arc::new(LogicalUnit::new(Box::new(RamDisk::new(1 << 20).unwrap()), cfg).unwrap())
    }

    fn nexus() -> Nexus {
        Nexus::new("iqn.2026-12.org.example:copier", 1)
    }

    /// A parameter list: CSCDs naming `naas`, then block-to-block segments
    /// (src index, dst index, blocks, src lba, dst lba).
    fn list(list_id: u8, usage: u8, naas: &[u64], segs: &[(u16, u16, u16, u64, u64)]) -> Vec<u8> {
        let mut p = vec![0u8; 16];
        p[0] = list_id;
        p[1] = usage << 3;
        for naa in naas {
            let mut d = vec![0u8; 32];
            d[0] = code::IDENTIFICATION;
            d[4..8].copy_from_slice(&[0x01, 0x03, 0x00, 0x08]);
            d[8..16].copy_from_slice(&naa.to_be_bytes());
            d[29..32].copy_from_slice(&[0, 2, 0]); // 512-byte blocks
            p.extend_from_slice(&d);
        }
        for (s, t, n, sl, dl) in segs {
            let mut d = vec![0u8; 28];
            d[0] = code::BLOCK_TO_BLOCK;
            d[2..4].copy_from_slice(&24u16.to_be_bytes());
            d[4..6].copy_from_slice(&s.to_be_bytes());
            d[6..8].copy_from_slice(&t.to_be_bytes());
            d[10..12].copy_from_slice(&n.to_be_bytes());
            d[12..20].copy_from_slice(&sl.to_be_bytes());
            d[20..28].copy_from_slice(&dl.to_be_bytes());
            p.extend_from_slice(&d);
        }
        let cscd = (naas.len() * 32) as u16;
        p[2..4].copy_from_slice(&cscd.to_be_bytes());
        let seg = (segs.len() * 28) as u32;
        p[8..12].copy_from_slice(&seg.to_be_bytes());
        p
    }

    fn xcopy(lu: &Arc<LogicalUnit>, peers: &[Arc<LogicalUnit>], p: &[u8]) -> (ScsiStatus, Vec<u8>) {
        let mut cdb = [0u8; 16];
        cdb[0] = super::super::op::EXTENDED_COPY;
        cdb[10..14].copy_from_slice(&(p.len() as u32).to_be_bytes());
        let r = lu.execute_with(&nexus(), &cdb, p, peers);
        (r.status, r.sense.unwrap_or_default())
    }

    fn asc(sense: &[u8]) -> (u8, u8, u8) {
        (sense[2] & 0x0F, sense[12], sense[13])
    }

    #[test]
    fn blocks_copy_within_an_lu_and_to_another_of_the_target() {
        let (a, b) = (lu(0x0600_1405_0000_0001), lu(0x0600_1405_0000_0002));
        a.backstore().write_at(&[0xAB; 4096], 0, false).unwrap();
        // Within a: LBA 0..8 to LBA 100.
        let (st, _) = xcopy(
            &a,
            &[],
            &list(1, 0, &[0x0600_1405_0000_0001], &[(0, 0, 8, 0, 100)]),
        );
        assert_eq!(st, ScsiStatus::Good);
        let mut got = vec![0u8; 4096];
        a.backstore().read_at(&mut got, 100 * 512).unwrap();
        assert!(got.iter().all(|b| *b == 0xAB));
        // From a to b, named by b's designator; sent to a.
        let p = list(
            2,
            0,
            &[0x0600_1405_0000_0001, 0x0600_1405_0000_0002],
            &[(0, 1, 8, 0, 7)],
        );
        let (st, sense) = xcopy(&a, std::slice::from_ref(&b), &p);
        assert_eq!(st, ScsiStatus::Good, "{sense:02x?}");
        b.backstore().read_at(&mut got, 7 * 512).unwrap();
        assert!(got.iter().all(|x| *x == 0xAB));
        // Its status is held for this nexus and list id.
        let mut rcr = [0u8; 16];
        rcr[0] = super::super::op::RECEIVE_COPY_RESULTS;
        rcr[2] = 2;
        rcr[10..14].copy_from_slice(&64u32.to_be_bytes());
        let r = a.execute_with(&nexus(), &rcr, &[], &[]);
        assert_eq!(r.status, ScsiStatus::Good);
        assert_eq!(&r.data[4..12], &[0x01, 0, 1, 0x01, 0, 0, 0, 4]);
        rcr[2] = 9;
        assert_eq!(
            a.execute_with(&nexus(), &rcr, &[], &[]).status,
            ScsiStatus::CheckCondition
        );
        // A nexus that ends takes its results with it.
        a.nexus_lost(&nexus().id);
        rcr[2] = 2;
        assert_eq!(
            a.execute_with(&nexus(), &rcr, &[], &[]).status,
            ScsiStatus::CheckCondition
        );
    }

    #[test]
    fn a_destination_reserved_by_another_initiator_is_not_written() {
        let (a, b) = (lu(0x0600_1405_0000_0001), lu(0x0600_1405_0000_0002));
        a.backstore().write_at(&[0xEE; 512], 0, false).unwrap();
        // Another initiator reserves b (RESERVE(6)).
        let other = Nexus::new("iqn.2026-12.org.example:other", 2);
        let r = b.execute(&other, &[0x16, 0, 0, 0, 0, 0], &[]);
        assert_eq!(r.status, ScsiStatus::Good);
        let p = list(
            1,
            0,
            &[0x0600_1405_0000_0001, 0x0600_1405_0000_0002],
            &[(0, 1, 1, 0, 9)],
        );
        let (st, _) = xcopy(&a, std::slice::from_ref(&b), &p);
        assert_eq!(st, ScsiStatus::ReservationConflict);
        let mut got = vec![0u8; 512];
        b.backstore().read_at(&mut got, 9 * 512).unwrap();
        assert!(got.iter().all(|x| *x == 0), "nothing was copied");
        // Within a itself the copy goes on.
        let p = list(1, 0, &[0x0600_1405_0000_0001], &[(0, 0, 1, 0, 9)]);
        assert_eq!(xcopy(&a, std::slice::from_ref(&b), &p).0, ScsiStatus::Good);
        // The reserving initiator itself may copy into b.
        let mut cdb = [0u8; 16];
        cdb[0] = super::super::op::EXTENDED_COPY;
        let p = list(
            2,
            0,
            &[0x0600_1405_0000_0001, 0x0600_1405_0000_0002],
            &[(0, 1, 1, 0, 9)],
        );
        cdb[10..14].copy_from_slice(&(p.len() as u32).to_be_bytes());
        let r = a.execute_with(&other, &cdb, &p, std::slice::from_ref(&b));
        assert_eq!(r.status, ScsiStatus::Good);
        b.backstore().read_at(&mut got, 9 * 512).unwrap();
        assert!(got.iter().all(|x| *x == 0xEE));
    }

    #[test]
    fn bad_lists_are_refused_before_anything_is_copied() {
        let a = lu(0x0600_1405_0000_0001);
        a.backstore().write_at(&[0xCD; 512], 0, false).unwrap();
        let good = list(1, 0, &[0x0600_1405_0000_0001], &[(0, 0, 1, 0, 50)]);
        // (what, parameter list, sense key / ASC / ASCQ expected)
        type Case = (&'static str, Vec<u8>, (u8, u8, u8));
        let cases: Vec<Case> = vec![
            (
                "truncated CSCD",
                good[..16 + 31].to_vec(),
                (0x5, 0x1A, 0x00),
            ),
            (
                "truncated segment",
                good[..good.len() - 1].to_vec(),
                (0x5, 0x1A, 0x00),
            ),
            (
                "too many CSCDs",
                list(1, 0, &[0x0600_1405_0000_0001; 5], &[(0, 0, 1, 0, 50)]),
                (0x5, 0x26, 0x06),
            ),
            (
                "too many segments",
                list(1, 0, &[0x0600_1405_0000_0001], &[(0, 0, 1, 0, 50); 17]),
                (0x5, 0x26, 0x08),
            ),
            (
                "unknown LU",
                list(1, 0, &[0x1234], &[(0, 0, 1, 0, 50)]),
                (0xA, 0x08, 0x04),
            ),
            (
                "index beyond the CSCDs",
                list(1, 0, &[0x0600_1405_0000_0001], &[(0, 1, 1, 0, 50)]),
                (0xA, 0x08, 0x04),
            ),
            (
                "beyond the end",
                list(1, 0, &[0x0600_1405_0000_0001], &[(0, 0, 2, 0, 2047)]),
                (0xA, 0x00, 0x00),
            ),
        ];
        for (what, p, want) in cases {
            let (st, sense) = xcopy(&a, &[], &p);
            assert_eq!(st, ScsiStatus::CheckCondition, "{what}");
            assert_eq!(asc(&sense), want, "{what}");
        }
        let mut other = good.clone();
        other[16] = 0xE0; // Fibre Channel N_Port_Name CSCD
        assert_eq!(asc(&xcopy(&a, &[], &other).1), (0x5, 0x26, 0x07));
        let mut stream = good.clone();
        stream[48] = 0x03; // stream-to-stream segment
        assert_eq!(asc(&xcopy(&a, &[], &stream).1), (0x5, 0x26, 0x09));
        // More descriptor bytes than the list may hold.
        let long = list(1, 0, &[0x0600_1405_0000_0001; 5], &[(0, 0, 1, 0, 50); 32]);
        assert_eq!(asc(&xcopy(&a, &[], &long).1), (0x5, 0x1A, 0x00));
        // Nothing was written by any of them.
        let mut got = vec![0u8; 512];
        a.backstore().read_at(&mut got, 50 * 512).unwrap();
        assert!(got.iter().all(|b| *b == 0));
        // An empty list is a copy of nothing.
        assert_eq!(xcopy(&a, &[], &[]).0, ScsiStatus::Good);
    }

    #[test]
    fn operating_parameters_and_the_vpd_page_agree_with_the_limits() {
        let a = lu(1);
        let mut rcr = [0u8; 16];
        rcr[0] = super::super::op::RECEIVE_COPY_RESULTS;
        rcr[1] = sa::OPERATING_PARAMETERS;
        rcr[10..14].copy_from_slice(&1024u32.to_be_bytes());
        let r = a.execute_with(&nexus(), &rcr, &[], &[]);
        assert_eq!(r.status, ScsiStatus::Good);
        let d = r.data;
        assert_eq!(be32(&d[0..4]) as usize, d.len() - 4);
        assert_eq!(be16(&d[8..10]), limits::MAX_CSCD_DESCRIPTORS as u64);
        assert_eq!(be16(&d[10..12]), limits::MAX_SEGMENT_DESCRIPTORS as u64);
        assert_eq!(be32(&d[12..16]), limits::MAX_DESCRIPTOR_LIST_LENGTH as u64);
        assert_eq!(&d[43..], &[2, code::BLOCK_TO_BLOCK, code::IDENTIFICATION]);
        let page = third_party_copy_page();
        // Descriptors: type, length, body; each a multiple of 4 bytes.
        let mut at = 0;
        let mut kinds = Vec::new();
        while at < page.len() {
            let len = be16(&page[at + 2..at + 4]) as usize;
            assert!((len + 4).is_multiple_of(4));
            kinds.push(be16(&page[at..at + 2]));
            at += 4 + len;
        }
        assert_eq!(at, page.len());
        assert_eq!(kinds, vec![0x0001, 0x0008, 0x0004, 0x000C]);
        assert_eq!(&page[4..12], &[7, 0x83, 1, 0x00, 0x84, 2, 0x00, 0x03]);
    }
}

//! iSCSI PDUs (RFC 7143 11): the 48-byte Basic Header Segment, additional
//! header segments, the data segment with its padding, and digests.

use tokio::io::{AsyncRead, AsyncReadExt};

use crate::digest::crc32c;
use crate::error::IscsiError;

/// Length of the Basic Header Segment.
pub const BHS_LEN: usize = 48;
/// Initiator Task Tag / Target Transfer Tag value meaning "none".
pub const RESERVED_TAG: u32 = 0xFFFF_FFFF;
/// Largest data segment we ever accept (the RFC's maximum MaxRecvDataSegmentLength).
pub const MAX_DATA_SEGMENT: usize = 16_777_215;

/// PDU opcodes (RFC 7143 11.1.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Opcode {
    NopOut = 0x00,
    ScsiCommand = 0x01,
    TaskMgmtRequest = 0x02,
    LoginRequest = 0x03,
    TextRequest = 0x04,
    DataOut = 0x05,
    LogoutRequest = 0x06,
    Snack = 0x10,
    NopIn = 0x20,
    ScsiResponse = 0x21,
    TaskMgmtResponse = 0x22,
    LoginResponse = 0x23,
    TextResponse = 0x24,
    DataIn = 0x25,
    LogoutResponse = 0x26,
    R2t = 0x31,
    AsyncMessage = 0x32,
    Reject = 0x3f,
}

impl Opcode {
    pub fn from_u8(v: u8) -> Option<Self> {
        use Opcode::*;
        Some(match v & 0x3f {
            0x00 => NopOut,
            0x01 => ScsiCommand,
            0x02 => TaskMgmtRequest,
            0x03 => LoginRequest,
            0x04 => TextRequest,
            0x05 => DataOut,
            0x06 => LogoutRequest,
            0x10 => Snack,
            0x20 => NopIn,
            0x21 => ScsiResponse,
            0x22 => TaskMgmtResponse,
            0x23 => LoginResponse,
            0x24 => TextResponse,
            0x25 => DataIn,
            0x26 => LogoutResponse,
            0x31 => R2t,
            0x32 => AsyncMessage,
            0x3f => Reject,
            _ => return None,
        })
    }
}

/// Reject reasons (RFC 7143 11.17.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RejectReason {
    DataDigestError = 0x02,
    SnackReject = 0x03,
    ProtocolError = 0x04,
    CommandNotSupported = 0x05,
    ImmediateCommandReject = 0x06,
    TaskInProgress = 0x07,
    InvalidDataAck = 0x08,
    InvalidPduField = 0x09,
    LongOperationReject = 0x0a,
    WaitingForLogout = 0x0c,
}

/// Task management functions (RFC 7143 11.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TmfFunction {
    AbortTask = 1,
    AbortTaskSet = 2,
    ClearAca = 3,
    ClearTaskSet = 4,
    LogicalUnitReset = 5,
    TargetWarmReset = 6,
    TargetColdReset = 7,
    TaskReassign = 8,
}

impl TmfFunction {
    pub fn from_u8(v: u8) -> Option<Self> {
        use TmfFunction::*;
        Some(match v & 0x7f {
            1 => AbortTask,
            2 => AbortTaskSet,
            3 => ClearAca,
            4 => ClearTaskSet,
            5 => LogicalUnitReset,
            6 => TargetWarmReset,
            7 => TargetColdReset,
            8 => TaskReassign,
            _ => return None,
        })
    }
}

/// Task management responses (RFC 7143 11.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TmfResponse {
    Complete = 0,
    TaskDoesNotExist = 1,
    LunDoesNotExist = 2,
    TaskStillAllegiant = 3,
    ReassignmentNotSupported = 4,
    NotSupported = 5,
    AuthorizationFailed = 6,
    Rejected = 255,
}

/// Logout Request reason codes (11.14.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LogoutReason {
    CloseSession = 0,
    CloseConnection = 1,
    RemoveForRecovery = 2,
}

impl LogoutReason {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v & 0x7f {
            0 => Some(LogoutReason::CloseSession),
            1 => Some(LogoutReason::CloseConnection),
            2 => Some(LogoutReason::RemoveForRecovery),
            _ => None,
        }
    }
}

/// Logout Response codes (11.15.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum LogoutResponse {
    Closed = 0,
    CidNotFound = 1,
    RecoveryNotSupported = 2,
    CleanupFailed = 3,
}

/// Login stages (CSG/NSG).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u8)]
pub enum Stage {
    Security = 0,
    Operational = 1,
    FullFeature = 3,
}

impl Stage {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v & 3 {
            0 => Some(Stage::Security),
            1 => Some(Stage::Operational),
            3 => Some(Stage::FullFeature),
            _ => None,
        }
    }
}

/// Login status class and detail (RFC 7143 11.13.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginStatus(pub u8, pub u8);

impl LoginStatus {
    pub const SUCCESS: LoginStatus = LoginStatus(0x00, 0x00);
    pub const INITIATOR_ERROR: LoginStatus = LoginStatus(0x02, 0x00);
    pub const AUTH_FAILURE: LoginStatus = LoginStatus(0x02, 0x01);
    pub const AUTHORIZATION_FAILURE: LoginStatus = LoginStatus(0x02, 0x02);
    pub const NOT_FOUND: LoginStatus = LoginStatus(0x02, 0x03);
    pub const UNSUPPORTED_VERSION: LoginStatus = LoginStatus(0x02, 0x05);
    pub const TOO_MANY_CONNECTIONS: LoginStatus = LoginStatus(0x02, 0x06);
    pub const MISSING_PARAMETER: LoginStatus = LoginStatus(0x02, 0x07);
    pub const CANT_INCLUDE_IN_SESSION: LoginStatus = LoginStatus(0x02, 0x08);
    pub const SESSION_TYPE_NOT_SUPPORTED: LoginStatus = LoginStatus(0x02, 0x09);
    pub const SESSION_DOES_NOT_EXIST: LoginStatus = LoginStatus(0x02, 0x0a);
    pub const INVALID_DURING_LOGIN: LoginStatus = LoginStatus(0x02, 0x0b);
    pub const TARGET_ERROR: LoginStatus = LoginStatus(0x03, 0x00);
    pub const OUT_OF_RESOURCES: LoginStatus = LoginStatus(0x03, 0x02);

    pub fn describe(self) -> &'static str {
        match (self.0, self.1) {
            (0, 0) => "success",
            (1, _) => "target moved (redirection)",
            (2, 0) => "initiator error",
            (2, 1) => "authentication failure",
            (2, 2) => "authorization failure (initiator not allowed)",
            (2, 3) => "target not found",
            (2, 4) => "target removed",
            (2, 5) => "unsupported version",
            (2, 6) => "too many connections",
            (2, 7) => "missing parameter",
            (2, 8) => "cannot include in session",
            (2, 9) => "session type not supported",
            (2, 10) => "session does not exist",
            (2, 11) => "invalid request during login",
            (3, 0) => "target error",
            (3, 1) => "service unavailable",
            (3, 2) => "out of resources",
            _ => "unknown login status",
        }
    }
}

/// The Basic Header Segment, kept as raw bytes with typed accessors.
#[derive(Clone, PartialEq, Eq)]
pub struct Bhs(pub [u8; BHS_LEN]);

impl std::fmt::Debug for Bhs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bhs({:?} itt={:#x})", self.opcode(), self.itt())
    }
}

macro_rules! be_field {
    ($get:ident, $set:ident, $t:ty, $at:expr) => {
        pub fn $get(&self) -> $t {
            <$t>::from_be_bytes(
                self.0[$at..$at + std::mem::size_of::<$t>()]
                    .try_into()
                    .unwrap_or_default(),
            )
        }
        pub fn $set(&mut self, v: $t) -> &mut Self {
            self.0[$at..$at + std::mem::size_of::<$t>()].copy_from_slice(&v.to_be_bytes());
            self
        }
    };
}

impl Default for Bhs {
    fn default() -> Self {
        Bhs([0; BHS_LEN])
    }
}

impl Bhs {
    pub fn new(op: Opcode) -> Self {
        let mut b = Bhs::default();
        b.0[0] = op as u8;
        b
    }
    pub fn opcode_raw(&self) -> u8 {
        self.0[0] & 0x3f
    }
    pub fn opcode(&self) -> Option<Opcode> {
        Opcode::from_u8(self.0[0])
    }
    pub fn immediate(&self) -> bool {
        self.0[0] & 0x40 != 0
    }
    pub fn set_immediate(&mut self, on: bool) -> &mut Self {
        if on {
            self.0[0] |= 0x40
        } else {
            self.0[0] &= !0x40
        }
        self
    }
    pub fn flags(&self) -> u8 {
        self.0[1]
    }
    pub fn set_flags(&mut self, f: u8) -> &mut Self {
        self.0[1] = f;
        self
    }
    pub fn final_bit(&self) -> bool {
        self.0[1] & 0x80 != 0
    }
    pub fn total_ahs_len(&self) -> usize {
        self.0[4] as usize * 4
    }
    pub fn data_segment_len(&self) -> usize {
        u32::from_be_bytes([0, self.0[5], self.0[6], self.0[7]]) as usize
    }
    pub fn set_data_segment_len(&mut self, len: usize) -> &mut Self {
        let b = (len as u32).to_be_bytes();
        self.0[5..8].copy_from_slice(&b[1..4]);
        self
    }
    pub fn lun_raw(&self) -> [u8; 8] {
        self.0[8..16].try_into().unwrap_or_default()
    }
    pub fn set_lun_raw(&mut self, l: [u8; 8]) -> &mut Self {
        self.0[8..16].copy_from_slice(&l);
        self
    }
    be_field!(itt, set_itt, u32, 16);
    be_field!(word20, set_word20, u32, 20);
    be_field!(word24, set_word24, u32, 24);
    be_field!(word28, set_word28, u32, 28);
    be_field!(word32, set_word32, u32, 32);
    be_field!(word36, set_word36, u32, 36);
    be_field!(word40, set_word40, u32, 40);
    be_field!(word44, set_word44, u32, 44);

    // Named views of the opcode-specific words.
    pub fn ttt(&self) -> u32 {
        self.word20()
    }
    /// StatSN of a target's PDU (bytes 24-27 in every response).
    pub fn stat_sn(&self) -> u32 {
        self.word24()
    }
    pub fn cmd_sn(&self) -> u32 {
        self.word24()
    }
    pub fn exp_stat_sn(&self) -> u32 {
        self.word28()
    }
    pub fn edtl(&self) -> u32 {
        self.word20()
    }
    pub fn data_sn(&self) -> u32 {
        self.word36()
    }
    pub fn buffer_offset(&self) -> u32 {
        self.word40()
    }
    pub fn cdb(&self) -> &[u8] {
        &self.0[32..48]
    }
    pub fn isid(&self) -> u64 {
        let mut b = [0u8; 8];
        b[2..8].copy_from_slice(&self.0[8..14]);
        u64::from_be_bytes(b)
    }
    pub fn set_isid(&mut self, isid: u64) -> &mut Self {
        self.0[8..14].copy_from_slice(&isid.to_be_bytes()[2..8]);
        self
    }
    pub fn tsih(&self) -> u16 {
        u16::from_be_bytes([self.0[14], self.0[15]])
    }
    pub fn set_tsih(&mut self, t: u16) -> &mut Self {
        self.0[14..16].copy_from_slice(&t.to_be_bytes());
        self
    }
    pub fn cid(&self) -> u16 {
        u16::from_be_bytes([self.0[20], self.0[21]])
    }
    pub fn set_cid(&mut self, c: u16) -> &mut Self {
        self.0[20..22].copy_from_slice(&c.to_be_bytes());
        self
    }
}

/// A command's CDB: the 16 bytes of the header, or longer with an extended
/// CDB AHS (only then allocated).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cdb {
    Short([u8; 16]),
    Long(Vec<u8>),
}

impl std::ops::Deref for Cdb {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        match self {
            Cdb::Short(b) => b,
            Cdb::Long(v) => v,
        }
    }
}

/// A whole PDU: header, additional header segments and data (without padding).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pdu {
    pub bhs: Bhs,
    pub ahs: Vec<u8>,
    pub data: Vec<u8>,
}

impl Pdu {
    pub fn new(bhs: Bhs, data: Vec<u8>) -> Self {
        Pdu {
            bhs,
            ahs: Vec::new(),
            data,
        }
    }

    /// The full CDB: 16 bytes from the BHS plus an Extended CDB AHS (type 1).
    pub fn full_cdb(&self) -> Cdb {
        let mut short = [0u8; 16];
        short.copy_from_slice(self.bhs.cdb());
        let mut cdb = Cdb::Short(short);
        let mut pos = 0;
        while pos + 4 <= self.ahs.len() {
            let len = u16::from_be_bytes([self.ahs[pos], self.ahs[pos + 1]]) as usize;
            let kind = self.ahs[pos + 2];
            let body_start = pos + 4;
            let body_end = (body_start + len.saturating_sub(1)).min(self.ahs.len());
            if kind == 1 {
                cdb = Cdb::Long([&cdb[..], &self.ahs[body_start..body_end]].concat());
            }
            pos = body_start + len.saturating_sub(1).div_ceil(4) * 4;
        }
        cdb
    }

    /// Serializes header (+digest), data, padding (+digest) into `out`.
    pub fn encode_into(&self, out: &mut Vec<u8>, header_digest: bool, data_digest: bool) {
        let mut bhs = self.bhs.clone();
        bhs.0[4] = (self.ahs.len() / 4) as u8;
        bhs.set_data_segment_len(self.data.len());
        let start = out.len();
        out.extend_from_slice(&bhs.0);
        out.extend_from_slice(&self.ahs);
        if header_digest {
            let d = crc32c(&out[start..]);
            out.extend_from_slice(&d.to_le_bytes());
        }
        if !self.data.is_empty() {
            out.extend_from_slice(&self.data);
            let pad = pad_len(self.data.len());
            out.extend_from_slice(&[0u8; 3][..pad]);
            if data_digest {
                let d = crc32c_padded(&self.data);
                out.extend_from_slice(&d.to_le_bytes());
            }
        }
    }

    pub fn encode(&self, header_digest: bool, data_digest: bool) -> Vec<u8> {
        let mut v = Vec::with_capacity(BHS_LEN + self.data.len() + 12);
        self.encode_into(&mut v, header_digest, data_digest);
        v
    }
}

/// Padding to the next 4-byte boundary.
pub fn pad_len(len: usize) -> usize {
    (4 - len % 4) % 4
}

/// CRC32C over data plus its zero padding, as the data digest covers.
pub fn crc32c_padded(data: &[u8]) -> u32 {
    let pad = pad_len(data.len());
    let c = crc32c::crc32c(data);
    if pad == 0 {
        c
    } else {
        crc32c::crc32c_append(c, &[0u8; 3][..pad])
    }
}

/// Limits and digest settings the reader applies.
#[derive(Debug, Clone, Copy)]
pub struct ReadLimits {
    pub max_data: usize,
    pub header_digest: bool,
    pub data_digest: bool,
}

/// A PDU read error that still carries the header, so the caller can answer it
/// (a data digest error is answered with a Reject, not a dropped connection).
#[derive(Debug)]
pub enum ReadOutcome {
    Pdu(Pdu),
    DataDigestError(Pdu),
}

/// Reads one PDU. Returns `Ok(None)` on a clean EOF before any header byte.
pub async fn read_pdu<R: AsyncRead + Unpin>(
    r: &mut R,
    limits: ReadLimits,
) -> Result<Option<ReadOutcome>, IscsiError> {
    match read_header(r, limits).await? {
        Some(h) => read_body(r, h, limits).await.map(Some),
        None => Ok(None),
    }
}

/// A PDU's header, read; its data segment (`dlen` bytes, padded) follows on the wire.
#[derive(Debug)]
pub struct Header {
    pub bhs: Bhs,
    pub ahs: Vec<u8>,
    pub dlen: usize,
}

/// Reads the BHS, AHS and header digest; checks the data segment length.
/// None at a clean end of stream.
pub async fn read_header<R: AsyncRead + Unpin>(
    r: &mut R,
    limits: ReadLimits,
) -> Result<Option<Header>, IscsiError> {
    let mut bhs = Bhs::default();
    let mut got = 0;
    while got < BHS_LEN {
        let n = r.read(&mut bhs.0[got..]).await?;
        if n == 0 {
            if got == 0 {
                return Ok(None);
            }
            return Err(IscsiError::Truncated);
        }
        got += n;
    }
    let ahs_len = bhs.total_ahs_len();
    let mut ahs = vec![0u8; ahs_len];
    read_exact(r, &mut ahs).await?;
    let mut digest = [0u8; 4];
    if limits.header_digest {
        read_exact(r, &mut digest).await?;
    }
    let dlen = check_header(&bhs, &ahs, digest, limits)?;
    Ok(Some(Header { bhs, ahs, dlen }))
}

/// The checks of a header read whole: its digest (when negotiated) and its
/// data segment length against the limit. Returns the data segment length.
fn check_header(
    bhs: &Bhs,
    ahs: &[u8],
    digest: [u8; 4],
    limits: ReadLimits,
) -> Result<usize, IscsiError> {
    if limits.header_digest {
        let c = crc32c::crc32c_append(crc32c::crc32c(&bhs.0), ahs);
        if c != u32::from_le_bytes(digest) {
            return Err(IscsiError::HeaderDigest);
        }
    }
    let dlen = bhs.data_segment_len();
    if dlen > limits.max_data {
        return Err(IscsiError::DataSegmentTooLong {
            len: dlen,
            max: limits.max_data,
        });
    }
    Ok(dlen)
}

/// One PDU from the front of `buf`, without I/O: the same checks as
/// [`read_pdu`], for tests and fuzzing. `Ok(None)` while `buf` holds less
/// than a whole PDU; otherwise the PDU and the bytes it took.
pub fn decode(buf: &[u8], limits: ReadLimits) -> Result<Option<(ReadOutcome, usize)>, IscsiError> {
    let Some(b) = buf.get(..BHS_LEN) else {
        return Ok(None);
    };
    let mut bhs = Bhs::default();
    bhs.0.copy_from_slice(b);
    let mut at = BHS_LEN;
    let Some(ahs) = buf.get(at..at + bhs.total_ahs_len()) else {
        return Ok(None);
    };
    let ahs = ahs.to_vec();
    at += ahs.len();
    let mut digest = [0u8; 4];
    if limits.header_digest {
        let Some(d) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        digest.copy_from_slice(d);
        at += 4;
    }
    let dlen = check_header(&bhs, &ahs, digest, limits)?;
    let padded = dlen + pad_len(dlen);
    let Some(segment) = buf.get(at..at + padded) else {
        return Ok(None);
    };
    at += padded;
    let mut digest_ok = true;
    if limits.data_digest && dlen > 0 {
        let Some(d) = buf.get(at..at + 4) else {
            return Ok(None);
        };
        digest_ok = crc32c::crc32c(segment) == u32::from_le_bytes([d[0], d[1], d[2], d[3]]);
        at += 4;
    }
    let pdu = Pdu {
        bhs,
        ahs,
        data: segment[..dlen].to_vec(),
    };
    let outcome = if digest_ok {
        ReadOutcome::Pdu(pdu)
    } else {
        ReadOutcome::DataDigestError(pdu)
    };
    Ok(Some((outcome, at)))
}

/// Reads the data segment of `h` into a pooled buffer.
pub async fn read_body<R: AsyncRead + Unpin>(
    r: &mut R,
    h: Header,
    limits: ReadLimits,
) -> Result<ReadOutcome, IscsiError> {
    let Header { bhs, ahs, dlen } = h;
    let padded = dlen + pad_len(dlen);
    // A pooled buffer; read_exact overwrites all of it.
    let mut data = iolab_storage::pool::take(padded);
    read_exact(r, &mut data).await?;
    let mut digest_ok = true;
    if limits.data_digest && dlen > 0 {
        let mut d = [0u8; 4];
        read_exact(r, &mut d).await?;
        digest_ok = crc32c::crc32c(&data) == u32::from_le_bytes(d);
    }
    data.truncate(dlen);
    let pdu = Pdu { bhs, ahs, data };
    Ok(if digest_ok {
        ReadOutcome::Pdu(pdu)
    } else {
        ReadOutcome::DataDigestError(pdu)
    })
}

/// Appends the data segment of `dlen` bytes (then skips its padding and checks
/// its digest) straight onto `out`, without an intermediate buffer or zero-filling.
/// Returns whether the data digest matched (true when digests are off).
pub async fn read_data_into<R: AsyncRead + Unpin>(
    r: &mut R,
    out: &mut Vec<u8>,
    dlen: usize,
    data_digest: bool,
) -> Result<bool, IscsiError> {
    use bytes::BufMut;
    let start = out.len();
    out.reserve(dlen);
    while out.len() - start < dlen {
        let want = dlen - (out.len() - start);
        let mut limited = (&mut *out).limit(want);
        if r.read_buf(&mut limited).await? == 0 {
            return Err(IscsiError::Truncated);
        }
    }
    let mut pad = [0u8; 3];
    let pad = &mut pad[..pad_len(dlen)];
    read_exact(r, pad).await?;
    if data_digest && dlen > 0 {
        let mut d = [0u8; 4];
        read_exact(r, &mut d).await?;
        let c = crc32c::crc32c_append(crc32c::crc32c(&out[start..]), pad);
        return Ok(c == u32::from_le_bytes(d));
    }
    Ok(true)
}

async fn read_exact<R: AsyncRead + Unpin>(r: &mut R, buf: &mut [u8]) -> Result<(), IscsiError> {
    match r.read_exact(buf).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(IscsiError::Truncated),
        Err(e) => Err(e.into()),
    }
}

/// Serial number arithmetic (RFC 1982) for 32-bit sequence numbers.
pub fn sn_lt(a: u32, b: u32) -> bool {
    a != b && (b.wrapping_sub(a) as i32) > 0
}
pub fn sn_le(a: u32, b: u32) -> bool {
    a == b || sn_lt(a, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cdb_is_the_header_s_16_bytes_or_longer_with_an_extended_cdb_ahs() {
        let mut bhs = Bhs::new(Opcode::ScsiCommand);
        bhs.0[32..48].copy_from_slice(&[7u8; 16]);
        let mut pdu = Pdu::new(bhs, Vec::new());
        assert_eq!(pdu.full_cdb(), Cdb::Short([7u8; 16]));
        // AHS: length 17 (a reserved byte + 16 CDB bytes), type 1 (extended
        // CDB), the reserved byte, the 16 bytes: 20 in all.
        let mut ahs = vec![0, 17, 1, 0];
        ahs.extend((0..16).map(|i| 100 + i as u8));
        pdu.ahs = ahs;
        let cdb = pdu.full_cdb();
        assert_eq!(cdb.len(), 32);
        assert_eq!(&cdb[..16], &[7u8; 16]);
        assert_eq!(
            cdb[16..].to_vec(),
            (0..16).map(|i| 100 + i as u8).collect::<Vec<_>>()
        );
    }

    #[test]
    fn data_segments_append_in_place_with_padding_and_digest() {
        let pdu = Pdu::new(Bhs::new(Opcode::DataIn), vec![9, 8, 7, 6, 5]);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        for dd in [false, true] {
            let wire = pdu.encode(false, dd);
            let limits = ReadLimits {
                max_data: 1 << 16,
                header_digest: false,
                data_digest: dd,
            };
            let mut r = &wire[..];
            let mut out = vec![1u8, 2];
            let ok = rt.block_on(async {
                let h = read_header(&mut r, limits).await.unwrap().unwrap();
                assert_eq!(h.dlen, 5);
                read_data_into(&mut r, &mut out, h.dlen, dd).await.unwrap()
            });
            assert!(ok);
            assert_eq!(out, [1, 2, 9, 8, 7, 6, 5]);
            assert!(r.is_empty(), "padding and digest consumed");
            if dd {
                let mut bad = wire.clone();
                let n = bad.len();
                bad[n - 1] ^= 1;
                let mut r = &bad[..];
                let mut out = Vec::new();
                let ok = rt.block_on(async {
                    let h = read_header(&mut r, limits).await.unwrap().unwrap();
                    read_data_into(&mut r, &mut out, h.dlen, true)
                        .await
                        .unwrap()
                });
                assert!(!ok, "a corrupted digest is caught");
            }
            let mut r = &wire[..wire.len() - 6];
            let mut out = Vec::new();
            let e = rt.block_on(async {
                let h = read_header(&mut r, limits).await.unwrap().unwrap();
                read_data_into(&mut r, &mut out, h.dlen, dd).await
            });
            assert!(e.is_err(), "a truncated segment is an error");
        }
    }

    #[test]
    fn encode_decode_round_trip_with_digests() {
        let mut bhs = Bhs::new(Opcode::ScsiCommand);
        bhs.set_flags(0x80).set_itt(0x1234).set_word24(7);
        let pdu = Pdu::new(bhs, vec![1, 2, 3, 4, 5]);
        for (hd, dd) in [(false, false), (true, true), (true, false), (false, true)] {
            let wire = pdu.encode(hd, dd);
            assert_eq!(
                wire.len(),
                48 + 8 + if hd { 4 } else { 0 } + if dd { 4 } else { 0 }
            );
            let rt = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let got = rt
                .block_on(read_pdu(
                    &mut &wire[..],
                    ReadLimits {
                        max_data: 8192,
                        header_digest: hd,
                        data_digest: dd,
                    },
                ))
                .unwrap()
                .unwrap();
            match got {
                ReadOutcome::Pdu(p) => {
                    assert_eq!(p.data, vec![1, 2, 3, 4, 5]);
                    assert_eq!(p.bhs.itt(), 0x1234);
                    assert_eq!(p.bhs.cmd_sn(), 7);
                }
                ReadOutcome::DataDigestError(_) => panic!("digest mismatch"),
            }
        }
    }

    #[test]
    fn rejects_oversized_and_truncated() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let pdu = Pdu::new(Bhs::new(Opcode::NopOut), vec![0; 100]);
        let wire = pdu.encode(false, false);
        let lim = ReadLimits {
            max_data: 64,
            header_digest: false,
            data_digest: false,
        };
        assert!(matches!(
            rt.block_on(read_pdu(&mut &wire[..], lim)),
            Err(IscsiError::DataSegmentTooLong { .. })
        ));
        let lim = ReadLimits {
            max_data: 8192,
            ..lim
        };
        assert!(matches!(
            rt.block_on(read_pdu(&mut &wire[..60], lim)),
            Err(IscsiError::Truncated)
        ));
        assert!(matches!(
            rt.block_on(read_pdu(&mut &wire[..0], lim)),
            Ok(None)
        ));
    }

    #[test]
    fn serial_arithmetic_wraps() {
        assert!(sn_lt(0xFFFF_FFF0, 5));
        assert!(!sn_lt(5, 0xFFFF_FFF0));
        assert!(sn_le(3, 3));
    }

    #[test]
    fn known_crc32c_vector() {
        // RFC 7143 B.4: 32 bytes of zeros.
        assert_eq!(crc32c(&[0u8; 32]), 0x8a9136aa);
    }

    #[test]
    fn decode_takes_what_encode_wrote_and_waits_for_the_rest() {
        for (hd, dd) in [(false, false), (true, true), (true, false)] {
            let limits = ReadLimits {
                max_data: 8192,
                header_digest: hd,
                data_digest: dd,
            };
            let mut bhs = Bhs::new(Opcode::ScsiCommand);
            bhs.set_itt(7);
            let mut pdu = Pdu::new(bhs, b"hello".to_vec());
            pdu.ahs = vec![0, 5, 1, 0, 1, 2, 3, 4];
            let wire = pdu.encode(hd, dd);
            for cut in 0..wire.len() {
                assert!(decode(&wire[..cut], limits).unwrap().is_none(), "cut {cut}");
            }
            let mut two = wire.clone();
            two.extend_from_slice(&wire);
            let Some((ReadOutcome::Pdu(back), used)) = decode(&two, limits).unwrap() else {
                panic!("no PDU");
            };
            assert_eq!(used, wire.len());
            assert_eq!((back.bhs.itt(), back.data.as_slice()), (7, &b"hello"[..]));
            assert_eq!(back.ahs, pdu.ahs);
            if dd {
                let mut bad = wire.clone();
                let last = bad.len() - 5;
                bad[last] ^= 1;
                assert!(matches!(
                    decode(&bad, limits).unwrap(),
                    Some((ReadOutcome::DataDigestError(_), _))
                ));
            }
            if hd {
                let mut bad = wire.clone();
                bad[20] ^= 1;
                assert!(matches!(
                    decode(&bad, limits),
                    Err(IscsiError::HeaderDigest)
                ));
            }
        }
        let mut big = Bhs::new(Opcode::DataOut);
        big.set_data_segment_len(9000);
        let limits = ReadLimits {
            max_data: 8192,
            header_digest: false,
            data_digest: false,
        };
        assert!(matches!(
            decode(&big.0, limits),
            Err(IscsiError::DataSegmentTooLong { len: 9000, .. })
        ));
    }
}

//! Typed PDUs (RFC 7143 11.2-11.17), login and full-feature phase: one
//! struct per opcode with its fields by name and its flags as named bits, `encode` to a
//! Basic Header Segment and `decode` from one (None for another opcode).
//! The data segment travels beside the BHS ([`crate::pdu::Pdu`], frames);
//! its length is set when the PDU is framed.

use crate::pdu::{
    Bhs, LoginStatus, Opcode, RESERVED_TAG, RejectReason, Stage, TmfFunction, TmfResponse,
};

/// Task attributes of a SCSI Command (RFC 7143 11.3.1, SAM-5 8.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum TaskAttribute {
    Untagged = 0,
    Simple = 1,
    Ordered = 2,
    HeadOfQueue = 3,
    Aca = 4,
}

impl TaskAttribute {
    /// The attribute of the ATTR bits; None for the reserved codes 5-7.
    pub fn of(bits: u8) -> Option<TaskAttribute> {
        Some(match bits & flag::ATTR_MASK {
            0 => TaskAttribute::Untagged,
            1 => TaskAttribute::Simple,
            2 => TaskAttribute::Ordered,
            3 => TaskAttribute::HeadOfQueue,
            4 => TaskAttribute::Aca,
            _ => return None,
        })
    }
    /// Whether the task may run in any order with other such tasks
    /// (an untagged task is treated as SIMPLE, as iSCSI initiators send it).
    pub fn unordered(self) -> bool {
        matches!(self, TaskAttribute::Untagged | TaskAttribute::Simple)
    }
}

/// Flag bits of byte 1.
pub mod flag {
    /// F: the final PDU (of a command, a sequence or an exchange).
    pub const FINAL: u8 = 0x80;
    /// C (Text): more text follows.
    pub const CONTINUE: u8 = 0x40;
    /// R and W (SCSI Command): data moves to / from the initiator.
    pub const READ: u8 = 0x40;
    pub const WRITE: u8 = 0x20;
    /// Task attributes of a SCSI Command.
    pub const ATTR_MASK: u8 = 0x07;
    /// A (Data-In): acknowledge (ERL > 0).
    pub const ACK: u8 = 0x40;
    /// O and U: residual overflow and underflow (SCSI Response, Data-In).
    pub const OVERFLOW: u8 = 0x04;
    pub const UNDERFLOW: u8 = 0x02;
    /// S (Data-In): the status is in this PDU.
    pub const STATUS: u8 = 0x01;
    /// T (Login): the sender wants to move to the next stage.
    pub const TRANSIT: u8 = 0x80;
    /// CSG and NSG (Login): bits 3-2 and 1-0.
    pub const CSG_SHIFT: u8 = 2;
    pub const STAGE_MASK: u8 = 0x03;
}

/// StatSN, ExpCmdSN and MaxCmdSN of a target's response.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Sn {
    pub stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
}

impl Sn {
    /// The next response's numbers: `stat_sn` and the window, advancing
    /// `stat_sn` when the response counts (`advance`).
    pub fn take(stat_sn: &mut u32, advance: bool, (exp_cmd_sn, max_cmd_sn): (u32, u32)) -> Sn {
        let sn = Sn {
            stat_sn: *stat_sn,
            exp_cmd_sn,
            max_cmd_sn,
        };
        if advance {
            *stat_sn = stat_sn.wrapping_add(1);
        }
        sn
    }

    fn put(self, b: &mut Bhs) {
        b.set_word24(self.stat_sn)
            .set_word28(self.exp_cmd_sn)
            .set_word32(self.max_cmd_sn);
    }
    fn get(b: &Bhs) -> Sn {
        Sn {
            stat_sn: b.word24(),
            exp_cmd_sn: b.word28(),
            max_cmd_sn: b.word32(),
        }
    }
}

/// A PDU type: its opcode, and the BHS both ways.
pub trait Typed: Sized {
    const OPCODE: Opcode;
    fn encode(&self) -> Bhs;
    /// `None` when `b` is another opcode.
    fn decode(b: &Bhs) -> Option<Self>;
}

fn is(b: &Bhs, op: Opcode) -> bool {
    b.opcode() == Some(op)
}

fn head(op: Opcode, immediate: bool, flags: u8) -> Bhs {
    let mut b = Bhs::new(op);
    b.set_immediate(immediate).set_flags(flags);
    b
}

/// SCSI Command (11.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiCommand {
    pub immediate: bool,
    pub final_: bool,
    pub read: bool,
    pub write: bool,
    pub attr: u8,
    pub lun: [u8; 8],
    pub itt: u32,
    pub edtl: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub cdb: [u8; 16],
}

impl Typed for ScsiCommand {
    const OPCODE: Opcode = Opcode::ScsiCommand;
    fn encode(&self) -> Bhs {
        let f = if self.final_ { flag::FINAL } else { 0 }
            | if self.read { flag::READ } else { 0 }
            | if self.write { flag::WRITE } else { 0 }
            | (self.attr & flag::ATTR_MASK);
        let mut b = head(Self::OPCODE, self.immediate, f);
        b.set_lun_raw(self.lun)
            .set_itt(self.itt)
            .set_word20(self.edtl)
            .set_word24(self.cmd_sn)
            .set_word28(self.exp_stat_sn);
        b.0[32..48].copy_from_slice(&self.cdb);
        b
    }
    fn decode(b: &Bhs) -> Option<Self> {
        is(b, Self::OPCODE).then(|| {
            let mut cdb = [0u8; 16];
            cdb.copy_from_slice(b.cdb());
            ScsiCommand {
                immediate: b.immediate(),
                final_: b.flags() & flag::FINAL != 0,
                read: b.flags() & flag::READ != 0,
                write: b.flags() & flag::WRITE != 0,
                attr: b.flags() & flag::ATTR_MASK,
                lun: b.lun_raw(),
                itt: b.itt(),
                edtl: b.word20(),
                cmd_sn: b.word24(),
                exp_stat_sn: b.word28(),
                cdb,
            }
        })
    }
}

/// SCSI Response (11.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScsiResponse {
    /// O/U bits of the residual.
    pub residual_flags: u8,
    /// 0: command completed at target.
    pub response: u8,
    pub status: u8,
    pub itt: u32,
    pub sn: Sn,
    pub exp_data_sn: u32,
    pub residual: u32,
}

impl Typed for ScsiResponse {
    const OPCODE: Opcode = Opcode::ScsiResponse;
    fn encode(&self) -> Bhs {
        let mut b = head(
            Self::OPCODE,
            false,
            flag::FINAL | (self.residual_flags & (flag::OVERFLOW | flag::UNDERFLOW)),
        );
        b.0[2] = self.response;
        b.0[3] = self.status;
        b.set_itt(self.itt);
        self.sn.put(&mut b);
        b.set_word36(self.exp_data_sn).set_word44(self.residual);
        b
    }
    fn decode(b: &Bhs) -> Option<Self> {
        is(b, Self::OPCODE).then(|| ScsiResponse {
            residual_flags: b.flags() & (flag::OVERFLOW | flag::UNDERFLOW),
            response: b.0[2],
            status: b.0[3],
            itt: b.itt(),
            sn: Sn::get(b),
            exp_data_sn: b.word36(),
            residual: b.word44(),
        })
    }
}

/// SCSI Data-In (11.7). `status` with its residual when the S bit is set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataIn {
    pub final_: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    /// StatSN counts only with status; ExpCmdSN and MaxCmdSN always.
    pub sn: Sn,
    pub data_sn: u32,
    pub offset: u32,
    pub status: Option<DataInStatus>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataInStatus {
    pub status: u8,
    pub residual_flags: u8,
    pub residual: u32,
}

impl Typed for DataIn {
    const OPCODE: Opcode = Opcode::DataIn;
    fn encode(&self) -> Bhs {
        let mut f = if self.final_ { flag::FINAL } else { 0 };
        if let Some(s) = self.status {
            f |= flag::STATUS | (s.residual_flags & (flag::OVERFLOW | flag::UNDERFLOW));
        }
        let mut b = head(Self::OPCODE, false, f);
        b.set_lun_raw(self.lun)
            .set_itt(self.itt)
            .set_word20(self.ttt);
        b.set_word28(self.sn.exp_cmd_sn)
            .set_word32(self.sn.max_cmd_sn);
        if let Some(s) = self.status {
            b.0[3] = s.status;
            b.set_word24(self.sn.stat_sn).set_word44(s.residual);
        }
        b.set_word36(self.data_sn).set_word40(self.offset);
        b
    }
    fn decode(b: &Bhs) -> Option<Self> {
        is(b, Self::OPCODE).then(|| {
            let with_status = b.flags() & flag::STATUS != 0;
            DataIn {
                final_: b.final_bit(),
                lun: b.lun_raw(),
                itt: b.itt(),
                ttt: b.word20(),
                sn: Sn::get(b),
                data_sn: b.word36(),
                offset: b.word40(),
                status: with_status.then(|| DataInStatus {
                    status: b.0[3],
                    residual_flags: b.flags() & (flag::OVERFLOW | flag::UNDERFLOW),
                    residual: b.word44(),
                }),
            }
        })
    }
}

/// SCSI Data-Out (11.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataOut {
    pub final_: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    /// The R2T's tag, or reserved for unsolicited data.
    pub ttt: u32,
    pub exp_stat_sn: u32,
    pub data_sn: u32,
    pub offset: u32,
}

impl Typed for DataOut {
    const OPCODE: Opcode = Opcode::DataOut;
    fn encode(&self) -> Bhs {
        let mut b = head(
            Self::OPCODE,
            false,
            if self.final_ { flag::FINAL } else { 0 },
        );
        b.set_lun_raw(self.lun)
            .set_itt(self.itt)
            .set_word20(self.ttt)
            .set_word28(self.exp_stat_sn)
            .set_word36(self.data_sn)
            .set_word40(self.offset);
        b
    }
    fn decode(b: &Bhs) -> Option<Self> {
        is(b, Self::OPCODE).then(|| DataOut {
            final_: b.final_bit(),
            lun: b.lun_raw(),
            itt: b.itt(),
            ttt: b.word20(),
            exp_stat_sn: b.word28(),
            data_sn: b.word36(),
            offset: b.word40(),
        })
    }
}

/// Ready To Transfer (11.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct R2t {
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    /// StatSN is not advanced by an R2T: the next one to be sent.
    pub sn: Sn,
    pub r2t_sn: u32,
    pub offset: u32,
    pub length: u32,
}

impl Typed for R2t {
    const OPCODE: Opcode = Opcode::R2t;
    fn encode(&self) -> Bhs {
        let mut b = head(Self::OPCODE, false, flag::FINAL);
        b.set_lun_raw(self.lun)
            .set_itt(self.itt)
            .set_word20(self.ttt);
        self.sn.put(&mut b);
        b.set_word36(self.r2t_sn)
            .set_word40(self.offset)
            .set_word44(self.length);
        b
    }
    fn decode(b: &Bhs) -> Option<Self> {
        is(b, Self::OPCODE).then(|| R2t {
            lun: b.lun_raw(),
            itt: b.itt(),
            ttt: b.word20(),
            sn: Sn::get(b),
            r2t_sn: b.word36(),
            offset: b.word40(),
            length: b.word44(),
        })
    }
}

/// NOP-Out (11.18): a ping (ITT set) or the answer to the target's (TTT set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NopOut {
    pub immediate: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

impl Typed for NopOut {
    const OPCODE: Opcode = Opcode::NopOut;
    fn encode(&self) -> Bhs {
        let mut b = head(Self::OPCODE, self.immediate, flag::FINAL);
        b.set_lun_raw(self.lun)
            .set_itt(self.itt)
            .set_word20(self.ttt)
            .set_word24(self.cmd_sn)
            .set_word28(self.exp_stat_sn);
        b
    }
    fn decode(b: &Bhs) -> Option<Self> {
        is(b, Self::OPCODE).then(|| NopOut {
            immediate: b.immediate(),
            lun: b.lun_raw(),
            itt: b.itt(),
            ttt: b.word20(),
            cmd_sn: b.word24(),
            exp_stat_sn: b.word28(),
        })
    }
}

/// NOP-In (11.19): an answer (ITT set) or the target's ping (TTT set).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NopIn {
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub sn: Sn,
}

impl NopIn {
    /// The answer to a ping with `itt`.
    pub fn answer(lun: [u8; 8], itt: u32, sn: Sn) -> Self {
        NopIn {
            lun,
            itt,
            ttt: RESERVED_TAG,
            sn,
        }
    }
}

impl Typed for NopIn {
    const OPCODE: Opcode = Opcode::NopIn;
    fn encode(&self) -> Bhs {
        let mut b = head(Self::OPCODE, false, flag::FINAL);
        b.set_lun_raw(self.lun)
            .set_itt(self.itt)
            .set_word20(self.ttt);
        self.sn.put(&mut b);
        b
    }
    fn decode(b: &Bhs) -> Option<Self> {
        is(b, Self::OPCODE).then(|| NopIn {
            lun: b.lun_raw(),
            itt: b.itt(),
            ttt: b.word20(),
            sn: Sn::get(b),
        })
    }
}

/// Text Request (11.10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextRequest {
    pub immediate: bool,
    pub final_: bool,
    pub continue_: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

impl Typed for TextRequest {
    const OPCODE: Opcode = Opcode::TextRequest;
    fn encode(&self) -> Bhs {
        let f = if self.final_ { flag::FINAL } else { 0 }
            | if self.continue_ { flag::CONTINUE } else { 0 };
        let mut b = head(Self::OPCODE, self.immediate, f);
        b.set_lun_raw(self.lun)
            .set_itt(self.itt)
            .set_word20(self.ttt)
            .set_word24(self.cmd_sn)
            .set_word28(self.exp_stat_sn);
        b
    }
    fn decode(b: &Bhs) -> Option<Self> {
        is(b, Self::OPCODE).then(|| TextRequest {
            immediate: b.immediate(),
            final_: b.flags() & flag::FINAL != 0,
            continue_: b.flags() & flag::CONTINUE != 0,
            lun: b.lun_raw(),
            itt: b.itt(),
            ttt: b.word20(),
            cmd_sn: b.word24(),
            exp_stat_sn: b.word28(),
        })
    }
}

/// Text Response (11.11): F on the last, C on the others; neither when the
/// target asks for the rest of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextResponse {
    pub final_: bool,
    pub continue_: bool,
    pub lun: [u8; 8],
    pub itt: u32,
    pub ttt: u32,
    pub sn: Sn,
}

impl Typed for TextResponse {
    const OPCODE: Opcode = Opcode::TextResponse;
    fn encode(&self) -> Bhs {
        let f = if self.final_ { flag::FINAL } else { 0 }
            | if self.continue_ { flag::CONTINUE } else { 0 };
        let mut b = head(Self::OPCODE, false, f);
        b.set_lun_raw(self.lun)
            .set_itt(self.itt)
            .set_word20(self.ttt);
        self.sn.put(&mut b);
        b
    }
    fn decode(b: &Bhs) -> Option<Self> {
        is(b, Self::OPCODE).then(|| TextResponse {
            final_: b.flags() & flag::FINAL != 0,
            continue_: b.flags() & flag::CONTINUE != 0,
            lun: b.lun_raw(),
            itt: b.itt(),
            ttt: b.word20(),
            sn: Sn::get(b),
        })
    }
}

/// Task Management Function Request (11.5). `function` is the raw code
/// ([`TmfFunction::from_u8`] names it; an unknown one is rejected).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskMgmtRequest {
    pub immediate: bool,
    pub function: u8,
    pub lun: [u8; 8],
    pub itt: u32,
    pub rtt: u32,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
    pub ref_cmd_sn: u32,
    pub exp_data_sn: u32,
}

impl TaskMgmtRequest {
    pub fn function(&self) -> Option<TmfFunction> {
        TmfFunction::from_u8(self.function)
    }
}

impl Typed for TaskMgmtRequest {
    const OPCODE: Opcode = Opcode::TaskMgmtRequest;
    fn encode(&self) -> Bhs {
        let mut b = head(
            Self::OPCODE,
            self.immediate,
            flag::FINAL | (self.function & 0x7f),
        );
        b.set_lun_raw(self.lun)
            .set_itt(self.itt)
            .set_word20(self.rtt)
            .set_word24(self.cmd_sn)
            .set_word28(self.exp_stat_sn)
            .set_word32(self.ref_cmd_sn)
            .set_word36(self.exp_data_sn);
        b
    }
    fn decode(b: &Bhs) -> Option<Self> {
        is(b, Self::OPCODE).then(|| TaskMgmtRequest {
            immediate: b.immediate(),
            function: b.flags() & 0x7f,
            lun: b.lun_raw(),
            itt: b.itt(),
            rtt: b.word20(),
            cmd_sn: b.word24(),
            exp_stat_sn: b.word28(),
            ref_cmd_sn: b.word32(),
            exp_data_sn: b.word36(),
        })
    }
}

/// Task Management Function Response (11.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskMgmtResponse {
    pub response: TmfResponse,
    pub itt: u32,
    pub sn: Sn,
}

impl Typed for TaskMgmtResponse {
    const OPCODE: Opcode = Opcode::TaskMgmtResponse;
    fn encode(&self) -> Bhs {
        let mut b = head(Self::OPCODE, false, flag::FINAL);
        b.0[2] = self.response as u8;
        b.set_itt(self.itt);
        self.sn.put(&mut b);
        b
    }
    fn decode(b: &Bhs) -> Option<Self> {
        use TmfResponse::*;
        let response = match b.0[2] {
            0 => Complete,
            1 => TaskDoesNotExist,
            2 => LunDoesNotExist,
            3 => TaskStillAllegiant,
            4 => ReassignmentNotSupported,
            5 => NotSupported,
            6 => AuthorizationFailed,
            _ => Rejected,
        };
        is(b, Self::OPCODE).then(|| TaskMgmtResponse {
            response,
            itt: b.itt(),
            sn: Sn::get(b),
        })
    }
}

/// Logout Request (11.14). `reason` is the raw code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogoutRequest {
    pub immediate: bool,
    pub reason: u8,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

impl Typed for LogoutRequest {
    const OPCODE: Opcode = Opcode::LogoutRequest;
    fn encode(&self) -> Bhs {
        let mut b = head(
            Self::OPCODE,
            self.immediate,
            flag::FINAL | (self.reason & 0x7f),
        );
        b.set_itt(self.itt)
            .set_cid(self.cid)
            .set_word24(self.cmd_sn)
            .set_word28(self.exp_stat_sn);
        b
    }
    fn decode(b: &Bhs) -> Option<Self> {
        is(b, Self::OPCODE).then(|| LogoutRequest {
            immediate: b.immediate(),
            reason: b.flags() & 0x7f,
            itt: b.itt(),
            cid: b.cid(),
            cmd_sn: b.word24(),
            exp_stat_sn: b.word28(),
        })
    }
}

/// Logout Response (11.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogoutResponse {
    pub response: u8,
    pub itt: u32,
    pub sn: Sn,
    pub time2wait: u16,
    pub time2retain: u16,
}

impl Typed for LogoutResponse {
    const OPCODE: Opcode = Opcode::LogoutResponse;
    fn encode(&self) -> Bhs {
        let mut b = head(Self::OPCODE, false, flag::FINAL);
        b.0[2] = self.response;
        b.set_itt(self.itt);
        self.sn.put(&mut b);
        b.0[40..42].copy_from_slice(&self.time2wait.to_be_bytes());
        b.0[42..44].copy_from_slice(&self.time2retain.to_be_bytes());
        b
    }
    fn decode(b: &Bhs) -> Option<Self> {
        is(b, Self::OPCODE).then(|| LogoutResponse {
            response: b.0[2],
            itt: b.itt(),
            sn: Sn::get(b),
            time2wait: u16::from_be_bytes([b.0[40], b.0[41]]),
            time2retain: u16::from_be_bytes([b.0[42], b.0[43]]),
        })
    }
}

/// Reject (11.17): the rejected PDU's header travels as its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reject {
    pub reason: RejectReason,
    pub sn: Sn,
    pub data_sn: u32,
}

impl Typed for Reject {
    const OPCODE: Opcode = Opcode::Reject;
    fn encode(&self) -> Bhs {
        let mut b = head(Self::OPCODE, false, flag::FINAL);
        b.0[2] = self.reason as u8;
        b.set_itt(RESERVED_TAG);
        self.sn.put(&mut b);
        b.set_word36(self.data_sn);
        b
    }
    fn decode(b: &Bhs) -> Option<Self> {
        use RejectReason::*;
        let reason = match b.0[2] {
            0x02 => DataDigestError,
            0x03 => SnackReject,
            0x05 => CommandNotSupported,
            0x06 => ImmediateCommandReject,
            0x07 => TaskInProgress,
            0x08 => InvalidDataAck,
            0x09 => InvalidPduField,
            0x0a => LongOperationReject,
            0x0c => WaitingForLogout,
            _ => ProtocolError,
        };
        is(b, Self::OPCODE).then(|| Reject {
            reason,
            sn: Sn::get(b),
            data_sn: b.word36(),
        })
    }
}

/// Asynchronous Message (11.9): an event of the target's, with its
/// parameters (which mean what the event says).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AsyncMessage {
    pub lun: [u8; 8],
    pub sn: Sn,
    pub event: u8,
    pub vendor_code: u8,
    pub parameters: [u16; 3],
}

impl Typed for AsyncMessage {
    const OPCODE: Opcode = Opcode::AsyncMessage;
    fn encode(&self) -> Bhs {
        let mut b = head(Self::OPCODE, false, flag::FINAL);
        b.set_lun_raw(self.lun).set_itt(RESERVED_TAG);
        self.sn.put(&mut b);
        b.0[36] = self.event;
        b.0[37] = self.vendor_code;
        for (i, p) in self.parameters.iter().enumerate() {
            b.0[38 + 2 * i..40 + 2 * i].copy_from_slice(&p.to_be_bytes());
        }
        b
    }
    fn decode(b: &Bhs) -> Option<Self> {
        let param = |i: usize| u16::from_be_bytes([b.0[38 + 2 * i], b.0[39 + 2 * i]]);
        is(b, Self::OPCODE).then(|| AsyncMessage {
            lun: b.lun_raw(),
            sn: Sn::get(b),
            event: b.0[36],
            vendor_code: b.0[37],
            parameters: [param(0), param(1), param(2)],
        })
    }
}

/// Byte 1 of a Login PDU: T, C, CSG and NSG. The reserved stage code 2
/// decodes as `None`, and `None` encodes as 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginStages {
    pub transit: bool,
    pub continue_: bool,
    pub csg: Option<Stage>,
    pub nsg: Option<Stage>,
}

impl LoginStages {
    fn byte(self) -> u8 {
        let code = |s: Option<Stage>| s.map_or(2, |s| s as u8);
        (if self.transit { flag::TRANSIT } else { 0 })
            | (if self.continue_ { flag::CONTINUE } else { 0 })
            | (code(self.csg) << flag::CSG_SHIFT)
            | code(self.nsg)
    }
    fn of(b: &Bhs) -> LoginStages {
        let f = b.flags();
        LoginStages {
            transit: f & flag::TRANSIT != 0,
            continue_: f & flag::CONTINUE != 0,
            csg: Stage::from_u8((f >> flag::CSG_SHIFT) & flag::STAGE_MASK),
            nsg: Stage::from_u8(f & flag::STAGE_MASK),
        }
    }
}

/// Login Request (11.12). Always immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginRequest {
    pub stages: LoginStages,
    pub version_max: u8,
    pub version_min: u8,
    pub isid: u64,
    pub tsih: u16,
    pub itt: u32,
    pub cid: u16,
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

impl Typed for LoginRequest {
    const OPCODE: Opcode = Opcode::LoginRequest;
    fn encode(&self) -> Bhs {
        let mut b = head(Self::OPCODE, true, self.stages.byte());
        b.0[2] = self.version_max;
        b.0[3] = self.version_min;
        b.set_isid(self.isid)
            .set_tsih(self.tsih)
            .set_itt(self.itt)
            .set_cid(self.cid)
            .set_word24(self.cmd_sn)
            .set_word28(self.exp_stat_sn);
        b
    }
    fn decode(b: &Bhs) -> Option<Self> {
        is(b, Self::OPCODE).then(|| LoginRequest {
            stages: LoginStages::of(b),
            version_max: b.0[2],
            version_min: b.0[3],
            isid: b.isid(),
            tsih: b.tsih(),
            itt: b.itt(),
            cid: b.cid(),
            cmd_sn: b.word24(),
            exp_stat_sn: b.word28(),
        })
    }
}

/// Login Response (11.13). StatSN counts on every response of a login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginResponse {
    pub stages: LoginStages,
    pub version_max: u8,
    pub version_active: u8,
    pub isid: u64,
    pub tsih: u16,
    pub itt: u32,
    pub sn: Sn,
    pub status: LoginStatus,
}

impl LoginResponse {
    /// Whether the target moved the login to full-feature phase.
    pub fn enters_full_feature(&self) -> bool {
        self.stages.transit && self.stages.nsg == Some(Stage::FullFeature)
    }
}

impl Typed for LoginResponse {
    const OPCODE: Opcode = Opcode::LoginResponse;
    fn encode(&self) -> Bhs {
        let mut b = head(Self::OPCODE, false, self.stages.byte());
        b.0[2] = self.version_max;
        b.0[3] = self.version_active;
        b.set_isid(self.isid).set_tsih(self.tsih).set_itt(self.itt);
        self.sn.put(&mut b);
        b.0[36] = self.status.0;
        b.0[37] = self.status.1;
        b
    }
    fn decode(b: &Bhs) -> Option<Self> {
        is(b, Self::OPCODE).then(|| LoginResponse {
            stages: LoginStages::of(b),
            version_max: b.0[2],
            version_active: b.0[3],
            isid: b.isid(),
            tsih: b.tsih(),
            itt: b.itt(),
            sn: Sn::get(b),
            status: LoginStatus(b.0[36], b.0[37]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SN: Sn = Sn {
        stat_sn: 0x0102_0304,
        exp_cmd_sn: 0x1111_1111,
        max_cmd_sn: 0x2222_2222,
    };
    const LUN: [u8; 8] = [0, 3, 0, 0, 0, 0, 0, 0];

    fn round<T: Typed + PartialEq + std::fmt::Debug>(v: T) -> Bhs {
        let b = v.encode();
        assert_eq!(T::decode(&b).as_ref(), Some(&v));
        assert_eq!(b.opcode(), Some(T::OPCODE));
        b
    }

    #[test]
    fn requests_round_trip_with_their_bytes_where_the_rfc_puts_them() {
        let mut cdb = [0u8; 16];
        cdb[0] = 0x28;
        let b = round(ScsiCommand {
            immediate: false,
            final_: true,
            read: true,
            write: false,
            attr: 1,
            lun: LUN,
            itt: 7,
            edtl: 4096,
            cmd_sn: 9,
            exp_stat_sn: 11,
            cdb,
        });
        assert_eq!(b.0[0], 0x01);
        assert_eq!(b.0[1], 0x80 | 0x40 | 1);
        assert_eq!(&b.0[20..24], &4096u32.to_be_bytes());
        assert_eq!(b.0[32], 0x28);
        let b = round(TaskMgmtRequest {
            immediate: true,
            function: TmfFunction::AbortTask as u8,
            lun: LUN,
            itt: 1,
            rtt: 2,
            cmd_sn: 3,
            exp_stat_sn: 4,
            ref_cmd_sn: 5,
            exp_data_sn: 6,
        });
        assert_eq!((b.0[0], b.0[1]), (0x42, 0x81));
        assert_eq!(
            TaskMgmtRequest::decode(&b).and_then(|t| t.function()),
            Some(TmfFunction::AbortTask)
        );
        let b = round(LogoutRequest {
            immediate: true,
            reason: 1,
            itt: 1,
            cid: 3,
            cmd_sn: 2,
            exp_stat_sn: 3,
        });
        assert_eq!((b.0[0], b.0[1], b.0[21]), (0x46, 0x81, 3));
        round(TextRequest {
            immediate: false,
            final_: false,
            continue_: true,
            lun: LUN,
            itt: 1,
            ttt: RESERVED_TAG,
            cmd_sn: 2,
            exp_stat_sn: 3,
        });
        round(NopOut {
            immediate: true,
            lun: LUN,
            itt: 1,
            ttt: RESERVED_TAG,
            cmd_sn: 2,
            exp_stat_sn: 3,
        });
        round(DataOut {
            final_: true,
            lun: LUN,
            itt: 1,
            ttt: 9,
            exp_stat_sn: 3,
            data_sn: 4,
            offset: 8192,
        });
    }

    #[test]
    fn responses_round_trip_with_their_bytes_where_the_rfc_puts_them() {
        let b = round(ScsiResponse {
            residual_flags: flag::UNDERFLOW,
            response: 0,
            status: 2,
            itt: 7,
            sn: SN,
            exp_data_sn: 3,
            residual: 512,
        });
        assert_eq!((b.0[1], b.0[3]), (0x82, 2));
        assert_eq!(&b.0[24..28], &SN.stat_sn.to_be_bytes());
        // Data-In without status leaves StatSN and the residual at 0.
        let b = round(DataIn {
            final_: false,
            lun: LUN,
            itt: 7,
            ttt: RESERVED_TAG,
            sn: Sn { stat_sn: 0, ..SN },
            data_sn: 2,
            offset: 16384,
            status: None,
        });
        assert_eq!((b.0[1], b.word24(), b.word44()), (0, 0, 0));
        let b = round(DataIn {
            final_: true,
            lun: LUN,
            itt: 7,
            ttt: RESERVED_TAG,
            sn: SN,
            data_sn: 3,
            offset: 24576,
            status: Some(DataInStatus {
                status: 0,
                residual_flags: flag::OVERFLOW,
                residual: 100,
            }),
        });
        assert_eq!(b.0[1], 0x80 | 0x04 | 0x01);
        let b = round(R2t {
            lun: LUN,
            itt: 7,
            ttt: 5,
            sn: SN,
            r2t_sn: 1,
            offset: 65536,
            length: 262144,
        });
        assert_eq!((b.0[0], b.0[1]), (0x31, 0x80));
        round(NopIn::answer(LUN, 7, SN));
        let b = round(TextResponse {
            final_: false,
            continue_: false,
            lun: LUN,
            itt: 7,
            ttt: 5,
            sn: SN,
        });
        assert_eq!(b.0[1], 0, "asking for the rest: neither F nor C");
        let b = round(TaskMgmtResponse {
            response: TmfResponse::LunDoesNotExist,
            itt: 7,
            sn: SN,
        });
        assert_eq!(b.0[2], 2);
        let b = round(LogoutResponse {
            response: 0,
            itt: 7,
            sn: SN,
            time2wait: 2,
            time2retain: 20,
        });
        assert_eq!(&b.0[40..44], &[0, 2, 0, 20]);
        let b = round(Reject {
            reason: RejectReason::InvalidPduField,
            sn: SN,
            data_sn: 0,
        });
        assert_eq!((b.0[2], b.itt()), (0x09, RESERVED_TAG));
    }

    #[test]
    fn login_pdus_round_trip_with_stages_and_status_where_the_rfc_puts_them() {
        let to_full_feature = LoginStages {
            transit: true,
            continue_: false,
            csg: Some(Stage::Operational),
            nsg: Some(Stage::FullFeature),
        };
        let b = round(LoginRequest {
            stages: to_full_feature,
            version_max: 0,
            version_min: 0,
            isid: 0x4000_0102_0304,
            tsih: 7,
            itt: 1,
            cid: 2,
            cmd_sn: 3,
            exp_stat_sn: 4,
        });
        assert_eq!((b.0[0], b.0[1]), (0x43, 0x80 | (1 << 2) | 3));
        assert_eq!(&b.0[8..16], &[0x40, 0, 1, 2, 3, 4, 0, 7]);
        assert_eq!(&b.0[20..22], &[0, 2]);
        // The reserved stage code 2 decodes as None and encodes back.
        let mut reserved = b.clone();
        reserved.set_flags((2 << 2) | 2);
        let r = LoginRequest::decode(&reserved).expect("a login request");
        assert_eq!(
            (r.stages.csg, r.stages.nsg, r.stages.transit),
            (None, None, false)
        );
        assert_eq!(r.encode().flags(), (2 << 2) | 2);
        let b = round(LoginResponse {
            stages: to_full_feature,
            version_max: 0,
            version_active: 0,
            isid: 0x4000_0102_0304,
            tsih: 9,
            itt: 1,
            sn: SN,
            status: LoginStatus::SESSION_DOES_NOT_EXIST,
        });
        assert_eq!((b.0[0], b.0[36], b.0[37]), (0x23, 0x02, 0x0a));
        assert!(LoginResponse::decode(&b).is_some_and(|r| r.enters_full_feature()));
    }

    #[test]
    fn an_async_message_carries_its_event_and_parameters() {
        let b = round(AsyncMessage {
            lun: LUN,
            sn: SN,
            event: 2,
            vendor_code: 0,
            parameters: [0, 2, 20],
        });
        assert_eq!((b.0[0], b.0[36], b.itt()), (0x32, 2, RESERVED_TAG));
        assert_eq!(&b.0[38..44], &[0, 0, 0, 2, 0, 20]);
    }

    #[test]
    fn another_opcode_does_not_decode() {
        let b = NopIn::answer(LUN, 7, SN).encode();
        assert!(NopOut::decode(&b).is_none());
        assert!(DataIn::decode(&b).is_none());
        assert!(NopIn::decode(&b).is_some());
    }
}

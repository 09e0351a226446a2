//! A SCSI Command's intake decided without I/O (RFC 7143 11.3, 13.10-13.14):
//! whether its immediate data is allowed, whether its ITT is free, and
//! whether it runs now or first gathers write data (how much, and whether
//! unsolicited Data-Out may follow). The buffer follows what the CDB can
//! take, never the Expected Data Transfer Length alone.

use crate::negotiation::Params;
use crate::pdu::RejectReason;
use crate::typed::ScsiCommand;

/// What to do with a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Reject(RejectReason),
    /// Run it now with its immediate data (there is nothing more to take).
    Run,
    /// Gather `want` bytes of write data before running it: unsolicited
    /// Data-Out up to `unsolicited_end` when `unsolicited_open`, R2Ts for
    /// the rest.
    Gather {
        want: u32,
        unsolicited_open: bool,
        unsolicited_end: u32,
    },
}

/// Decides `cmd` with `imm` bytes of immediate data under the session's
/// `params`. `itt_busy`: a task with its ITT is still open on the
/// connection. `cdb_can_take`: the bytes its CDB can move to the LU (0
/// when the LU does not exist or the CDB moves none), asked only for a
/// write that has more to take than its immediate data.
pub fn admit(
    cmd: &ScsiCommand,
    imm: u32,
    params: &Params,
    itt_busy: bool,
    cdb_can_take: impl FnOnce() -> u64,
) -> Admit {
    if imm > 0
        && (!cmd.write || !params.immediate_data || imm > params.first_burst || imm > cmd.edtl)
    {
        return Admit::Reject(RejectReason::ProtocolError);
    }
    if itt_busy {
        return Admit::Reject(RejectReason::TaskInProgress);
    }
    if !cmd.write || cmd.edtl <= imm {
        return Admit::Run;
    }
    let want = u32::try_from(cdb_can_take().min(u64::from(cmd.edtl))).unwrap_or(u32::MAX);
    if want <= imm {
        // Nothing (more) for the CDB to take: it runs now. Unsolicited
        // Data-Out that still follows finds no task and is rejected.
        return Admit::Run;
    }
    // Unsolicited Data-Out follows only when the command says so (F=0)
    // and the session allows it (InitialR2T=No), up to FirstBurstLength.
    let unsolicited_open = !cmd.final_ && !params.initial_r2t;
    let unsolicited_end = if unsolicited_open {
        cmd.edtl.min(params.first_burst).max(imm)
    } else {
        imm
    };
    Admit::Gather {
        want,
        unsolicited_open,
        unsolicited_end,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(immediate_data: bool, initial_r2t: bool) -> Params {
        Params {
            immediate_data,
            initial_r2t,
            first_burst: 65536,
            max_burst: 262144,
            ..Params::default()
        }
    }

    fn write(edtl: u32, final_: bool) -> ScsiCommand {
        ScsiCommand {
            immediate: false,
            final_,
            read: false,
            write: true,
            attr: 1,
            lun: [0; 8],
            itt: 1,
            edtl,
            cmd_sn: 1,
            exp_stat_sn: 1,
            cdb: [0; 16],
        }
    }

    #[test]
    fn immediate_data_only_where_allowed() {
        let p = params(true, false);
        let pe = Admit::Reject(RejectReason::ProtocolError);
        // Not a write.
        let read = ScsiCommand {
            write: false,
            read: true,
            ..write(4096, true)
        };
        assert_eq!(admit(&read, 512, &p, false, || 0), pe);
        // ImmediateData=No.
        assert_eq!(
            admit(
                &write(4096, true),
                512,
                &params(false, false),
                false,
                || 4096
            ),
            pe
        );
        // Beyond FirstBurstLength, or beyond EDTL.
        assert_eq!(
            admit(&write(1 << 20, false), 65537, &p, false, || 1 << 20),
            pe
        );
        assert_eq!(admit(&write(512, true), 1024, &p, false, || 1024), pe);
        // Within all of them.
        assert_eq!(admit(&write(512, true), 512, &p, false, || 512), Admit::Run);
    }

    #[test]
    fn the_cdbs_limit_is_asked_only_for_a_write_with_more_to_take() {
        let p = params(true, false);
        let never = || -> u64 { panic!("the CDB's limit was asked for") };
        let read = ScsiCommand {
            write: false,
            read: true,
            ..write(4096, true)
        };
        assert_eq!(admit(&read, 0, &p, false, never), Admit::Run);
        assert_eq!(
            admit(&write(4096, true), 4096, &p, false, never),
            Admit::Run
        );
    }

    #[test]
    fn an_itt_in_use_is_refused() {
        assert_eq!(
            admit(&write(4096, true), 0, &params(true, false), true, || 4096),
            Admit::Reject(RejectReason::TaskInProgress)
        );
    }

    #[test]
    fn the_buffer_follows_the_cdb_not_the_edtl() {
        let p = params(true, false);
        // EDTL 4 GiB - 1, a CDB that moves nothing (TEST UNIT READY with W).
        assert_eq!(
            admit(&write(u32::MAX, true), 0, &p, false, || 0),
            Admit::Run
        );
        // ...or 8 blocks of 512: 4 KiB gathered, whatever the EDTL says.
        assert_eq!(
            admit(&write(u32::MAX, true), 0, &p, false, || 4096),
            Admit::Gather {
                want: 4096,
                unsolicited_open: false,
                unsolicited_end: 0
            }
        );
        // An EDTL below what the CDB could take bounds it.
        assert!(matches!(
            admit(&write(2048, true), 0, &p, false, || 4096),
            Admit::Gather { want: 2048, .. }
        ));
        // All of it came as immediate data.
        assert_eq!(
            admit(&write(4096, true), 4096, &p, false, || 4096),
            Admit::Run
        );
    }

    #[test]
    fn unsolicited_data_follows_only_when_said_and_allowed() {
        // F=0, InitialR2T=No: up to FirstBurstLength, from the immediate data on.
        assert_eq!(
            admit(
                &write(1 << 20, false),
                4096,
                &params(true, false),
                false,
                || 1 << 20
            ),
            Admit::Gather {
                want: 1 << 20,
                unsolicited_open: true,
                unsolicited_end: 65536
            }
        );
        // Less than FirstBurstLength in all: it ends at the EDTL.
        assert!(matches!(
            admit(&write(16384, false), 0, &params(true, false), false, || {
                16384
            }),
            Admit::Gather {
                unsolicited_open: true,
                unsolicited_end: 16384,
                ..
            }
        ));
        // F=1: nothing unsolicited follows; R2Ts start after the immediate data.
        assert_eq!(
            admit(
                &write(1 << 20, true),
                4096,
                &params(true, false),
                false,
                || 1 << 20
            ),
            Admit::Gather {
                want: 1 << 20,
                unsolicited_open: false,
                unsolicited_end: 4096
            }
        );
        // InitialR2T=Yes: none either.
        assert!(matches!(
            admit(
                &write(1 << 20, false),
                0,
                &params(true, true),
                false,
                || 1 << 20
            ),
            Admit::Gather {
                unsolicited_open: false,
                unsolicited_end: 0,
                ..
            }
        ));
    }
}

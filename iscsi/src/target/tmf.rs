//! Task management (RFC 7143 11.5) decided without I/O: which tasks of the
//! connection go, the response, and what is left for the driver to do to
//! the logical units and sessions (a reset reaches every I_T nexus).

use crate::pdu::{TmfFunction, TmfResponse, sn_le};

/// The tasks a connection holds (its writes waiting for data).
pub trait Tasks {
    /// Drops task `itt`; false when there is none.
    fn abort(&mut self, itt: u32) -> bool;
    /// Drops every task of `lun`; returns how many.
    fn abort_lun(&mut self, lun: u64) -> usize;
    /// Drops every task; returns how many.
    fn abort_all(&mut self) -> usize;
}

/// A Task Management Function Request, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TmfRequest {
    /// `None` for a function code RFC 7143 does not define.
    pub function: Option<TmfFunction>,
    pub lun: u64,
    /// Referenced Task Tag and RefCmdSN (ABORT TASK).
    pub rtt: u32,
    pub ref_cmd_sn: u32,
}

/// What the driver carries out after answering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmfEffect {
    None,
    /// Reset this LU for every I_T nexus (unit attention, reservations).
    ResetLu(u64),
    /// Reset every LU of the target; a cold reset then ends its sessions.
    ResetTarget {
        cold: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TmfOutcome {
    pub response: TmfResponse,
    /// Tasks of this connection dropped (no response goes to them).
    pub aborted: usize,
    pub effect: TmfEffect,
}

/// Decides `req`. `window` is the session's (ExpCmdSN, MaxCmdSN) and
/// `lun_exists` whether the request's LUN is mapped.
pub fn decide(
    req: &TmfRequest,
    tasks: &mut impl Tasks,
    window: (u32, u32),
    lun_exists: bool,
) -> TmfOutcome {
    let done = |response, aborted, effect| TmfOutcome {
        response,
        aborted,
        effect,
    };
    match req.function {
        Some(TmfFunction::AbortTask) => {
            if tasks.abort(req.rtt) {
                return done(TmfResponse::Complete, 1, TmfEffect::None);
            }
            // RFC 7143 11.5.1: a task not yet received (RefCmdSN still in
            // the window) counts as received and aborted; one that already
            // completed (RefCmdSN below the window) does not exist.
            let (exp, max) = window;
            if sn_le(exp, req.ref_cmd_sn) && sn_le(req.ref_cmd_sn, max) {
                done(TmfResponse::Complete, 0, TmfEffect::None)
            } else {
                done(TmfResponse::TaskDoesNotExist, 0, TmfEffect::None)
            }
        }
        Some(TmfFunction::AbortTaskSet | TmfFunction::ClearTaskSet) => done(
            TmfResponse::Complete,
            tasks.abort_lun(req.lun),
            TmfEffect::None,
        ),
        // Only that LU's tasks go; other LUNs' writes carry on.
        Some(TmfFunction::LogicalUnitReset) if lun_exists => done(
            TmfResponse::Complete,
            tasks.abort_lun(req.lun),
            TmfEffect::ResetLu(req.lun),
        ),
        Some(TmfFunction::LogicalUnitReset) => {
            done(TmfResponse::LunDoesNotExist, 0, TmfEffect::None)
        }
        Some(f @ (TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset)) => done(
            TmfResponse::Complete,
            tasks.abort_all(),
            TmfEffect::ResetTarget {
                cold: f == TmfFunction::TargetColdReset,
            },
        ),
        Some(TmfFunction::ClearAca) => done(TmfResponse::NotSupported, 0, TmfEffect::None),
        // ERL 0: no task reassignment (it belongs to connection recovery).
        Some(TmfFunction::TaskReassign) => {
            done(TmfResponse::ReassignmentNotSupported, 0, TmfEffect::None)
        }
        None => done(TmfResponse::Rejected, 0, TmfEffect::None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// Tasks by ITT with their LUN.
    #[derive(Default)]
    struct Held(BTreeMap<u32, u64>);

    impl Tasks for Held {
        fn abort(&mut self, itt: u32) -> bool {
            self.0.remove(&itt).is_some()
        }
        fn abort_lun(&mut self, lun: u64) -> usize {
            let before = self.0.len();
            self.0.retain(|_, l| *l != lun);
            before - self.0.len()
        }
        fn abort_all(&mut self) -> usize {
            let n = self.0.len();
            self.0.clear();
            n
        }
    }

    fn held() -> Held {
        Held([(10, 0), (11, 0), (12, 1)].into_iter().collect())
    }

    fn req(function: TmfFunction, lun: u64) -> TmfRequest {
        TmfRequest {
            function: Some(function),
            lun,
            rtt: 0,
            ref_cmd_sn: 0,
        }
    }

    #[test]
    fn abort_task_held_in_window_and_gone() {
        let mut t = held();
        let r = TmfRequest {
            rtt: 11,
            ..req(TmfFunction::AbortTask, 0)
        };
        let o = decide(&r, &mut t, (100, 163), true);
        assert_eq!((o.response, o.aborted), (TmfResponse::Complete, 1));
        assert!(!t.0.contains_key(&11));
        // Not held, RefCmdSN in the window: not received yet, counts as aborted.
        let r = TmfRequest {
            rtt: 99,
            ref_cmd_sn: 120,
            ..req(TmfFunction::AbortTask, 0)
        };
        let o = decide(&r, &mut t, (100, 163), true);
        assert_eq!((o.response, o.aborted), (TmfResponse::Complete, 0));
        // Not held, RefCmdSN below the window: it completed; does not exist.
        let r = TmfRequest {
            ref_cmd_sn: 99,
            ..r
        };
        let o = decide(&r, &mut t, (100, 163), true);
        assert_eq!(o.response, TmfResponse::TaskDoesNotExist);
        // The window wraps at 2^32.
        let r = TmfRequest { ref_cmd_sn: 3, ..r };
        let o = decide(&r, &mut t, (u32::MAX - 5, 20), true);
        assert_eq!(o.response, TmfResponse::Complete);
        assert_eq!(t.0.len(), 2, "only task 11 went");
    }

    #[test]
    fn task_sets_and_lu_reset_touch_only_their_lun() {
        for f in [TmfFunction::AbortTaskSet, TmfFunction::ClearTaskSet] {
            let mut t = held();
            let o = decide(&req(f, 0), &mut t, (1, 64), true);
            assert_eq!(
                (o.response, o.aborted, o.effect),
                (TmfResponse::Complete, 2, TmfEffect::None)
            );
            assert_eq!(t.0.keys().copied().collect::<Vec<_>>(), [12]);
        }
        let mut t = held();
        let o = decide(
            &req(TmfFunction::LogicalUnitReset, 1),
            &mut t,
            (1, 64),
            true,
        );
        assert_eq!(
            (o.response, o.aborted, o.effect),
            (TmfResponse::Complete, 1, TmfEffect::ResetLu(1))
        );
        assert_eq!(t.0.len(), 2, "LUN 0's tasks carry on");
        // A LUN that is not mapped: nothing reset, nothing dropped.
        let o = decide(
            &req(TmfFunction::LogicalUnitReset, 7),
            &mut t,
            (1, 64),
            false,
        );
        assert_eq!(
            (o.response, o.aborted, o.effect),
            (TmfResponse::LunDoesNotExist, 0, TmfEffect::None)
        );
        assert_eq!(t.0.len(), 2);
    }

    #[test]
    fn target_resets_drop_every_task() {
        for (f, cold) in [
            (TmfFunction::TargetWarmReset, false),
            (TmfFunction::TargetColdReset, true),
        ] {
            let mut t = held();
            let o = decide(&req(f, 0), &mut t, (1, 64), true);
            assert_eq!(
                (o.response, o.aborted, o.effect),
                (TmfResponse::Complete, 3, TmfEffect::ResetTarget { cold })
            );
            assert!(t.0.is_empty());
        }
    }

    #[test]
    fn unsupported_and_unknown_functions_change_nothing() {
        for (f, want) in [
            (Some(TmfFunction::ClearAca), TmfResponse::NotSupported),
            (
                Some(TmfFunction::TaskReassign),
                TmfResponse::ReassignmentNotSupported,
            ),
            (None, TmfResponse::Rejected),
        ] {
            let mut t = held();
            let r = TmfRequest {
                function: f,
                lun: 0,
                rtt: 10,
                ref_cmd_sn: 0,
            };
            let o = decide(&r, &mut t, (1, 64), true);
            assert_eq!(
                (o.response, o.aborted, o.effect),
                (want, 0, TmfEffect::None)
            );
            assert_eq!(t.0.len(), 3);
        }
    }
}

//! Logout (RFC 7143 11.14 and 11.15) decided without I/O: the response to
//! a Logout Request and which connections end.

use crate::pdu::{LogoutReason, LogoutResponse};
use crate::typed::{self, Sn};

/// What the driver does after the response has gone out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutEffect {
    /// Nothing ends.
    None,
    /// Every connection of the session ends, this one too.
    CloseSession,
    /// This connection ends.
    CloseThis,
    /// Another connection of the session ends (an implicit logout of it);
    /// this one carries on.
    CloseOther(u16),
}

/// The response to a Logout Request with `reason` for `cid`, received on
/// connection `this_cid` of a session whose connections `has_cid` knows.
/// At ErrorRecoveryLevel 0 there is no connection recovery.
pub fn decide(
    reason: Option<LogoutReason>,
    cid: u16,
    this_cid: u16,
    has_cid: impl Fn(u16) -> bool,
) -> (LogoutResponse, LogoutEffect) {
    match reason {
        Some(LogoutReason::CloseSession) => (LogoutResponse::Closed, LogoutEffect::CloseSession),
        Some(LogoutReason::CloseConnection) if cid == this_cid => {
            (LogoutResponse::Closed, LogoutEffect::CloseThis)
        }
        Some(LogoutReason::CloseConnection) if has_cid(cid) => {
            (LogoutResponse::Closed, LogoutEffect::CloseOther(cid))
        }
        Some(LogoutReason::CloseConnection) => (LogoutResponse::CidNotFound, LogoutEffect::None),
        Some(LogoutReason::RemoveForRecovery) | None => {
            (LogoutResponse::RecoveryNotSupported, LogoutEffect::None)
        }
    }
}

/// The Logout Response to `req`, received on connection `this_cid`, with
/// the response's numbers `sn` and the session's (Time2Wait, Time2Retain);
/// and what ends once it has gone out. Normal and discovery sessions alike.
pub fn answer(
    req: &typed::LogoutRequest,
    this_cid: u16,
    has_cid: impl Fn(u16) -> bool,
    sn: Sn,
    (time2wait, time2retain): (u16, u16),
) -> (typed::LogoutResponse, LogoutEffect) {
    let (response, effect) = decide(
        LogoutReason::from_u8(req.reason),
        req.cid,
        this_cid,
        has_cid,
    );
    let r = typed::LogoutResponse {
        response: response as u8,
        itt: req.itt,
        sn,
        time2wait,
        time2retain,
    };
    (r, effect)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONNS: [u16; 3] = [0, 1, 3];

    fn has(c: u16) -> bool {
        CONNS.contains(&c)
    }

    #[test]
    fn close_the_session() {
        assert_eq!(
            decide(Some(LogoutReason::CloseSession), 0, 1, has),
            (LogoutResponse::Closed, LogoutEffect::CloseSession)
        );
    }

    #[test]
    fn close_one_connection_of_several() {
        // This connection.
        assert_eq!(
            decide(Some(LogoutReason::CloseConnection), 1, 1, has),
            (LogoutResponse::Closed, LogoutEffect::CloseThis)
        );
        // Another one of the session, from this one.
        assert_eq!(
            decide(Some(LogoutReason::CloseConnection), 3, 1, has),
            (LogoutResponse::Closed, LogoutEffect::CloseOther(3))
        );
        // A CID the session does not have.
        assert_eq!(
            decide(Some(LogoutReason::CloseConnection), 2, 1, has),
            (LogoutResponse::CidNotFound, LogoutEffect::None)
        );
    }

    #[test]
    fn no_connection_recovery_at_erl_0() {
        for r in [Some(LogoutReason::RemoveForRecovery), None] {
            assert_eq!(
                decide(r, 1, 0, has),
                (LogoutResponse::RecoveryNotSupported, LogoutEffect::None)
            );
        }
        assert_eq!(
            LogoutReason::from_u8(0x81),
            Some(LogoutReason::CloseConnection)
        );
        assert_eq!(LogoutReason::from_u8(5), None);
    }
}

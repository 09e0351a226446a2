use crate::pdu::LoginStatus;

/// Errors of the iSCSI engines.
#[derive(Debug, thiserror::Error)]
pub enum IscsiError {
    #[error("I/O: {0}")]
    Io(std::io::Error),
    #[error("connection closed in the middle of a PDU")]
    Truncated,
    #[error("header digest mismatch")]
    HeaderDigest,
    #[error("data segment of {len} bytes exceeds MaxRecvDataSegmentLength {max}")]
    DataSegmentTooLong { len: usize, max: usize },
    #[error("protocol error: {0}")]
    Protocol(Violation),
    #[error("login failed: {} (status {:#04x}/{:#04x})", .0.describe(), .0.0, .0.1)]
    Login(LoginStatus),
    #[error("configuration: {0}")]
    Config(ConfigError),
    #[error(
        "bad iSCSI URL '{url}': {why} (expected iscsi://[user[%secret]@]host[:port]/target-iqn/lun)"
    )]
    BadUrl { url: String, why: String },
    #[error("cannot connect to {addr}: {cause}")]
    Connect { addr: String, cause: std::io::Error },
    #[error("connection lost: {0}")]
    ConnectionLost(Lost),
    #[error("storage: {0}")]
    Storage(iolab_storage::StorageError),
    #[error("timed out: {0}")]
    Timeout(Waiting),
    #[error("{function}: the target answered {response:#04x} ({})", tmf_response_name(*.response))]
    TaskManagement {
        function: &'static str,
        response: u8,
    },
}

/// What the peer did that the protocol does not allow, or that we cannot
/// take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("digest error during login")]
    DigestDuringLogin,
    #[error("the initiator sent more before the last Login Response")]
    BeforeLoginResponse,
    #[error("data digest error")]
    DataDigest,
    #[error("text continuation with unknown TTT")]
    UnknownTextContinuation,
    #[error("text request refused: {0:?}")]
    TextRequest(crate::pdu::RejectReason),
    #[error("text key is not UTF-8")]
    TextNotUtf8,
    #[error("text pair without '=': {0:.40}")]
    TextWithoutEquals(String),
    #[error("invalid key name '{0:.70}'")]
    TextKeyInvalid(String),
    #[error("value of {0} is too long")]
    TextValueTooLong(String),
    #[error("connection writer closed")]
    WriterClosed,
    #[error("session closed")]
    SessionClosed,
    #[error("unexpected reply to SendTargets")]
    UnexpectedSendTargetsReply,
    #[error("the target closed the discovery session")]
    DiscoveryClosed,
    #[error("{command}: CHECK CONDITION, sense key {key:#x}, ASC/ASCQ {asc:#04x}/{ascq:#04x}")]
    CheckCondition {
        command: String,
        key: u8,
        asc: u8,
        ascq: u8,
    },
    #[error("{command}: SCSI status {status:#04x}")]
    ScsiStatus { command: String, status: u8 },
    #[error("short {0} data")]
    ShortData(&'static str),
    #[error("TEST UNIT READY: unit attentions kept coming")]
    EndlessUnitAttention,
    #[error("Data-In beyond the expected length (itt {itt:#x})")]
    DataInBeyondLength { itt: u32 },
    #[error("target failure response {response:#x}")]
    TargetFailure { response: u8 },
    #[error("R2T beyond the data to write (itt {itt:#x})")]
    R2tBeyondData { itt: u32 },
    #[error("R2T for task {itt:#x} asks {len} bytes at once, above MaxBurstLength {max_burst}")]
    R2tBeyondBurst {
        itt: u32,
        len: usize,
        max_burst: usize,
    },
    #[error("target rejected the PDU: {reason:?} ({:#04x})", *.reason as u8)]
    Rejected { reason: crate::pdu::RejectReason },
    #[error("target closed the connection during login")]
    ClosedDuringLogin,
    #[error("expected a Login Response, got opcode {opcode:#x}")]
    NotLoginResponse { opcode: u8 },
    #[error("the target sent no valid CHAP_I/CHAP_C")]
    NoChapChallenge,
    #[error("the target chose no CHAP algorithm we offered ({offered}): CHAP_A={chosen}")]
    ChapAlgorithm { offered: String, chosen: String },
    #[error("the target chose AuthMethod={0}")]
    AuthMethod(String),
    #[error("the target never left the security stage")]
    StuckInSecurity,
    #[error("operational negotiation did not converge")]
    NegotiationLoop,
    #[error("mutual CHAP failed: the target did not prove the expected secret")]
    MutualChap,
}

/// A configuration or request that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// What the target configuration's own checks found.
    #[error("{0}")]
    Invalid(String),
    #[error("cannot listen on {addr}: {cause}")]
    Listen {
        addr: std::net::SocketAddr,
        cause: std::io::Error,
    },
    #[error("{target} LUN {lun}: {cause}")]
    Lun {
        target: String,
        lun: u64,
        cause: Box<IscsiError>,
    },
    #[error("{0}: no target IQN and LUN in the URL")]
    NoTargetLun(String),
    #[error("no target in the URL")]
    NoTarget,
    #[error("CDBs longer than 16 bytes are not supported")]
    LongCdb,
}

/// Why a connection or session is gone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Lost {
    #[error("connection {cid}: {why}")]
    Connection { cid: u16, why: String },
    #[error("every connection of the session is down")]
    AllDown,
    #[error("connection {cid} closed before the command completed")]
    BeforeCompletion { cid: u16 },
    #[error("the connection ended before the LOGICAL UNIT RESET was answered")]
    BeforeLunReset,
}

/// What was waited for too long.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Waiting {
    #[error("login")]
    Login,
    #[error("login to {portal} took longer than {limit:?}")]
    LoginTook {
        portal: String,
        limit: std::time::Duration,
    },
    #[error("connecting to {0}")]
    Connecting(String),
    #[error("NOP-In ping")]
    NopInPing,
    #[error("SendTargets")]
    SendTargets,
    #[error("the target's CmdSN window stayed closed")]
    CommandWindow,
    #[error("LOGICAL UNIT RESET response")]
    LunReset,
    #[error("command {opcode:#04x} got no response in {after:?}")]
    Command {
        opcode: u8,
        after: std::time::Duration,
    },
}

impl From<Violation> for IscsiError {
    fn from(v: Violation) -> Self {
        IscsiError::Protocol(v)
    }
}

// The wrapped errors are part of the message, not a `source()` as well: a
// chain printer (anyhow's `{:#}`) would repeat them otherwise.
impl From<std::io::Error> for IscsiError {
    fn from(e: std::io::Error) -> Self {
        IscsiError::Io(e)
    }
}

impl From<iolab_storage::StorageError> for IscsiError {
    fn from(e: iolab_storage::StorageError) -> Self {
        IscsiError::Storage(e)
    }
}

/// RFC 7143 11.6.1: what a task management response code means.
fn tmf_response_name(code: u8) -> &'static str {
    match code {
        0 => "function complete",
        1 => "task does not exist",
        2 => "LUN does not exist",
        3 => "task still allegiant",
        4 => "task allegiance reassignment not supported",
        5 => "task management function not supported",
        6 => "function authorization failed",
        255 => "function rejected",
        _ => "unknown response",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Errors are values a caller can match, and say what they said before.
    #[test]
    fn typed_errors_keep_their_messages() {
        let e = crate::text::parse(b"NoEquals\0").unwrap_err();
        assert!(matches!(
            e,
            IscsiError::Protocol(Violation::TextWithoutEquals(ref s)) if s == "NoEquals"
        ));
        assert_eq!(
            e.to_string(),
            "protocol error: text pair without '=': NoEquals"
        );
        let long = format!("{}=v\0", "k".repeat(100));
        let e = crate::text::parse(long.as_bytes()).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("protocol error: invalid key name '{}'", "k".repeat(70))
        );
        let e = crate::initiator::IscsiUrl::parse("http://x/iqn/0", false).unwrap_err();
        assert!(matches!(e, IscsiError::BadUrl { .. }));
        assert!(
            e.to_string()
                .starts_with("bad iSCSI URL 'http://x/iqn/0': it must start with iscsi://")
        );
        let t = IscsiError::Timeout(Waiting::Command {
            opcode: 0x28,
            after: std::time::Duration::from_secs(30),
        });
        assert_eq!(
            t.to_string(),
            "timed out: command 0x28 got no response in 30s"
        );
        let l = IscsiError::ConnectionLost(Lost::Connection {
            cid: 1,
            why: "reset by peer".into(),
        });
        assert_eq!(
            l.to_string(),
            "connection lost: connection 1: reset by peer"
        );
    }
}

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
    Protocol(String),
    #[error("login failed: {} (status {:#04x}/{:#04x})", .0.describe(), .0.0, .0.1)]
    Login(LoginStatus),
    #[error("configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Connect(String),
    #[error("connection lost: {0}")]
    ConnectionLost(String),
    #[error("storage: {0}")]
    Storage(iolab_storage::StorageError),
    #[error("timed out: {0}")]
    Timeout(String),
    #[error("{function}: the target answered {response:#04x} ({})", tmf_response_name(*.response))]
    TaskManagement {
        function: &'static str,
        response: u8,
    },
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

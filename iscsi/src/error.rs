use crate::pdu::LoginStatus;

/// Errors of the iSCSI engines.
#[derive(Debug, thiserror::Error)]
pub enum IscsiError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
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
    Storage(#[from] iolab_storage::StorageError),
    #[error("timed out: {0}")]
    Timeout(String),
}

//! iSCSI (RFC 7143) for iolab: the PDU codec, text keys and negotiation,
//! CHAP, and the target engine. Nothing here draws on a terminal.

pub mod chap;
pub mod digest;
pub mod error;
mod inbox;
pub mod initiator;
pub mod negotiation;
pub mod pdu;
pub mod stats;
pub mod target;
pub mod text;
mod transport;
pub mod typed;

pub use error::{ConfigError, IscsiError, Lost, Violation, Waiting};
pub use target::{ServerConfig, SessionInfo, Target, TargetConfig};

//! Backstores and the SCSI block-command emulation that serves them.
//!
//! The transport (iSCSI) hands a CDB, its Data-Out bytes and the I_T nexus to
//! [`scsi::LogicalUnit::execute`]; the logical unit decodes the command,
//! touches its [`Backstore`] and returns status, Data-In bytes and sense data.
//! Nothing here knows about sockets or PDUs.

pub mod backstore;
pub mod error;
pub mod pool;
pub mod scsi;

pub use backstore::{
    AsyncFile, Backstore, BackstoreKind, BackstoreSpec, BlockDev, FileIo, IoKind, RamDisk,
    open_backstore,
};
pub use error::StorageError;
pub use scsi::{LogicalUnit, LuConfig, Nexus, ScsiResponse, ScsiStatus};

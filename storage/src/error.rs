use std::path::PathBuf;

/// Errors of backstore I/O and configuration.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {cause}")]
    Io {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("I/O beyond the end of the backstore: offset {offset} + {len} > size {size}")]
    OutOfRange { offset: u64, len: u64, size: u64 },
    #[error("invalid backstore size {0}: must be a non-zero multiple of the block size {1}")]
    BadSize(u64, u32),
    #[error("invalid size '{0}': expected a number with an optional K, M, G or T suffix")]
    BadSizeText(String),
    #[error("{path} is not a block device")]
    NotBlockDevice { path: PathBuf },
    #[error("{path}: size {wanted} is larger than the device ({size} bytes)")]
    LargerThanDevice {
        path: PathBuf,
        wanted: u64,
        size: u64,
    },
}

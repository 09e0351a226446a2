/// Errors of lab orchestration.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Iscsi(#[from] iolab_iscsi::IscsiError),
    #[error("profile: {0}")]
    Profile(String),
    #[error(transparent)]
    Agent(Box<crate::agent::AgentError>),
    /// A host of a lab across hosts failed or dropped mid-run.
    #[error("{cause}{}", if .did.is_empty() { String::new() } else { format!("; on {host} this run had {}", .did.join(", ")) })]
    HostFailed {
        host: String,
        did: Vec<String>,
        cause: Box<crate::agent::AgentError>,
    },
    #[error(transparent)]
    Device(#[from] iolab_storage::StorageError),
    #[error("an I/O thread failed: {0}")]
    Thread(tokio::task::JoinError),
    #[error("cannot start the load's threads: {0}")]
    LoadThreads(std::io::Error),
    #[error("open-iscsi: {0}")]
    KernelInitiator(#[from] crate::kernel_initiator::KernelInitiatorError),
    #[error("the target is not running")]
    TargetNotRunning,
    #[error("a workload needs at least one session")]
    NoSession,
    #[error("the I/O size {io} is not a multiple of the LUN's {block}-byte blocks")]
    IoSize { io: u32, block: u32 },
    #[error("the LUN ({lun_bytes} bytes) is smaller than one {io}-byte I/O")]
    LunTooSmall { lun_bytes: u64, io: u32 },
    #[error(
        "{mode} on LUN {lun} with {connections} connection(s): {errors} I/O errors, {mismatches} verify mismatches{}",
        .first.as_ref().map(|e| format!(", first: {e}")).unwrap_or_default()
    )]
    CellFailed {
        mode: &'static str,
        lun: u64,
        connections: usize,
        errors: u64,
        mismatches: u64,
        first: Option<String>,
    },
}

impl From<crate::agent::AgentError> for LabError {
    fn from(e: crate::agent::AgentError) -> Self {
        LabError::Agent(Box::new(e))
    }
}

/// Errors of lab orchestration.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error(transparent)]
    Iscsi(#[from] iolab_iscsi::IscsiError),
    #[error("profile: {0}")]
    Profile(String),
    #[error("the target is not running")]
    TargetNotRunning,
}

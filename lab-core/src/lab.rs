//! The lab: what is configured and what runs.

use std::net::SocketAddr;

use iolab_iscsi::target::ServerConfig;
use iolab_iscsi::{SessionInfo, Target};

use crate::error::LabError;

/// Size of the embedded default lab's RAMDISK.
pub const DEFAULT_RAMDISK_BYTES: u64 = 1 << 30;

/// A running embedded target with the configuration it was started from.
pub struct LabTarget {
    pub config: ServerConfig,
    /// Shared so that changes to it can run off the caller's loop.
    pub target: std::sync::Arc<Target>,
}

impl LabTarget {
    pub fn urls(&self) -> Vec<String> {
        self.target.lun_urls()
    }
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.target.sessions()
    }
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.target.local_addrs()
    }
}

/// The lab model.
#[derive(Default)]
pub struct Lab {
    pub target: Option<LabTarget>,
}

impl Lab {
    /// Starts the embedded default lab's target: a 1 GiB RAMDISK on a free loopback port.
    pub async fn start_default_target(&mut self) -> Result<&LabTarget, LabError> {
        let cfg =
            ServerConfig::default_lab(SocketAddr::from(([127, 0, 0, 1], 0)), DEFAULT_RAMDISK_BYTES);
        self.start_target(cfg).await
    }

    pub async fn start_target(&mut self, config: ServerConfig) -> Result<&LabTarget, LabError> {
        self.stop_target();
        let target = std::sync::Arc::new(Target::start(config.clone()).await?);
        Ok(self.target.insert(LabTarget { config, target }))
    }

    pub fn stop_target(&mut self) {
        if let Some(t) = self.target.take() {
            t.target.shutdown();
        }
    }
}

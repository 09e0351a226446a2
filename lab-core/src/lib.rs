//! The lab model and its orchestration, with no terminal code: the console
//! and the command line drive the same operations through this crate.

pub mod agent;
pub mod chart;
pub mod error;
pub mod guest;
pub mod host;
pub mod kernel_initiator;
pub mod lab;
pub mod metrics;
pub mod netns_lab;
pub mod notebook;
pub mod passthrough;
pub mod profile;
pub mod profile_run;
pub mod run;
pub mod sampler;
pub mod series;
pub mod shards;
pub mod target_file;
pub mod tuning;
pub mod units;
pub mod watch;
pub mod workload;

pub use error::LabError;
pub use lab::{Lab, LabTarget};
pub use sampler::{ConnSample, LabSnapshot, Sampler, SessionSample};

//! The lab model and its orchestration, with no terminal code: the console
//! and the command line drive the same operations through this crate.

pub mod error;
pub mod host;
pub mod lab;
pub mod run;
pub mod sampler;
pub mod series;
pub mod workload;

pub use error::LabError;
pub use lab::{Lab, LabTarget};
pub use sampler::{ConnSample, LabSnapshot, Sampler, SessionSample};

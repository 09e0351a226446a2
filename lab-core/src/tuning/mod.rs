//! Host tuning: named sets of sysctls and MTUs.

pub mod profile;

pub use profile::{SysctlValue, TuningProfile};

//! Host tuning: named sets of sysctls and MTUs, planned against the host,
//! applied with every touched value recorded first, and reverted exactly.

pub mod apply;
pub mod host;
pub mod link;
pub mod plan;
pub mod profile;

pub use apply::{ApplyReport, TuneError, apply, revert, scope};
pub use host::{KeyAccess, Namespace, TuneHost};
pub use plan::{Lint, Plan, PlanItem, Severity, plan};
pub use profile::{SysctlValue, TuningProfile};

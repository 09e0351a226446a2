//! The lab notebook: a SQLite store of profiles (kept as the TOML a person
//! edits), every run's numbers, and the host values the lab changed so they
//! can be restored. The profile types themselves live in `lab-core`; this
//! crate stores their text and knows nothing of iSCSI.

#![forbid(unsafe_code)]

pub mod error;
pub mod run;
pub mod schema;
pub mod store;
pub mod time;

pub use error::StoreError;
pub use run::{
    Cell, CellKey, CompareRow, HostFacts, Run, RunHost, RunSummary, SeriesPoint, compare,
};
pub use store::{Original, Store, StoredProfile, default_path};

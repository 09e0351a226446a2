//! Running a profile from the command line (`iolab run`, `iolab matrix`)
//! with progress on standard error, and storing runs in the notebook.

use std::path::Path;

use iolab_lab_core::notebook::open as open_store;
use iolab_lab_core::profile::Profile;
use iolab_lab_core::profile_run::{self, RunnerEvent, mode_name};
use iolab_profiles::Run;

/// Stores a run in the notebook; says where, or warns (the run is not lost
/// from the output, only from the notebook).
pub fn store_run(db: Option<&Path>, run: &Run) -> Option<i64> {
    match open_store(db).and_then(|mut s| Ok((s.add_run(run)?, s.path().to_path_buf()))) {
        Ok((id, path)) => {
            eprintln!("stored as run {id} in {}", path.display());
            Some(id)
        }
        Err(e) => {
            eprintln!("iolab: warning: the run was not stored: {e}");
            None
        }
    }
}

/// Runs a profile's matrix with progress on standard error.
pub async fn execute(p: &Profile, body: &str) -> anyhow::Result<Run> {
    let run = profile_run::run_profile(p, body, |e| match e {
        RunnerEvent::TargetStarted(addr) => eprintln!("target listening on {addr}"),
        RunnerEvent::CellStarted {
            index,
            total,
            plan,
            granted,
        } => eprintln!(
            "cell {}/{total}: {} on LUN {}, {granted} connection(s)",
            index + 1,
            mode_name(plan.mode),
            plan.lun
        ),
        RunnerEvent::CellDone { cell, .. } => eprintln!(
            "  {:.2} MB/s, {:.1} IOPS",
            cell.total_mbps(),
            cell.total_iops()
        ),
        RunnerEvent::Heartbeat { .. } => {}
    })
    .await?;
    Ok(run)
}

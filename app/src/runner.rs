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

/// Stores a run in `store` and prints its header, table and id.
pub fn store_and_print(store: &mut iolab_profiles::Store, run: Run) -> anyhow::Result<()> {
    let id = store.add_run(&run)?;
    let run = Run {
        id: Some(id),
        ..run
    };
    print!(
        "{}\n{}",
        crate::table::header(&run),
        crate::table::cells(&run.cells)
    );
    println!("stored as run {id} in {}", store.path().display());
    Ok(())
}

/// Serves the initiator's counters of `source` (and the host's CPU) for
/// Prometheus on `addr` while the returned task lives; says where on stderr.
pub async fn serve_initiator_metrics(
    addr: std::net::SocketAddr,
    source: std::sync::Arc<dyn iolab_lab_core::sampler::SessionSource>,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    use anyhow::Context;
    let extra: iolab_lab_core::metrics::Extra = std::sync::Arc::new(iolab_lab_core::metrics::host);
    let (bound, task) = iolab_lab_core::metrics::serve(addr, source, extra)
        .await
        .with_context(|| format!("serving metrics on {addr}"))?;
    eprintln!("metrics http://{bound}/metrics (the initiator's counters)");
    Ok(task)
}

/// Runs a profile's matrix with progress on standard error.
pub async fn execute(p: &Profile, body: &str) -> anyhow::Result<Run> {
    execute_live(p, body, &profile_run::LiveSessions::default()).await
}

/// [`execute`], each cell's sessions shown in `live` while it runs.
pub async fn execute_live(
    p: &Profile,
    body: &str,
    live: &profile_run::LiveSessions,
) -> anyhow::Result<Run> {
    let run = profile_run::run_profile_live(
        p,
        body,
        |e| {
            if let Some(l) = progress_line(&e) {
                eprintln!("{l}");
            }
        },
        live,
    )
    .await?;
    Ok(run)
}

/// The progress line a profile run prints for an event (none for heartbeats).
pub fn progress_line(e: &RunnerEvent) -> Option<String> {
    match e {
        RunnerEvent::TargetStarted(addr) => Some(format!("target listening on {addr}")),
        RunnerEvent::CellStarted {
            index,
            total,
            plan,
            granted,
        } => Some(format!(
            "cell {}/{total}: {} on LUN {}, {granted} connection(s)",
            index + 1,
            mode_name(plan.mode),
            plan.lun
        )),
        RunnerEvent::CellDone { cell, .. } => Some(format!(
            "  {:.2} MB/s, {:.1} IOPS",
            cell.total_mbps(),
            cell.total_iops()
        )),
        RunnerEvent::Heartbeat { .. } => None,
    }
}

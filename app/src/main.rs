//! `iolab`: the lab console (no arguments) and the command line.

#![forbid(unsafe_code)]

mod bench_cmd;
mod cli;
mod console;
mod guest_cmd;
mod hosts_cmd;
mod json;
mod logging;
mod notebook_cmd;
mod pci_cmd;
mod picture;
mod runner;
mod table;
mod target_cmd;
mod tune_cmd;
mod tune_steps;
mod watch_cmd;

use clap::Parser;

/// Output cut short by its reader (`iolab man | head`) ends the command
/// quietly, as `cat` does: a closed pipe is not an error worth a message.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if text.contains("failed printing to stdout") && text.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn main() -> std::process::ExitCode {
    quiet_broken_pipe();
    let args = cli::Cli::parse();
    let console_mode = matches!(args.command, None | Some(cli::Command::Console { .. }));
    let db = args.db.clone();
    let lab_profile = args.profile.clone();
    let metrics = args.metrics;
    if matches!(args.command, Some(cli::Command::Agent { .. })) {
        logging::init_with(false, args.verbose, "warn");
    } else {
        logging::init(console_mode, args.verbose);
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = worker_threads(&args.command) {
        builder.worker_threads(n);
    }
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("iolab: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async move {
        match args.command {
            None => console::run(db.as_deref(), lab_profile.as_deref(), metrics).await,
            Some(cli::Command::Console { profile }) => {
                console::run(
                    db.as_deref(),
                    profile.as_deref().or(lab_profile.as_deref()),
                    metrics,
                )
                .await
            }
            Some(cli::Command::Target(cli::TargetCmd::Serve(a))) => target_cmd::serve(*a).await,
            Some(cli::Command::Target(c)) => target_cmd::convert(c),
            Some(cli::Command::Bench(a)) => bench_cmd::bench(db.as_deref(), a).await,
            Some(cli::Command::Discover(a)) => bench_cmd::discover(a).await,
            Some(cli::Command::Matrix(a)) => bench_cmd::matrix(db.as_deref(), a).await,
            Some(cli::Command::Profile(c)) => notebook_cmd::profile_cmd(db.as_deref(), c),
            Some(cli::Command::Runs(c)) => notebook_cmd::runs_cmd(db.as_deref(), c),
            Some(cli::Command::Watch(a)) => watch_cmd::watch(db.as_deref(), a).await,
            Some(cli::Command::Completions { shell }) => {
                let mut cmd = <cli::Cli as clap::CommandFactory>::command();
                let mut script = Vec::new();
                clap_complete::generate(shell, &mut cmd, "iolab", &mut script);
                std::io::Write::write_all(&mut std::io::stdout(), &script)
                    .map_err(anyhow::Error::from)
            }
            Some(cli::Command::Man) => {
                let cmd = <cli::Cli as clap::CommandFactory>::command();
                clap_mangen::Man::new(cmd)
                    .render(&mut std::io::stdout())
                    .map_err(anyhow::Error::from)
            }
            Some(cli::Command::Run(a)) => notebook_cmd::run_cmd(db.as_deref(), a).await,
            Some(cli::Command::Tune(c)) => tune_cmd::tune_cmd(db.as_deref(), c),
            Some(cli::Command::Pci(a)) => pci_cmd::pci_cmd(db.as_deref(), a),
            Some(cli::Command::Guest(c)) => guest_cmd::guest_cmd(db.as_deref(), c),
            Some(cli::Command::Hosts(c)) => hosts_cmd::hosts_cmd(db.as_deref(), c).await,
            Some(cli::Command::Agent { wait_for_input }) => {
                exit_now(hosts_cmd::agent(db.as_deref(), wait_for_input).await)
            }
            Some(cli::Command::Lab(c)) => {
                let relay = matches!(c, cli::LabCmd::Relay { .. });
                let r = hosts_cmd::lab_cmd(c).await;
                if relay { exit_now(r) } else { r }
            }
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(&e) => std::process::ExitCode::from(141),
        Err(e) => {
            eprintln!("iolab: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Ends the process at once: a command that read standard input with
/// tokio still has a blocking read pending, which a runtime shutdown would
/// wait for.
fn exit_now(r: anyhow::Result<()>) -> anyhow::Result<()> {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    match r {
        Ok(()) => std::process::exit(0),
        Err(e) => {
            eprintln!("iolab: {e:#}");
            std::process::exit(1)
        }
    }
}

/// Runtime worker threads for a load-generating command: one, the thread of
/// its one session (an event loop per session, as libiscsi runs one, and as
/// the target serves all connections of a session on one thread: an MC/S
/// session's readers and its commands then wake each other without crossing
/// threads). `iolab bench --sessions N` runs further sessions on threads of
/// their own (`lab_core::shards`). Measured on loopback, 256 KiB at 64
/// outstanding, 2 connections against 1: writes 0.87-0.90x with a thread
/// per connection, 0.95-1.00x with one; reads 0.95-0.97x and 0.96-0.98x.
/// `None` (one per core) for everything else, or when TOKIO_WORKER_THREADS
/// says otherwise.
fn worker_threads(command: &Option<cli::Command>) -> Option<usize> {
    if std::env::var_os("TOKIO_WORKER_THREADS").is_some() {
        return None;
    }
    match command {
        Some(cli::Command::Bench(_) | cli::Command::Matrix(_)) => Some(1),
        _ => None,
    }
}

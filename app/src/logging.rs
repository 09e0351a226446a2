//! Logs via `tracing`: to stderr for commands, to a file under the XDG state
//! directory while the console owns the terminal.

use std::path::PathBuf;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// Where the console writes its log: `$XDG_STATE_HOME/iolab/iolab.log`.
pub fn log_path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))?;
    Some(base.join("iolab").join("iolab.log"))
}

/// Installs the subscriber. Returns nothing to hold; kept as a unit for symmetry.
pub fn init(console: bool, verbose: u8) {
    init_with(console, verbose, "info")
}

/// [`init`] with `quiet` as the level when not verbose (the agent's
/// stderr ends up in the controller's error messages: warnings only).
pub fn init_with(console: bool, verbose: u8, quiet: &str) {
    let default = match verbose {
        0 => quiet,
        1 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("IOLAB_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    if console {
        let file = log_path().and_then(|p| {
            std::fs::create_dir_all(p.parent()?).ok()?;
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .ok()
        });
        if let Some(f) = file {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(filter)
                .with_ansi(false)
                .with_writer(Mutex::new(f))
                .try_init();
        }
        // Without a log file the console logs nothing rather than draw over the screen.
    } else {
        use std::io::IsTerminal;
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .try_init();
    }
}

//! Starting, watching and stopping guests. A guest's directory holds its
//! QMP socket, serial log, pid file and qemu's log; guests keep running when
//! the starting process exits, and are found again through that directory.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::command::{GuestPaths, qemu_args, resolve_accel};
use super::qmp::Qmp;
use super::{GuestDef, GuestError};

/// The program that runs guests.
pub const QEMU: &str = "qemu-system-x86_64";

/// `$XDG_STATE_HOME/iolab/guests` (default `~/.local/state/...`): one
/// directory per guest.
pub fn guests_root() -> Result<PathBuf, GuestError> {
    let base = match std::env::var_os("XDG_STATE_HOME").filter(|v| !v.is_empty()) {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(std::env::var_os("HOME").ok_or_else(|| {
            GuestError::Invalid("no HOME or XDG_STATE_HOME for the guest's state".into())
        })?)
        .join(".local/state"),
    };
    Ok(base.join("iolab/guests"))
}

/// `$XDG_STATE_HOME/iolab/guests/NAME`.
pub fn state_dir(name: &str) -> Result<PathBuf, GuestError> {
    Ok(guests_root()?.join(name))
}

/// The files of guest `name` (in its [`state_dir`]).
pub fn paths(name: &str) -> Result<GuestPaths, GuestError> {
    Ok(GuestPaths::new(state_dir(name)?))
}

/// What a guest is doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestState {
    /// QMP answers: qemu's run state ("running", "paused", "shutdown"...).
    Running { pid: Option<u32>, status: String },
    /// The process lives but the monitor does not answer.
    Unresponsive { pid: u32 },
    /// Not running (never started, stopped, or exited).
    Stopped,
}

impl std::fmt::Display for GuestState {
    /// As `iolab guest list` and the Guests screen say it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GuestState::Running { status, pid } => {
                write!(f, "{status}")?;
                match pid {
                    Some(p) => write!(f, " (pid {p})"),
                    None => Ok(()),
                }
            }
            GuestState::Unresponsive { pid } => write!(f, "not answering on QMP (pid {pid})"),
            GuestState::Stopped => write!(f, "stopped"),
        }
    }
}

fn pid_alive(pid: u32) -> bool {
    // Signal 0 checks for existence without sending anything.
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_ok()
}

/// The pid in a guest's pid file (qemu writes it), if any.
pub fn read_pid(paths: &GuestPaths) -> Option<u32> {
    std::fs::read_to_string(paths.pidfile())
        .ok()
        .and_then(|s| s.trim().parse().ok())
}

pub fn status(paths: &GuestPaths) -> GuestState {
    let pid = read_pid(paths).filter(|p| pid_alive(*p));
    match Qmp::connect(&paths.qmp(), Duration::from_secs(2)).and_then(|mut q| q.status()) {
        Ok(status) => GuestState::Running { pid, status },
        Err(_) => match pid {
            Some(pid) => GuestState::Unresponsive { pid },
            None => GuestState::Stopped,
        },
    }
}

/// Checks a definition against this host before anything is launched.
pub fn preflight(def: &GuestDef, pci_root: &iolab_pci::Sysfs) -> Result<(), GuestError> {
    let problems = def.problems();
    if !problems.is_empty() {
        return Err(GuestError::Invalid(problems.join("; ")));
    }
    for (what, p) in [
        ("kernel", &def.kernel),
        ("initrd", &def.initrd),
        ("disk image", &def.disk),
    ] {
        // A disk may also be a URL qemu opens itself (nbd://, iscsi://).
        if let Some(p) = p
            && !(what == "disk image" && p.contains("://"))
            && !Path::new(p).is_file()
        {
            return Err(GuestError::Invalid(format!("{what} {p} does not exist")));
        }
    }
    for bdf in &def.pci {
        let addr: iolab_pci::Bdf =
            bdf.parse()
                .map_err(|e: iolab_pci::PciError| GuestError::Passthrough {
                    bdf: bdf.clone(),
                    reason: e.to_string(),
                })?;
        let dev = iolab_pci::device(pci_root, addr).map_err(|e| GuestError::Passthrough {
            bdf: bdf.clone(),
            reason: e.to_string(),
        })?;
        if dev.driver.as_deref() != Some(iolab_pci::bind::VFIO_PCI) {
            // Say what binding would need, without binding.
            let reason =
                match iolab_pci::plan_bind(pci_root, addr, iolab_pci::BindOptions::default()) {
                    Err(e) => e.to_string(),
                    Ok(_) => format!(
                        "it is on {}, not vfio-pci: run `iolab pci bind {bdf}` first",
                        dev.driver.as_deref().unwrap_or("no driver")
                    ),
                };
            return Err(GuestError::Passthrough {
                bdf: bdf.clone(),
                reason,
            });
        }
    }
    Ok(())
}

/// A launched guest.
#[derive(Debug)]
pub struct Started {
    pub pid: u32,
    pub args: Vec<String>,
    pub warning: Option<String>,
    pub child: std::process::Child,
}

/// Launches qemu for `def` with its files in `paths.dir` and waits until QMP answers.
/// A stale socket from an earlier run is removed; a guest already running is refused.
/// With `detach`, qemu gets its own process group and outlives the caller
/// (the console finds it again by its QMP socket); without, it dies with the caller.
pub fn start(
    def: &GuestDef,
    paths: &GuestPaths,
    qemu: &str,
    detach: bool,
) -> Result<Started, GuestError> {
    preflight(def, &iolab_pci::Sysfs::default())?;
    std::fs::create_dir_all(&paths.dir).map_err(|source| GuestError::File {
        what: "guest directory",
        path: paths.dir.clone(),
        cause: source,
    })?;
    if paths.qmp().exists() {
        match status(paths) {
            GuestState::Stopped => {
                tracing::info!("removing a stale QMP socket {}", paths.qmp().display());
                let _ = std::fs::remove_file(paths.qmp());
            }
            s => {
                return Err(GuestError::Invalid(format!(
                    "guest {} is already running ({s:?}); stop it first",
                    def.name
                )));
            }
        }
    }
    let _ = std::fs::remove_file(paths.pidfile());
    let _ = std::fs::remove_file(paths.serial());
    let (accel, warning) = resolve_accel(def.accel);
    let args = qemu_args(def, paths, accel);
    let log = std::fs::File::create(paths.qemu_log()).map_err(|source| GuestError::File {
        what: "qemu log",
        path: paths.qemu_log(),
        cause: source,
    })?;
    let log2 = log.try_clone().map_err(|source| GuestError::File {
        what: "qemu log",
        path: paths.qemu_log(),
        cause: source,
    })?;
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(qemu);
    cmd.args(&args)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2);
    if detach {
        // Its own process group: a Ctrl-C to the console does not reach the guest.
        cmd.process_group(0);
    } else {
        // SAFETY: runs in the forked child before exec; prctl is async-signal-safe
        // and only sets this process's parent-death signal.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| GuestError::Qemu(format!("cannot run {qemu}: {e}")))?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(Some(st)) = child.try_wait() {
            let log = std::fs::read_to_string(paths.qemu_log()).unwrap_or_default();
            return Err(GuestError::Qemu(format!(
                "qemu exited at once ({st}): {}",
                log.trim()
            )));
        }
        if Qmp::connect(&paths.qmp(), Duration::from_secs(2)).is_ok() {
            break;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(GuestError::Qemu(
                "QMP did not answer within 20 s; qemu was stopped".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(Started {
        pid: child.id(),
        args,
        warning,
        child,
    })
}

/// Asks the guest to power down; after `grace`, tells qemu to quit; as a last
/// resort kills it. Returns how it ended.
pub fn stop(paths: &GuestPaths, grace: Duration) -> Result<&'static str, GuestError> {
    let pid = read_pid(paths).filter(|p| pid_alive(*p));
    let gone = |pid: Option<u32>| pid.is_none_or(|p| !pid_alive(p));
    let mut q = match Qmp::connect(&paths.qmp(), Duration::from_secs(2)) {
        Ok(q) => q,
        Err(e) => {
            return match pid {
                Some(p) => {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(p as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    Ok("killed (the monitor did not answer)")
                }
                None => Err(GuestError::Invalid(format!(
                    "the guest is not running ({e})"
                ))),
            };
        }
    };
    let _ = q.execute("system_powerdown", None);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if gone(pid) || matches!(q.status().as_deref(), Ok("shutdown") | Err(_)) {
            let _ = q.execute("quit", None);
            return Ok("powered down");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = q.execute("quit", None);
    Ok("quit after the power-down grace time")
}

//! The seam between tuning and the kernel: sysctls through `/proc/sys`, MTUs
//! through ioctls and rtnetlink, in the current network namespace or in a
//! named one. Plans and applies run against this trait, so tests use a fake.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

/// Whether this process can change a sysctl here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyAccess {
    /// No such key in this network namespace.
    Absent,
    /// The kernel offers it read-only here (even to root), as some net.core
    /// keys are outside the initial namespace.
    ReadOnly,
    /// Writable by root, but not by this process.
    Denied,
    Writable,
}

/// What tuning needs from a host.
pub trait TuneHost {
    /// A sysctl's value as the kernel prints it (without the final newline); none if absent.
    fn read(&self, key: &str) -> io::Result<Option<String>>;
    fn access(&self, key: &str) -> KeyAccess;
    fn write(&self, key: &str, value: &str) -> io::Result<()>;
    /// Whether the key exists in the initial network namespace (when this is another one).
    fn in_initial_namespace(&self, _key: &str) -> bool {
        false
    }
    fn mtu(&self, iface: &str) -> io::Result<u32>;
    /// The interface's (min, max) MTU, when the kernel says.
    fn mtu_range(&self, iface: &str) -> io::Result<Option<(u32, u32)>>;
    fn set_mtu(&self, iface: &str, mtu: u32) -> io::Result<()>;
    /// Interface names in this namespace.
    fn interfaces(&self) -> Vec<String> {
        Vec::new()
    }
    /// Whether this process may change links (CAP_NET_ADMIN; root here).
    fn can_set_links(&self) -> bool {
        nix::unistd::geteuid().is_root()
    }
    fn page_size(&self) -> u64 {
        4096
    }
    fn memory_bytes(&self) -> u64;
}

/// `net.ipv4.tcp_sack` → `/proc/sys/net/ipv4/tcp_sack`.
pub fn proc_path(key: &str) -> PathBuf {
    Path::new("/proc/sys").join(key.replace('.', "/"))
}

/// The kernel, from the calling thread's network namespace.
#[derive(Debug, Default, Clone, Copy)]
pub struct Kernel;

impl TuneHost for Kernel {
    fn read(&self, key: &str) -> io::Result<Option<String>> {
        match std::fs::read_to_string(proc_path(key)) {
            Ok(v) => Ok(Some(v.trim_end_matches('\n').to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn access(&self, key: &str) -> KeyAccess {
        use std::os::unix::fs::PermissionsExt;
        let p = proc_path(key);
        let Ok(meta) = std::fs::metadata(&p) else {
            return KeyAccess::Absent;
        };
        if !meta.is_file() {
            return KeyAccess::Absent;
        }
        if meta.permissions().mode() & 0o200 == 0 {
            return KeyAccess::ReadOnly;
        }
        match nix::unistd::access(&p, nix::unistd::AccessFlags::W_OK) {
            Ok(()) => KeyAccess::Writable,
            Err(_) => KeyAccess::Denied,
        }
    }

    fn write(&self, key: &str, value: &str) -> io::Result<()> {
        use std::io::Write;
        // One write(2) of the whole value, as sysctl(8) does.
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(proc_path(key))?;
        f.write_all(format!("{value}\n").as_bytes())
    }

    fn mtu(&self, iface: &str) -> io::Result<u32> {
        super::link::mtu(iface)
    }

    fn interfaces(&self) -> Vec<String> {
        nix::net::if_::if_nameindex()
            .map(|l| {
                l.iter()
                    .map(|i| i.name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn mtu_range(&self, iface: &str) -> io::Result<Option<(u32, u32)>> {
        super::link::mtu_range(iface)
    }

    fn set_mtu(&self, iface: &str, mtu: u32) -> io::Result<()> {
        super::link::set_mtu(iface, mtu)
    }

    fn page_size(&self) -> u64 {
        nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .map(|p| p as u64)
            .unwrap_or(4096)
    }

    fn memory_bytes(&self) -> u64 {
        std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    }
}

type Job = Box<dyn FnOnce() + Send>;

/// A thread that lives in another network namespace and runs jobs there
/// (`setns` changes only the calling thread, so the rest of the process stays put).
struct NsThread {
    tx: mpsc::Sender<Job>,
}

impl NsThread {
    fn enter(path: &Path) -> io::Result<NsThread> {
        let file = std::fs::File::open(path)?;
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        std::thread::Builder::new()
            .name("iolab-netns".into())
            .spawn(move || {
                let entered = nix::sched::setns(file.as_fd(), nix::sched::CloneFlags::CLONE_NEWNET)
                    .map_err(io::Error::from);
                let ok = entered.is_ok();
                let _ = ready_tx.send(entered);
                if ok {
                    for job in rx {
                        job();
                    }
                }
            })?;
        ready_rx
            .recv()
            .map_err(|_| io::Error::other("the namespace thread ended"))??;
        Ok(NsThread { tx })
    }

    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> io::Result<T> {
        let (tx, rx) = mpsc::channel();
        self.tx
            .send(Box::new(move || {
                let _ = tx.send(f());
            }))
            .map_err(|_| io::Error::other("the namespace thread ended"))?;
        rx.recv()
            .map_err(|_| io::Error::other("the namespace thread ended"))
    }
}

/// Why a namespace could not be entered, in words a person acts on.
/// Why a network namespace could not be entered.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("'{0}' is not a network namespace name")]
    BadName(String),
    #[error(
        "there is no network namespace '{0}' (see `ip netns list`; create one with `ip netns add {0}`)"
    )]
    Missing(String),
    #[error("entering network namespace '{0}' needs CAP_SYS_ADMIN: run as root")]
    NotPermitted(String),
    #[error("network namespace '{name}': {cause}")]
    Other { name: String, cause: io::Error },
}

pub fn netns_error(name: &str, e: io::Error) -> NetnsError {
    match e.raw_os_error() {
        Some(libc::ENOENT) => NetnsError::Missing(name.to_string()),
        Some(libc::EPERM) | Some(libc::EACCES) => NetnsError::NotPermitted(name.to_string()),
        _ => NetnsError::Other {
            name: name.to_string(),
            cause: e,
        },
    }
}

/// The kernel as seen from one network namespace: the current one, or a named
/// one (`ip netns add NAME`) served by a thread that entered it.
pub struct Namespace {
    name: Option<String>,
    ns: Option<NsThread>,
    /// The initial namespace, to tell keys only it has from unknown ones.
    init: Option<NsThread>,
}

impl Namespace {
    pub fn current() -> Namespace {
        Namespace {
            name: None,
            ns: None,
            init: NsThread::enter(Path::new("/proc/1/ns/net")).ok(),
        }
    }

    pub fn named(name: &str) -> Result<Namespace, NetnsError> {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(NetnsError::BadName(name.to_string()));
        }
        let path = Path::new("/run/netns").join(name);
        let ns = NsThread::enter(&path).map_err(|e| netns_error(name, e))?;
        // The initial namespace when this process may see it; otherwise the one
        // it was started in, which is the initial one on most hosts.
        let init = NsThread::enter(Path::new("/proc/1/ns/net"))
            .or_else(|_| NsThread::enter(Path::new("/proc/thread-self/ns/net")))
            .ok();
        Ok(Namespace {
            name: Some(name.into()),
            ns: Some(ns),
            init,
        })
    }

    /// `--netns NAME` or the current namespace.
    pub fn open(name: Option<&str>) -> Result<Namespace, NetnsError> {
        match name {
            Some(n) => Namespace::named(n),
            None => Ok(Namespace::current()),
        }
    }

    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(Kernel) -> io::Result<T> + Send + 'static,
    ) -> io::Result<T> {
        match &self.ns {
            Some(t) => t.run(move || f(Kernel))?,
            None => f(Kernel),
        }
    }
}

impl TuneHost for Namespace {
    fn read(&self, key: &str) -> io::Result<Option<String>> {
        let k = key.to_string();
        self.call(move |h| h.read(&k))
    }
    fn access(&self, key: &str) -> KeyAccess {
        let k = key.to_string();
        self.call(move |h| Ok(h.access(&k)))
            .unwrap_or(KeyAccess::Absent)
    }
    fn write(&self, key: &str, value: &str) -> io::Result<()> {
        let (k, v) = (key.to_string(), value.to_string());
        self.call(move |h| h.write(&k, &v))
    }
    fn in_initial_namespace(&self, key: &str) -> bool {
        // Keys of the built-in profiles are known to exist in the initial namespace.
        if super::profile::builtins()
            .iter()
            .any(|p| p.sysctls.contains_key(key))
        {
            return true;
        }
        let k = key.to_string();
        self.init.as_ref().is_some_and(|init| {
            init.run(move || Kernel.access(&k) != KeyAccess::Absent)
                .unwrap_or(false)
        })
    }
    fn mtu(&self, iface: &str) -> io::Result<u32> {
        let i = iface.to_string();
        self.call(move |h| h.mtu(&i))
    }
    fn interfaces(&self) -> Vec<String> {
        self.call(|h| Ok(h.interfaces())).unwrap_or_default()
    }
    fn mtu_range(&self, iface: &str) -> io::Result<Option<(u32, u32)>> {
        let i = iface.to_string();
        self.call(move |h| h.mtu_range(&i))
    }
    fn set_mtu(&self, iface: &str, mtu: u32) -> io::Result<()> {
        let i = iface.to_string();
        self.call(move |h| h.set_mtu(&i, mtu))
    }
    fn page_size(&self) -> u64 {
        Kernel.page_size()
    }
    fn memory_bytes(&self) -> u64 {
        Kernel.memory_bytes()
    }
}

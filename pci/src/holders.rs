//! Who holds a file open, from the `/proc/<pid>/fd` links: before giving a
//! function back to its driver, the VFIO group file that a guest (or any
//! process) keeps open, since the kernel would block the unbind until it
//! lets go, silently and uninterruptibly.

use std::path::{Path, PathBuf};

/// A process that has the file open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Its command line (arguments joined by spaces, cut to 120 characters).
    pub command: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pid {} ({})", self.pid, self.command)
    }
}

/// The processes under `proc_root` (normally `/proc`) with `path` open.
/// Processes whose descriptors cannot be read (another user's, without
/// root) are not seen.
pub fn holders_of(proc_root: &Path, path: &Path) -> Vec<Holder> {
    let want: PathBuf = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let Ok(procs) = std::fs::read_dir(proc_root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t == want));
        if holds {
            let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
            let mut command: String = String::from_utf8_lossy(&cmd)
                .split('\0')
                .filter(|a| !a.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            if command.chars().count() > 120 {
                command = command.chars().take(117).collect::<String>() + "...";
            }
            out.push(Holder { pid, command });
        }
    }
    out.sort_by_key(|h| h.pid);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_file_names_this_process() {
        let path = std::env::temp_dir().join(format!("iolab-holders-{}", std::process::id()));
        std::fs::write(&path, b"").unwrap();
        assert!(holders_of(Path::new("/proc"), &path).is_empty());
        let f = std::fs::File::open(&path).unwrap();
        let h = holders_of(Path::new("/proc"), &path);
        assert_eq!(
            h.iter().map(|h| h.pid).collect::<Vec<_>>(),
            vec![std::process::id()]
        );
        assert!(!h[0].command.is_empty());
        drop(f);
        assert!(holders_of(Path::new("/proc"), &path).is_empty());
        std::fs::remove_file(&path).unwrap();
    }
}

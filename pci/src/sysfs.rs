//! The host behind a small seam: a root directory (`/` on a real machine, a
//! temporary tree in tests) under which `sys/bus/pci`, `sys/kernel/iommu_groups`,
//! `proc/net/route` and `proc/mounts` are read, and a writer for the sysfs
//! control files (a fake one in tests emulates what the kernel does).

use std::io;
use std::path::{Path, PathBuf};

use crate::error::PciError;

/// Where the host's files are.
#[derive(Debug, Clone)]
pub struct Sysfs {
    root: PathBuf,
}

impl Default for Sysfs {
    fn default() -> Self {
        Sysfs::at("/")
    }
}

impl Sysfs {
    pub fn at(root: impl Into<PathBuf>) -> Sysfs {
        Sysfs { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `rel` under the root (`sys/bus/pci/devices`).
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        self.root.join(rel)
    }

    pub fn devices_dir(&self) -> PathBuf {
        self.path("sys/bus/pci/devices")
    }

    pub fn drivers_dir(&self) -> PathBuf {
        self.path("sys/bus/pci/drivers")
    }

    /// A file's text without the final newline.
    pub fn read(&self, path: &Path) -> Result<String, PciError> {
        std::fs::read_to_string(path)
            .map(|s| s.trim_end_matches('\n').to_string())
            .map_err(|source| PciError::Sysfs {
                path: path.to_owned(),
                cause: source,
            })
    }

    /// Like [`read`](Self::read), but a missing file is none.
    pub fn read_opt(&self, path: &Path) -> Result<Option<String>, PciError> {
        match std::fs::read_to_string(path) {
            Ok(s) => Ok(Some(s.trim_end_matches('\n').to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(PciError::Sysfs {
                path: path.to_owned(),
                cause: source,
            }),
        }
    }

    /// The last component of a symlink's target (`driver` -> `ixgbe`).
    pub fn link_name(&self, path: &Path) -> Option<String> {
        std::fs::read_link(path)
            .ok()
            .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()))
    }

    /// Entry names of a directory, sorted; none when it does not exist.
    pub fn list(&self, path: &Path) -> Result<Vec<String>, PciError> {
        match std::fs::read_dir(path) {
            Ok(rd) => {
                let mut v: Vec<String> = rd
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                v.sort();
                Ok(v)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(source) => Err(PciError::Sysfs {
                path: path.to_owned(),
                cause: source,
            }),
        }
    }
}

/// Writes to sysfs control files and loads modules: the part of binding with effects.
pub trait Kernel {
    fn write(&self, path: &Path, value: &str) -> io::Result<()>;
    fn load_module(&self, name: &str) -> io::Result<()>;
}

/// The real kernel: plain writes (one write(2) each) and `modprobe`.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealKernel;

impl Kernel for RealKernel {
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new().write(true).open(path)?;
        f.write_all(value.as_bytes())
    }

    fn load_module(&self, name: &str) -> io::Result<()> {
        let out = std::process::Command::new("modprobe").arg(name).output()?;
        if out.status.success() {
            Ok(())
        } else {
            Err(io::Error::other(format!(
                "modprobe {name}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    }
}

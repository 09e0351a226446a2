//! Guests: what a qemu guest of the lab is made of (`mod.rs`), the exact
//! qemu command line (`command.rs`), its lifecycle over QMP (`lifecycle.rs`,
//! `qmp.rs`), and the lab micro-guest image (`image.rs`, `cpio.rs`).

pub mod command;
pub mod cpio;
pub mod image;
pub mod lifecycle;
pub mod qmp;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Why a guest could not be built, started or reached.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("{what} {path}: {source}")]
    File {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Qemu(String),
    #[error("QMP at {path}: {msg}")]
    Qmp { path: PathBuf, msg: String },
    #[error("passthrough of {bdf}: {reason}")]
    Passthrough { bdf: String, reason: String },
}

/// One qemu/KVM guest as a profile keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestDef {
    pub name: String,
    pub memory_mib: u32,
    pub vcpus: u32,
    /// PCI functions passed through with vfio-pci (`0000:06:00.0`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pci: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub append: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// Emulated NICs (virtio-net).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub nics: Vec<Nic>,
    #[serde(default)]
    pub accel: Accel,
}

/// An emulated NIC and where its traffic goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Nic {
    /// qemu's user-mode network (slirp): no privileges; the host is 10.0.2.2.
    User,
    /// A tap device that exists already (in the network namespace qemu runs in).
    Tap { ifname: String },
}

/// How qemu runs the guest's CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM when /dev/kvm opens and the CPU has VMX or SVM, otherwise TCG.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

impl GuestDef {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let who = &self.name;
        if self.name.is_empty() || self.name.contains(['/', ' ']) {
            out.push(format!(
                "guest name '{who}' must be non-empty, without '/' or spaces"
            ));
        }
        if self.memory_mib < 64 {
            out.push(format!(
                "guest {who}: memory_mib {} is below 64",
                self.memory_mib
            ));
        }
        if !(1..=255).contains(&self.vcpus) {
            out.push(format!(
                "guest {who}: vcpus {} is outside 1..=255",
                self.vcpus
            ));
        }
        for bdf in &self.pci {
            if !valid_bdf(bdf) {
                out.push(format!(
                    "guest {who}: '{bdf}' is not a PCI address (domain:bus:device.function, like 0000:06:00.0)"
                ));
            }
        }
        if self.disk.is_none() && self.kernel.is_none() {
            out.push(format!("guest {who}: needs a disk or a kernel"));
        }
        out
    }
}

/// `DDDD:BB:DD.F` in hex, device < 0x20, function < 8.
pub fn valid_bdf(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
    let mut it = s.split(':');
    let (Some(dom), Some(bus), Some(df), None) = (it.next(), it.next(), it.next(), it.next())
    else {
        return false;
    };
    let Some((dev, func)) = df.split_once('.') else {
        return false;
    };
    hex(dom, 4)
        && hex(bus, 2)
        && hex(dev, 2)
        && u8::from_str_radix(dev, 16).is_ok_and(|d| d < 0x20)
        && func.len() == 1
        && func.chars().all(|c| ('0'..='7').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses() {
        assert!(valid_bdf("0000:06:00.0"));
        assert!(valid_bdf("0001:af:1f.7"));
        assert!(!valid_bdf("06:00.0"));
        assert!(!valid_bdf("0000:06:20.0"));
        assert!(!valid_bdf("0000:06:00.8"));
        assert!(!valid_bdf("0000:06:00.0:1"));
    }
}

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
    #[error("{what} {path}: {cause}")]
    File {
        what: &'static str,
        path: PathBuf,
        cause: std::io::Error,
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
    /// An emulated Intel VT-d (q35 `intel-iommu` with interrupt remapping)
    /// and, for a guest booted from a kernel, `intel_iommu=on iommu=pt`: its
    /// kernel gets IOMMU groups, and its own vfio-pci can pass devices on.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub iommu: bool,
    /// The lab micro-guest (a stock kernel and an initramfs with busybox and
    /// iolab, `iolab guest image`): what it was defined with. Its kernel and
    /// initrd are built when missing, so it starts on a fresh machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub micro: Option<Micro>,
}

/// A micro-guest's own settings: its address and the iolab command it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Micro {
    /// Its address (CIDR) on its first NIC; qemu's user network has 10.0.2.15/24.
    pub ip: String,
    /// The iolab command line it runs (`bench iscsi://10.0.2.2:3260/IQN/0 ...`);
    /// empty: a shell on the serial console.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

/// An emulated NIC and where its traffic goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum Nic {
    /// qemu's user-mode network (slirp): no privileges; the host is 10.0.2.2.
    User {
        /// Host ports forwarded to the guest, each `HOST_ADDR:HOST_PORT=GUEST_PORT`
        /// (TCP; the host side binds where it says, loopback in the lab).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        forward: Vec<Forward>,
    },
    /// A tap device that exists already (in the network namespace qemu runs in).
    Tap { ifname: String },
}

/// A TCP port of the host forwarded to the guest over slirp (qemu's `hostfwd`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Forward {
    pub host: std::net::SocketAddr,
    pub guest_port: u16,
}

impl std::str::FromStr for Forward {
    type Err = GuestError;
    /// `[HOST_ADDR:]HOST_PORT=GUEST_PORT`; the host address defaults to 127.0.0.1.
    fn from_str(s: &str) -> Result<Self, GuestError> {
        let bad = |why: &str| {
            GuestError::Invalid(format!(
                "forward '{s}': {why} (expected [HOST_ADDR:]HOST_PORT=GUEST_PORT, e.g. 127.0.0.1:13260=3260)"
            ))
        };
        let (host, guest) = s.split_once('=').ok_or_else(|| bad("no '='"))?;
        let guest_port: u16 = guest
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("the guest port is not a port number"))?;
        let host = match host.parse::<u16>() {
            Ok(port) => std::net::SocketAddr::from(([127, 0, 0, 1], port)),
            Err(_) => host
                .parse()
                .map_err(|_| bad("the host side is not ADDR:PORT or a port"))?,
        };
        if host.port() == 0 {
            return Err(bad("the host port is 0"));
        }
        Ok(Forward { host, guest_port })
    }
}

impl TryFrom<String> for Forward {
    type Error = GuestError;
    fn try_from(s: String) -> Result<Self, GuestError> {
        s.parse()
    }
}

impl From<Forward> for String {
    fn from(f: Forward) -> String {
        format!("{}={}", f.host, f.guest_port)
    }
}

impl Forward {
    /// qemu's `hostfwd=` value.
    pub fn hostfwd(&self) -> String {
        // SocketAddr writes IPv6 in brackets, as hostfwd wants it.
        format!("tcp:{}-:{}", self.host, self.guest_port)
    }
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

    #[test]
    fn forwards_parse_default_to_loopback_and_round_trip() {
        let f: Forward = "13260=3260".parse().unwrap();
        assert_eq!(f.host, "127.0.0.1:13260".parse().unwrap());
        assert_eq!(f.hostfwd(), "tcp:127.0.0.1:13260-:3260");
        let v6: Forward = "[::1]:2222=22".parse().unwrap();
        assert_eq!(v6.hostfwd(), "tcp:[::1]:2222-:22");
        assert_eq!(String::from(v6), "[::1]:2222=22");
        for bad in [
            "3260",
            "x=3260",
            "13260=0",
            "13260=x",
            "0=3260",
            "1.2.3.4=22",
        ] {
            let e = bad.parse::<Forward>().unwrap_err().to_string();
            assert!(
                e.contains(bad) && e.contains("HOST_PORT=GUEST_PORT"),
                "{bad}: {e}"
            );
        }
        let nic: Nic = toml::from_str("kind = \"user\"\nforward = [\"13260=3260\"]").unwrap();
        assert_eq!(nic, Nic::User { forward: vec![f] });
        let plain: Nic = toml::from_str("kind = \"user\"").unwrap();
        assert_eq!(plain, Nic::User { forward: vec![] });
        assert!(toml::from_str::<Nic>("kind = \"user\"\nforward = [\"nope\"]").is_err());
    }
}

//! Errors of PCI enumeration and binding: each names the file and why.

use std::path::PathBuf;

use crate::addr::Bdf;

#[derive(Debug, thiserror::Error)]
pub enum PciError {
    #[error("'{0}' is not a PCI address (domain:bus:device.function, like 0000:06:00.0)")]
    BadAddress(String),
    #[error("there is no PCI device {0} (see `iolab pci list`)")]
    NoDevice(Bdf),
    #[error("{path}: {cause}")]
    Sysfs {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error(
        "no IOMMU is active ({path} is empty or missing): on Intel, enable VT-d in the firmware and boot with intel_iommu=on; on AMD, enable the IOMMU (AMD-Vi) in the firmware, the kernel uses it then"
    )]
    NoIommu { path: PathBuf },
    #[error("{bdf} has no IOMMU group ({path} is missing): it cannot be assigned to a guest")]
    NoGroup { bdf: Bdf, path: PathBuf },
    #[error("binding needs root: {path} is not writable ({cause})")]
    NoPermission {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("the vfio-pci driver is not available and loading it failed: {0}")]
    NoVfio(String),
    #[error("{0} is a bridge, not an endpoint: only endpoints can be assigned to a guest")]
    NotEndpoint(Bdf),
    #[error(
        "IOMMU group {group} is not viable: {} must be unbound, on vfio-pci or pci-stub, or a bridge; use --group to move the whole group",
        members.join(", ")
    )]
    GroupNotViable { group: u32, members: Vec<String> },
    #[error("{bdf} is in use by the host: {reason}; use --force to take it anyway")]
    InUse { bdf: Bdf, reason: String },
    #[error(
        "{bdf} is held through {} by {}: the kernel would block its unbind until that lets go; stop it first (`iolab guest stop NAME` for a guest iolab started)",
        path.display(),
        holders.iter().map(|h| h.to_string()).collect::<Vec<_>>().join(", ")
    )]
    Held {
        bdf: Bdf,
        path: PathBuf,
        holders: Vec<crate::holders::Holder>,
    },
    #[error("{step} failed writing '{value}' to {path}: {cause}; {outcome}")]
    Step {
        step: String,
        path: PathBuf,
        value: String,
        cause: std::io::Error,
        outcome: String,
    },
    #[error("after {step}, {bdf} is bound to {found} instead of {wanted}; {outcome}")]
    Verify {
        step: String,
        bdf: Bdf,
        found: String,
        wanted: String,
        outcome: String,
    },
}

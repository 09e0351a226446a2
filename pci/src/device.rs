//! PCI functions as sysfs shows them, with the names `lspci` would give
//! (from the `pci-ids` database) and what the host uses them for.

use std::path::Path;

use pci_ids::FromId;
use serde::Serialize;

use crate::addr::Bdf;
use crate::error::PciError;
use crate::sysfs::Sysfs;

/// PCI base classes this crate talks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum BaseClass {
    Storage = 0x01,
    Network = 0x02,
    Display = 0x03,
    Multimedia = 0x04,
    Memory = 0x05,
    Bridge = 0x06,
    SerialBus = 0x0c,
}

impl BaseClass {
    /// The `--class` words.
    pub fn from_word(w: &str) -> Option<BaseClass> {
        Some(match w {
            "storage" => BaseClass::Storage,
            "net" | "network" => BaseClass::Network,
            "display" | "gpu" => BaseClass::Display,
            "multimedia" => BaseClass::Multimedia,
            "memory" => BaseClass::Memory,
            "bridge" => BaseClass::Bridge,
            "serial" | "usb" => BaseClass::SerialBus,
            _ => return None,
        })
    }
}

/// PCI configuration header types (byte 0x0E of config space, low 7 bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum HeaderType {
    Endpoint = 0,
    PciBridge = 1,
    CardbusBridge = 2,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Link {
    pub current_speed: Option<String>,
    pub current_width: Option<String>,
    pub max_speed: Option<String>,
    pub max_width: Option<String>,
}

impl Link {
    /// Whether the kernel reports a real link: a function without one shows
    /// "Unknown" speeds and widths of 0 or 255.
    pub fn is_known(&self) -> bool {
        let speed = |s: &Option<String>| s.as_deref().is_some_and(|v| !v.starts_with("Unknown"));
        let width = |w: &Option<String>| {
            w.as_deref()
                .and_then(|v| v.trim().parse::<u32>().ok())
                .is_some_and(|n| n > 0 && n < 255)
        };
        speed(&self.current_speed) || speed(&self.max_speed) || width(&self.current_width)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Sriov {
    pub total_vfs: u32,
    pub num_vfs: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NetIface {
    pub name: String,
    pub mac: Option<String>,
    pub mtu: Option<u32>,
    /// Carries one of the host's default routes.
    pub default_route: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlockDev {
    pub name: String,
    /// Where it or its partitions are mounted.
    pub mounts: Vec<String>,
}

/// One PCI function.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PciDevice {
    pub address: Bdf,
    pub vendor_id: u16,
    pub device_id: u16,
    pub subsystem_vendor_id: Option<u16>,
    pub subsystem_device_id: Option<u16>,
    /// The 24-bit class code (base, subclass, programming interface).
    pub class: u32,
    pub revision: Option<u8>,
    pub vendor: Option<&'static str>,
    pub device: Option<&'static str>,
    pub subsystem: Option<&'static str>,
    pub class_name: Option<&'static str>,
    pub subclass_name: Option<&'static str>,
    pub driver: Option<String>,
    pub driver_override: Option<String>,
    pub iommu_group: Option<u32>,
    /// The other functions of the IOMMU group.
    pub group_peers: Vec<Bdf>,
    pub numa_node: Option<i32>,
    pub link: Option<Link>,
    pub sriov: Option<Sriov>,
    pub header_type: Option<u8>,
    pub net: Vec<NetIface>,
    pub block: Vec<BlockDev>,
}

impl PciDevice {
    /// One line: address, class, name, ids, driver, IOMMU group, NUMA node.
    pub fn line(&self) -> String {
        let d = self;
        format!(
            "{} {} [{:04x}]: {} [{:04x}:{:04x}] driver={} group={} numa={}",
            d.address,
            d.class_label(),
            d.class >> 8,
            d.name(),
            d.vendor_id,
            d.device_id,
            d.driver.as_deref().unwrap_or("-"),
            d.group_text(),
            d.numa_text(),
        )
    }

    /// The line and everything else known of it, one fact a line.
    pub fn details(&self) -> String {
        let d = self;
        let mut out = format!("{}\n", d.line());
        let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        if let Some(s) = d.subsystem {
            out += &format!("  subsystem: {s}\n");
        }
        if let (Some(sv), Some(sd)) = (d.subsystem_vendor_id, d.subsystem_device_id) {
            out += &format!("  subsystem ids: {sv:04x}:{sd:04x}\n");
        }
        if let Some(r) = d.revision {
            out += &format!("  revision: {r:02x}\n");
        }
        out += &format!(
            "  driver_override: {}\n  endpoint: {}\n",
            opt(&d.driver_override),
            if d.is_endpoint() {
                "yes"
            } else {
                "no (bridge)"
            }
        );
        if let Some(l) = d.link.as_ref().filter(|l| l.is_known()) {
            out += &format!(
                "  link: {} x{} (max {} x{})\n",
                opt(&l.current_speed),
                opt(&l.current_width),
                opt(&l.max_speed),
                opt(&l.max_width)
            );
        } else if d.link.is_some() {
            // sysfs has the files, but the function has no PCIe link of its
            // own (an integrated or emulated device): "Unknown x0" says nothing.
            out += "  link: none reported\n";
        }
        if let Some(s) = &d.sriov {
            out += &format!("  SR-IOV: {} of {} VFs\n", s.num_vfs, s.total_vfs);
        }
        if !d.group_peers.is_empty() {
            let peers: Vec<String> = d.group_peers.iter().map(|b| b.to_string()).collect();
            out += &format!("  IOMMU group peers: {}\n", peers.join(", "));
        }
        for n in &d.net {
            out += &format!(
                "  interface {}: mac {}, mtu {}{}\n",
                n.name,
                opt(&n.mac),
                n.mtu.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                if n.default_route {
                    ", default route"
                } else {
                    ""
                }
            );
        }
        for b in &d.block {
            out += &format!(
                "  disk {}{}\n",
                b.name,
                if b.mounts.is_empty() {
                    String::new()
                } else {
                    format!(": mounted on {}", b.mounts.join(", "))
                }
            );
        }
        out
    }

    pub fn base_class(&self) -> u8 {
        (self.class >> 16) as u8
    }
    pub fn subclass(&self) -> u8 {
        (self.class >> 8) as u8
    }
    pub fn is_bridge(&self) -> bool {
        self.base_class() == BaseClass::Bridge as u8
            || self
                .header_type
                .is_some_and(|h| h & 0x7f != HeaderType::Endpoint as u8)
    }
    pub fn is_endpoint(&self) -> bool {
        !self.is_bridge()
    }
    /// "Vendor Device" as lspci prints it, falling back on the IDs.
    pub fn name(&self) -> String {
        match (self.vendor, self.device) {
            (Some(v), Some(d)) => format!("{v} {d}"),
            (Some(v), None) => format!("{v} Device {:04x}", self.device_id),
            // The ids follow in every line: no need to say them twice.
            _ => "(not in pci.ids)".to_string(),
        }
    }
    /// The IOMMU group as text, `-` when there is none.
    pub fn group_text(&self) -> String {
        self.iommu_group
            .map(|g| g.to_string())
            .unwrap_or_else(|| "-".into())
    }
    /// The NUMA node as text, `-` when the platform has none.
    pub fn numa_text(&self) -> String {
        self.numa_node
            .map(|n| n.to_string())
            .unwrap_or_else(|| "-".into())
    }
    pub fn class_label(&self) -> String {
        self.subclass_name
            .or(self.class_name)
            .map(str::to_owned)
            .unwrap_or_else(|| format!("Class {:04x}", self.class >> 8))
    }
    /// Why the host needs this device, if it does.
    pub fn host_use(&self) -> Option<String> {
        let mut why = Vec::new();
        for n in self.net.iter().filter(|n| n.default_route) {
            why.push(format!("{} carries the default route", n.name));
        }
        for b in self.block.iter().filter(|b| !b.mounts.is_empty()) {
            why.push(format!("{} is mounted on {}", b.name, b.mounts.join(", ")));
        }
        (!why.is_empty()).then(|| why.join("; "))
    }
}

fn hex_u32(s: &str) -> Option<u32> {
    u32::from_str_radix(s.trim().trim_start_matches("0x"), 16).ok()
}

/// Interfaces that carry a default route (IPv4 and IPv6).
pub fn default_route_ifaces(sys: &Sysfs) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(Some(t)) = sys.read_opt(&sys.path("proc/net/route")) {
        for l in t.lines().skip(1) {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() > 7 && f[1] == "00000000" && f[7] == "00000000" {
                out.push(f[0].to_string());
            }
        }
    }
    if let Ok(Some(t)) = sys.read_opt(&sys.path("proc/net/ipv6_route")) {
        for l in t.lines() {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() == 10 && f[0].chars().all(|c| c == '0') && f[1] == "00" && f[9] != "lo" {
                out.push(f[9].to_string());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Mount sources and their mount points.
fn mounts(sys: &Sysfs) -> Vec<(String, String)> {
    sys.read_opt(&sys.path("proc/mounts"))
        .ok()
        .flatten()
        .map(|t| {
            t.lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace();
                    Some((f.next()?.to_string(), f.next()?.to_string()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Disks below a device directory (a disk has `dev` and `queue`), and their partitions.
fn disks(dir: &Path, depth: u32, out: &mut Vec<(String, Vec<String>)>) {
    if depth > 7 {
        return;
    }
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let p = e.path();
        if e.file_type().map(|t| !t.is_dir()).unwrap_or(true) {
            continue;
        }
        if p.join("dev").is_file() && p.join("queue").is_dir() {
            let name = e.file_name().to_string_lossy().into_owned();
            let parts = std::fs::read_dir(&p)
                .map(|r| {
                    r.flatten()
                        .filter(|c| c.path().join("partition").is_file())
                        .map(|c| c.file_name().to_string_lossy().into_owned())
                        .collect()
                })
                .unwrap_or_default();
            out.push((name, parts));
        } else {
            disks(&p, depth + 1, out);
        }
    }
}

/// Every PCI function under the root, in address order.
pub fn enumerate(sys: &Sysfs) -> Result<Vec<PciDevice>, PciError> {
    let dir = sys.devices_dir();
    if !dir.is_dir() {
        return Err(PciError::Sysfs {
            path: dir,
            cause: std::io::Error::new(std::io::ErrorKind::NotFound, "no PCI bus in sysfs"),
        });
    }
    let routes = default_route_ifaces(sys);
    let mounts = mounts(sys);
    let mut out = Vec::new();
    for name in sys.list(&dir)? {
        match name.parse::<Bdf>() {
            Ok(b) => out.push(read_device(sys, b, &routes, &mounts)?),
            Err(_) => tracing::warn!("skipping {name} in {}: not a PCI address", dir.display()),
        }
    }
    out.sort_by_key(|d| d.address);
    Ok(out)
}

/// One function by address.
pub fn device(sys: &Sysfs, bdf: Bdf) -> Result<PciDevice, PciError> {
    read_device(sys, bdf, &default_route_ifaces(sys), &mounts(sys))
}

fn read_device(
    sys: &Sysfs,
    bdf: Bdf,
    routes: &[String],
    mounts: &[(String, String)],
) -> Result<PciDevice, PciError> {
    let dir = sys.devices_dir().join(bdf.to_string());
    if !dir.exists() {
        return Err(PciError::NoDevice(bdf));
    }
    let id = |file: &str| -> Result<u32, PciError> {
        let p = dir.join(file);
        let t = sys.read(&p)?;
        hex_u32(&t).ok_or_else(|| PciError::Sysfs {
            path: p,
            cause: std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("'{t}' is not a hexadecimal number"),
            ),
        })
    };
    let opt_id = |file: &str| {
        sys.read_opt(&dir.join(file))
            .ok()
            .flatten()
            .and_then(|t| hex_u32(&t))
    };
    let opt_text = |file: &str| sys.read_opt(&dir.join(file)).ok().flatten();
    let vendor_id = id("vendor")? as u16;
    let device_id = id("device")? as u16;
    let class = id("class")?;
    let sv = opt_id("subsystem_vendor").map(|v| v as u16);
    let sd = opt_id("subsystem_device").map(|v| v as u16);
    let dev_entry = pci_ids::Device::from_vid_pid(vendor_id, device_id);
    let subsystem = match (dev_entry, sv, sd) {
        (Some(d), Some(sv), Some(sd)) => d
            .subsystems()
            .find(|s| s.subvendor() == sv && s.subdevice() == sd)
            .map(|s| s.name()),
        _ => None,
    };
    let base = (class >> 16) as u8;
    let sub = (class >> 8) as u8;
    let iommu_group = sys
        .link_name(&dir.join("iommu_group"))
        .and_then(|g| g.parse().ok());
    let group_peers = sys
        .list(&dir.join("iommu_group/devices"))
        .unwrap_or_default()
        .into_iter()
        .filter_map(|n| n.parse::<Bdf>().ok())
        .filter(|b| *b != bdf)
        .collect();
    let link = {
        let l = Link {
            current_speed: opt_text("current_link_speed"),
            current_width: opt_text("current_link_width"),
            max_speed: opt_text("max_link_speed"),
            max_width: opt_text("max_link_width"),
        };
        (l.current_speed.is_some() || l.max_speed.is_some()).then_some(l)
    };
    let sriov = opt_text("sriov_totalvfs")
        .and_then(|t| t.trim().parse().ok())
        .map(|total_vfs| Sriov {
            total_vfs,
            num_vfs: opt_text("sriov_numvfs")
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0),
        });
    let header_type = std::fs::read(dir.join("config"))
        .ok()
        .and_then(|c| c.get(0x0e).copied());
    // Interfaces sit in `net/` of the function, or of a child device
    // (virtio-net: `virtio0/net/eth0`).
    let mut net_dirs = vec![dir.join("net")];
    for child in sys.list(&dir).unwrap_or_default() {
        let c = dir.join(&child);
        if !std::fs::symlink_metadata(&c).is_ok_and(|m| m.is_symlink()) && c.join("net").is_dir() {
            net_dirs.push(c.join("net"));
        }
    }
    let net = net_dirs
        .iter()
        .flat_map(|nd| {
            sys.list(nd)
                .unwrap_or_default()
                .into_iter()
                .map(move |name| (nd.join(&name), name))
        })
        .map(|(nd, name)| NetIface {
            mac: sys.read_opt(&nd.join("address")).ok().flatten(),
            mtu: sys
                .read_opt(&nd.join("mtu"))
                .ok()
                .flatten()
                .and_then(|m| m.trim().parse().ok()),
            default_route: routes.contains(&name),
            name,
        })
        .collect();
    let mut found = Vec::new();
    disks(&dir, 0, &mut found);
    let block = found
        .into_iter()
        .map(|(name, parts)| {
            let devs: Vec<String> = std::iter::once(name.clone())
                .chain(parts)
                .map(|n| format!("/dev/{n}"))
                .collect();
            BlockDev {
                mounts: mounts
                    .iter()
                    .filter(|(src, _)| devs.contains(src))
                    .map(|(_, at)| at.clone())
                    .collect(),
                name,
            }
        })
        .collect();
    Ok(PciDevice {
        address: bdf,
        vendor_id,
        device_id,
        subsystem_vendor_id: sv,
        subsystem_device_id: sd,
        class,
        revision: opt_id("revision").map(|r| r as u8),
        vendor: pci_ids::Vendor::from_id(vendor_id).map(|v| v.name()),
        device: dev_entry.map(|d| d.name()),
        subsystem,
        class_name: pci_ids::Class::from_id(base).map(|c| c.name()),
        subclass_name: pci_ids::Subclass::from_cid_sid(base, sub).map(|s| s.name()),
        driver: sys.link_name(&dir.join("driver")),
        driver_override: opt_text("driver_override").filter(|o| o != "(null)" && !o.is_empty()),
        iommu_group,
        group_peers,
        numa_node: opt_text("numa_node")
            .and_then(|n| n.trim().parse().ok())
            .filter(|n| *n >= 0),
        link,
        sriov,
        header_type,
        net,
        block,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_function_without_a_link_says_so() {
        let none = Link {
            current_speed: Some("Unknown".into()),
            current_width: Some("0".into()),
            max_speed: Some("Unknown".into()),
            max_width: Some("255".into()),
        };
        assert!(!none.is_known());
        let x8 = Link {
            current_speed: Some("5.0 GT/s PCIe".into()),
            current_width: Some("8".into()),
            max_speed: Some("5.0 GT/s PCIe".into()),
            max_width: Some("8".into()),
        };
        assert!(x8.is_known());
    }
}

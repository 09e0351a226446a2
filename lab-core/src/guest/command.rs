//! The exact `qemu-system-x86_64` argument list of a guest, and the choice
//! between KVM and TCG.

use std::path::{Path, PathBuf};

use super::{Accel, GuestDef, Nic};

/// Where a running guest keeps its QMP socket, serial log, pid file and qemu's own log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPaths {
    pub dir: PathBuf,
}

impl GuestPaths {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        GuestPaths { dir: dir.into() }
    }
    pub fn qmp(&self) -> PathBuf {
        self.dir.join("qmp.sock")
    }
    pub fn serial(&self) -> PathBuf {
        self.dir.join("serial.log")
    }
    pub fn pidfile(&self) -> PathBuf {
        self.dir.join("qemu.pid")
    }
    pub fn qemu_log(&self) -> PathBuf {
        self.dir.join("qemu.log")
    }
    /// A micro-guest's agent channel (virtio-serial port `io.iolab.agent`):
    /// `iolab agent` in the guest, reached through this socket.
    pub fn agent(&self) -> PathBuf {
        self.dir.join("agent.sock")
    }
}

/// The name of the micro-guest's agent port (virtio-serial).
pub const AGENT_PORT: &str = "io.iolab.agent";

/// The accelerator qemu will use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolved {
    Kvm,
    Tcg,
}

/// What `auto` means on this host: KVM only when /dev/kvm opens read-write and
/// the CPU advertises VMX or SVM (a /dev/kvm without them is a software-only
/// hypervisor that cannot run stock kernels). The warning says why TCG was chosen.
pub fn resolve_accel(a: Accel) -> (Resolved, Option<String>) {
    resolve_with(a, kvm_opens(), cpu_has_virt())
}

fn kvm_opens() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok()
}

fn cpu_has_virt() -> bool {
    std::fs::read_to_string("/proc/cpuinfo").is_ok_and(|c| {
        c.lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"))
    })
}

fn resolve_with(a: Accel, kvm: bool, virt: bool) -> (Resolved, Option<String>) {
    match a {
        Accel::Kvm => (Resolved::Kvm, None),
        Accel::Tcg => (Resolved::Tcg, None),
        Accel::Auto if kvm && virt => (Resolved::Kvm, None),
        Accel::Auto => (
            Resolved::Tcg,
            Some(if !kvm {
                "no usable /dev/kvm: running under TCG (emulation, much slower)".into()
            } else {
                "/dev/kvm opens but the CPU shows no VMX/SVM (a software-only hypervisor): running under TCG".into()
            }),
        ),
    }
}

/// A stable locally administered MAC per guest and NIC, so guests on one bridge differ.
pub fn mac(name: &str, nic: usize) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes().chain([nic as u8]) {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    let b = h.to_be_bytes();
    format!("52:54:00:{:02x}:{:02x}:{:02x}", b[1], b[2], b[3])
}

/// The seed's obsolete `-pcidevice host=06:00.0` for a modern address.
pub fn legacy_pcidevice(bdf: &str) -> String {
    let short = bdf.strip_prefix("0000:").unwrap_or(bdf);
    format!("-pcidevice host={short}")
}

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// The argument list (without the program name).
pub fn qemu_args(def: &GuestDef, paths: &GuestPaths, accel: Resolved) -> Vec<String> {
    let mut a: Vec<String> = Vec::new();
    let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
    let (accel_name, cpu) = match accel {
        Resolved::Kvm => ("kvm", "host"),
        Resolved::Tcg => ("tcg", "max"),
    };
    push(&["-name", &def.name]);
    if def.iommu {
        // Interrupt remapping needs the IOAPIC in qemu (split irqchip under
        // KVM); caching mode lets the guest's own vfio map DMA through it.
        push(&[
            "-machine",
            &format!("q35,accel={accel_name},kernel-irqchip=split"),
        ]);
        push(&["-device", "intel-iommu,intremap=on,caching-mode=on"]);
    } else {
        push(&["-machine", &format!("q35,accel={accel_name}")]);
    }
    push(&["-cpu", cpu]);
    push(&["-m", &def.memory_mib.to_string()]);
    push(&["-smp", &def.vcpus.to_string()]);
    push(&[
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ]);
    push(&["-serial", &format!("file:{}", p(&paths.serial()))]);
    push(&[
        "-qmp",
        &format!("unix:{},server=on,wait=off", p(&paths.qmp())),
    ]);
    push(&["-pidfile", &p(&paths.pidfile())]);
    if let Some(k) = &def.kernel {
        push(&["-kernel", k]);
        if let Some(i) = &def.initrd {
            push(&["-initrd", i]);
        }
        let iommu = if def.iommu {
            "intel_iommu=on iommu=pt "
        } else {
            ""
        };
        let append = format!("console=ttyS0 panic=-1 {iommu}{}", def.append);
        push(&["-append", append.trim()]);
    }
    if let Some(d) = &def.disk {
        push(&["-drive", &drive(d)]);
    }
    for (i, nic) in def.nics.iter().enumerate() {
        let netdev = match nic {
            Nic::User { forward } => {
                let mut n = format!("user,id=net{i}");
                for f in forward {
                    n += &format!(",hostfwd={}", f.hostfwd());
                }
                n
            }
            Nic::Tap { ifname } => format!("tap,id=net{i},ifname={ifname},script=no,downscript=no"),
        };
        push(&["-netdev", &netdev]);
        push(&[
            "-device",
            &format!("virtio-net-pci,netdev=net{i},mac={}", mac(&def.name, i)),
        ]);
    }
    for (i, bdf) in def.pci.iter().enumerate() {
        // Each on a root port of its own, as libvirt does on q35: a device
        // on the root bus could not be unplugged (`iolab pci reattach`
        // asks qemu to unplug it before giving it back to its driver).
        let port = format!("hostdev-port{i}");
        push(&[
            "-device",
            &format!("pcie-root-port,id={port},chassis={},slot=0", 100 + i),
        ]);
        push(&[
            "-device",
            &format!("vfio-pci,host={bdf},id={},bus={port}", hostdev_id(bdf)),
        ]);
    }
    if def.micro.is_some() {
        // The micro-guest's agent channel: no network needed to reach it.
        push(&["-device", "virtio-serial-pci,id=vser0"]);
        push(&[
            "-chardev",
            &format!(
                "socket,id=agent0,path={},server=on,wait=off",
                p(&paths.agent())
            ),
        ]);
        push(&[
            "-device",
            &format!("virtserialport,bus=vser0.0,chardev=agent0,name={AGENT_PORT}"),
        ]);
    }
    a.extend(def.extra_args.iter().cloned());
    a
}

/// The qemu device id of a passed-through function (`hostdev-0000-06-00.0`).
pub fn hostdev_id(bdf: &str) -> String {
    format!("hostdev-{}", bdf.replace(':', "-"))
}

/// A virtio disk's `-drive` value: an image file (qcow2 by its name, raw
/// otherwise) or a URL qemu opens (nbd://, iscsi://), with qemu's default
/// write-back cache, so the guest sees a volatile cache and flushes it, and
/// the guest's discards passed on to the image (a raw file gets holes).
pub fn drive(disk: &str) -> String {
    let format = if disk.ends_with(".qcow2") {
        "qcow2"
    } else {
        "raw"
    };
    format!("file={disk},if=virtio,format={format},discard=unmap")
}

/// The command line as one shell-quoted string, for showing before launch.
pub fn shell_line(program: &str, args: &[String]) -> String {
    std::iter::once(program.to_string())
        .chain(args.iter().map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_=,.:/@+".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        }))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed_target() -> GuestDef {
        GuestDef {
            name: "seed-target".into(),
            memory_mib: 3072,
            vcpus: 8,
            pci: vec!["0000:06:00.0".into()],
            disk: Some("lenny64guest1-orig.img".into()),
            kernel: None,
            initrd: None,
            append: String::new(),
            extra_args: Vec::new(),
            nics: Vec::new(),
            accel: Accel::Auto,
            iommu: false,
            micro: None,
        }
    }

    #[test]
    fn the_seed_guest_becomes_a_modern_command_line() {
        let args = qemu_args(&seed_target(), &GuestPaths::new("/run/g"), Resolved::Kvm);
        let line = shell_line("qemu-system-x86_64", &args);
        for want in [
            "-machine q35,accel=kvm",
            "-m 3072",
            "-smp 8",
            "-device pcie-root-port,id=hostdev-port0,chassis=100,slot=0 -device vfio-pci,host=0000:06:00.0,id=hostdev-0000-06-00.0,bus=hostdev-port0",
            "-qmp unix:/run/g/qmp.sock,server=on,wait=off",
            "-serial file:/run/g/serial.log",
            "-drive file=lenny64guest1-orig.img,if=virtio,format=raw,discard=unmap",
        ] {
            assert!(line.contains(want), "{want} not in {line}");
        }
        assert_eq!(legacy_pcidevice("0000:06:00.0"), "-pcidevice host=06:00.0");
    }

    #[test]
    fn kernel_boot_and_nics() {
        let g = GuestDef {
            kernel: Some("/k/vmlinuz".into()),
            initrd: Some("/k/initrd".into()),
            append: "iolab.ip=10.0.2.15/24".into(),
            disk: None,
            pci: Vec::new(),
            nics: vec![
                Nic::User {
                    forward: vec![
                        "127.0.0.1:13260=3260".parse().unwrap(),
                        "2222=22".parse().unwrap(),
                    ],
                },
                Nic::Tap {
                    ifname: "tap0".into(),
                },
            ],
            ..seed_target()
        };
        let args = qemu_args(&g, &GuestPaths::new("/g"), Resolved::Tcg);
        let line = shell_line("qemu", &args);
        assert!(line.contains("-cpu max"), "{line}");
        assert!(
            line.contains("-append 'console=ttyS0 panic=-1 iolab.ip=10.0.2.15/24'"),
            "{line}"
        );
        assert!(
            line.contains(
                "-netdev user,id=net0,hostfwd=tcp:127.0.0.1:13260-:3260,hostfwd=tcp:127.0.0.1:2222-:22 "
            ),
            "{line}"
        );
        assert!(
            line.contains("-netdev tap,id=net1,ifname=tap0,script=no,downscript=no"),
            "{line}"
        );
        assert_ne!(mac("a", 0), mac("b", 0));
        assert_ne!(mac("a", 0), mac("a", 1));
    }

    #[test]
    fn auto_uses_kvm_only_with_hardware_virtualisation() {
        assert_eq!(resolve_with(Accel::Auto, true, true).0, Resolved::Kvm);
        let (r, w) = resolve_with(Accel::Auto, true, false);
        assert_eq!(r, Resolved::Tcg);
        assert!(w.unwrap().contains("software-only"));
        assert_eq!(resolve_with(Accel::Auto, false, false).0, Resolved::Tcg);
        assert_eq!(resolve_with(Accel::Kvm, false, false).0, Resolved::Kvm);
    }
}

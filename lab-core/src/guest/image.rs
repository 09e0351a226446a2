//! The lab micro-guest: a stock kernel plus an initramfs of busybox, the
//! virtio modules the kernel needs, and the `iolab` binary with its shared
//! libraries. Its init brings the network up from kernel arguments, runs
//! one `iolab` command given on the kernel command line with its output on
//! the serial console, prints `IOLAB-EXIT <code>` and powers off.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use super::GuestError;
use super::cpio::CpioWriter;

/// Modules the guest loads (with their dependencies) for its virtio NIC and
/// disks, and for the kernel's iSCSI initiator (its disks are SCSI disks).
const MODULES: [&str; 8] = [
    "virtio_pci",
    "virtio_net",
    "virtio_blk",
    // The agent's virtio-serial port.
    "virtio_console",
    "iscsi_tcp",
    "sd_mod",
    // libiscsi_tcp asks the crypto API for crc32c when a connection is made.
    "crc32c_generic",
    // A script handed over with `-fw_cfg name=opt/io.iolab/script` (`iolab
    // guest boot --script`).
    "qemu_fw_cfg",
];
/// The IOMMU lab's further modules: VFIO with its type-1 IOMMU backend
/// (vfio loads it on demand through modprobe, which the image has not) and
/// the emulated NICs it passes on.
const IOMMU_MODULES: [&str; 3] = ["vfio_iommu_type1", "vfio_pci", "e1000e"];
/// What qemu reads at start for a q35 guest (firmware), and NICs' option
/// ROMs: found in Debian's firmware path, carried to /usr/share/qemu.
const QEMU_FILES: [&str; 4] = [
    "bios-256k.bin",
    "kvmvapic.bin",
    "efi-e1000e.rom",
    "efi-virtio.rom",
];
const QEMU_FIRMWARE_PATH: [&str; 3] = [
    "/usr/share/qemu",
    "/usr/share/seabios",
    "/usr/lib/ipxe/qemu",
];

/// The fw_cfg name of a script the micro-guest runs (`guest boot --script`).
pub const SCRIPT_FW_CFG: &str = "opt/io.iolab/script";

/// qemu's loadable modules the IOMMU lab needs: TCG itself is one (there
/// is no KVM inside the guest).
const QEMU_MODULES: [&str; 1] = ["accel-tcg-x86_64.so"];
/// Where Debian's qemu keeps them.
const QEMU_MODULE_DIR: &str = "/usr/lib/x86_64-linux-gnu/qemu";

/// Which micro-guest: the lab guest, or the IOMMU lab that also carries
/// the VFIO modules and qemu itself, to bind, pass through and reattach PCI
/// functions on a real kernel under an emulated VT-d.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Variant {
    #[default]
    Lab,
    IommuLab,
}

impl Variant {
    /// Its directory under the guests' state directory.
    pub fn dir_name(self) -> &'static str {
        match self {
            Variant::Lab => "image",
            Variant::IommuLab => "image-iommu-lab",
        }
    }
}
/// open-iscsi's programs, carried when this host has them: the kernel's
/// initiator then runs in the guest (`iolab bench --via open-iscsi`).
const ISCSI_TOOLS: [&str; 2] = ["/usr/sbin/iscsid", "/usr/sbin/iscsiadm"];
/// Busybox applets the init script uses.
const APPLETS: [&str; 19] = [
    "sh", "mount", "insmod", "ip", "cat", "echo", "base64", "poweroff", "sleep", "ls", "dmesg",
    "hostname", "mkdir", "sync", "grep", "readlink", "kill", "head", "tail",
];

const INIT: &str = r#"#!/bin/sh
export PATH=/bin:/sbin:/usr/bin HOME=/tmp IOLAB_LOG=warn XDG_DATA_HOME=/tmp
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /tmp
for m in $(cat /modules/order); do insmod /modules/$m 2>/dev/null; done
# open-iscsi's daemon, when the image carries it (it forks into the background;
# iolab's iscsiadm calls wait for it).
[ -x /sbin/iscsid ] && /sbin/iscsid
for w in $(cat /proc/cmdline); do
  case "$w" in
    iolab.ip=*) IP="${w#iolab.ip=}" ;;
    iolab.gw=*) GW="${w#iolab.gw=}" ;;
    iolab.name=*) hostname "${w#iolab.name=}" ;;
    iolab.cmd=*) echo "${w#iolab.cmd=}" > /tmp/cmd.b64 ;;
  esac
done
ip link set lo up
ip link set eth0 up
[ -n "$IP" ] && ip addr add "$IP" dev eth0
[ -n "$GW" ] && ip route add default via "$GW"
echo "IOLAB-NET-UP $IP"
rc=0
SCRIPT=/sys/firmware/qemu_fw_cfg/by_name/opt/io.iolab/script/raw
if [ -r "$SCRIPT" ]; then
  cat "$SCRIPT" > /tmp/script.sh
  sh /tmp/script.sh
  rc=$?
elif [ -s /tmp/cmd.b64 ]; then
  base64 -d /tmp/cmd.b64 > /tmp/cmd
  IFS='
'
  set -- $(cat /tmp/cmd)
  unset IFS
  /bin/iolab "$@"
  rc=$?
else
  # No command: stay up as a lab guest until qemu is told to quit, serving
  # iolab's agent on the virtio-serial port io.iolab.agent (a lab host).
  echo "IOLAB-IDLE"
  for p in /sys/class/virtio-ports/*; do
    [ "$(cat "$p/name" 2>/dev/null)" = io.iolab.agent ] && AGENT="/dev/${p##*/}"
  done
  if [ -n "$AGENT" ]; then
    echo "IOLAB-AGENT $AGENT"
    # Each controller gets an agent of its own; none connected: wait.
    # One open, read and write: a virtio port opens only once.
    while true; do /bin/iolab agent --wait-for-input <>"$AGENT" >&0; sleep 0.5; done
  fi
  while true; do sleep 3600; done
fi
echo "IOLAB-EXIT $rc"
sync
poweroff -f
"#;

/// Where to find what the image is made of.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub kernel: PathBuf,
    /// `lib/modules/<version>` of that kernel.
    pub modules: PathBuf,
    pub busybox: PathBuf,
    pub iolab: PathBuf,
    pub out: PathBuf,
    pub variant: Variant,
}

/// A built image: boot it with `-kernel` and `-initrd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

fn file_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> GuestError + 'a {
    move |source| GuestError::File {
        what,
        path: path.to_owned(),
        cause: source,
    }
}

/// Where `scripts/test` unpacks Debian's kernel package.
pub const DEFAULT_KERNEL_DIR: &str = "/var/cache/iolab/kernel";

/// A kernel to boot: the running one's in /boot, any in /boot, or one unpacked
/// into `$IOLAB_KERNEL_DIR` (default [`DEFAULT_KERNEL_DIR`], what `scripts/test` prepares).
pub fn find_kernel() -> Result<PathBuf, GuestError> {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut candidates = vec![PathBuf::from(format!("/boot/vmlinuz-{}", release.trim()))];
    let mut dirs = vec![PathBuf::from("/boot")];
    let unpacked = std::env::var_os("IOLAB_KERNEL_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_KERNEL_DIR));
    dirs.push(unpacked.join("boot"));
    for d in dirs {
        if let Ok(rd) = std::fs::read_dir(&d) {
            let mut v: Vec<PathBuf> = rd
                .flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
                })
                .collect();
            v.sort();
            candidates.extend(v.into_iter().rev());
        }
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        GuestError::Invalid(
            "no kernel found in /boot or $IOLAB_KERNEL_DIR/boot (default /var/cache/iolab/kernel/boot): install linux-image-amd64, or unpack it (apt-get download; dpkg-deb -x) and pass --kernel".into(),
        )
    })
}

/// `lib/modules/<version>` next to a kernel at `<root>/boot/vmlinuz-<version>`, or the host's.
pub fn modules_for(kernel: &Path) -> Result<PathBuf, GuestError> {
    let name = kernel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let version = name.strip_prefix("vmlinuz-").ok_or_else(|| {
        GuestError::Invalid(format!(
            "{}: cannot tell the kernel version from the name (want vmlinuz-VERSION); pass --modules",
            kernel.display()
        ))
    })?;
    let beside = kernel
        .parent()
        .and_then(|b| b.parent())
        .map(|root| root.join("lib/modules").join(version));
    let host = PathBuf::from("/lib/modules").join(version);
    beside
        .into_iter()
        .chain([host])
        .find(|p| p.join("kernel").is_dir())
        .ok_or_else(|| {
            GuestError::Invalid(format!(
                "no modules for kernel {version} (looked beside it and in /lib/modules): pass --modules"
            ))
        })
}

/// Every `.ko` under a modules directory, by module name (`-` written as `_`).
fn module_files(dir: &Path) -> Vec<(String, PathBuf)> {
    fn walk(d: &Path, base: &Path, out: &mut Vec<(String, PathBuf)>) {
        let Ok(rd) = std::fs::read_dir(d) else {
            return;
        };
        for e in rd.flatten() {
            let p = e.path();
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                walk(&p, base, out);
            } else if let Some(stem) = p
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .and_then(|n| n.strip_suffix(".ko").map(str::to_owned))
            {
                let rel = p.strip_prefix(base).unwrap_or(&p).to_path_buf();
                out.push((stem.replace('-', "_"), rel));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out
}

/// The `depends=` field of a module's `.modinfo` strings.
fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    ko.windows(key.len())
        .enumerate()
        .filter(|(i, w)| *w == key && (*i == 0 || ko[i - 1] == 0))
        .find_map(|(i, _)| {
            let rest = &ko[i + key.len()..];
            let end = rest.iter().position(|b| *b == 0)?;
            Some(
                String::from_utf8_lossy(&rest[..end])
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.replace('-', "_"))
                    .collect(),
            )
        })
        .unwrap_or_default()
}

/// The modules to load for `wanted`, dependencies first, as paths relative to
/// `dir`. Dependencies come from `modules.dep` when depmod made one, otherwise
/// from each module's own `depends=` (a kernel package unpacked, not installed).
pub fn module_closure(dir: &Path, wanted: &[&str]) -> Result<Vec<String>, GuestError> {
    let stem = |p: &str| {
        Path::new(p)
            .file_name()
            .map(|n| {
                n.to_string_lossy()
                    .trim_end_matches(".ko")
                    .replace('-', "_")
            })
            .unwrap_or_default()
    };
    // name -> (relative path, dependency names)
    let table: Vec<(String, String, Vec<String>)> =
        match std::fs::read_to_string(dir.join("modules.dep")) {
            Ok(text) => text
                .lines()
                .filter_map(|l| {
                    let (m, d) = l.split_once(':')?;
                    Some((
                        stem(m),
                        m.to_string(),
                        d.split_whitespace().map(&stem).collect(),
                    ))
                })
                .collect(),
            Err(_) => module_files(dir)
                .into_iter()
                .map(|(name, rel)| {
                    let deps = std::fs::read(dir.join(&rel))
                        .map(|b| modinfo_depends(&b))
                        .unwrap_or_default();
                    (name, rel.display().to_string(), deps)
                })
                .collect(),
        };
    fn visit(
        m: &str,
        table: &[(String, String, Vec<String>)],
        seen: &mut BTreeSet<String>,
        out: &mut Vec<String>,
    ) {
        if !seen.insert(m.to_string()) {
            return;
        }
        if let Some((_, path, deps)) = table.iter().find(|(n, _, _)| n == m) {
            for d in deps.iter().rev() {
                visit(d, table, seen, out);
            }
            out.push(path.clone());
        }
    }
    let builtin = std::fs::read_to_string(dir.join("modules.builtin")).unwrap_or_default();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for w in wanted {
        if table.iter().any(|(n, _, _)| n == w) {
            visit(w, &table, &mut seen, &mut out);
        } else if !builtin.lines().any(|l| stem(l) == *w) {
            return Err(GuestError::Invalid(format!(
                "kernel modules in {} have no {w}",
                dir.display()
            )));
        }
    }
    Ok(out)
}

/// Shared libraries a dynamic executable needs (through `ldd`), with the loader.
fn shared_libs(exe: &Path) -> Result<Vec<PathBuf>, GuestError> {
    let out = std::process::Command::new("ldd")
        .arg(exe)
        .output()
        .map_err(file_err("ldd for", exe))?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let path = match l.split_once("=>") {
                Some((_, r)) => r.split_whitespace().next()?,
                None => l.split_whitespace().next()?,
            };
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect())
}

/// The first `name` on `$PATH` that is a file.
fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Minimal standard base64 (the guest decodes it with busybox).
pub fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                out.push(T[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Kernel arguments that make the micro-guest configure `ip` (CIDR) and run `iolab ARGS`.
pub fn kernel_args(name: &str, ip: &str, gateway: Option<&str>, args: &[String]) -> String {
    let mut s = format!("quiet iolab.name={name} iolab.ip={ip}");
    if let Some(g) = gateway {
        s += &format!(" iolab.gw={g}");
    }
    if !args.is_empty() {
        s += &format!(" iolab.cmd={}", base64(args.join("\n").as_bytes()));
    }
    s
}

/// Where the lab's micro-guest image lives (`iolab guest image`'s default).
pub fn default_image() -> Result<Image, GuestError> {
    variant_image(Variant::Lab)
}

/// Where a variant's image lives (`iolab guest image [--iommu-lab]`'s default).
pub fn variant_image(variant: Variant) -> Result<Image, GuestError> {
    let out = super::lifecycle::state_dir(variant.dir_name())?;
    Ok(Image {
        kernel: out.join("vmlinuz"),
        initrd: out.join("initrd.cpio"),
    })
}

/// A micro-guest of the lab: the default image, its address on qemu's user
/// network (or `micro.ip` on a tap) and the iolab command it runs.
pub fn micro_guest(
    name: &str,
    memory_mib: u32,
    vcpus: u32,
    micro: super::Micro,
    nics: Vec<super::Nic>,
    accel: super::Accel,
) -> Result<super::GuestDef, GuestError> {
    let img = default_image()?;
    let user = matches!(nics.first(), Some(super::Nic::User { .. }));
    Ok(super::GuestDef {
        name: name.into(),
        memory_mib,
        vcpus,
        pci: Vec::new(),
        disk: None,
        kernel: Some(img.kernel.display().to_string()),
        initrd: Some(img.initrd.display().to_string()),
        append: kernel_args(name, &micro.ip, user.then_some("10.0.2.2"), &micro.command),
        extra_args: Vec::new(),
        nics,
        accel,
        iommu: false,
        micro: Some(micro),
    })
}

/// Builds the micro-guest image a guest boots when it is missing (the
/// kernel from /boot or `$IOLAB_KERNEL_DIR`, busybox, this iolab binary).
/// Returns whether it built one.
pub fn ensure_micro_image(def: &super::GuestDef) -> Result<bool, GuestError> {
    if def.micro.is_none() {
        return Ok(false);
    }
    let (Some(k), Some(i)) = (&def.kernel, &def.initrd) else {
        return Ok(false);
    };
    if Path::new(k).is_file() && Path::new(i).is_file() {
        return Ok(false);
    }
    let kernel = find_kernel()?;
    let modules = modules_for(&kernel)?;
    let iolab = std::env::current_exe().map_err(|cause| GuestError::File {
        what: "iolab binary",
        path: PathBuf::from("/proc/self/exe"),
        cause,
    })?;
    let out = Path::new(k)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    build(&ImageSpec {
        kernel,
        modules,
        busybox: PathBuf::from("/bin/busybox"),
        iolab,
        out,
        variant: Variant::Lab,
    })?;
    Ok(true)
}

/// Builds the initramfs and copies the kernel into `spec.out`.
pub fn build(spec: &ImageSpec) -> Result<Image, GuestError> {
    for (what, p) in [
        ("kernel", &spec.kernel),
        ("busybox", &spec.busybox),
        ("iolab binary", &spec.iolab),
    ] {
        if !p.is_file() {
            return Err(GuestError::Invalid(format!(
                "{what} {} does not exist",
                p.display()
            )));
        }
    }
    std::fs::create_dir_all(&spec.out).map_err(file_err("output directory", &spec.out))?;
    let mut wanted: Vec<&str> = MODULES.to_vec();
    if spec.variant == Variant::IommuLab {
        wanted.extend(IOMMU_MODULES);
    }
    let modules = module_closure(&spec.modules, &wanted)?;
    let initrd = spec.out.join("initrd.cpio");
    let file = std::fs::File::create(&initrd).map_err(file_err("initramfs", &initrd))?;
    let mut c = CpioWriter::new(std::io::BufWriter::new(file));
    let io = |e| GuestError::File {
        what: "initramfs",
        path: initrd.clone(),
        cause: e,
    };
    for d in [
        "bin", "sbin", "dev", "proc", "sys", "tmp", "etc", "modules", "lib", "lib64", "usr",
        "usr/lib",
    ] {
        c.dir(d).map_err(io)?;
    }
    let read = |p: &Path| std::fs::read(p).map_err(file_err("reading", p));
    c.file("bin/busybox", 0o755, &read(&spec.busybox)?)
        .map_err(io)?;
    for a in APPLETS {
        c.symlink(&format!("bin/{a}"), "busybox").map_err(io)?;
    }
    c.file("init", 0o755, INIT.as_bytes()).map_err(io)?;
    c.file("etc/hostname", 0o644, b"iolab-guest\n")
        .map_err(io)?;
    // iscsid accepts iscsiadm's requests only from a user it can name.
    c.file("etc/passwd", 0o644, b"root:x:0:0:root:/tmp:/bin/sh\n")
        .map_err(io)?;
    c.file("etc/group", 0o644, b"root:x:0:\n").map_err(io)?;
    let mut order = String::new();
    for m in &modules {
        let name = Path::new(m)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        c.file(
            &format!("modules/{name}"),
            0o644,
            &read(&spec.modules.join(m))?,
        )
        .map_err(io)?;
        order += &name;
        order.push('\n');
    }
    c.file("modules/order", 0o644, order.as_bytes())
        .map_err(io)?;
    // Without debug information the binary is a fraction of the size, which
    // the guest unpacks faster; keep it whole when `strip` is not there.
    let stripped = spec.out.join("iolab.stripped");
    let small = std::process::Command::new("strip")
        .arg("--strip-debug")
        .arg("-o")
        .arg(&stripped)
        .arg(&spec.iolab)
        .status()
        .is_ok_and(|s| s.success());
    let exe = if small { &stripped } else { &spec.iolab };
    c.file("bin/iolab", 0o755, &read(exe)?).map_err(io)?;
    let _ = std::fs::remove_file(&stripped);
    let tools: Vec<&Path> = ISCSI_TOOLS.iter().map(Path::new).collect();
    let with_iscsi = tools.iter().all(|t| t.is_file());
    let mut libs = shared_libs(&spec.iolab)?;
    if with_iscsi {
        for t in &tools {
            let name = t
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            c.file(&format!("sbin/{name}"), 0o755, &read(t)?)
                .map_err(io)?;
            libs.extend(shared_libs(t)?);
        }
        for d in [
            "etc/iscsi",
            "etc/iscsi/nodes",
            "etc/iscsi/send_targets",
            "var",
            "var/lib",
            "var/lib/iscsi",
            "run",
            "run/lock",
            "run/lock/iscsi",
        ] {
            c.dir(d).map_err(io)?;
        }
        c.file(
            "etc/iscsi/initiatorname.iscsi",
            0o644,
            b"InitiatorName=iqn.2026-11.io.iolab:micro-guest-open-iscsi\n",
        )
        .map_err(io)?;
        c.file("etc/iscsi/iscsid.conf", 0o644, b"node.startup = manual\n")
            .map_err(io)?;
    }
    if spec.variant == Variant::IommuLab {
        let qemu = which(super::lifecycle::QEMU).ok_or_else(|| {
            GuestError::Invalid(format!(
                "the IOMMU lab carries {}, which is not on PATH (Debian: qemu-system-x86)",
                super::lifecycle::QEMU
            ))
        })?;
        // In /usr/bin: qemu finds its modules and data relative to its own
        // directory (../lib/..., ../share/qemu).
        c.dir("usr/bin").map_err(io)?;
        c.file(
            &format!("usr/bin/{}", super::lifecycle::QEMU),
            0o755,
            &read(&qemu)?,
        )
        .map_err(io)?;
        libs.extend(shared_libs(&qemu)?);
        for d in ["usr/share", "usr/share/qemu"] {
            c.dir(d).map_err(io)?;
        }
        // Carried where qemu looks for them, like the shared libraries.
        for m in QEMU_MODULES {
            let p = Path::new(QEMU_MODULE_DIR).join(m);
            if !p.is_file() {
                return Err(GuestError::Invalid(format!(
                    "the IOMMU lab needs qemu's {} (Debian: qemu-system-x86)",
                    p.display()
                )));
            }
            libs.extend(shared_libs(&p)?);
            libs.push(p);
        }
        for f in QEMU_FILES {
            let found = QEMU_FIRMWARE_PATH
                .iter()
                .find_map(|d| std::fs::canonicalize(Path::new(d).join(f)).ok())
                .ok_or_else(|| {
                    GuestError::Invalid(format!(
                        "the IOMMU lab needs qemu's {f} (in {}; Debian: seabios, ipxe-qemu)",
                        QEMU_FIRMWARE_PATH.join(", ")
                    ))
                })?;
            c.file(&format!("usr/share/qemu/{f}"), 0o644, &read(&found)?)
                .map_err(io)?;
        }
    }
    libs.sort();
    libs.dedup();
    let mut made: BTreeSet<PathBuf> = BTreeSet::new();
    for lib in libs {
        // Parent directories first (e.g. lib/x86_64-linux-gnu).
        let rel = lib.strip_prefix("/").unwrap_or(&lib).to_path_buf();
        let mut dir = PathBuf::new();
        for comp in rel.parent().into_iter().flat_map(|p| p.components()) {
            dir.push(comp);
            if made.insert(dir.clone()) {
                c.dir(&dir.display().to_string()).map_err(io)?;
            }
        }
        let real = std::fs::canonicalize(&lib).unwrap_or(lib.clone());
        c.file(&rel.display().to_string(), 0o755, &read(&real)?)
            .map_err(io)?;
    }
    c.finish().map_err(io)?;
    let kernel = spec.out.join("vmlinuz");
    std::fs::copy(&spec.kernel, &kernel).map_err(file_err("copying the kernel to", &kernel))?;
    Ok(Image { kernel, initrd })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_init_reads_the_script_where_boot_puts_it() {
        let path = format!("/sys/firmware/qemu_fw_cfg/by_name/{SCRIPT_FW_CFG}/raw");
        assert!(INIT.contains(&format!("SCRIPT={path}\n")), "{INIT}");
        assert!(MODULES.contains(&"qemu_fw_cfg"));
    }

    #[test]
    fn base64_matches_the_standard() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(
            base64(b"bench\niscsi://10.0.2.2:3260/iqn/0"),
            "YmVuY2gKaXNjc2k6Ly8xMC4wLjIuMjozMjYwL2lxbi8w"
        );
    }

    #[test]
    fn module_dependencies_come_first() {
        let d = std::env::temp_dir().join(format!("iolab-moddep-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("modules.dep"),
            "kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko\n\
             kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko\n\
             kernel/net/core/failover.ko:\n\
             kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_ring.ko\n\
             kernel/drivers/virtio/virtio_ring.ko:\n\
             kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio_ring.ko\n",
        )
        .unwrap();
        let m = module_closure(&d, &["virtio_pci", "virtio_net", "virtio_blk"]).unwrap();
        assert_eq!(
            m,
            [
                "kernel/drivers/virtio/virtio_ring.ko",
                "kernel/drivers/virtio/virtio_pci.ko",
                "kernel/net/core/failover.ko",
                "kernel/drivers/net/net_failover.ko",
                "kernel/drivers/net/virtio_net.ko",
                "kernel/drivers/block/virtio_blk.ko",
            ]
        );
        assert!(module_closure(&d, &["e1000"]).is_err());
        let _ = std::fs::remove_dir_all(&d);
    }
}

//! A fake host for tests: a sysfs-like tree in a temporary directory, and a
//! kernel that does to it what Linux does on writes to `driver_override`,
//! `unbind`, `bind` and `drivers_probe`, logs every write, and can be told
//! to fail the n-th one.

use std::cell::RefCell;
use std::collections::HashMap;
use std::io;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use crate::addr::Bdf;
use crate::sysfs::{Kernel, Sysfs};

/// A temporary tree laid out like `/sys` and `/proc`; removed on drop.
pub struct FakeTree {
    pub root: PathBuf,
}

impl Drop for FakeTree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

fn put(p: &Path, text: &str) {
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).expect("fake tree dir");
    }
    std::fs::write(p, text).expect("fake tree file");
}

impl FakeTree {
    pub fn new(tag: &str) -> FakeTree {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root =
            std::env::temp_dir().join(format!("iolab-fakesys-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for d in [
            "sys/bus/pci/devices",
            "sys/bus/pci/drivers",
            "sys/kernel/iommu_groups",
            "proc/net",
        ] {
            std::fs::create_dir_all(root.join(d)).expect("fake tree");
        }
        put(&root.join("sys/bus/pci/drivers_probe"), "");
        put(
            &root.join("proc/net/route"),
            "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n",
        );
        put(&root.join("proc/mounts"), "proc /proc proc rw 0 0\n");
        FakeTree { root }
    }

    pub fn sysfs(&self) -> Sysfs {
        Sysfs::at(&self.root)
    }

    pub fn dev_dir(&self, bdf: &str) -> PathBuf {
        self.root.join("sys/bus/pci/devices").join(bdf)
    }

    /// A driver directory with `bind` and `unbind`.
    pub fn driver(&self, name: &str) -> &Self {
        let d = self.root.join("sys/bus/pci/drivers").join(name);
        put(&d.join("bind"), "");
        put(&d.join("unbind"), "");
        self
    }

    /// A function with IDs, class, an IOMMU group and a driver.
    pub fn device(
        &self,
        bdf: &str,
        vendor: u16,
        device: u16,
        class: u32,
        group: Option<u32>,
        driver: Option<&str>,
    ) -> &Self {
        let d = self.dev_dir(bdf);
        put(&d.join("vendor"), &format!("0x{vendor:04x}\n"));
        put(&d.join("device"), &format!("0x{device:04x}\n"));
        put(&d.join("class"), &format!("0x{class:06x}\n"));
        put(&d.join("subsystem_vendor"), &format!("0x{vendor:04x}\n"));
        put(&d.join("subsystem_device"), "0x0000\n");
        put(&d.join("revision"), "0x01\n");
        put(&d.join("numa_node"), "0\n");
        put(&d.join("driver_override"), "(null)\n");
        put(&d.join("current_link_speed"), "5.0 GT/s PCIe\n");
        put(&d.join("current_link_width"), "8\n");
        put(&d.join("max_link_speed"), "5.0 GT/s PCIe\n");
        put(&d.join("max_link_width"), "8\n");
        let mut config = vec![0u8; 64];
        config[0x0e] = if class >> 8 == 0x0604 { 1 } else { 0 };
        std::fs::write(d.join("config"), config).expect("config");
        if let Some(g) = group {
            let gd = self
                .root
                .join("sys/kernel/iommu_groups")
                .join(g.to_string());
            std::fs::create_dir_all(gd.join("devices")).expect("group");
            symlink(&gd, d.join("iommu_group")).expect("group link");
            symlink(&d, gd.join("devices").join(bdf)).expect("member link");
        }
        if let Some(drv) = driver {
            self.driver(drv);
            symlink(
                self.root.join("sys/bus/pci/drivers").join(drv),
                d.join("driver"),
            )
            .expect("driver link");
        }
        self
    }

    /// An Intel 82599 10 GbE port (8086:10fb, the seed's kind of NIC) in `group` on `driver`.
    pub fn x520(&self, bdf: &str, group: u32, driver: Option<&str>) -> &Self {
        self.device(bdf, 0x8086, 0x10fb, 0x020000, Some(group), driver)
    }

    /// A network interface of a function.
    pub fn net(&self, bdf: &str, ifname: &str, mtu: u32) -> &Self {
        let d = self.dev_dir(bdf).join("net").join(ifname);
        put(&d.join("address"), "52:54:00:12:34:56\n");
        put(&d.join("mtu"), &format!("{mtu}\n"));
        self
    }

    /// A default route through `ifname`.
    pub fn default_route(&self, ifname: &str) -> &Self {
        let p = self.root.join("proc/net/route");
        let mut t = std::fs::read_to_string(&p).unwrap_or_default();
        t += &format!("{ifname}\t00000000\t0102A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n");
        put(&p, &t);
        self
    }

    /// A disk (with partitions) behind a storage function.
    pub fn disk(&self, bdf: &str, name: &str, parts: &[&str]) -> &Self {
        let d = self
            .dev_dir(bdf)
            .join("host0/target0:0:0/0:0:0:0/block")
            .join(name);
        put(&d.join("dev"), "8:0\n");
        std::fs::create_dir_all(d.join("queue")).expect("queue");
        for p in parts {
            put(&d.join(p).join("partition"), "1\n");
        }
        self
    }

    pub fn mount(&self, dev: &str, at: &str) -> &Self {
        let p = self.root.join("proc/mounts");
        let mut t = std::fs::read_to_string(&p).unwrap_or_default();
        t += &format!("{dev} {at} ext4 rw 0 0\n");
        put(&p, &t);
        self
    }

    /// Every file, its contents, and every link with its target: to compare
    /// the tree before and after.
    pub fn snapshot(&self) -> String {
        fn walk(p: &Path, root: &Path, out: &mut Vec<String>) {
            let Ok(rd) = std::fs::read_dir(p) else {
                return;
            };
            let mut entries: Vec<_> = rd.flatten().collect();
            entries.sort_by_key(|e| e.file_name());
            for e in entries {
                let path = e.path();
                let rel = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .display()
                    .to_string();
                let ft = e.file_type().expect("file type");
                if ft.is_symlink() {
                    let t = std::fs::read_link(&path).unwrap_or_default();
                    out.push(format!("{rel} -> {}", t.display()));
                } else if ft.is_dir() {
                    walk(&path, root, out);
                } else {
                    let b = std::fs::read(&path).unwrap_or_default();
                    out.push(format!("{rel} = {:?}", String::from_utf8_lossy(&b)));
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.root, &self.root, &mut out);
        out.join("\n")
    }
}

/// What Linux does on writes to the PCI control files, on a [`FakeTree`].
pub struct FakeKernel<'a> {
    tree: &'a FakeTree,
    /// The driver that claims each function when probed without an override.
    pub native: HashMap<Bdf, String>,
    /// Writes made so far: (path relative to the tree, value).
    pub log: RefCell<Vec<(String, String)>>,
    /// Fail the write with this index (0-based) with EIO, doing nothing.
    pub fail_at: Option<usize>,
    /// Whether `modprobe vfio-pci` works.
    pub module_loads: bool,
}

impl<'a> FakeKernel<'a> {
    pub fn new(tree: &'a FakeTree) -> Self {
        FakeKernel {
            tree,
            native: HashMap::new(),
            log: RefCell::new(Vec::new()),
            fail_at: None,
            module_loads: true,
        }
    }

    pub fn writes(&self) -> Vec<(String, String)> {
        self.log.borrow().clone()
    }

    fn driver_link(&self, bdf: &str) -> PathBuf {
        self.tree.dev_dir(bdf).join("driver")
    }

    fn attach(&self, bdf: &str, driver: &str) -> io::Result<()> {
        let d = self.tree.root.join("sys/bus/pci/drivers").join(driver);
        if !d.is_dir() {
            return Err(io::Error::from_raw_os_error(libc_enodev()));
        }
        symlink(d, self.driver_link(bdf))
    }
}

fn libc_enodev() -> i32 {
    19
}

impl Kernel for FakeKernel<'_> {
    fn write(&self, path: &Path, value: &str) -> io::Result<()> {
        let rel = path
            .strip_prefix(&self.tree.root)
            .unwrap_or(path)
            .display()
            .to_string();
        let index = self.log.borrow().len();
        self.log.borrow_mut().push((rel.clone(), value.to_string()));
        if self.fail_at == Some(index) {
            return Err(io::Error::other("injected failure"));
        }
        let v = value.trim();
        let parts: Vec<&str> = rel.split('/').collect();
        match parts.as_slice() {
            ["sys", "bus", "pci", "devices", _, "driver_override"] => {
                let text = if v.is_empty() { "(null)" } else { v };
                std::fs::write(path, format!("{text}\n"))
            }
            ["sys", "bus", "pci", "drivers", drv, "unbind"] => {
                let link = self.driver_link(v);
                let cur = std::fs::read_link(&link)
                    .ok()
                    .and_then(|t| t.file_name().map(|n| n.to_string_lossy().into_owned()));
                if cur.as_deref() != Some(*drv) {
                    return Err(io::Error::from_raw_os_error(libc_enodev()));
                }
                std::fs::remove_file(link)
            }
            ["sys", "bus", "pci", "drivers", drv, "bind"] => {
                if self.driver_link(v).exists() {
                    return Err(io::Error::from_raw_os_error(16)); // EBUSY
                }
                self.attach(v, drv)
            }
            ["sys", "bus", "pci", "drivers_probe"] => {
                if std::fs::symlink_metadata(self.driver_link(v)).is_ok() {
                    return Ok(());
                }
                let ov = std::fs::read_to_string(self.tree.dev_dir(v).join("driver_override"))
                    .unwrap_or_default();
                let ov = ov.trim();
                let pick = if !ov.is_empty() && ov != "(null)" {
                    Some(ov.to_string())
                } else {
                    v.parse::<Bdf>()
                        .ok()
                        .and_then(|b| self.native.get(&b).cloned())
                };
                match pick {
                    Some(d) => self.attach(v, &d).or(Ok(())),
                    None => Ok(()),
                }
            }
            _ => Err(io::Error::other(format!("{rel} is not a control file"))),
        }
    }

    fn load_module(&self, name: &str) -> io::Result<()> {
        if !self.module_loads {
            return Err(io::Error::other(format!(
                "modprobe: FATAL: Module {name} not found"
            )));
        }
        self.tree.driver(name);
        Ok(())
    }
}

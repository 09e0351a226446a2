//! Moving a function to vfio-pci and back, in the order libvirt and
//! driverctl use: check the IOMMU, the driver, that it is an endpoint, that
//! its group is viable, that the host does not need it; then write
//! `driver_override`, unbind, `drivers_probe`, and verify the `driver` link.
//! A failed step puts the device back as it was and says which file failed.

use std::path::{Path, PathBuf};

use crate::addr::Bdf;
use crate::device::{PciDevice, device};
use crate::error::PciError;
use crate::sysfs::{Kernel, Sysfs};

/// The driver guests get devices through.
pub const VFIO_PCI: &str = "vfio-pci";
/// Drivers a group member may sit on while another member is assigned.
pub const STUB_DRIVERS: [&str; 2] = [VFIO_PCI, "pci-stub"];

/// One write to a sysfs control file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub step: String,
    pub path: PathBuf,
    pub value: String,
}

/// What binding or reattaching one function takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevicePlan {
    pub bdf: Bdf,
    /// The driver before (none: unbound).
    pub original_driver: Option<String>,
    pub original_override: Option<String>,
    /// The driver the function must end on.
    pub wanted: Option<String>,
    pub writes: Vec<Write>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindPlan {
    /// vfio-pci must be loaded first.
    pub load_module: bool,
    pub devices: Vec<DevicePlan>,
}

impl BindPlan {
    /// The plan as `--dry-run` prints it: one line per action.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        if self.load_module {
            out.push(format!("modprobe {VFIO_PCI}"));
        }
        for d in &self.devices {
            if d.writes.is_empty() {
                out.push(format!("# {} is already on {VFIO_PCI}", d.bdf));
            }
            for w in &d.writes {
                out.push(format!(
                    "echo '{}' > {}    # {}",
                    w.value.trim_end_matches('\n'),
                    w.path.display(),
                    w.step
                ));
            }
        }
        out
    }
}

#[derive(Debug, Clone, Copy, Default)]
pub struct BindOptions {
    /// Take a device the host uses (default route, mounted file system).
    pub force: bool,
    /// Move the whole IOMMU group when other members are on host drivers.
    pub group: bool,
}

fn device_dir(sys: &Sysfs, bdf: Bdf) -> PathBuf {
    sys.devices_dir().join(bdf.to_string())
}

fn writes_to(sys: &Sysfs, d: &PciDevice, driver_override: &str) -> Vec<Write> {
    let bdf = d.address.to_string();
    let mut w = vec![Write {
        step: format!("setting driver_override to '{}'", driver_override.trim()),
        path: device_dir(sys, d.address).join("driver_override"),
        value: driver_override.to_string(),
    }];
    if let Some(cur) = &d.driver {
        w.push(Write {
            step: format!("unbinding from {cur}"),
            path: sys.drivers_dir().join(cur).join("unbind"),
            value: bdf.clone(),
        });
    }
    w.push(Write {
        step: "asking the PCI core to probe drivers".into(),
        path: sys.path("sys/bus/pci/drivers_probe"),
        value: bdf,
    });
    w
}

/// Every check, then the writes that would move `bdf` (and, with
/// `opts.group`, its group) to vfio-pci. Writes nothing.
pub fn plan_bind(sys: &Sysfs, bdf: Bdf, opts: BindOptions) -> Result<BindPlan, PciError> {
    let dev = device(sys, bdf)?;
    let groups = sys.path("sys/kernel/iommu_groups");
    if sys.list(&groups)?.is_empty() {
        return Err(PciError::NoIommu { path: groups });
    }
    let Some(group) = dev.iommu_group else {
        return Err(PciError::NoGroup {
            bdf,
            path: device_dir(sys, bdf).join("iommu_group"),
        });
    };
    // Opening the probe file for writing writes nothing, but says whether we may.
    let probe = sys.path("sys/bus/pci/drivers_probe");
    if let Err(source) = std::fs::OpenOptions::new().write(true).open(&probe) {
        return Err(PciError::NoPermission {
            path: probe,
            cause: source,
        });
    }
    let load_module = !sys.drivers_dir().join(VFIO_PCI).is_dir();
    if !dev.is_endpoint() {
        return Err(PciError::NotEndpoint(bdf));
    }
    let mut targets = vec![dev.clone()];
    let mut blocking = Vec::new();
    for p in &dev.group_peers {
        let peer = device(sys, *p)?;
        let fine = peer.is_bridge()
            || peer
                .driver
                .as_deref()
                .is_none_or(|d| STUB_DRIVERS.contains(&d));
        if !fine {
            blocking.push(peer);
        }
    }
    if !blocking.is_empty() {
        if !opts.group {
            return Err(PciError::GroupNotViable {
                group,
                members: blocking
                    .iter()
                    .map(|p| {
                        format!(
                            "{} (on {})",
                            p.address,
                            p.driver.as_deref().unwrap_or("no driver")
                        )
                    })
                    .collect(),
            });
        }
        targets.extend(blocking);
    }
    if !opts.force {
        for t in &targets {
            if let Some(reason) = t.host_use() {
                return Err(PciError::InUse {
                    bdf: t.address,
                    reason,
                });
            }
        }
    }
    let devices = targets
        .iter()
        .map(|t| DevicePlan {
            bdf: t.address,
            original_driver: t.driver.clone(),
            original_override: t.driver_override.clone(),
            wanted: Some(VFIO_PCI.into()),
            writes: if t.driver.as_deref() == Some(VFIO_PCI) {
                Vec::new()
            } else {
                writes_to(sys, t, VFIO_PCI)
            },
        })
        .collect();
    Ok(BindPlan {
        load_module,
        devices,
    })
}

/// The writes that give `bdf` back to `original` (none: leave it unbound).
pub fn plan_reattach(
    sys: &Sysfs,
    bdf: Bdf,
    original: Option<&str>,
) -> Result<DevicePlan, PciError> {
    let dev = device(sys, bdf)?;
    let mut writes = writes_to(sys, &dev, "\n");
    writes[0].step = "clearing driver_override".into();
    if original.is_none() {
        // Nothing to probe for: the function stays unbound.
        writes.pop();
    }
    Ok(DevicePlan {
        bdf,
        original_driver: dev.driver.clone(),
        original_override: dev.driver_override.clone(),
        wanted: original.map(str::to_owned),
        writes,
    })
}

/// Puts a function back on `driver` with `override_`, as it was before `plan` began.
fn restore(sys: &Sysfs, k: &dyn Kernel, p: &DevicePlan) -> Result<(), String> {
    let dir = device_dir(sys, p.bdf);
    let bdf = p.bdf.to_string();
    let mut failed = Vec::new();
    let mut put = |path: PathBuf, value: &str| {
        if let Err(e) = k.write(&path, value) {
            failed.push(format!("{} ({e})", path.display()));
        }
    };
    put(
        dir.join("driver_override"),
        p.original_override.as_deref().unwrap_or("\n"),
    );
    let now = sys.link_name(&dir.join("driver"));
    if now != p.original_driver {
        if let Some(cur) = &now {
            put(sys.drivers_dir().join(cur).join("unbind"), &bdf);
        }
        if let Some(orig) = &p.original_driver {
            put(sys.drivers_dir().join(orig).join("bind"), &bdf);
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(failed.join(", "))
    }
}

fn outcome(r: Result<(), String>) -> String {
    match r {
        Ok(()) => "the device was put back as it was".into(),
        Err(e) => format!("putting it back failed too: {e}"),
    }
}

/// Runs one function's writes and checks where it ended; undoes on failure.
fn run_device(sys: &Sysfs, k: &dyn Kernel, p: &DevicePlan) -> Result<(), PciError> {
    for w in &p.writes {
        if let Err(source) = k.write(&w.path, &w.value) {
            return Err(PciError::Step {
                step: w.step.clone(),
                path: w.path.clone(),
                value: w.value.trim_end_matches('\n').to_string(),
                cause: source,
                outcome: outcome(restore(sys, k, p)),
            });
        }
    }
    let now = sys.link_name(&device_dir(sys, p.bdf).join("driver"));
    if now != p.wanted {
        return Err(PciError::Verify {
            step: p
                .writes
                .last()
                .map(|w| w.step.clone())
                .unwrap_or_else(|| "nothing".into()),
            bdf: p.bdf,
            found: now.unwrap_or_else(|| "no driver".into()),
            wanted: p.wanted.clone().unwrap_or_else(|| "no driver".into()),
            outcome: outcome(restore(sys, k, p)),
        });
    }
    Ok(())
}

/// Carries out a bind plan. If any function fails, the ones already moved go back too.
pub fn bind(sys: &Sysfs, k: &dyn Kernel, plan: &BindPlan) -> Result<(), PciError> {
    if plan.load_module {
        k.load_module(VFIO_PCI)
            .map_err(|e| PciError::NoVfio(e.to_string()))?;
        if !sys.drivers_dir().join(VFIO_PCI).is_dir() {
            return Err(PciError::NoVfio(format!(
                "{} did not appear",
                sys.drivers_dir().join(VFIO_PCI).display()
            )));
        }
    }
    for (i, d) in plan.devices.iter().enumerate() {
        if let Err(e) = run_device(sys, k, d) {
            for done in plan.devices[..i].iter().rev() {
                let _ = restore(sys, k, done);
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Carries out a reattach plan. A function on vfio-pci whose group file
/// (`/dev/vfio/<group>`) a process holds open is refused, naming the
/// process: the kernel would otherwise block the unbind until it lets go,
/// without a word and beyond the reach of signals.
pub fn reattach(sys: &Sysfs, k: &dyn Kernel, plan: &DevicePlan) -> Result<(), PciError> {
    reattach_with(sys, k, plan, Path::new("/proc"))
}

/// [`reattach`] with the processes of `proc_root`.
pub fn reattach_with(
    sys: &Sysfs,
    k: &dyn Kernel,
    plan: &DevicePlan,
    proc_root: &Path,
) -> Result<(), PciError> {
    if plan.original_driver.as_deref() == Some(VFIO_PCI)
        && let Some(group) = device(sys, plan.bdf)?.iommu_group
    {
        let path = sys.path(format!("dev/vfio/{group}"));
        let holders = crate::holders::holders_of(proc_root, &path);
        if !holders.is_empty() {
            return Err(PciError::Held {
                bdf: plan.bdf,
                path,
                holders,
            });
        }
    }
    run_device(sys, k, plan)
}

//! `iolab pci`: list, show, bind to vfio-pci and reattach, with the original
//! drivers kept in the notebook so `reattach --all` works after a crash.

use std::path::Path;

use anyhow::{Context, bail};
use iolab_pci::device::BaseClass;
use iolab_pci::{Bdf, BindOptions, BindPlan, Kernel, PciDevice, RealKernel, Sysfs};
use iolab_profiles::{Original, Store};

use crate::cli::{PciArgs, PciCmd};
use crate::notebook_cmd::open_store;

/// The notebook scope of a function's recorded binding.
fn scope(bdf: Bdf) -> String {
    format!("pci:{bdf}")
}

const DRIVER: &str = "driver";
const OVERRIDE: &str = "driver_override";

fn line(d: &PciDevice) -> String {
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

pub fn show(d: &PciDevice) -> String {
    let mut out = format!("{}\n", line(d));
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
    if let Some(l) = &d.link {
        out += &format!(
            "  link: {} x{} (max {} x{})\n",
            opt(&l.current_speed),
            opt(&l.current_width),
            opt(&l.max_speed),
            opt(&l.max_width)
        );
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

/// Gives `bdf` back to the driver recorded when iolab bound it; says where it went.
pub fn reattach_one(
    sys: &Sysfs,
    kernel: &dyn Kernel,
    store: &mut Store,
    bdf: Bdf,
) -> anyhow::Result<String> {
    let recorded = store.originals(&scope(bdf))?;
    if recorded.is_empty() {
        bail!(
            "{bdf} was not bound by iolab (nothing recorded in {})",
            store.path().display()
        );
    }
    let driver = recorded
        .iter()
        .find(|o| o.key == DRIVER)
        .map(|o| o.value.clone())
        .filter(|d| !d.is_empty());
    let plan = iolab_pci::plan_reattach(sys, bdf, driver.as_deref())?;
    iolab_pci::reattach(sys, kernel, &plan)?;
    let keys: Vec<String> = recorded.into_iter().map(|o| o.key).collect();
    store.forget_originals(&scope(bdf), &keys)?;
    Ok(format!(
        "{bdf} is back on {}",
        driver.as_deref().unwrap_or("no driver (it had none)")
    ))
}

/// Functions iolab bound and has not given back.
pub fn bound_by_iolab(store: &Store) -> Vec<Bdf> {
    store
        .original_scopes()
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.strip_prefix("pci:")?.parse().ok())
        .collect()
}

/// Records each function's driver, then binds; forgets the records of a failed bind.
pub fn bind_recorded(
    sys: &Sysfs,
    kernel: &dyn Kernel,
    store: &mut Store,
    plan: &BindPlan,
) -> anyhow::Result<Vec<String>> {
    for d in &plan.devices {
        store.save_originals(
            &scope(d.bdf),
            &[
                Original {
                    key: DRIVER.into(),
                    value: d.original_driver.clone().unwrap_or_default(),
                },
                Original {
                    key: OVERRIDE.into(),
                    value: d.original_override.clone().unwrap_or_default(),
                },
            ],
        )?;
    }
    if let Err(e) = iolab_pci::bind(sys, kernel, plan) {
        for d in &plan.devices {
            if d.original_driver.as_deref() != Some(iolab_pci::bind::VFIO_PCI) {
                let _ = store.forget_originals(&scope(d.bdf), &[DRIVER.into(), OVERRIDE.into()]);
            }
        }
        return Err(e.into());
    }
    Ok(plan
        .devices
        .iter()
        .map(|d| {
            format!(
                "{} is on vfio-pci (was {}); `iolab pci reattach {}` gives it back",
                d.bdf,
                d.original_driver.as_deref().unwrap_or("unbound"),
                d.bdf
            )
        })
        .collect())
}

pub fn pci_cmd(db: Option<&Path>, a: PciArgs) -> anyhow::Result<()> {
    let sys = Sysfs::at(&a.root);
    match a.cmd {
        PciCmd::List { json, class } => {
            let want = match class.as_deref() {
                Some(w) => Some(BaseClass::from_word(w).with_context(|| {
                    format!("--class {w}: use net, storage, display, bridge, serial, multimedia or memory")
                })?),
                None => None,
            };
            let all: Vec<PciDevice> = iolab_pci::enumerate(&sys)?
                .into_iter()
                .filter(|d| want.is_none_or(|c| d.base_class() == c as u8))
                .collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                for d in &all {
                    println!("{}", line(d));
                }
            }
        }
        PciCmd::Show { bdf } => {
            let d = iolab_pci::device(&sys, bdf.parse()?)?;
            print!("{}", show(&d));
        }
        PciCmd::Bind {
            bdf,
            dry_run,
            force,
            group,
        } => {
            let bdf: Bdf = bdf.parse()?;
            let plan = iolab_pci::plan_bind(&sys, bdf, BindOptions { force, group })?;
            if dry_run {
                for l in plan.lines() {
                    println!("{l}");
                }
                return Ok(());
            }
            let mut store = open_store(db)?;
            for l in bind_recorded(&sys, &RealKernel, &mut store, &plan)? {
                println!("{l}");
            }
        }
        PciCmd::Reattach { bdf, all } => {
            let mut store = open_store(db)?;
            if all {
                let scopes = bound_by_iolab(&store);
                if scopes.is_empty() {
                    println!("nothing to reattach");
                }
                let mut failed = 0;
                for b in scopes {
                    match reattach_one(&sys, &RealKernel, &mut store, b) {
                        Ok(m) => println!("{m}"),
                        Err(e) => {
                            eprintln!("iolab: {b}: {e:#}");
                            failed += 1;
                        }
                    }
                }
                if failed > 0 {
                    bail!("{failed} device(s) could not be reattached");
                }
            } else if let Some(b) = bdf {
                println!(
                    "{}",
                    reattach_one(&sys, &RealKernel, &mut store, b.parse()?)?
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use iolab_pci::fake::{FakeKernel, FakeTree};

    #[test]
    fn the_original_driver_survives_a_crash_in_the_notebook() {
        let t = FakeTree::new("notebook");
        t.x520("0000:07:00.0", 13, Some("ixgbe")).driver("vfio-pci");
        let before = t.snapshot();
        let sys = t.sysfs();
        let db = t.root.join("lab.db");
        let bdf: Bdf = "07:00.0".parse().unwrap();
        {
            let mut k = FakeKernel::new(&t);
            k.native.insert(bdf, "ixgbe".into());
            let mut store = Store::open(&db).unwrap();
            let plan = iolab_pci::plan_bind(&sys, bdf, BindOptions::default()).unwrap();
            let lines = bind_recorded(&sys, &k, &mut store, &plan).unwrap();
            assert!(lines[0].contains("was ixgbe"), "{lines:?}");
            // The process "crashes" here: only the notebook remembers.
        }
        let mut store = Store::open(&db).unwrap();
        assert_eq!(bound_by_iolab(&store), [bdf]);
        let mut k = FakeKernel::new(&t);
        k.native.insert(bdf, "ixgbe".into());
        let msg = reattach_one(&sys, &k, &mut store, bdf).unwrap();
        assert_eq!(msg, "0000:07:00.0 is back on ixgbe");
        assert!(bound_by_iolab(&store).is_empty());
        std::fs::remove_file(&db).unwrap();
        for f in ["lab.db-wal", "lab.db-shm"] {
            let _ = std::fs::remove_file(t.root.join(f));
        }
        assert_eq!(t.snapshot(), before);
    }

    #[test]
    fn a_failed_bind_leaves_no_record() {
        let t = FakeTree::new("norecord");
        t.x520("0000:07:00.0", 13, Some("ixgbe")).driver("vfio-pci");
        let sys = t.sysfs();
        let mut k = FakeKernel::new(&t);
        k.fail_at = Some(1);
        let mut store = Store::open(&t.root.join("lab.db")).unwrap();
        let bdf: Bdf = "07:00.0".parse().unwrap();
        let plan = iolab_pci::plan_bind(&sys, bdf, BindOptions::default()).unwrap();
        assert!(bind_recorded(&sys, &k, &mut store, &plan).is_err());
        assert!(bound_by_iolab(&store).is_empty());
    }
}

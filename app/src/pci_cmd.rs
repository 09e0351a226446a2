//! `iolab pci`: list, show, bind to vfio-pci and reattach, with the original
//! drivers kept in the notebook so `reattach --all` works after a crash.

use std::path::Path;

use anyhow::{Context, bail};
use iolab_pci::device::BaseClass;
use iolab_pci::{Bdf, BindOptions, PciDevice, RealKernel, Sysfs};

use crate::cli::{PciArgs, PciCmd};
use iolab_lab_core::notebook::open as open_store;
use iolab_lab_core::passthrough::{
    bind_recorded, bound_by_iolab, reattach_one, release_from_guests,
};

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
                #[derive(serde::Serialize)]
                struct Devices {
                    devices: Vec<PciDevice>,
                }
                println!(
                    "{}",
                    crate::json::pretty("iolab.pci-devices.v1", &Devices { devices: all })?
                );
            } else {
                for d in &all {
                    println!("{}", d.line());
                }
            }
        }
        PciCmd::Show { bdf } => {
            let d = iolab_pci::device(&sys, bdf.parse()?)?;
            print!("{}", d.details());
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
        PciCmd::Reattach {
            bdf,
            all,
            unplug_timeout,
        } => {
            let mut store = open_store(db)?;
            let guests = iolab_lab_core::guest::lifecycle::guests_root()?;
            let proc_root = Path::new("/proc");
            // iolab's own guests are asked to unplug first (never a silent
            // block in the kernel's unbind); then the reattach itself.
            let reattach = |store: &mut _, b: Bdf| -> anyhow::Result<String> {
                for l in release_from_guests(&sys, proc_root, &guests, b, unplug_timeout, |l| {
                    eprintln!("{l}")
                })? {
                    eprintln!("{l}");
                }
                Ok(reattach_one(&sys, &RealKernel, store, b)?)
            };
            if all {
                let scopes = bound_by_iolab(&store);
                if scopes.is_empty() {
                    println!("nothing to reattach");
                }
                let mut failed = 0;
                for b in scopes {
                    match reattach(&mut store, b) {
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
                println!("{}", reattach(&mut store, b.parse()?)?);
            }
        }
    }
    Ok(())
}

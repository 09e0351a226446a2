//! Giving PCI functions to vfio-pci and back with the original drivers
//! recorded in the notebook first, so `reattach --all` puts them back even
//! after a crash: shared by `iolab pci` and the console's Devices screen.

use std::path::Path;
use std::time::Duration;

use iolab_pci::{Bdf, BindPlan, Kernel, PciError, Sysfs};
use iolab_profiles::{Original, Store, StoreError};

use crate::guest::GuestError;
use crate::guest::command::{GuestPaths, hostdev_id};
use crate::guest::qmp::Qmp;

/// Why a bind or reattach did not happen.
#[derive(Debug, thiserror::Error)]
pub enum PassthroughError {
    #[error(transparent)]
    Pci(#[from] PciError),
    #[error("the notebook: {0}")]
    Store(#[from] StoreError),
    #[error("{bdf} was not bound by iolab (nothing recorded in {notebook})")]
    NotBound { bdf: Bdf, notebook: String },
    #[error(
        "guest {guest} (pid {pid}) did not let go of {bdf} within {waited_s} s of qemu asking it to unplug the device (its OS did not answer the request); nothing was changed: stop the guest (`iolab guest stop {guest}`), then reattach"
    )]
    NotReleased {
        bdf: Bdf,
        guest: String,
        pid: u32,
        waited_s: u64,
    },
    #[error(
        "guest {guest} (pid {pid}) holds {bdf} but {reason}; nothing was changed: stop the guest (`iolab guest stop {guest}`), then reattach"
    )]
    CannotUnplug {
        bdf: Bdf,
        guest: String,
        pid: u32,
        reason: String,
    },
}

/// The notebook scope of a function's recorded binding.
pub fn scope(bdf: Bdf) -> String {
    format!("pci:{bdf}")
}

/// The recorded keys.
pub const DRIVER: &str = "driver";
pub const OVERRIDE: &str = "driver_override";

/// Functions iolab bound and has not given back.
pub fn bound_by_iolab(store: &Store) -> Vec<Bdf> {
    store
        .original_scopes()
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.strip_prefix("pci:")?.parse().ok())
        .collect()
}

/// Records each function's driver, then binds; forgets the records of a
/// failed bind. Returns one line per function bound.
pub fn bind_recorded(
    sys: &Sysfs,
    kernel: &dyn Kernel,
    store: &mut Store,
    plan: &BindPlan,
) -> Result<Vec<String>, PassthroughError> {
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
    // What each goes back to: the driver recorded when iolab first bound
    // it (a second bind finds it on vfio-pci already).
    let mut lines = Vec::new();
    for d in &plan.devices {
        let back = store
            .originals(&scope(d.bdf))?
            .into_iter()
            .find(|o| o.key == DRIVER)
            .map(|o| o.value)
            .filter(|v| !v.is_empty());
        lines.push(format!(
            "{} is on vfio-pci ({}); `iolab pci reattach {}` gives it back",
            d.bdf,
            back.map_or_else(|| "it had no driver".to_string(), |b| format!("was {b}")),
            d.bdf
        ));
    }
    Ok(lines)
}

/// Gives `bdf` back to the driver recorded when iolab bound it; says where it went.
pub fn reattach_one(
    sys: &Sysfs,
    kernel: &dyn Kernel,
    store: &mut Store,
    bdf: Bdf,
) -> Result<String, PassthroughError> {
    let recorded = store.originals(&scope(bdf))?;
    if recorded.is_empty() {
        return Err(PassthroughError::NotBound {
            bdf,
            notebook: store.path().display().to_string(),
        });
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
    Ok(match driver {
        Some(d) => format!("{bdf} is back on {d}"),
        None => format!("{bdf} is unbound again, as before iolab bound it"),
    })
}

/// Guests iolab runs (each directory of `guests_root` with a pid file),
/// by qemu's pid.
fn guest_with_pid(guests_root: &Path, pid: u32) -> Option<(String, GuestPaths)> {
    std::fs::read_dir(guests_root)
        .ok()?
        .flatten()
        .find_map(|e| {
            let paths = GuestPaths::new(e.path());
            (crate::guest::lifecycle::read_pid(&paths) == Some(pid))
                .then(|| (e.file_name().to_string_lossy().into_owned(), paths))
        })
}

/// Before `bdf` goes back to its driver: a guest iolab runs (found by the
/// pid files under `guests_root`) that holds its VFIO group is asked, over
/// QMP, to unplug every function of that group it has (`device_del`), and
/// each is waited for (`DEVICE_DELETED`), up to `within`, with a line to
/// `say` about once a second. A guest that does not let go in time is an
/// error naming it, with nothing changed; holders that are not iolab's
/// guests are left for the reattach to refuse by name. Returns what it did.
pub fn release_from_guests(
    sys: &Sysfs,
    proc_root: &Path,
    guests_root: &Path,
    bdf: Bdf,
    within: Duration,
    mut say: impl FnMut(String),
) -> Result<Vec<String>, PassthroughError> {
    // A function that is not there, or not on vfio-pci, is the reattach's
    // to refuse (with what the notebook says of it).
    let Ok(dev) = iolab_pci::device(sys, bdf) else {
        return Ok(Vec::new());
    };
    let (Some(group), Some(iolab_pci::bind::VFIO_PCI)) = (dev.iommu_group, dev.driver.as_deref())
    else {
        return Ok(Vec::new());
    };
    let file = sys.path(format!("dev/vfio/{group}"));
    let mut done = Vec::new();
    for h in iolab_pci::holders::holders_of(proc_root, &file) {
        let Some((guest, paths)) = guest_with_pid(guests_root, h.pid) else {
            continue;
        };
        let cannot = |reason: String| PassthroughError::CannotUnplug {
            bdf,
            guest: guest.clone(),
            pid: h.pid,
            reason,
        };
        let qmp_err = |e: GuestError| cannot(format!("its monitor failed: {e}"));
        let mut q = Qmp::connect(&paths.qmp(), Duration::from_secs(5)).map_err(qmp_err)?;
        let has: Vec<String> = q
            .pci_devices()
            .map_err(qmp_err)?
            .into_iter()
            .map(|d| d.id)
            .collect();
        let ids: Vec<(Bdf, String)> = std::iter::once(bdf)
            .chain(dev.group_peers.iter().copied())
            .map(|m| (m, hostdev_id(&m.to_string())))
            .filter(|(_, id)| has.contains(id))
            .collect();
        if ids.is_empty() {
            return Err(cannot(format!(
                "qemu shows no device {} (was it passed through by other means?)",
                hostdev_id(&bdf.to_string())
            )));
        }
        for (m, id) in ids {
            say(format!(
                "asking guest {guest} (pid {}) to unplug {m} (qemu device {id})",
                h.pid
            ));
            q.device_del(&id).map_err(|e| cannot(e.to_string()))?;
            let gone = q
                .wait_deleted(&id, within, |t| {
                    say(format!(
                        "  waiting for guest {guest} to let go of {m}: {} s of {} s",
                        t.as_secs(),
                        within.as_secs()
                    ))
                })
                .map_err(qmp_err)?;
            if !gone {
                return Err(PassthroughError::NotReleased {
                    bdf: m,
                    guest,
                    pid: h.pid,
                    waited_s: within.as_secs(),
                });
            }
            done.push(format!("guest {guest} unplugged {m}"));
        }
        // qemu lets go of the group file as it drops the device.
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while iolab_pci::holders::holders_of(proc_root, &file)
            .iter()
            .any(|x| x.pid == h.pid)
            && std::time::Instant::now() < until
        {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use iolab_pci::BindOptions;
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

    /// A function whose VFIO group a process holds open is not unbound (the
    /// kernel would block the unbind, silently and beyond signals, until the
    /// holder lets go): the refusal names the holder, nothing is written,
    /// the record stays; once it lets go, the reattach goes through.
    #[test]
    fn a_held_function_is_refused_naming_the_holder_not_hung() {
        let t = FakeTree::new("held");
        t.x520("0000:07:00.0", 13, Some("ixgbe")).driver("vfio-pci");
        let sys = t.sysfs();
        let bdf: Bdf = "07:00.0".parse().unwrap();
        let mut store = Store::open(&t.root.join("lab.db")).unwrap();
        let mut k = FakeKernel::new(&t);
        k.native.insert(bdf, "ixgbe".into());
        let plan = iolab_pci::plan_bind(&sys, bdf, BindOptions::default()).unwrap();
        bind_recorded(&sys, &k, &mut store, &plan).unwrap();
        // A "guest" opens the group file.
        let group = t.root.join("dev/vfio/13");
        std::fs::create_dir_all(group.parent().unwrap()).unwrap();
        std::fs::write(&group, b"").unwrap();
        let holder = std::fs::File::open(&group).unwrap();
        let k = FakeKernel::new(&t);
        let err = reattach_one(&sys, &k, &mut store, bdf)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())) && err.contains("dev/vfio/13"),
            "{err}"
        );
        assert!(k.writes().is_empty(), "nothing written: {:?}", k.writes());
        assert_eq!(bound_by_iolab(&store), [bdf], "the record stays");
        drop(holder);
        let mut k = FakeKernel::new(&t);
        k.native.insert(bdf, "ixgbe".into());
        assert_eq!(
            reattach_one(&sys, &k, &mut store, bdf).unwrap(),
            "0000:07:00.0 is back on ixgbe"
        );
    }

    /// The holder is found among iolab's guests by its pid file; one whose
    /// monitor does not answer is an error naming it, with nothing written;
    /// a holder that is no guest of iolab's is left to the reattach.
    #[test]
    fn a_guest_holding_the_group_is_found_by_its_pid_file() {
        let t = FakeTree::new("guest-holds");
        t.x520("0000:07:00.0", 13, Some("vfio-pci"))
            .driver("vfio-pci");
        let sys = t.sysfs();
        let bdf: Bdf = "07:00.0".parse().unwrap();
        let group = t.root.join("dev/vfio/13");
        std::fs::create_dir_all(group.parent().unwrap()).unwrap();
        std::fs::write(&group, b"").unwrap();
        let _holder = std::fs::File::open(&group).unwrap();
        let guests = t.root.join("guests");
        let other = guests.join("other");
        std::fs::create_dir_all(&other).unwrap();
        std::fs::write(other.join("qemu.pid"), "999999999\n").unwrap();
        let proc_root = Path::new("/proc");
        let wait = Duration::from_secs(1);
        let none = release_from_guests(&sys, proc_root, &guests, bdf, wait, |_| {}).unwrap();
        assert!(none.is_empty(), "{none:?}");
        let mine = guests.join("lab-guest");
        std::fs::create_dir_all(&mine).unwrap();
        std::fs::write(mine.join("qemu.pid"), format!("{}\n", std::process::id())).unwrap();
        let err = release_from_guests(&sys, proc_root, &guests, bdf, wait, |_| {})
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("guest lab-guest (pid") && err.contains("its monitor failed"),
            "{err}"
        );
        assert!(err.contains("`iolab guest stop lab-guest`"), "{err}");
    }

    #[test]
    fn a_second_bind_says_the_driver_it_will_go_back_to() {
        let t = FakeTree::new("rebind");
        t.x520("0000:07:00.0", 13, Some("ixgbe")).driver("vfio-pci");
        let sys = t.sysfs();
        let bdf: Bdf = "07:00.0".parse().unwrap();
        let mut store = Store::open(&t.root.join("lab.db")).unwrap();
        let mut k = FakeKernel::new(&t);
        k.native.insert(bdf, "ixgbe".into());
        for _ in 0..2 {
            let plan = iolab_pci::plan_bind(&sys, bdf, BindOptions::default()).unwrap();
            let lines = bind_recorded(&sys, &k, &mut store, &plan).unwrap();
            assert!(lines[0].contains("(was ixgbe)"), "{lines:?}");
        }
        // A function that had no driver goes back to none, and says so.
        let t = FakeTree::new("nodriver");
        t.x520("0000:08:00.0", 14, None).driver("vfio-pci");
        let sys = t.sysfs();
        let bdf: Bdf = "08:00.0".parse().unwrap();
        let mut store = Store::open(&t.root.join("lab.db")).unwrap();
        let k = FakeKernel::new(&t);
        let plan = iolab_pci::plan_bind(&sys, bdf, BindOptions::default()).unwrap();
        let lines = bind_recorded(&sys, &k, &mut store, &plan).unwrap();
        assert!(lines[0].contains("(it had no driver)"), "{lines:?}");
        assert_eq!(
            reattach_one(&sys, &k, &mut store, bdf).unwrap(),
            "0000:08:00.0 is unbound again, as before iolab bound it"
        );
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

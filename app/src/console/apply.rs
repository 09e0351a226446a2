//! Actions that change something through the console's dependencies —
//! the notebook, sysfs and the kernel's driver binding, host tuning —
//! carried out the same way by the event loop and by tests, where every
//! dependency is a fake (a fake sysfs tree and kernel, an in-memory tuning
//! host, a notebook in a temporary file). Actions that wait on the network,
//! a run or qemu stay with the event loop, which runs them as tasks.

use iolab_lab_core::tuning::TuneHost;

use super::notebook::Notebook;
use super::state::{Action, ConsoleState};
use super::tuning;

/// Every boundary the console's synchronous actions cross.
pub struct Deps<'k> {
    pub notebook: Notebook,
    pub pci_root: iolab_pci::Sysfs,
    pub pci_kernel: Box<dyn iolab_pci::Kernel + 'k>,
    pub tune_host: Box<dyn TuneHost + 'k>,
    /// Where tuning records its originals (`tuning:netns=...`).
    pub tune_scope: String,
}

/// The console: what it shows, and what it acts on.
pub struct Console<'k> {
    pub state: ConsoleState,
    pub deps: Deps<'k>,
}

/// What `apply` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Not an action of this kind: the event loop's.
    NotMine,
    Done,
    /// Done, and the guests' rows must be read again.
    RescanGuests,
}

/// Re-reads the PCI functions and which of them iolab bound.
pub fn scan_devices(
    v: &mut super::state::DevicesView,
    root: &iolab_pci::Sysfs,
    notebook: &Notebook,
) {
    match iolab_pci::enumerate(root) {
        Ok(d) => {
            v.devices = d;
            v.error = None;
        }
        Err(e) => v.error = Some(format!("cannot list PCI devices: {e}")),
    }
    v.cursor = v.cursor.min(v.devices.len().saturating_sub(1));
    v.bound = notebook
        .store()
        .map(iolab_lab_core::passthrough::bound_by_iolab)
        .unwrap_or_default();
}

/// Plans the Network screen's tuning again after the host changed.
fn replan(state: &mut ConsoleState, deps: &Deps<'_>) {
    let _ = tuning::refresh(
        &mut state.network,
        deps.tune_host.as_ref(),
        deps.notebook.store(),
        &deps.tune_scope,
    );
}

/// Carries out `action` when it is one of the synchronous kind.
pub fn apply(state: &mut ConsoleState, deps: &mut Deps<'_>, action: Action) -> Applied {
    let mut rescan = false;
    match action {
        Action::ShowRun(id) => match deps.notebook.run(id) {
            Ok(r) => state.notebook.shown = Some(r),
            Err(e) => state.status = format!("run #{id}: {e}"),
        },
        Action::SetBaseline(id) => match deps.notebook.run(id) {
            Ok(r) => {
                state.status = format!("run #{id} is the baseline (A)");
                state.notebook.baseline = Some(r);
            }
            Err(e) => state.status = format!("run #{id}: {e}"),
        },
        Action::LoadProfile(i) => {
            let name = state.notebook.profiles[i].name.clone();
            match deps.notebook.profile(&name) {
                Ok(p) => {
                    state.run.form = iolab_lab_core::run::RunForm::from_profile(&p);
                    state.tab = super::state::Tab::Run;
                    state.status = format!(
                        "Run form filled from profile {name} (against the embedded target)"
                    );
                }
                Err(e) => state.status = e,
            }
        }
        Action::PlanTuning => {
            if let Err(e) = tuning::refresh(
                &mut state.network,
                deps.tune_host.as_ref(),
                deps.notebook.store(),
                &deps.tune_scope,
            ) {
                state.status = e;
            }
        }
        Action::ApplyTuning => {
            state.status = tuning::apply(
                &state.network,
                deps.tune_host.as_ref(),
                deps.notebook.store_mut(),
                &deps.tune_scope,
            );
            replan(state, deps);
        }
        Action::RevertTuning => {
            state.status = tuning::revert(
                deps.tune_host.as_ref(),
                deps.notebook.store_mut(),
                &deps.tune_scope,
            );
            replan(state, deps);
        }
        Action::ScanDevices => scan_devices(&mut state.devices, &deps.pci_root, &deps.notebook),
        Action::PlanBind(bdf) => {
            match iolab_pci::plan_bind(&deps.pci_root, bdf, iolab_pci::BindOptions::default()) {
                Ok(plan) => {
                    state.devices.confirm =
                        Some(super::state::DeviceConfirm::Bind(bdf, plan.lines()))
                }
                Err(e) => state.status = e.to_string(),
            }
        }
        Action::Bind(bdf) | Action::Give(bdf, _) => {
            let r = match (
                iolab_pci::plan_bind(&deps.pci_root, bdf, iolab_pci::BindOptions::default()),
                deps.notebook.store_mut(),
            ) {
                (Ok(plan), Some(store)) => iolab_lab_core::passthrough::bind_recorded(
                    &deps.pci_root,
                    deps.pci_kernel.as_ref(),
                    store,
                    &plan,
                )
                .map(|l| l.join("; "))
                .map_err(|e| e.to_string()),
                (Err(e), _) => Err(e.to_string()),
                (_, None) => Err(
                    "the notebook (which records the driver first) is unavailable: nothing bound"
                        .into(),
                ),
            };
            state.status = match (r, action) {
                (Ok(done), Action::Give(_, g)) => {
                    state.gave(bdf, g);
                    let name = state
                        .guests
                        .lab
                        .get(g)
                        .map(|d| d.name.clone())
                        .unwrap_or_default();
                    rescan = true;
                    format!(
                        "{done}; {bdf} is passed through to guest {name} (save the lab to keep it)"
                    )
                }
                (Ok(done), _) => done,
                (Err(e), _) => e,
            };
            scan_devices(&mut state.devices, &deps.pci_root, &deps.notebook);
        }
        Action::PlanGive(bdf) => match (
            state.give_target(),
            iolab_pci::plan_bind(&deps.pci_root, bdf, iolab_pci::BindOptions::default()),
        ) {
            (None, _) => {
                state.status =
                    "the lab has no guest to give it to: define one on the Guests screen (7, a)"
                        .into()
            }
            (Some(g), Ok(plan)) => {
                let name = state.guests.lab[g].name.clone();
                state.devices.confirm = Some(super::state::DeviceConfirm::Give(
                    bdf,
                    g,
                    name,
                    plan.lines(),
                ));
            }
            (_, Err(e)) => state.status = e.to_string(),
        },
        Action::Reattach(bdf) => {
            state.status = match deps.notebook.store_mut() {
                Some(store) => match iolab_lab_core::passthrough::reattach_one(
                    &deps.pci_root,
                    deps.pci_kernel.as_ref(),
                    store,
                    bdf,
                ) {
                    Ok(done) => {
                        state.taken_back(bdf);
                        done
                    }
                    Err(e) => e.to_string(),
                },
                None => "the notebook is unavailable".into(),
            };
            scan_devices(&mut state.devices, &deps.pci_root, &deps.notebook);
        }
        Action::SaveLab => {
            if let Some((p, replace)) = state.lab.pending_save.take() {
                let r = match deps.notebook.store_mut() {
                    Some(store) => store.put_profile(&p.name, p.format, &p.to_toml(), replace).map_err(|e| match e {
                        iolab_profiles::StoreError::ProfileExists(n) => format!("a profile named '{n}' is saved already: set replace to yes to overwrite it"),
                        e => e.to_string(),
                    }),
                    None => Err("the notebook is unavailable".into()),
                };
                match r {
                    Ok(()) => {
                        state.status = format!(
                            "lab saved as profile {} (iolab --profile {} reopens it)",
                            p.name, p.name
                        );
                        state.saved(p);
                        deps.notebook.refresh(&mut state.notebook);
                    }
                    Err(e) => {
                        if let Some(f) = state.lab.save.as_mut() {
                            f.error = Some(e)
                        }
                    }
                }
            }
        }
        _ => return Applied::NotMine,
    }
    if rescan {
        Applied::RescanGuests
    } else {
        Applied::Done
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::io;

    use iolab_lab_core::tuning::KeyAccess;
    use iolab_pci::fake::{FakeKernel, FakeTree};
    use iolab_pci::{Bdf, Sysfs};

    use super::*;
    use crate::console::state::{DeviceConfirm, Tab};

    /// A host whose sysctls and MTUs live in memory.
    struct FakeHost {
        values: RefCell<HashMap<String, String>>,
        mtus: RefCell<HashMap<String, u32>>,
    }

    impl FakeHost {
        /// Every key of the seed's tuning present, each field at 1; one interface.
        fn seeded() -> FakeHost {
            let seed = iolab_lab_core::tuning::profile::builtin("seed").unwrap();
            FakeHost {
                values: RefCell::new(
                    seed.sysctls
                        .iter()
                        .map(|(k, v)| (k.clone(), ones(v.fields().len())))
                        .collect(),
                ),
                mtus: RefCell::new([("veth-a".to_string(), 1500)].into()),
            }
        }
    }

    /// `n` fields of 1, tab-separated as the kernel prints them.
    fn ones(n: usize) -> String {
        vec!["1"; n].join("\t")
    }

    impl TuneHost for FakeHost {
        fn read(&self, key: &str) -> io::Result<Option<String>> {
            Ok(self.values.borrow().get(key).cloned())
        }
        fn access(&self, key: &str) -> KeyAccess {
            if self.values.borrow().contains_key(key) {
                KeyAccess::Writable
            } else {
                KeyAccess::Absent
            }
        }
        fn write(&self, key: &str, value: &str) -> io::Result<()> {
            self.values.borrow_mut().insert(key.into(), value.into());
            Ok(())
        }
        fn mtu(&self, iface: &str) -> io::Result<u32> {
            self.mtus
                .borrow()
                .get(iface)
                .copied()
                .ok_or(io::ErrorKind::NotFound.into())
        }
        fn mtu_range(&self, _: &str) -> io::Result<Option<(u32, u32)>> {
            Ok(Some((68, 9000)))
        }
        fn set_mtu(&self, iface: &str, mtu: u32) -> io::Result<()> {
            self.mtus.borrow_mut().insert(iface.into(), mtu);
            Ok(())
        }
        fn interfaces(&self) -> Vec<String> {
            self.mtus.borrow().keys().cloned().collect()
        }
        fn can_set_links(&self) -> bool {
            true
        }
        fn memory_bytes(&self) -> u64 {
            8 << 30
        }
    }

    /// A console on fakes: this fake sysfs tree (its kernel knows ixgbe as
    /// 06:00.0's driver), an in-memory host, a notebook in `dir`.
    fn console<'k>(tree: &'k FakeTree, dir: &std::path::Path) -> Console<'k> {
        let mut state = ConsoleState::default();
        let notebook = Notebook::open(Some(&dir.join("notebook.db")), &mut state.notebook);
        let mut kernel = FakeKernel::new(tree);
        kernel.native.insert(bdf(), "ixgbe".into());
        Console {
            state,
            deps: Deps {
                notebook,
                pci_root: tree.sysfs(),
                pci_kernel: Box::new(kernel),
                tune_host: Box::new(FakeHost::seeded()),
                tune_scope: "tuning:test".into(),
            },
        }
    }

    fn bdf() -> Bdf {
        "0000:06:00.0".parse().unwrap()
    }

    fn driver_of(root: &Sysfs) -> Option<String> {
        iolab_pci::device(root, bdf()).unwrap().driver
    }

    fn act(c: &mut Console<'_>, a: Action) -> Applied {
        apply(&mut c.state, &mut c.deps, a)
    }

    #[test]
    fn bind_give_and_reattach_go_through_the_notebook() {
        let tree = FakeTree::new("apply-pci");
        tree.x520("0000:06:00.0", 12, Some("ixgbe"));
        let mut c = console(&tree, &tree.root);
        assert_eq!(act(&mut c, Action::ScanDevices), Applied::Done);
        assert_eq!(c.state.devices.devices.len(), 1);

        assert_eq!(act(&mut c, Action::PlanBind(bdf())), Applied::Done);
        let Some(DeviceConfirm::Bind(_, writes)) = &c.state.devices.confirm else {
            panic!("no bind question: {:?}", c.state.devices.confirm)
        };
        assert!(writes.iter().any(|w| w.contains("vfio-pci")), "{writes:?}");
        assert_eq!(
            driver_of(&c.deps.pci_root).as_deref(),
            Some("ixgbe"),
            "nothing before yes"
        );
        act(&mut c, Action::Bind(bdf()));
        assert_eq!(driver_of(&c.deps.pci_root).as_deref(), Some("vfio-pci"));
        assert!(c.state.status.contains("was ixgbe"), "{}", c.state.status);
        assert_eq!(
            c.state.devices.bound,
            vec![bdf()],
            "recorded in the notebook"
        );
        act(&mut c, Action::Reattach(bdf()));
        assert_eq!(driver_of(&c.deps.pci_root).as_deref(), Some("ixgbe"));
        assert!(c.state.devices.bound.is_empty());

        // Giving it to a guest: none yet, then the lab's only one.
        act(&mut c, Action::PlanGive(bdf()));
        assert!(c.state.status.contains("no guest"), "{}", c.state.status);
        c.state.tab = Tab::Guests;
        c.state.on_key(crossterm::event::KeyCode::Char('a'));
        c.state.on_key(crossterm::event::KeyCode::Enter);
        act(&mut c, Action::PlanGive(bdf()));
        assert!(matches!(
            c.state.devices.confirm,
            Some(DeviceConfirm::Give(_, 0, _, _))
        ));
        assert_eq!(act(&mut c, Action::Give(bdf(), 0)), Applied::RescanGuests);
        assert_eq!(c.state.guests.lab[0].pci, vec![bdf().to_string()]);
        assert_eq!(driver_of(&c.deps.pci_root).as_deref(), Some("vfio-pci"));
        act(&mut c, Action::Reattach(bdf()));
        assert!(c.state.guests.lab[0].pci.is_empty(), "taken off the guest");
        // Reattaching what iolab did not bind says so and changes nothing.
        act(&mut c, Action::Reattach(bdf()));
        assert!(
            c.state.status.contains("not bound by iolab"),
            "{}",
            c.state.status
        );
        assert_eq!(driver_of(&c.deps.pci_root).as_deref(), Some("ixgbe"));
    }

    #[test]
    fn tuning_is_planned_applied_and_put_back_exactly() {
        let tree = FakeTree::new("apply-tune");
        let mut c = console(&tree, &tree.root);
        c.state.network.profiles = vec!["seed".into()];
        act(&mut c, Action::PlanTuning);
        let plan = c.state.network.plan.clone().expect("a plan");
        assert!(
            plan.items.iter().any(|i| i.change),
            "the seed changes something"
        );
        act(&mut c, Action::ApplyTuning);
        assert!(c.state.status.contains("applied"), "{}", c.state.status);
        assert!(c.state.network.recorded > 0, "originals recorded first");
        let host = |c: &Console<'_>, k: &str| c.deps.tune_host.read(k).unwrap();
        let before: HashMap<String, String> = plan
            .items
            .iter()
            .map(|i| (i.key.clone(), host(&c, &i.key).unwrap()))
            .collect();
        let changed = plan.items.iter().find(|i| i.change).unwrap();
        assert!(
            !before[&changed.key].split('\t').all(|f| f == "1"),
            "{} was written",
            changed.key
        );
        act(&mut c, Action::RevertTuning);
        for i in &plan.items {
            let n = host(&c, &i.key).unwrap().split('\t').count();
            assert_eq!(host(&c, &i.key), Some(ones(n)), "{} put back", i.key);
        }
        assert_eq!(c.state.network.recorded, 0);
    }

    #[test]
    fn the_tuning_chosen_and_the_interfaces_marked_are_the_labs() {
        use crossterm::event::KeyCode;
        let tree = FakeTree::new("apply-choice");
        let mut c = console(&tree, &tree.root);
        c.state.network.profiles = vec!["network-throughput".into(), "seed".into()];
        c.state.tab = Tab::Network;
        act(&mut c, Action::PlanTuning);
        assert!(
            c.state.current_lab().tuning.is_none(),
            "looking is not choosing"
        );
        assert!(!c.state.unsaved());
        let a = c.state.on_key(KeyCode::Char('p'));
        act(&mut c, a);
        let a = c.state.on_key(KeyCode::Char(' '));
        act(&mut c, a);
        assert_eq!(c.state.network.marked(), vec!["veth-a".to_string()]);
        let t = c.state.current_lab().tuning.expect("the lab's tuning");
        assert_eq!(t.name, "seed");
        assert_eq!(
            t.interfaces.get("veth-a"),
            t.mtu.as_ref(),
            "its MTU on the marked interface"
        );
        assert!(c.state.unsaved());
    }

    #[test]
    fn the_lab_is_saved_loaded_and_its_runs_shown() {
        let tree = FakeTree::new("apply-notebook");
        let mut c = console(&tree, &tree.root);
        c.state.run.form.threads = 16;
        let mut p = c.state.current_lab();
        p.name = "mylab".into();
        c.state.lab.save = Some(crate::console::editor::Form::save("mylab"));
        c.state.lab.pending_save = Some((p.clone(), false));
        act(&mut c, Action::SaveLab);
        assert!(
            c.state.status.contains("saved as profile mylab"),
            "{}",
            c.state.status
        );
        assert!(!c.state.unsaved());
        assert!(c.state.notebook.profiles.iter().any(|e| e.name == "mylab"));
        // Once more without replace: refused in the form, nothing lost.
        c.state.lab.save = Some(crate::console::editor::Form::save("mylab"));
        c.state.lab.pending_save = Some((p, false));
        act(&mut c, Action::SaveLab);
        let err = c.state.lab.save.as_ref().unwrap().error.clone().unwrap();
        assert!(err.contains("saved already"), "{err}");
        // Loading it fills the Run form.
        c.state.run.form.threads = 64;
        let i = c
            .state
            .notebook
            .profiles
            .iter()
            .position(|e| e.name == "mylab")
            .unwrap();
        act(&mut c, Action::LoadProfile(i));
        assert_eq!(c.state.run.form.threads, 16);
        assert_eq!(c.state.tab, Tab::Run);

        // A stored run is shown and made the baseline; a missing one says so.
        let report = iolab_lab_core::workload::Report {
            seconds: 1.0,
            ..Default::default()
        };
        let run = c.state.run.form.record(
            "iscsi://127.0.0.1:3260/iqn.2026-11.io.iolab:target0/0",
            0,
            1,
            &report,
            vec![iolab_profiles::SeriesPoint {
                t_ms: 250,
                read_bytes: 1 << 20,
                ..Default::default()
            }],
        );
        let id = c.deps.notebook.add_run(&run).unwrap();
        act(&mut c, Action::ShowRun(id));
        assert_eq!(c.state.notebook.shown.as_ref().and_then(|r| r.id), Some(id));
        assert_eq!(
            c.state.notebook.shown.as_ref().map(|r| r.series.len()),
            Some(1),
            "the run's series is stored with it"
        );
        act(&mut c, Action::SetBaseline(id));
        assert!(c.state.notebook.baseline.is_some());
        act(&mut c, Action::ShowRun(id + 100));
        assert!(
            c.state.status.starts_with(&format!("run #{}", id + 100)),
            "{}",
            c.state.status
        );
        // What is not the console's to do synchronously is left to the event loop.
        assert_eq!(act(&mut c, Action::StartRun), Applied::NotMine);
    }
}

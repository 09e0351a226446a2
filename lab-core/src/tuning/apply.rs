//! Applying a plan and reverting it. Every value about to change is first
//! recorded in the notebook (the first recorded value of a key is the
//! host's own), so `revert` restores it exactly, also from a new process
//! after the applying one was killed.

use std::collections::HashSet;
use std::io;

use iolab_profiles::{Original, Store, StoreError};

use super::host::TuneHost;
use super::plan::{MTU_PREFIX, Plan, PlanItem};

#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error("nothing was changed:\n  {}", .0.join("\n  "))]
    Refused(Vec<String>),
    #[error("writing {key} failed: {cause}; {outcome}")]
    Write {
        key: String,
        cause: io::Error,
        outcome: String,
    },
    #[error("recording the values before changing them: {0}; nothing was changed")]
    Store(StoreError),
    #[error("could not restore: {}", .0.join("; "))]
    Revert(Vec<String>),
}

// The store's error is part of the message, not a `source()` as well.
impl From<StoreError> for TuneError {
    fn from(e: StoreError) -> Self {
        TuneError::Store(e)
    }
}

/// What an apply did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Keys written, in order.
    pub written: Vec<String>,
    /// Keys left alone and why.
    pub skipped: Vec<(String, String)>,
    /// Keys that read back differently from what was written.
    pub readback: Vec<String>,
}

/// The notebook scope of a namespace's recorded values: by name, or for the
/// current namespace by its inode (so `ip netns exec` runs find theirs).
pub fn scope(netns: Option<&str>) -> String {
    match netns {
        Some(n) => format!("tuning:netns={n}"),
        None => {
            let id = std::fs::read_link("/proc/self/ns/net")
                .map(|p| p.display().to_string())
                .unwrap_or_else(|_| "net:[?]".into());
            format!("tuning:{id}")
        }
    }
}

fn put(host: &dyn TuneHost, key: &str, value: &str) -> io::Result<()> {
    match key.strip_prefix(MTU_PREFIX) {
        Some(iface) => {
            let mtu = value.trim().parse().map_err(|_| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("bad MTU '{value}'"))
            })?;
            host.set_mtu(iface, mtu)
        }
        None => host.write(key, value),
    }
}

fn get(host: &dyn TuneHost, key: &str) -> io::Result<Option<String>> {
    match key.strip_prefix(MTU_PREFIX) {
        Some(iface) => host.mtu(iface).map(|m| Some(m.to_string())),
        None => host.read(key),
    }
}

/// Applies `plan`: refuses when it has errors; records the values it will
/// change; writes them in order; on a failed write puts back what it wrote
/// and names the key.
pub fn apply(
    host: &dyn TuneHost,
    store: &mut Store,
    scope: &str,
    plan: &Plan,
) -> Result<ApplyReport, TuneError> {
    let errors = plan.errors();
    if !errors.is_empty() {
        return Err(TuneError::Refused(
            errors
                .iter()
                .map(|l| format!("{}: {}", l.key, l.message))
                .collect(),
        ));
    }
    let mut report = ApplyReport::default();
    let todo: Vec<&PlanItem> = plan.items.iter().filter(|i| i.will_write()).collect();
    for i in &plan.items {
        if i.change && !i.will_write() {
            report.skipped.push((
                i.key.clone(),
                i.note.clone().unwrap_or_else(|| "not writable here".into()),
            ));
        }
    }
    let before: HashSet<String> = store.originals(scope)?.into_iter().map(|o| o.key).collect();
    let originals: Vec<Original> = todo
        .iter()
        .filter_map(|i| {
            Some(Original {
                key: i.key.clone(),
                value: i.current.clone()?,
            })
        })
        .collect();
    store.save_originals(scope, &originals)?;
    let mut done: Vec<&PlanItem> = Vec::new();
    for item in &todo {
        if let Err(source) = put(host, &item.key, &item.wanted) {
            let mut failed = Vec::new();
            for w in done.iter().rev() {
                if let Some(cur) = &w.current
                    && let Err(e) = put(host, &w.key, cur)
                {
                    failed.push(format!("{} ({e})", w.key));
                }
            }
            let outcome = if failed.is_empty() {
                let fresh: Vec<String> = todo
                    .iter()
                    .map(|i| i.key.clone())
                    .filter(|k| !before.contains(k))
                    .collect();
                let _ = store.forget_originals(scope, &fresh);
                format!(
                    "the {} value(s) written before it were put back; nothing is changed",
                    done.len()
                )
            } else {
                format!(
                    "could not put back {}: `iolab tune revert` retries from the recorded values",
                    failed.join(", ")
                )
            };
            return Err(TuneError::Write {
                key: item.key.clone(),
                cause: source,
                outcome,
            });
        }
        done.push(item);
        report.written.push(item.key.clone());
    }
    for item in &todo {
        let back = get(host, &item.key).ok().flatten();
        if back.as_deref().map(super::plan::normalized)
            != Some(super::plan::normalized(&item.wanted))
        {
            report.readback.push(format!(
                "{} reads back as {}",
                item.key,
                back.unwrap_or_else(|| "nothing".into())
            ));
        }
    }
    Ok(report)
}

/// Puts back every value recorded for `scope`, newest change first, and
/// forgets the ones restored. Returns what was restored.
pub fn revert(
    host: &dyn TuneHost,
    store: &mut Store,
    scope: &str,
) -> Result<Vec<Original>, TuneError> {
    let originals = store.originals(scope)?;
    let mut restored = Vec::new();
    let mut failed = Vec::new();
    for o in originals.iter().rev() {
        match put(host, &o.key, &o.value) {
            Ok(()) => restored.push(o.clone()),
            Err(e) => failed.push(format!("{}: {e}", o.key)),
        }
    }
    let keys: Vec<String> = restored.iter().map(|o| o.key.clone()).collect();
    store.forget_originals(scope, &keys)?;
    if failed.is_empty() {
        Ok(restored)
    } else {
        Err(TuneError::Revert(failed))
    }
}

/// The name of the profile made of the recorded values.
pub const HOST_DEFAULTS: &str = "host-defaults";

/// The recorded values of `scope` as a profile ("host defaults").
pub fn host_defaults(store: &Store, scope: &str) -> Result<super::TuningProfile, StoreError> {
    let mut p = super::TuningProfile {
        name: HOST_DEFAULTS.into(),
        description: "the values the host had before the lab changed them".into(),
        sysctls: Default::default(),
        mtu: None,
        interfaces: Default::default(),
    };
    for o in store.originals(scope)? {
        match o.key.strip_prefix(MTU_PREFIX) {
            Some(iface) => {
                if let Ok(m) = o.value.trim().parse() {
                    p.interfaces.insert(iface.to_string(), m);
                }
            }
            None => {
                p.sysctls.insert(o.key, super::SysctlValue(o.value));
            }
        }
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    use super::*;
    use crate::tuning::host::KeyAccess;
    use crate::tuning::plan::{Severity, plan};
    use crate::tuning::profile::{self, SysctlValue};

    /// A host in memory: sysctls, read-only keys, MTUs, and a key whose write fails.
    #[derive(Default)]
    struct Fake {
        values: RefCell<BTreeMap<String, String>>,
        read_only: Vec<String>,
        init_only: Vec<String>,
        mtus: RefCell<BTreeMap<String, u32>>,
        fail: Option<String>,
        user: bool,
        writes: RefCell<Vec<String>>,
    }

    impl TuneHost for Fake {
        fn read(&self, key: &str) -> io::Result<Option<String>> {
            Ok(self.values.borrow().get(key).cloned())
        }
        fn access(&self, key: &str) -> KeyAccess {
            if !self.values.borrow().contains_key(key) {
                KeyAccess::Absent
            } else if self.read_only.iter().any(|k| k == key) {
                KeyAccess::ReadOnly
            } else if self.user {
                KeyAccess::Denied
            } else {
                KeyAccess::Writable
            }
        }
        fn write(&self, key: &str, value: &str) -> io::Result<()> {
            self.writes.borrow_mut().push(key.into());
            if self.fail.as_deref() == Some(key) {
                return Err(io::Error::from_raw_os_error(libc::EINVAL));
            }
            self.values.borrow_mut().insert(
                key.into(),
                value.split_whitespace().collect::<Vec<_>>().join("\t"),
            );
            Ok(())
        }
        fn in_initial_namespace(&self, key: &str) -> bool {
            self.init_only.iter().any(|k| k == key)
        }
        fn mtu(&self, iface: &str) -> io::Result<u32> {
            self.mtus.borrow().get(iface).copied().ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("there is no interface '{iface}'"),
                )
            })
        }
        fn mtu_range(&self, _iface: &str) -> io::Result<Option<(u32, u32)>> {
            Ok(Some((68, 65535)))
        }
        fn set_mtu(&self, iface: &str, mtu: u32) -> io::Result<()> {
            self.mtus.borrow_mut().insert(iface.into(), mtu);
            Ok(())
        }
        fn can_set_links(&self) -> bool {
            !self.user
        }
        fn memory_bytes(&self) -> u64 {
            24 << 30
        }
    }

    /// A netns-like host: what a fresh namespace on this kernel shows.
    fn netns_like() -> Fake {
        let v = [
            ("net.ipv4.tcp_timestamps", "1"),
            ("net.ipv4.tcp_sack", "1"),
            ("net.ipv4.tcp_rmem", "4096\t131072\t33554432"),
            ("net.ipv4.tcp_wmem", "4096\t16384\t4194304"),
            ("net.core.rmem_max", "4194304"),
            ("net.core.wmem_max", "4194304"),
            ("net.core.rmem_default", "212992"),
            ("net.core.wmem_default", "212992"),
            ("net.core.optmem_max", "131072"),
        ];
        Fake {
            values: RefCell::new(
                v.iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            read_only: vec![
                "net.core.rmem_default".into(),
                "net.core.wmem_default".into(),
            ],
            init_only: vec![
                "net.ipv4.tcp_mem".into(),
                "net.core.netdev_max_backlog".into(),
            ],
            mtus: RefCell::new([("veth0".to_string(), 1500)].into()),
            ..Fake::default()
        }
    }

    struct Db(std::path::PathBuf);
    impl Db {
        fn new(tag: &str) -> (Db, Store) {
            let p = std::env::temp_dir().join(format!("iolab-tune-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&p);
            let s = Store::open(&p.join("t.db")).unwrap();
            (Db(p), s)
        }
    }
    impl Drop for Db {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn seed_plan_in_a_namespace_skips_what_it_lacks_and_warns_about_the_seed() {
        let h = netns_like();
        let p = plan(&h, &profile::seed(), &[("veth0".into(), 9000)]);
        assert!(p.errors().is_empty(), "{:?}", p.errors());
        let item = |k: &str| p.items.iter().find(|i| i.key == k).unwrap();
        assert!(
            item("net.ipv4.tcp_mem")
                .note
                .as_deref()
                .unwrap()
                .contains("initial")
        );
        assert!(!item("net.ipv4.tcp_mem").will_write());
        assert!(!item("net.core.rmem_default").will_write());
        assert!(item("net.ipv4.tcp_sack").will_write());
        assert!(item("mtu:veth0").will_write());
        assert!(!item("net.core.optmem_max").change || item("net.core.optmem_max").will_write());
        // The seed caps SO_RCVBUF far below its TCP buffers.
        assert!(
            p.lints
                .iter()
                .any(|l| l.key == "net.core.rmem_max" && l.severity == Severity::Warning),
            "{:?}",
            p.lints
        );
    }

    #[test]
    fn tcp_mem_beyond_memory_is_flagged() {
        let mut h = netns_like();
        h.values
            .borrow_mut()
            .insert("net.ipv4.tcp_mem".into(), "100\t200\t300".into());
        h.init_only.clear();
        let p = plan(&h, &profile::seed(), &[]);
        assert!(
            p.lints
                .iter()
                .any(|l| l.key == "net.ipv4.tcp_mem" && l.message.contains("GiB")),
            "{:?}",
            p.lints
        );
    }

    #[test]
    fn bad_values_unknown_keys_and_missing_interfaces_are_errors() {
        let h = netns_like();
        let mut t = profile::seed();
        t.sysctls
            .insert("net.ipv4.tcp_sack".into(), SysctlValue("yes".into()));
        t.sysctls
            .insert("net.ipv4.tcp_rmem".into(), SysctlValue("1 2".into()));
        t.sysctls
            .insert("net.ipv4.tcp_sackk".into(), SysctlValue("0".into()));
        let p = plan(&h, &t, &[("nosuch0".into(), 9000), ("veth0".into(), 70000)]);
        let keys: Vec<&str> = p.errors().iter().map(|l| l.key.as_str()).collect();
        for k in [
            "net.ipv4.tcp_sack",
            "net.ipv4.tcp_rmem",
            "net.ipv4.tcp_sackk",
            "mtu:nosuch0",
            "mtu:veth0",
        ] {
            assert!(keys.contains(&k), "{k} not in {keys:?}");
        }
        let (_d, mut store) = Db::new("refuse");
        let before = h.values.borrow().clone();
        let e = apply(&h, &mut store, "s", &p).unwrap_err();
        assert!(matches!(e, TuneError::Refused(_)), "{e}");
        assert!(h.writes.borrow().is_empty());
        assert_eq!(*h.values.borrow(), before);
        assert!(store.originals("s").unwrap().is_empty());
    }

    #[test]
    fn apply_then_revert_restores_every_value_exactly() {
        let h = netns_like();
        let before = h.values.borrow().clone();
        let (_d, mut store) = Db::new("roundtrip");
        let p = plan(&h, &profile::seed(), &[("veth0".into(), 9000)]);
        let r = apply(&h, &mut store, "s", &p).unwrap();
        assert!(r.written.contains(&"net.ipv4.tcp_sack".to_string()));
        assert!(r.skipped.iter().any(|(k, _)| k == "net.core.rmem_default"));
        assert_eq!(
            h.values.borrow()["net.ipv4.tcp_rmem"],
            "10000000\t10000000\t10000000"
        );
        assert_eq!(h.mtus.borrow()["veth0"], 9000);
        // A second apply keeps the first originals.
        apply(&h, &mut store, "s", &plan(&h, &profile::seed(), &[])).unwrap();
        let restored = revert(&h, &mut store, "s").unwrap();
        assert_eq!(restored.len(), r.written.len());
        assert_eq!(*h.values.borrow(), before);
        assert_eq!(h.mtus.borrow()["veth0"], 1500);
        assert!(store.originals("s").unwrap().is_empty());
    }

    #[test]
    fn a_failed_write_half_way_puts_back_what_was_written() {
        let mut h = netns_like();
        h.fail = Some("net.ipv4.tcp_sack".into());
        let before = h.values.borrow().clone();
        let (_d, mut store) = Db::new("inject");
        let p = plan(&h, &profile::seed(), &[]);
        let e = apply(&h, &mut store, "s", &p).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("net.ipv4.tcp_sack") && msg.contains("put back"),
            "{msg}"
        );
        assert!(
            h.writes.borrow().len() > 2,
            "failed only after other writes"
        );
        assert_eq!(*h.values.borrow(), before);
        assert!(store.originals("s").unwrap().is_empty());
    }

    #[test]
    fn without_privilege_nothing_is_written() {
        let mut h = netns_like();
        h.user = true;
        let (_d, mut store) = Db::new("user");
        let p = plan(&h, &profile::seed(), &[("veth0".into(), 9000)]);
        let e = apply(&h, &mut store, "s", &p).unwrap_err();
        assert!(e.to_string().contains("run as root"), "{e}");
        assert!(h.writes.borrow().is_empty());
    }

    #[test]
    fn host_defaults_are_the_recorded_values() {
        let h = netns_like();
        let (_d, mut store) = Db::new("defaults");
        let p = plan(&h, &profile::seed(), &[("veth0".into(), 9000)]);
        apply(&h, &mut store, "s", &p).unwrap();
        let d = host_defaults(&store, "s").unwrap();
        assert_eq!(d.sysctls["net.ipv4.tcp_sack"].0, "1");
        assert_eq!(d.interfaces["veth0"], 1500);
        let back = plan(&h, &d, &[]);
        assert!(
            back.items
                .iter()
                .all(|i| i.change || i.key.starts_with("mtu"))
        );
    }
}

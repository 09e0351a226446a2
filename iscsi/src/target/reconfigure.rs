//! Changing a running target: the difference between the configuration in
//! force and the wanted one, prepared (everything that can fail) and then
//! committed (nothing fails), so a change is applied whole or not at all.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use iolab_storage::scsi::{Asc, LogicalUnit};

use super::config::{Portal, ServerConfig, TargetConfig};
use super::{Registry, TargetNode, open_lun};
use crate::error::IscsiError;

/// What a reconfiguration changed, for logs and the console.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Changes {
    pub targets_added: Vec<String>,
    pub targets_removed: Vec<String>,
    /// Targets whose ACLs, CHAP, demo mode or other settings changed.
    pub targets_updated: Vec<String>,
    pub luns_added: Vec<(String, u64)>,
    pub luns_removed: Vec<(String, u64)>,
    /// LUNs whose backstore or attributes changed: a new logical unit.
    pub luns_replaced: Vec<(String, u64)>,
    /// Where the new portals are bound.
    pub portals_added: Vec<SocketAddr>,
    pub portals_removed: Vec<Portal>,
    /// Sessions closed: their target went, or their initiator is no longer allowed.
    pub sessions_closed: Vec<u16>,
    /// Unit attentions queued (REPORTED LUNS DATA HAS CHANGED), one per nexus and LU.
    pub unit_attentions: usize,
}

impl Changes {
    pub fn is_empty(&self) -> bool {
        *self == Changes::default()
    }

    /// One phrase per change, in the order they were made.
    pub fn summary(&self) -> Vec<String> {
        let mut out = Vec::new();
        let lun = |v: &[(String, u64)], what: &str, out: &mut Vec<String>| {
            for (t, l) in v {
                out.push(format!("{t} LUN {l} {what}"));
            }
        };
        out.extend(self.targets_added.iter().map(|t| format!("{t} added")));
        out.extend(self.targets_removed.iter().map(|t| format!("{t} removed")));
        out.extend(self.targets_updated.iter().map(|t| format!("{t} updated")));
        lun(&self.luns_added, "added", &mut out);
        lun(&self.luns_removed, "removed", &mut out);
        lun(&self.luns_replaced, "replaced", &mut out);
        out.extend(
            self.portals_added
                .iter()
                .map(|p| format!("portal {p} listening")),
        );
        out.extend(
            self.portals_removed
                .iter()
                .map(|p| format!("portal {p} closed")),
        );
        if !self.sessions_closed.is_empty() {
            out.push(format!("{} session(s) closed", self.sessions_closed.len()));
        }
        if self.unit_attentions > 0 {
            out.push(format!(
                "{} unit attention(s) REPORTED LUNS DATA HAS CHANGED",
                self.unit_attentions
            ));
        }
        out
    }
}

/// The difference between two configurations, before anything is opened.
pub(super) struct Plan {
    pub portals_added: Vec<Portal>,
    pub portals_removed: Vec<Portal>,
    old: ServerConfig,
}

/// A target as it will be after the change.
enum Step {
    New(Arc<TargetNode>),
    Kept {
        node: Arc<TargetNode>,
        cfg: Box<TargetConfig>,
        luns: BTreeMap<u64, Arc<LogicalUnit>>,
        added: Vec<u64>,
        removed: Vec<u64>,
        replaced: Vec<u64>,
        settings_changed: bool,
    },
}

/// Everything opened for the change, not yet visible to sessions.
pub(super) struct Prepared(Vec<Step>);

/// A target's settings without its LUNs, to tell a settings change apart.
fn settings(t: &TargetConfig) -> TargetConfig {
    TargetConfig {
        luns: Vec::new(),
        ..t.clone()
    }
}

impl Plan {
    pub fn new(old: &ServerConfig, new: &ServerConfig) -> Plan {
        Plan {
            portals_added: new
                .listen
                .iter()
                .filter(|p| !old.listen.contains(p))
                .copied()
                .collect(),
            portals_removed: old
                .listen
                .iter()
                .filter(|p| !new.listen.contains(p))
                .copied()
                .collect(),
            old: old.clone(),
        }
    }

    /// Opens what the new configuration adds (new targets' and changed
    /// LUNs' backstores). Nothing is visible to sessions yet: on an error
    /// whatever was opened is dropped again.
    pub fn prepare(&self, reg: &Registry, new: &ServerConfig) -> Result<Prepared, IscsiError> {
        let mut steps = Vec::new();
        for t in &new.targets {
            let old_cfg = self.old.targets.iter().find(|o| o.iqn == t.iqn);
            let node = reg.find_target(&t.iqn);
            let (Some(old_cfg), Some(node)) = (old_cfg, node) else {
                steps.push(Step::New(Arc::new(TargetNode::open(t)?)));
                continue;
            };
            let current = node.luns();
            let mut luns = BTreeMap::new();
            let (mut added, mut replaced) = (Vec::new(), Vec::new());
            for l in &t.luns {
                let before = old_cfg.luns.iter().find(|o| o.lun == l.lun);
                match (before, current.get(&l.lun)) {
                    (Some(b), Some(lu)) if b == l && t.tpgt == old_cfg.tpgt => {
                        luns.insert(l.lun, lu.clone());
                    }
                    (b, _) => {
                        let lu = open_lun(t, l).map_err(|e| {
                            IscsiError::Config(crate::error::ConfigError::Lun {
                                target: t.iqn.clone(),
                                lun: l.lun,
                                cause: Box::new(e),
                            })
                        })?;
                        luns.insert(l.lun, lu);
                        if b.is_some() {
                            replaced.push(l.lun);
                        } else {
                            added.push(l.lun);
                        }
                    }
                }
            }
            let removed = current
                .keys()
                .filter(|l| !luns.contains_key(l))
                .copied()
                .collect();
            steps.push(Step::Kept {
                settings_changed: settings(old_cfg) != settings(t),
                node,
                cfg: Box::new(t.clone()),
                luns,
                added,
                removed,
                replaced,
            });
        }
        Ok(Prepared(steps))
    }

    /// Makes the prepared change visible. Cannot fail.
    pub fn commit(&self, reg: &Registry, prepared: Prepared) -> Changes {
        let mut changes = Changes {
            portals_removed: self.portals_removed.clone(),
            ..Changes::default()
        };
        let mut nodes = Vec::new();
        for step in prepared.0 {
            match step {
                Step::New(node) => {
                    changes.targets_added.push(node.iqn.clone());
                    nodes.push(node);
                }
                Step::Kept {
                    node,
                    cfg,
                    luns,
                    added,
                    removed,
                    replaced,
                    settings_changed,
                } => {
                    let iqn = node.iqn.clone();
                    if settings_changed {
                        changes.targets_updated.push(iqn.clone());
                    }
                    node.set_cfg(*cfg);
                    let lun_set_changed =
                        !(added.is_empty() && removed.is_empty() && replaced.is_empty());
                    if lun_set_changed {
                        node.set_luns(luns);
                        // Every session that sees this target learns that its
                        // LUN inventory changed, on each LU it already knew.
                        let nexuses = reg.nexuses_of(&node);
                        for (l, lu) in node.luns().iter() {
                            if !added.contains(l) && !nexuses.is_empty() {
                                lu.add_unit_attention(&nexuses, Asc::REPORTED_LUNS_DATA_CHANGED);
                                changes.unit_attentions += nexuses.len();
                            }
                        }
                    }
                    let with = |v: Vec<u64>| v.into_iter().map(|l| (iqn.clone(), l));
                    changes.luns_added.extend(with(added));
                    changes.luns_removed.extend(with(removed));
                    changes.luns_replaced.extend(with(replaced));
                    nodes.push(node);
                }
            }
        }
        let removed_targets: Vec<String> = reg
            .targets()
            .iter()
            .filter(|t| !nodes.iter().any(|n| Arc::ptr_eq(n, t)))
            .map(|t| t.iqn.clone())
            .collect();
        *reg.targets.write().unwrap_or_else(|e| e.into_inner()) = nodes;
        for s in reg.sessions() {
            let gone = removed_targets.contains(&s.target.iqn);
            if gone || !s.target.allows(&s.initiator_name) {
                s.close_all();
                changes.sessions_closed.push(s.tsih);
            }
        }
        changes.targets_removed = removed_targets;
        changes
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use iolab_storage::BackstoreSpec;

    use super::*;
    use crate::initiator::{InitiatorOptions, IscsiUrl, Session};
    use crate::target::config::{Acl, DEFAULT_IQN};
    use crate::target::{LunConfig, Target};

    const MIB: u64 = 1 << 20;

    fn lab() -> ServerConfig {
        ServerConfig::default_lab("127.0.0.1:0".parse().unwrap(), 8 * MIB)
    }

    fn ramdisk(lun: u64, size: u64) -> LunConfig {
        LunConfig {
            lun,
            backstore: BackstoreSpec::Ramdisk { size },
            attributes: Default::default(),
        }
    }

    async fn login(t: &Target, lun: u64) -> Session {
        let port = t.local_addrs()[0].port();
        let url = IscsiUrl::parse(
            &format!("iscsi://127.0.0.1:{port}/{DEFAULT_IQN}/{lun}"),
            false,
        )
        .unwrap();
        let s = Session::connect(&url, &InitiatorOptions::default())
            .await
            .unwrap();
        s.test_unit_ready().await.unwrap();
        s
    }

    /// A loopback address with a port nobody listens on just now.
    fn free_addr() -> SocketAddr {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    }

    /// TEST UNIT READY once, without retrying past a unit attention.
    async fn tur_sense(s: &Session) -> Option<(u8, u8, u8)> {
        let r = s.command(&[0u8; 6], Bytes::new(), 0).await.unwrap();
        r.sense_code()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn luns_come_and_go_under_a_running_session() {
        let t = Target::start(lab()).await.unwrap();
        let s0 = login(&t, 0).await;
        let block = Bytes::from(vec![0x5a; 4096]);
        s0.write(8, block.clone(), 512).await.unwrap();

        let mut cfg = t.config().await;
        cfg.targets[0].luns.push(ramdisk(1, 4 * MIB));
        let c = t.reconfigure(cfg.clone()).await.unwrap();
        assert_eq!(c.luns_added, vec![(DEFAULT_IQN.to_string(), 1)]);
        assert_eq!(c.unit_attentions, 1, "{c:?}");
        assert!(c.luns_removed.is_empty() && c.luns_replaced.is_empty());
        // The running session learns of the new LUN once, then carries on.
        assert_eq!(tur_sense(&s0).await, Some((0x06, 0x3f, 0x0e)));
        assert_eq!(tur_sense(&s0).await, None);
        assert_eq!(
            s0.read(8, 8, 512).await.unwrap(),
            block,
            "LUN 0 kept its data"
        );
        let s1 = login(&t, 1).await;
        assert_eq!(s1.capacity().await.unwrap(), (4 * MIB / 512, 512));
        assert_eq!(t.lun_urls().len(), 2);

        // Removing LUN 1: its session's commands find no LU; LUN 0's session is told.
        cfg.targets[0].luns.retain(|l| l.lun != 1);
        let c = t.reconfigure(cfg.clone()).await.unwrap();
        assert_eq!(c.luns_removed, vec![(DEFAULT_IQN.to_string(), 1)]);
        assert_eq!(c.unit_attentions, 2, "both sessions see LUN 0: {c:?}");
        assert_eq!(tur_sense(&s1).await, Some((0x05, 0x25, 0x00)));
        // REPORT LUNS clears the notice and lists what is there now.
        let mut rl = [0u8; 12];
        rl[0] = 0xa0;
        rl[9] = 64;
        let r = s0.command(&rl, Bytes::new(), 64).await.unwrap();
        assert!(r.good());
        assert_eq!(
            u32::from_be_bytes(r.data[0..4].try_into().unwrap()),
            8,
            "one LUN"
        );
        assert_eq!(tur_sense(&s0).await, None);
        assert_eq!(s0.read(8, 8, 512).await.unwrap(), block);

        // The same configuration again changes nothing.
        let c = t.reconfigure(cfg).await.unwrap();
        assert!(c.is_empty(), "{c:?}");
        s0.logout().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_that_cannot_be_made_changes_nothing() {
        let t = Target::start(lab()).await.unwrap();
        let before = t.config().await;
        let portals_before = t.registry().portals();

        // A LUN whose file cannot be created, beside a good new portal.
        let mut cfg = before.clone();
        cfg.listen.push(Portal::new(free_addr()));
        cfg.targets[0].luns.push(LunConfig {
            lun: 1,
            backstore: BackstoreSpec::Fileio {
                path: "/nonexistent-iolab-dir/lun1.img".into(),
                size: Some(MIB),
                direct: false,
            },
            attributes: Default::default(),
        });
        let e = t.reconfigure(cfg).await.unwrap_err().to_string();
        assert!(
            e.contains("LUN 1") && e.contains("/nonexistent-iolab-dir"),
            "{e}"
        );

        // A port in use, beside a good new LUN.
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = taken.local_addr().unwrap();
        let mut cfg = before.clone();
        cfg.listen.push(Portal::new(addr));
        cfg.targets[0].luns.push(ramdisk(1, MIB));
        let e = t.reconfigure(cfg).await.unwrap_err().to_string();
        assert!(e.contains(&format!("cannot listen on {addr}")), "{e}");

        // Neither left anything behind.
        assert_eq!(t.config().await, before);
        assert_eq!(t.registry().portals(), portals_before);
        assert_eq!(t.local_addrs().len(), 1);
        let node = t.registry().find_target(DEFAULT_IQN).unwrap();
        assert_eq!(node.luns().keys().copied().collect::<Vec<_>>(), vec![0]);
        // An invalid configuration is refused before anything is opened.
        let mut bad = before.clone();
        bad.targets[0].iqn = "not-an-iqn".into();
        assert!(t.reconfigure(bad).await.is_err());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn portals_and_acls_apply_at_once() {
        let t = Target::start(lab()).await.unwrap();
        let s = login(&t, 0).await;

        let mut cfg = t.config().await;
        let second = free_addr();
        cfg.listen.push(Portal::new(second));
        let c = t.reconfigure(cfg.clone()).await.unwrap();
        assert_eq!(c.portals_added, vec![second]);
        assert_eq!(t.local_addrs().len(), 2);
        // The new portal serves logins now.
        let url = IscsiUrl::parse(
            &format!("iscsi://127.0.0.1:{}/{DEFAULT_IQN}/0", second.port()),
            false,
        )
        .unwrap();
        let other = InitiatorOptions {
            initiator_name: "iqn.2026-12.org.example:other".into(),
            ..Default::default()
        };
        let s2 = Session::connect(&url, &other).await.unwrap();
        s2.test_unit_ready().await.unwrap();

        // Demo mode off with an ACL for the default initiator only: the
        // other initiator's session is closed, ours runs on.
        cfg.targets[0].demo_mode = false;
        cfg.targets[0].acls = vec![Acl {
            initiator: crate::initiator::DEFAULT_INITIATOR.into(),
            chap: None,
            mutual_chap: None,
        }];
        let c = t.reconfigure(cfg.clone()).await.unwrap();
        assert_eq!(c.targets_updated, vec![DEFAULT_IQN.to_string()]);
        assert_eq!(c.sessions_closed.len(), 1, "{c:?}");
        assert!(
            Session::connect(&url, &other).await.is_err(),
            "no ACL, no login"
        );
        assert_eq!(tur_sense(&s).await, None, "the allowed session runs on");

        // Removing the first portal stops its listener.
        let first = t.local_addrs()[0];
        cfg.listen.remove(0);
        let c = t.reconfigure(cfg).await.unwrap();
        assert_eq!(c.portals_removed.len(), 1);
        assert_eq!(t.local_addrs(), vec![second]);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(tokio::net::TcpStream::connect(first).await.is_err());
    }
}

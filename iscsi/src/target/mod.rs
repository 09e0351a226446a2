//! The iSCSI target engine: portals, target nodes with their LUNs, sessions
//! (with multiple connections each) and the registry that ties them together.

pub mod config;
mod connection;
pub mod login;
pub mod portal;
mod session;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};

use iolab_storage::scsi::{LogicalUnit, NexusId};
use iolab_storage::{BackstoreKind, open_backstore};
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::chap::ChapCredentials;
use crate::error::IscsiError;
use crate::negotiation::Params;
use crate::pdu::LoginStatus;
use crate::stats::ConnStatsSnapshot;
pub use config::{Acl, LunConfig, Portal, ServerConfig, TargetConfig};
use login::LoginResult;
pub use portal::BoundPortal;
pub use session::Session;

/// A target node (IQN) with its mapped logical units.
pub struct TargetNode {
    pub cfg: TargetConfig,
    pub luns: BTreeMap<u64, Arc<LogicalUnit>>,
}

impl std::fmt::Debug for TargetNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TargetNode({})", self.cfg.iqn)
    }
}

impl TargetNode {
    fn open(cfg: &TargetConfig) -> Result<Self, IscsiError> {
        let mut luns = BTreeMap::new();
        for (i, l) in cfg.luns.iter().enumerate() {
            let store = open_backstore(&l.backstore)?;
            let mut attrs = l.attributes.clone();
            if attrs.serial == iolab_storage::LuConfig::default().serial {
                attrs.serial = format!("{:08x}{:04x}", fnv(&cfg.iqn), l.lun);
            }
            if attrs.product == iolab_storage::LuConfig::default().product {
                attrs.product = match store.kind() {
                    BackstoreKind::Ramdisk => "RAMDISK".into(),
                    BackstoreKind::Fileio => "FILEIO".into(),
                    BackstoreKind::Block => "IBLOCK".into(),
                };
            }
            attrs.naa = 0x6001_4050_0000_0000
                | ((fnv(&cfg.iqn) as u64 & 0x00ff_ffff) << 12)
                | (i as u64 & 0xfff);
            attrs.target_port_name = format!("{},t,0x{:04x}", cfg.iqn, cfg.tpgt);
            luns.insert(l.lun, Arc::new(LogicalUnit::new(store, attrs)?));
        }
        Ok(TargetNode {
            cfg: cfg.clone(),
            luns,
        })
    }

    /// Whether an initiator may log in (demo mode or an ACL names it).
    pub fn allows(&self, initiator: &str) -> bool {
        self.cfg.demo_mode || self.cfg.acls.iter().any(|a| a.initiator == initiator)
    }

    /// CHAP credentials required of this initiator and the mutual ones, if any.
    pub fn chap_for(&self, initiator: &str) -> Option<(ChapCredentials, Option<ChapCredentials>)> {
        if let Some(acl) = self.cfg.acls.iter().find(|a| a.initiator == initiator) {
            if let Some(c) = &acl.chap {
                return Some((c.clone(), acl.mutual_chap.clone()));
            }
            return None;
        }
        self.cfg
            .chap
            .clone()
            .map(|c| (c, self.cfg.mutual_chap.clone()))
    }
}

fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

/// Sessions and targets shared by every connection of a server.
pub struct Registry {
    pub targets: Vec<Arc<TargetNode>>,
    portals: Mutex<Vec<BoundPortal>>,
    sessions: Mutex<HashMap<u16, Arc<Session>>>,
    next_tsih: AtomicU16,
}

impl Registry {
    pub fn new(cfg: &ServerConfig) -> Result<Self, IscsiError> {
        cfg.validate().map_err(IscsiError::Config)?;
        let targets = cfg
            .targets
            .iter()
            .map(|t| TargetNode::open(t).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Registry {
            targets,
            portals: Mutex::new(Vec::new()),
            sessions: Mutex::new(HashMap::new()),
            next_tsih: AtomicU16::new(1),
        })
    }

    pub fn find_target(&self, name: &str) -> Option<Arc<TargetNode>> {
        self.targets.iter().find(|t| t.cfg.iqn == name).cloned()
    }

    /// Credentials a discovery session may use: those the first target would
    /// require of this initiator (discovery itself never requires them).
    pub fn discovery_chap(
        &self,
        initiator: &str,
    ) -> Option<(ChapCredentials, Option<ChapCredentials>)> {
        self.targets.iter().find_map(|t| t.chap_for(initiator))
    }

    pub fn portals(&self) -> Vec<BoundPortal> {
        self.portals
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn sessions(&self) -> Vec<Arc<Session>> {
        let mut v: Vec<_> = self
            .sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect();
        v.sort_by_key(|s| s.tsih);
        v
    }

    /// Every I_T nexus currently logged in to a target.
    pub fn nexuses_of(&self, target: &TargetNode) -> Vec<NexusId> {
        self.sessions()
            .iter()
            .filter(|s| s.target.cfg.iqn == target.cfg.iqn)
            .map(|s| s.nexus.id.clone())
            .collect()
    }

    /// Whether a session with this TSIH exists for this ISID.
    pub(super) fn has_session(&self, tsih: u16, isid: u64) -> bool {
        self.sessions
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&tsih)
            .is_some_and(|s| s.isid == isid)
    }

    /// ExpCmdSN/MaxCmdSN to put in a login response.
    fn window_for_login(&self, tsih: u16, cmd_sn: u32, depth: u32) -> (u32, u32) {
        if tsih != 0
            && let Some(s) = self
                .sessions
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&tsih)
        {
            return s.window();
        }
        (cmd_sn, cmd_sn.wrapping_add(depth.max(1) - 1))
    }

    /// Binds a completed login to a session: new, reinstated or joined (MC/S).
    fn bind(&self, r: &LoginResult) -> Result<Arc<Session>, LoginStatus> {
        let Some(target) = r.target.clone() else {
            return Err(LoginStatus::TARGET_ERROR);
        };
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        if r.tsih != 0 {
            let s = sessions
                .get(&r.tsih)
                .cloned()
                .ok_or(LoginStatus::SESSION_DOES_NOT_EXIST)?;
            if s.isid != r.isid
                || s.initiator_name != r.initiator_name
                || s.target.cfg.iqn != target.cfg.iqn
            {
                return Err(LoginStatus::SESSION_DOES_NOT_EXIST);
            }
            s.reserve_connection(r.cid)?;
            return Ok(s);
        }
        // Session reinstatement: the same initiator port logging in again replaces its old session.
        let old: Vec<u16> = sessions
            .values()
            .filter(|s| {
                s.isid == r.isid
                    && s.initiator_name == r.initiator_name
                    && s.target.cfg.iqn == target.cfg.iqn
            })
            .map(|s| s.tsih)
            .collect();
        for tsih in old {
            if let Some(s) = sessions.remove(&tsih) {
                tracing::info!(tsih, "session reinstated by a new login with the same ISID");
                s.close_all();
                for lu in target.luns.values() {
                    lu.nexus_lost(&s.nexus.id);
                }
            }
        }
        let mut tsih = self.next_tsih.fetch_add(1, Ordering::Relaxed);
        while tsih == 0 || sessions.contains_key(&tsih) {
            tsih = self.next_tsih.fetch_add(1, Ordering::Relaxed);
        }
        let s = Arc::new(Session::new(tsih, r, target));
        tracing::debug!(tsih, initiator = %r.initiator_name, isid = r.isid, "new session");
        s.reserve_connection(r.cid)?;
        sessions.insert(tsih, s.clone());
        Ok(s)
    }

    /// Forgets a session whose last connection ended; its I_T nexus is lost.
    fn end_session(&self, s: &Arc<Session>) {
        let removed = {
            let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
            match sessions.get(&s.tsih) {
                Some(x) if Arc::ptr_eq(x, s) => sessions.remove(&s.tsih).is_some(),
                _ => false,
            }
        };
        if removed {
            for lu in s.target.luns.values() {
                lu.nexus_lost(&s.nexus.id);
            }
        }
    }

    /// Closes every session of a target (TARGET COLD RESET).
    fn drop_sessions_of(&self, target: &TargetNode) {
        for s in self.sessions() {
            if s.target.cfg.iqn == target.cfg.iqn {
                s.close_all();
            }
        }
    }
}

/// Negotiated parameters and counters of one connection, for the console and samplers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnectionInfo {
    pub cid: u16,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub params: Params,
    /// TCP maximum segment size of the socket (TCP_MAXSEG).
    pub mss: Option<u32>,
    pub stats: ConnStatsSnapshot,
}

/// One session as the console shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionInfo {
    pub tsih: u16,
    pub isid: u64,
    pub initiator: String,
    pub target: String,
    pub queue_depth: u32,
    pub connections: Vec<ConnectionInfo>,
}

/// A running target server.
pub struct Target {
    registry: Arc<Registry>,
    local: Vec<SocketAddr>,
    tasks: Vec<JoinHandle<()>>,
}

impl Target {
    /// Binds every portal and starts accepting connections.
    pub async fn start(cfg: ServerConfig) -> Result<Target, IscsiError> {
        let registry = Arc::new(Registry::new(&cfg)?);
        let mut local = Vec::new();
        let mut tasks = Vec::new();
        let mut portals = Vec::new();
        for p in &cfg.listen {
            let addr = p.bind;
            let l = TcpListener::bind(addr)
                .await
                .map_err(|e| IscsiError::Config(format!("cannot listen on {addr}: {e}")))?;
            let bound = l.local_addr()?;
            local.push(bound);
            portals.push(BoundPortal::new(p, bound));
            let reg = registry.clone();
            tasks.push(tokio::spawn(async move { accept_loop(l, reg).await }));
        }
        *registry.portals.lock().unwrap_or_else(|e| e.into_inner()) = portals;
        Ok(Target {
            registry,
            local,
            tasks,
        })
    }

    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// `iscsi://HOST:PORT/IQN/LUN` for every LUN on the first portal, once
    /// per address an initiator can use (every host address a wildcard
    /// covers, loopback first; the advertised one behind a NAT): all LUNs on
    /// the first address, then on the next.
    pub fn lun_urls(&self) -> Vec<String> {
        let Some(p) = self.registry.portals().first().copied() else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for addr in p.reachable(&portal::host_addresses()) {
            let hp = portal::url_host_port(addr);
            for t in &self.registry.targets {
                for l in t.luns.keys() {
                    out.push(format!("iscsi://{hp}/{}/{l}", t.cfg.iqn));
                }
            }
        }
        out
    }

    /// A snapshot of every session and connection.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        self.registry.sessions().iter().map(|s| s.info()).collect()
    }

    /// Stops listening and closes every session.
    pub fn shutdown(&self) {
        for t in &self.tasks {
            t.abort();
        }
        for s in self.registry.sessions() {
            s.close_all();
        }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        self.shutdown();
    }
}

async fn accept_loop(l: TcpListener, registry: Arc<Registry>) {
    loop {
        match l.accept().await {
            Ok((stream, peer)) => {
                let reg = registry.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection::serve(reg, stream, peer).await {
                        tracing::debug!(%peer, "connection ended: {e}");
                    }
                });
            }
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
        }
    }
}

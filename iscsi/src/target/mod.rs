//! The iSCSI target engine: portals, target nodes with their LUNs, sessions
//! (with multiple connections each) and the registry that ties them together.

mod cmdsn;
pub mod command;
pub mod config;
mod connection;
pub mod data_in;
mod discovery;
pub mod login;
pub mod logout;
pub mod portal;
mod reconfigure;
pub mod saveconfig;
mod session;
mod shards;
pub mod text_exchange;
pub mod tgt_conf;
pub mod tmf;
mod uring;
mod write_task;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

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
pub use reconfigure::Changes;
pub use saveconfig::{ImportError, Imported};
pub use session::Session;

/// A target node (IQN) with its mapped logical units. Its configuration
/// and LUN map can be replaced while sessions run ([`Target::reconfigure`]):
/// each command looks its LU up in the map current at that moment.
pub struct TargetNode {
    pub iqn: String,
    cfg: RwLock<Arc<TargetConfig>>,
    luns: RwLock<Arc<BTreeMap<u64, Arc<LogicalUnit>>>>,
    /// Resets of any of its LUs so far: connections compare it with what
    /// they saw last and drop the writes a reset elsewhere aborted.
    resets: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for TargetNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TargetNode({})", self.iqn)
    }
}

impl TargetNode {
    fn open(cfg: &TargetConfig) -> Result<Self, IscsiError> {
        let mut luns = BTreeMap::new();
        for l in &cfg.luns {
            luns.insert(l.lun, open_lun(cfg, l)?);
        }
        Ok(TargetNode {
            iqn: cfg.iqn.clone(),
            cfg: RwLock::new(Arc::new(cfg.clone())),
            luns: RwLock::new(Arc::new(luns)),
            resets: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// How many LU or target resets this target has had.
    pub(crate) fn resets(&self) -> u64 {
        self.resets.load(std::sync::atomic::Ordering::Acquire)
    }

    /// After resetting LUs of this target (see [`TargetNode::resets`]).
    pub(crate) fn note_reset(&self) {
        self.resets
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
    }

    /// The configuration in force (ACLs, CHAP, demo mode, queue depth, ...).
    pub fn cfg(&self) -> Arc<TargetConfig> {
        self.cfg.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The LUN map in force.
    pub fn luns(&self) -> Arc<BTreeMap<u64, Arc<LogicalUnit>>> {
        self.luns.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The logical unit mapped at `lun` now, if any.
    pub fn lu(&self, lun: u64) -> Option<Arc<LogicalUnit>> {
        self.luns
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&lun)
            .cloned()
    }

    fn set_cfg(&self, cfg: TargetConfig) {
        *self.cfg.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg);
    }

    fn set_luns(&self, luns: BTreeMap<u64, Arc<LogicalUnit>>) {
        *self.luns.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(luns);
    }

    /// Whether an initiator may log in (demo mode or an ACL names it).
    pub fn allows(&self, initiator: &str) -> bool {
        let cfg = self.cfg();
        cfg.demo_mode || cfg.acls.iter().any(|a| a.initiator == initiator)
    }

    /// CHAP credentials required of this initiator and the mutual ones, if any.
    pub fn chap_for(&self, initiator: &str) -> Option<(ChapCredentials, Option<ChapCredentials>)> {
        let cfg = self.cfg();
        if let Some(acl) = cfg.acls.iter().find(|a| a.initiator == initiator) {
            if let Some(c) = &acl.chap {
                return Some((c.clone(), acl.mutual_chap.clone()));
            }
            return None;
        }
        cfg.chap.clone().map(|c| (c, cfg.mutual_chap.clone()))
    }
}

/// Opens one LUN's backstore and builds its logical unit, with the
/// identifiers derived from the target's name and the LUN number (stable
/// whatever other LUNs come and go).
fn open_lun(cfg: &TargetConfig, l: &LunConfig) -> Result<Arc<LogicalUnit>, IscsiError> {
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
    attrs.naa =
        0x6001_4050_0000_0000 | ((fnv(&cfg.iqn) as u64 & 0x00ff_ffff) << 12) | (l.lun & 0xfff);
    attrs.target_port_name = format!("{},t,0x{:04x}", cfg.iqn, cfg.tpgt);
    Ok(Arc::new(LogicalUnit::new(store, attrs)?))
}

fn fnv(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ b as u32).wrapping_mul(0x0100_0193)
    })
}

/// Logins and logouts since the target started, for monitoring.
#[derive(Debug, Default)]
pub struct LoginCounters {
    /// Normal sessions' connections logged in.
    pub normal: AtomicU64,
    /// Discovery sessions logged in.
    pub discovery: AtomicU64,
    /// Logins refused (with a Login Response status) or abandoned.
    pub failures: AtomicU64,
    /// Logout Requests answered.
    pub logouts: AtomicU64,
}

/// Sessions and targets shared by every connection of a server.
pub struct Registry {
    pub logins: LoginCounters,
    targets: RwLock<Vec<Arc<TargetNode>>>,
    portals: Mutex<Vec<BoundPortal>>,
    sessions: Mutex<HashMap<u16, Arc<Session>>>,
    next_tsih: AtomicU16,
    /// Connections that ended, with their final counters, for a while
    /// ([`Registry::ended_connections`]).
    ended: Mutex<std::collections::VecDeque<(std::time::Instant, SessionInfo)>>,
}

/// How long [`Registry::ended_connections`] remembers a connection.
pub const ENDED_KEPT: std::time::Duration = std::time::Duration::from_secs(60);
/// At most this many ended connections are remembered.
const ENDED_MAX: usize = 1024;

impl Registry {
    pub fn new(cfg: &ServerConfig) -> Result<Self, IscsiError> {
        cfg.validate()
            .map_err(|e| IscsiError::Config(crate::error::ConfigError::Invalid(e)))?;
        let targets = cfg
            .targets
            .iter()
            .map(|t| TargetNode::open(t).map(Arc::new))
            .collect::<Result<_, _>>()?;
        Ok(Registry {
            logins: LoginCounters::default(),
            targets: RwLock::new(targets),
            portals: Mutex::new(Vec::new()),
            sessions: Mutex::new(HashMap::new()),
            next_tsih: AtomicU16::new(1),
            ended: Mutex::new(std::collections::VecDeque::new()),
        })
    }

    /// The target nodes in force, in configuration order.
    pub fn targets(&self) -> Vec<Arc<TargetNode>> {
        self.targets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub fn find_target(&self, name: &str) -> Option<Arc<TargetNode>> {
        self.targets
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|t| t.iqn == name)
            .cloned()
    }

    /// Credentials a discovery session may use: those the first target this
    /// initiator may access would require of it (discovery itself never
    /// requires them).
    pub fn discovery_chap(
        &self,
        initiator: &str,
    ) -> Option<(ChapCredentials, Option<ChapCredentials>)> {
        self.targets()
            .iter()
            .filter(|t| t.allows(initiator))
            .find_map(|t| t.chap_for(initiator))
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

    /// Connections that ended in the last [`ENDED_KEPT`], each as a session
    /// of that one connection with its final counters: what an exporter
    /// needs so the bytes moved after its last look are not lost.
    pub fn ended_connections(&self) -> Vec<SessionInfo> {
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        while ended
            .front()
            .is_some_and(|(at, _)| at.elapsed() > ENDED_KEPT)
        {
            ended.pop_front();
        }
        ended.iter().map(|(_, s)| s.clone()).collect()
    }

    /// Remembers a connection that ended (see [`Registry::ended_connections`]).
    pub(crate) fn connection_ended(&self, last: SessionInfo) {
        let mut ended = self.ended.lock().unwrap_or_else(|e| e.into_inner());
        if ended.len() == ENDED_MAX {
            ended.pop_front();
        }
        ended.push_back((std::time::Instant::now(), last));
    }

    /// Every I_T nexus currently logged in to a target.
    pub fn nexuses_of(&self, target: &TargetNode) -> Vec<NexusId> {
        self.sessions()
            .iter()
            .filter(|s| s.target.iqn == target.iqn)
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
                || s.target.iqn != target.iqn
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
                    && s.target.iqn == target.iqn
            })
            .map(|s| s.tsih)
            .collect();
        for tsih in old {
            if let Some(s) = sessions.remove(&tsih) {
                tracing::info!(tsih, "session reinstated by a new login with the same ISID");
                s.close_all();
                for lu in target.luns().values() {
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

    /// A login bound to `s` as connection `cid` ended before that
    /// connection started: its CID is free again, and a session left with
    /// nothing is forgotten.
    fn abandon(&self, s: &Arc<Session>, cid: u16) {
        if s.unreserve(cid) {
            self.end_session(s);
        }
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
            for lu in s.target.luns().values() {
                lu.nexus_lost(&s.nexus.id);
            }
        }
    }

    /// Closes every session of a target (TARGET COLD RESET).
    fn drop_sessions_of(&self, target: &TargetNode) {
        for s in self.sessions() {
            if s.target.iqn == target.iqn {
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

/// One listening portal: its configuration, where it is bound and the task
/// accepting its connections.
struct Listener {
    cfg: Portal,
    bound: SocketAddr,
    task: JoinHandle<()>,
}

/// A running target server.
pub struct Target {
    registry: Arc<Registry>,
    /// The threads connections run on.
    shards: Arc<shards::Shards>,
    listeners: Mutex<Vec<Listener>>,
    /// The configuration in force; held across a reconfiguration so two
    /// cannot interleave.
    config: tokio::sync::Mutex<ServerConfig>,
}

impl Target {
    #[cfg(test)]
    fn shards(&self) -> &shards::Shards {
        &self.shards
    }

    /// Binds every portal and starts accepting connections.
    pub async fn start(cfg: ServerConfig) -> Result<Target, IscsiError> {
        let registry = Arc::new(Registry::new(&cfg)?);
        let bound = bind_portals(&cfg.listen).await?;
        let target = Target {
            registry,
            shards: Arc::new(shards::Shards::per_core()?),
            listeners: Mutex::new(Vec::new()),
            config: tokio::sync::Mutex::new(cfg),
        };
        target.start_listening(bound);
        Ok(target)
    }

    /// Starts accept loops on freshly bound portals and publishes them.
    fn start_listening(&self, bound: Vec<(Portal, TcpListener, SocketAddr)>) {
        let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
        for (cfg, l, addr) in bound {
            let reg = self.registry.clone();
            let shards = self.shards.clone();
            listeners.push(Listener {
                cfg,
                bound: addr,
                task: tokio::spawn(async move { accept_loop(l, reg, shards).await }),
            });
        }
        *self
            .registry
            .portals
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = listeners
            .iter()
            .map(|l| BoundPortal::new(&l.cfg, l.bound))
            .collect();
    }

    /// Where every portal is bound (a port 0 resolved), in configuration order.
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|l| l.bound)
            .collect()
    }
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The configuration in force (as written: a portal on port 0 stays 0).
    pub async fn config(&self) -> ServerConfig {
        self.config.lock().await.clone()
    }

    /// Changes the running target to `new` without a restart: targets, LUNs,
    /// ACLs, CHAP and portals. Everything that can fail (opening
    /// backstores, binding portals) happens first; if any of it fails,
    /// nothing changes. Sessions keep running on untouched LUNs; the
    /// sessions of a target whose LUN set changed get REPORTED LUNS DATA
    /// HAS CHANGED on their other LUNs; sessions of a removed target, or of
    /// an initiator no longer allowed, are closed. A LUN whose backstore
    /// or attributes change is a new logical unit (a RAMDISK starts empty).
    pub async fn reconfigure(&self, new: ServerConfig) -> Result<Changes, IscsiError> {
        new.validate()
            .map_err(|e| IscsiError::Config(crate::error::ConfigError::Invalid(e)))?;
        let mut current = self.config.lock().await;
        let plan = reconfigure::Plan::new(&current, &new);
        // Fallible part: new LUs and targets, new portals.
        let prepared = plan.prepare(&self.registry, &new)?;
        let bound = bind_portals(&plan.portals_added).await?;
        // From here on nothing fails.
        let mut changes = plan.commit(&self.registry, prepared);
        {
            let mut listeners = self.listeners.lock().unwrap_or_else(|e| e.into_inner());
            listeners.retain(|l| {
                let keep = !plan.portals_removed.contains(&l.cfg);
                if !keep {
                    l.task.abort();
                }
                keep
            });
        }
        for (_, _, addr) in &bound {
            changes.portals_added.push(*addr);
        }
        self.start_listening(bound);
        *current = new;
        if !changes.is_empty() {
            tracing::info!("target reconfigured: {}", changes.summary().join("; "));
        }
        Ok(changes)
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
            for t in self.registry.targets() {
                for l in t.luns().keys() {
                    out.push(format!("iscsi://{hp}/{}/{l}", t.iqn));
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
        for l in self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            l.task.abort();
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

/// Binds portals, all or none: a port in use is an error naming it, and
/// the ones already bound are released.
async fn bind_portals(
    portals: &[Portal],
) -> Result<Vec<(Portal, TcpListener, SocketAddr)>, IscsiError> {
    let mut out = Vec::new();
    for p in portals {
        let addr = p.bind;
        let l = TcpListener::bind(addr).await.map_err(|cause| {
            IscsiError::Config(crate::error::ConfigError::Listen { addr, cause })
        })?;
        let bound = l.local_addr()?;
        out.push((*p, l, bound));
    }
    Ok(out)
}

async fn accept_loop(l: TcpListener, registry: Arc<Registry>, shards: Arc<shards::Shards>) {
    loop {
        match l.accept().await {
            Ok((stream, peer)) => {
                let reg = registry.clone();
                let shards = shards.clone();
                tokio::spawn(async move {
                    if let Err(e) = connection::serve(reg, stream, peer, shards).await {
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

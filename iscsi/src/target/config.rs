//! Target configuration in LIO's terms: targets (IQN), one portal group each
//! (tag + portals), LUN mappings over backstores, ACLs with per-ACL CHAP, and
//! demo mode.

use std::net::SocketAddr;

use iolab_storage::BackstoreSpec;
use iolab_storage::scsi::LuConfig;
use serde::{Deserialize, Serialize};

use crate::chap::ChapCredentials;
use crate::negotiation::Preferences;

/// Default IQN of the embedded target.
pub const DEFAULT_IQN: &str = "iqn.2026-11.io.iolab:target0";
/// The IANA iSCSI port.
pub const DEFAULT_PORT: u16 = 3260;
/// Default per-session command window (the seed's RAMDISK used a 64-slot queue).
pub const DEFAULT_QUEUE_DEPTH: u32 = 64;

/// A portal: where the target listens, and optionally the address it tells
/// initiators to use (SendTargets, printed URLs) when that differs, as
/// behind a NAT: `127.0.0.1:3260=10.0.2.2:3260` for a guest on qemu's user
/// network. Written as `ADDR:PORT[=ADDR:PORT]` (IPv6 in brackets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Portal {
    pub bind: SocketAddr,
    pub advertise: Option<SocketAddr>,
}

impl Portal {
    pub fn new(bind: SocketAddr) -> Self {
        Portal {
            bind,
            advertise: None,
        }
    }
}

impl From<SocketAddr> for Portal {
    fn from(bind: SocketAddr) -> Self {
        Portal::new(bind)
    }
}

impl std::str::FromStr for Portal {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let addr = |t: &str| {
            t.trim().parse::<SocketAddr>().map_err(|_| {
                format!(
                    "portal '{s}': '{t}' is not ADDR:PORT (IPv6 as [ADDR]:PORT; an advertised address after '=')"
                )
            })
        };
        match s.split_once('=') {
            None => Ok(Portal::new(addr(s)?)),
            Some((b, a)) => {
                let advertise = addr(a)?;
                if advertise.ip().is_unspecified() || advertise.port() == 0 {
                    return Err(format!(
                        "portal '{s}': the advertised address must be one an initiator can reach, not {advertise}"
                    ));
                }
                Ok(Portal {
                    bind: addr(b)?,
                    advertise: Some(advertise),
                })
            }
        }
    }
}

impl TryFrom<String> for Portal {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Portal> for String {
    fn from(p: Portal) -> String {
        p.to_string()
    }
}

impl std::fmt::Display for Portal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.advertise {
            None => write!(f, "{}", self.bind),
            Some(a) => write!(f, "{}={a}", self.bind),
        }
    }
}

/// A whole target server: where it listens and what it exports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Portals of the portal group: `ADDR:PORT`, or `ADDR:PORT=ADVERTISED:PORT`.
    pub listen: Vec<Portal>,
    pub targets: Vec<TargetConfig>,
}

/// One target node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub iqn: String,
    #[serde(default)]
    pub alias: Option<String>,
    #[serde(default = "default_tpgt")]
    pub tpgt: u16,
    #[serde(default)]
    pub luns: Vec<LunConfig>,
    /// Accept any initiator (LIO's generate_node_acls=1), as the seed did.
    #[serde(default = "yes")]
    pub demo_mode: bool,
    /// CHAP required of initiators without an ACL of their own (demo mode).
    #[serde(default)]
    pub chap: Option<ChapCredentials>,
    /// Credentials the target answers with for mutual CHAP (demo mode).
    #[serde(default)]
    pub mutual_chap: Option<ChapCredentials>,
    #[serde(default)]
    pub acls: Vec<Acl>,
    #[serde(default = "default_depth")]
    pub queue_depth: u32,
    /// Seconds of silence on a connection before the target pings it with a
    /// NOP-In (0: never); an unanswered ping ends the connection after as long again.
    #[serde(default = "default_nop")]
    pub nop_in_interval: u32,
    #[serde(default)]
    pub negotiation: Preferences,
}

/// An initiator allowed to log in, with its own CHAP credentials.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Acl {
    pub initiator: String,
    #[serde(default)]
    pub chap: Option<ChapCredentials>,
    #[serde(default)]
    pub mutual_chap: Option<ChapCredentials>,
}

/// A LUN mapping: number, backstore and its SCSI attributes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LunConfig {
    pub lun: u64,
    pub backstore: BackstoreSpec,
    #[serde(default)]
    pub attributes: LuConfig,
}

fn default_tpgt() -> u16 {
    1
}
fn yes() -> bool {
    true
}
fn default_depth() -> u32 {
    DEFAULT_QUEUE_DEPTH
}
fn default_nop() -> u32 {
    15
}

impl TargetConfig {
    pub fn new(iqn: &str) -> Self {
        TargetConfig {
            iqn: iqn.into(),
            alias: None,
            tpgt: 1,
            luns: Vec::new(),
            demo_mode: true,
            chap: None,
            mutual_chap: None,
            acls: Vec::new(),
            queue_depth: DEFAULT_QUEUE_DEPTH,
            nop_in_interval: default_nop(),
            negotiation: Preferences::default(),
        }
    }

    /// Adds a LUN with the next free number.
    pub fn add_lun(&mut self, backstore: BackstoreSpec) -> u64 {
        let lun = self.luns.iter().map(|l| l.lun + 1).max().unwrap_or(0);
        self.luns.push(LunConfig {
            lun,
            backstore,
            attributes: LuConfig::default(),
        });
        lun
    }
}

impl ServerConfig {
    /// The embedded default: a 1 GiB RAMDISK as LUN 0 of [`DEFAULT_IQN`] on 127.0.0.1:3260.
    pub fn default_lab(listen: SocketAddr, ramdisk_bytes: u64) -> Self {
        let mut t = TargetConfig::new(DEFAULT_IQN);
        t.add_lun(BackstoreSpec::Ramdisk {
            size: ramdisk_bytes,
        });
        ServerConfig {
            listen: vec![Portal::new(listen)],
            targets: vec![t],
        }
    }

    /// Checks what serde cannot: names, duplicate LUNs and limits.
    pub fn validate(&self) -> Result<(), String> {
        if self.listen.is_empty() {
            return Err("no portal to listen on".into());
        }
        for (i, p) in self.listen.iter().enumerate() {
            if self.listen[..i].contains(p) {
                return Err(format!("portal {p} is listed twice"));
            }
        }
        if self.targets.is_empty() {
            return Err("no target configured".into());
        }
        for t in &self.targets {
            if !valid_iscsi_name(&t.iqn) {
                return Err(format!(
                    "'{}' is not a valid iSCSI name (iqn.YYYY-MM.reverse.domain[:id] or eui.<16 hex>)",
                    t.iqn
                ));
            }
            if self.targets.iter().filter(|o| o.iqn == t.iqn).count() > 1 {
                return Err(format!("target {} is configured twice", t.iqn));
            }
            let mut seen = std::collections::HashSet::new();
            for l in &t.luns {
                if !seen.insert(l.lun) {
                    return Err(format!("{}: LUN {} is mapped twice", t.iqn, l.lun));
                }
                if l.lun > 16383 {
                    return Err(format!("{}: LUN {} is above 16383", t.iqn, l.lun));
                }
            }
            if !(1..=1024).contains(&t.queue_depth) {
                return Err(format!(
                    "{}: queue_depth {} must be 1..=1024",
                    t.iqn, t.queue_depth
                ));
            }
            if !(1..=8).contains(&t.negotiation.max_connections) {
                return Err(format!("{}: max_connections must be 1..=8", t.iqn));
            }
            if !t.demo_mode && t.acls.is_empty() {
                return Err(format!(
                    "{}: demo mode is off and no ACL allows any initiator",
                    t.iqn
                ));
            }
        }
        Ok(())
    }
}

/// Sets a target preference from an iSCSI key as other tools' files write
/// it (`MaxConnections 4`, `ImmediateData Yes`, `HeaderDigest CRC32C,None`).
/// Returns whether the key was one of these with a value that reads.
pub fn set_iscsi_key(n: &mut Preferences, key: &str, value: &str) -> bool {
    let num = value.trim().parse::<u32>().ok();
    let yes = value.trim().eq_ignore_ascii_case("yes");
    let list = || value.split(',').map(|s| s.trim().to_string()).collect();
    match (key, num) {
        ("MaxConnections", Some(x)) => n.max_connections = x.clamp(1, 8),
        ("MaxRecvDataSegmentLength", Some(x)) => n.max_recv_data_segment = x,
        ("MaxBurstLength", Some(x)) => n.max_burst = x,
        ("FirstBurstLength", Some(x)) => n.first_burst = x,
        ("MaxOutstandingR2T", Some(x)) => n.max_outstanding_r2t = x,
        ("DefaultTime2Wait", Some(x)) => n.default_time2wait = x,
        ("DefaultTime2Retain", Some(x)) => n.default_time2retain = x,
        ("ImmediateData", _) => n.immediate_data = yes,
        ("InitialR2T", _) => n.initial_r2t = yes,
        ("HeaderDigest", _) => n.header_digest = list(),
        ("DataDigest", _) => n.data_digest = list(),
        _ => return false,
    }
    true
}

/// iSCSI names (RFC 7143 4.2.7): `iqn.` with a date and reversed domain, `eui.` or `naa.` hex.
pub fn valid_iscsi_name(name: &str) -> bool {
    let hex = |s: &str, lens: &[usize]| {
        lens.contains(&s.len()) && s.chars().all(|c| c.is_ascii_hexdigit())
    };
    if let Some(rest) = name.strip_prefix("iqn.") {
        let ok_chars = rest
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.:".contains(c));
        let date = rest.get(..7).unwrap_or("");
        let date_ok = date.len() == 7
            && date[..4].chars().all(|c| c.is_ascii_digit())
            && &date[4..5] == "-"
            && date[5..7].chars().all(|c| c.is_ascii_digit());
        ok_chars && date_ok && name.len() <= 223
    } else if let Some(rest) = name.strip_prefix("eui.") {
        hex(rest, &[16])
    } else if let Some(rest) = name.strip_prefix("naa.") {
        hex(rest, &[16, 32])
    } else {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(valid_iscsi_name(DEFAULT_IQN));
        assert!(valid_iscsi_name("eui.0123456789abcdef"));
        assert!(!valid_iscsi_name("iqn.bad"));
        assert!(!valid_iscsi_name("iqn.2026-11.Upper"));
        assert!(!valid_iscsi_name("target0"));
    }

    #[test]
    fn default_lab_validates_and_round_trips_toml_like_serde() {
        let c = ServerConfig::default_lab("127.0.0.1:3260".parse().unwrap(), 1 << 30);
        c.validate().unwrap();
        assert_eq!(c.targets[0].luns[0].lun, 0);
    }
}

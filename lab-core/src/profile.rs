//! Profiles: everything needed to repeat a run (tuning, target, initiator,
//! workload matrix, guests), as TOML a person reads and edits.

use std::net::SocketAddr;
use std::time::Duration;

use iolab_iscsi::chap::ChapCredentials;
use iolab_iscsi::initiator::{InitiatorOptions, IscsiUrl};
use iolab_iscsi::target::ServerConfig;
use iolab_storage::backstore::parse_size;
use serde::{Deserialize, Serialize};

use crate::guest::GuestDef;
use crate::tuning::TuningProfile;
use crate::units::parse_duration;
use crate::workload::{Mode, Pattern};

/// The profile format this build reads and writes.
pub const PROFILE_FORMAT: u32 = 1;

/// The most sessions one initiator run opens (a profile, the console's run
/// form, `iolab bench`): 256 initiators' worth from one process, what the
/// many-session benchmark holds.
pub const MAX_SESSIONS: u32 = 256;

/// Why a profile's text was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("{origin}:{line}: {}{message}", key.as_ref().map(|k| format!("{k}: ")).unwrap_or_default())]
    Syntax {
        origin: String,
        line: usize,
        key: Option<String>,
        message: String,
    },
    #[error(
        "{origin}: profile format {found} is newer than this iolab's format {supported}; use a newer iolab"
    )]
    NewerFormat {
        origin: String,
        found: i64,
        supported: u32,
    },
    #[error("{origin}: {}", problems.join("; "))]
    Invalid {
        origin: String,
        problems: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub format: u32,
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tuning: Option<TuningProfile>,
    /// The embedded target to start. The workload runs on it unless
    /// `initiator.url` names another target (then both: a lab that serves
    /// its own target and measures another).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<ServerConfig>,
    #[serde(default)]
    pub initiator: InitiatorSettings,
    pub workload: WorkloadMatrix,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub guests: Vec<GuestDef>,
    /// The lab's hosts, for a lab that spans hosts (`[roles]` says which does what).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<HostSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<Roles>,
}

/// A lab host and how iolab reaches it: OpenSSH, or this host itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub name: String,
    /// `user@host` or an alias of the ssh configuration; "local" for this host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ssh: String,
    /// Or a running micro-guest, reached through its agent channel: a guest's
    /// name (its state directory), or the absolute path of its directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// A private key file (`ssh -i`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<String>,
    /// An ssh configuration file (`ssh -F`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ssh_config: Option<String>,
    /// iolab's path there (default: the copy `iolab hosts push` left, else `iolab` on PATH).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iolab: Option<String>,
    /// The host's lab interfaces: the tuning's MTU is set on them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ifaces: Vec<String>,
    /// The host's lab address: where initiators reach a target that listens on a wildcard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<std::net::IpAddr>,
    /// Where initiators reach this host's target when that is neither its
    /// bound address nor `address` (a port forwarded through NAT to a guest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub portal: Option<std::net::SocketAddr>,
}

impl HostSpec {
    pub fn is_local(&self) -> bool {
        self.ssh == "local"
    }
}

/// Which host does what in a lab that spans hosts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Roles {
    /// The host that serves `[target]`.
    pub target: String,
    /// The host whose initiator runs the workload.
    pub initiator: String,
}

/// How the embedded initiator logs in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct InitiatorSettings {
    /// LUN URL of a target elsewhere (`iscsi://[user%secret@]host[:port]/iqn/lun`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Sessions to open (1..=[`MAX_SESSIONS`]).
    pub sessions: u32,
    pub queue_depth: u32,
    pub cmd_per_lun: u32,
    pub header_digest: bool,
    pub data_digest: bool,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    pub max_recv_data_segment_length: u32,
    pub max_burst_length: u32,
    pub first_burst_length: u32,
    pub io_timeout: String,
}

impl Default for InitiatorSettings {
    fn default() -> Self {
        let d = InitiatorOptions::default();
        InitiatorSettings {
            url: None,
            name: None,
            sessions: 1,
            queue_depth: d.queue_depth,
            cmd_per_lun: d.cmd_per_lun,
            header_digest: d.header_digest,
            data_digest: d.data_digest,
            immediate_data: d.immediate_data,
            initial_r2t: d.initial_r2t,
            max_recv_data_segment_length: d.max_recv_data_segment,
            max_burst_length: d.max_burst,
            first_burst_length: d.first_burst,
            io_timeout: "30s".into(),
        }
    }
}

impl InitiatorSettings {
    /// The initiator options for `connections` connections per session.
    pub fn options(&self, connections: u32) -> InitiatorOptions {
        let d = InitiatorOptions::default();
        InitiatorOptions {
            initiator_name: self.name.clone().unwrap_or(d.initiator_name.clone()),
            connections,
            queue_depth: self.queue_depth,
            cmd_per_lun: self.cmd_per_lun,
            header_digest: self.header_digest,
            data_digest: self.data_digest,
            max_recv_data_segment: self.max_recv_data_segment_length,
            max_burst: self.max_burst_length,
            first_burst: self.first_burst_length,
            immediate_data: self.immediate_data,
            initial_r2t: self.initial_r2t,
            io_timeout: parse_duration(&self.io_timeout).unwrap_or(d.io_timeout),
            ..d
        }
    }
}

/// The workloads to run: every LUN x mode x connection count, one cell each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkloadMatrix {
    pub modes: Vec<Mode>,
    /// Connections per session, one cell per entry (the seed's 1-4).
    #[serde(default = "one")]
    pub connections: Vec<u32>,
    /// LUNs to run on; none: the LUN of `initiator.url`, or LUN 0 of the embedded target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub luns: Option<Vec<u64>>,
    /// I/O size ("256k").
    pub block_size: String,
    /// Outstanding I/Os (disktest -K).
    pub threads: u32,
    /// Time per cell ("60s").
    pub time: String,
    #[serde(default = "seq")]
    pub pattern: Pattern,
    #[serde(default)]
    pub verify: bool,
    /// Use only the first SIZE bytes of each LUN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<String>,
    /// The initiators that run the matrix, one row set each, as the seed
    /// compared Core-iSCSI with Open-iSCSI (default: iolab's alone).
    #[serde(default = "iolab_only", skip_serializing_if = "is_iolab_only")]
    pub initiators: Vec<InitiatorKind>,
}

/// An initiator a cell runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InitiatorKind {
    /// iolab's embedded initiator (MC/S: every connection count).
    #[default]
    Iolab,
    /// The Linux kernel's, through open-iscsi (one connection per session).
    OpenIscsi,
}

impl InitiatorKind {
    pub fn name(self) -> &'static str {
        match self {
            InitiatorKind::Iolab => "iolab",
            InitiatorKind::OpenIscsi => "open-iscsi",
        }
    }
}

fn iolab_only() -> Vec<InitiatorKind> {
    vec![InitiatorKind::Iolab]
}
fn is_iolab_only(v: &[InitiatorKind]) -> bool {
    v == [InitiatorKind::Iolab]
}

fn one() -> Vec<u32> {
    vec![1]
}
fn seq() -> Pattern {
    Pattern::Seq
}

/// One cell of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CellPlan {
    pub lun: u64,
    pub mode: Mode,
    pub connections: u32,
    #[serde(default)]
    pub initiator: InitiatorKind,
}

/// A workload field that cannot be used, by field.
#[derive(Debug, thiserror::Error)]
pub enum WorkloadError {
    #[error("block_size: {0}")]
    BlockSizeText(iolab_storage::StorageError),
    #[error("block_size {0} must be a multiple of 512 up to 16 MiB")]
    BlockSize(String),
    #[error("time: {0}")]
    Time(crate::units::DurationError),
    #[error("time must be more than zero")]
    ZeroTime,
    #[error("range: {0}")]
    Range(iolab_storage::StorageError),
}

impl WorkloadMatrix {
    pub fn block_bytes(&self) -> Result<u32, WorkloadError> {
        let b = parse_size(&self.block_size).map_err(WorkloadError::BlockSizeText)?;
        if b == 0 || b % 512 != 0 || b > 16 << 20 {
            return Err(WorkloadError::BlockSize(self.block_size.clone()));
        }
        Ok(b as u32)
    }

    pub fn duration(&self) -> Result<Duration, WorkloadError> {
        match parse_duration(&self.time) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err(WorkloadError::ZeroTime),
            Err(e) => Err(WorkloadError::Time(e)),
        }
    }

    pub fn range_bytes(&self) -> Result<u64, WorkloadError> {
        match &self.range {
            None => Ok(0),
            Some(r) => parse_size(r).map_err(WorkloadError::Range),
        }
    }

    /// The cells in run order: LUN, then initiator, then mode, then
    /// connections (the seed's table order); the kernel's initiator runs
    /// one connection per session only.
    pub fn cells(&self, default_lun: u64) -> Vec<CellPlan> {
        let luns = self.luns.clone().unwrap_or_else(|| vec![default_lun]);
        let mut out = Vec::new();
        for &lun in &luns {
            for &initiator in &self.initiators {
                for &mode in &self.modes {
                    let conns: &[u32] = match initiator {
                        InitiatorKind::Iolab => &self.connections,
                        InitiatorKind::OpenIscsi => &[1],
                    };
                    for &connections in conns {
                        out.push(CellPlan {
                            lun,
                            mode,
                            connections,
                            initiator,
                        });
                    }
                }
            }
        }
        out
    }
}

impl Profile {
    /// Parses and validates a profile's TOML; `origin` names it in errors (a file path).
    pub fn parse(text: &str, origin: &str) -> Result<Profile, ProfileError> {
        let syntax = |e: toml::de::Error| {
            let (line, key) = match e.span() {
                Some(span) => (
                    text[..span.start.min(text.len())].matches('\n').count() + 1,
                    key_at(text, span.start),
                ),
                None => (1, None),
            };
            ProfileError::Syntax {
                origin: origin.into(),
                line,
                key,
                message: e.message().trim().to_string(),
            }
        };
        let table: toml::Table = toml::from_str(text).map_err(syntax)?;
        match table.get("format") {
            Some(toml::Value::Integer(v)) if *v > i64::from(PROFILE_FORMAT) => {
                return Err(ProfileError::NewerFormat {
                    origin: origin.into(),
                    found: *v,
                    supported: PROFILE_FORMAT,
                });
            }
            Some(toml::Value::Integer(v)) if *v >= 1 => {}
            Some(_) => {
                return Err(ProfileError::Invalid {
                    origin: origin.into(),
                    problems: vec![format!(
                        "format must be a whole number from 1 to {PROFILE_FORMAT}"
                    )],
                });
            }
            None => {
                return Err(ProfileError::Invalid {
                    origin: origin.into(),
                    problems: vec![format!(
                        "missing `format = {PROFILE_FORMAT}` (the profile format version)"
                    )],
                });
            }
        }
        let p: Profile = toml::from_str(text).map_err(syntax)?;
        let problems = p.problems();
        if !problems.is_empty() {
            return Err(ProfileError::Invalid {
                origin: origin.into(),
                problems,
            });
        }
        Ok(p)
    }

    /// The profile as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }

    /// Everything wrong with the profile that TOML types cannot say.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if !valid_name(&self.name) {
            out.push(format!(
                "name '{}' must be 1-64 letters, digits, '-', '_' or '.'",
                self.name
            ));
        }
        if let Some(t) = &self.tuning {
            out.extend(t.problems());
        }
        match (&self.target, &self.initiator.url) {
            (None, None) => out
                .push("needs a [target] to start or an initiator.url of a target elsewhere".into()),
            (Some(t), Some(u)) => {
                // A lab that serves its own target and measures another one.
                if let Err(e) = t.validate() {
                    out.push(format!("target: {e}"));
                }
                if let Err(e) = IscsiUrl::parse(u, false) {
                    out.push(format!("initiator.url: {e}"));
                }
            }
            (Some(t), None) => {
                if let Err(e) = t.validate() {
                    out.push(format!("target: {e}"));
                }
                if t.targets.first().is_none_or(|t| t.luns.is_empty()) {
                    out.push("target: the first target has no LUN to run on".into());
                }
            }
            (None, Some(u)) => {
                if let Err(e) = IscsiUrl::parse(u, false) {
                    out.push(format!("initiator.url: {e}"));
                }
            }
        }
        let i = &self.initiator;
        if !(1..=MAX_SESSIONS).contains(&i.sessions) {
            out.push(format!(
                "initiator.sessions {} is outside 1..={MAX_SESSIONS}",
                i.sessions
            ));
        }
        if i.queue_depth == 0 || i.cmd_per_lun == 0 {
            out.push("initiator.queue_depth and cmd_per_lun must be at least 1".into());
        }
        for (k, v) in [
            (
                "max_recv_data_segment_length",
                i.max_recv_data_segment_length,
            ),
            ("max_burst_length", i.max_burst_length),
            ("first_burst_length", i.first_burst_length),
        ] {
            if !(512..=16_777_215).contains(&v) {
                out.push(format!("initiator.{k} {v} is outside 512..=16777215"));
            }
        }
        if let Err(e) = parse_duration(&i.io_timeout) {
            out.push(format!("initiator.io_timeout: {e}"));
        }
        let w = &self.workload;
        if w.modes.is_empty() {
            out.push("workload.modes is empty".into());
        }
        if w.initiators.is_empty() {
            out.push("workload.initiators is empty".into());
        }
        if w.connections.is_empty() || w.connections.iter().any(|c| !(1..=8).contains(c)) {
            out.push("workload.connections must list counts from 1 to 8".into());
        }
        if w.luns.as_ref().is_some_and(|l| l.is_empty()) {
            out.push("workload.luns is empty".into());
        }
        if let (Some(luns), Some(t)) = (
            &w.luns,
            self.target.as_ref().and_then(|t| t.targets.first()),
        ) {
            for l in luns {
                if !t.luns.iter().any(|x| x.lun == *l) {
                    out.push(format!("workload.luns: the target has no LUN {l}"));
                }
            }
        }
        // A RAMDISK starts empty with its target; a file or device keeps what
        // an earlier run wrote, so reading it back verified can be the point.
        let fresh = self
            .target
            .as_ref()
            .and_then(|t| t.targets.first())
            .is_some_and(|t| {
                let used = w.luns.clone().unwrap_or_else(|| vec![self.default_lun()]);
                t.luns.iter().any(|l| {
                    used.contains(&l.lun)
                        && matches!(l.backstore, iolab_storage::BackstoreSpec::Ramdisk { .. })
                })
            });
        if w.verify
            && self.initiator.url.is_none()
            && fresh
            && w.modes.first().is_some_and(|m| *m != Mode::Write)
        {
            out.push(
                "workload.verify on a fresh target needs \"write\" as the first mode (reads check what writes left)"
                    .into(),
            );
        }
        if !(1..=4096).contains(&w.threads) {
            out.push(format!(
                "workload.threads {} is outside 1..=4096",
                w.threads
            ));
        }
        out.extend(w.block_bytes().err().map(|e| e.to_string()));
        out.extend(w.duration().err().map(|e| e.to_string()));
        out.extend(w.range_bytes().err().map(|e| e.to_string()));
        for g in &self.guests {
            out.extend(g.problems());
        }
        out.extend(self.host_problems());
        out
    }

    /// What is wrong with `[[hosts]]` and `[roles]`.
    fn host_problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (i, h) in self.hosts.iter().enumerate() {
            if !valid_name(&h.name) {
                out.push(format!(
                    "hosts: name '{}' must be 1-64 letters, digits, '-', '_' or '.'",
                    h.name
                ));
            }
            if self.hosts[..i].iter().any(|o| o.name == h.name) {
                out.push(format!("hosts: '{}' is named twice", h.name));
            }
            match (&h.guest, h.ssh.is_empty()) {
                (Some(_), false) => {
                    out.push(format!("hosts.{}: give ssh or guest, not both", h.name))
                }
                (None, true) => out.push(format!(
                    "hosts.{}: needs ssh (user@host, an alias, or \"local\") or guest",
                    h.name
                )),
                (Some(g), true) if g.trim().is_empty() => {
                    out.push(format!("hosts.{}: guest is empty", h.name))
                }
                _ => {}
            }
            if h.ssh.starts_with('-') || h.ssh.contains(char::is_whitespace) {
                out.push(format!(
                    "hosts.{}: ssh '{}' must be user@host, an ssh alias, or \"local\"",
                    h.name, h.ssh
                ));
            }
        }
        let Some(r) = &self.roles else {
            return out;
        };
        for (role, name) in [("target", &r.target), ("initiator", &r.initiator)] {
            if !self.hosts.iter().any(|h| &h.name == name) {
                out.push(format!("roles.{role}: no host named '{name}' in [[hosts]]"));
            }
        }
        if self.target.is_none() {
            out.push("roles: a lab across hosts needs a [target] for roles.target to serve".into());
        }
        if self.initiator.url.is_some() {
            out.push(
                "roles: initiator.url cannot be set: the initiator logs in to roles.target's target"
                    .into(),
            );
        }
        out
    }

    /// Where cell `lun` logs in, given where the embedded target listens.
    pub fn lun_url(&self, lun: u64, target_addr: Option<SocketAddr>) -> Option<IscsiUrl> {
        if let Some(u) = &self.initiator.url {
            let mut url = IscsiUrl::parse(u, false).ok()?;
            url.lun = lun;
            return Some(url);
        }
        let t = self.target.as_ref()?.targets.first()?;
        let addr = target_addr?;
        let initiator = self.initiator.options(1).initiator_name;
        let (chap, mutual) = chap_for_initiator(t, &initiator);
        Some(IscsiUrl {
            host: addr.ip().to_string(),
            port: addr.port(),
            target: Some(t.iqn.clone()),
            lun,
            chap,
            mutual,
        })
    }

    /// The LUN a cell runs on when the workload names none.
    pub fn default_lun(&self) -> u64 {
        match &self.initiator.url {
            Some(u) => IscsiUrl::parse(u, false).map(|u| u.lun).unwrap_or(0),
            None => self
                .target
                .as_ref()
                .and_then(|t| t.targets.first())
                .and_then(|t| t.luns.first())
                .map(|l| l.lun)
                .unwrap_or(0),
        }
    }
}

/// The CHAP credentials (one-way, mutual) an initiator must use on a
/// target: its ACL's when it has one, else the target's demo-mode ones.
pub fn chap_for_initiator(
    t: &iolab_iscsi::target::TargetConfig,
    initiator: &str,
) -> (Option<ChapCredentials>, Option<ChapCredentials>) {
    match t.acls.iter().find(|a| a.initiator == initiator) {
        Some(a) => (a.chap.clone(), a.mutual_chap.clone()),
        None => (t.chap.clone(), t.mutual_chap.clone()),
    }
}

/// Profile names: what a file name and a command-line word can hold.
pub fn valid_name(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !n.starts_with('.')
}

/// The dotted key at a byte offset: the nearest `[table]` header above and the key on its line.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_string())
        .filter(|k| !k.is_empty() && !k.starts_with('['));
    let table = text[..line_start].lines().rev().find_map(|l| {
        let l = l.trim();
        l.starts_with('[')
            .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
    });
    match (table, key) {
        (Some(t), Some(k)) => Some(format!("{t}.{k}")),
        (None, Some(k)) => Some(k),
        (Some(_), None) if line.trim_start().starts_with('[') => None,
        (t, None) => t,
    }
}

/// The built-in profiles: they cannot be deleted (copy one to change it).
pub fn builtins() -> Vec<(&'static str, &'static str)> {
    vec![
        ("quick", include_str!("../profiles/quick.toml")),
        (
            "seed-lio-kvm",
            include_str!("../profiles/seed-lio-kvm.toml"),
        ),
        (
            "seed-two-hosts",
            include_str!("../profiles/seed-two-hosts.toml"),
        ),
    ]
}

pub fn builtin(name: &str) -> Option<&'static str> {
    builtins()
        .into_iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| t)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_parses_and_validates() {
        for (name, text) in builtins() {
            let p = Profile::parse(text, name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(p.name, name);
            assert!(p.problems().is_empty());
            // Rendering and parsing again gives the same profile.
            let again = Profile::parse(&p.to_toml(), name).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(again, p);
        }
    }

    #[test]
    fn a_profile_may_open_up_to_256_sessions() {
        let mut p = Profile::parse(builtin("seed-lio-kvm").unwrap(), "seed").unwrap();
        p.initiator.sessions = MAX_SESSIONS;
        assert!(p.problems().is_empty(), "{:?}", p.problems());
        p.initiator.sessions = MAX_SESSIONS + 1;
        assert_eq!(p.problems(), ["initiator.sessions 257 is outside 1..=256"]);
    }

    #[test]
    fn the_seed_profile_is_the_seed_page() {
        let p = Profile::parse(builtin("seed-lio-kvm").unwrap(), "seed").unwrap();
        let t = p.tuning.as_ref().unwrap();
        assert_eq!(t.sysctls, crate::tuning::profile::seed().sysctls);
        assert_eq!(t.mtu, Some(9000));
        let tgt = &p.target.as_ref().unwrap().targets[0];
        assert_eq!(tgt.queue_depth, 64);
        assert_eq!(tgt.luns.len(), 2);
        let w = &p.workload;
        assert_eq!(w.block_bytes().unwrap(), 262_144);
        assert_eq!(w.threads, 64);
        assert_eq!(w.duration().unwrap(), Duration::from_secs(60));
        let cells = w.cells(p.default_lun());
        assert_eq!(cells.len(), 12);
        assert_eq!(
            cells[0],
            CellPlan {
                lun: 0,
                mode: Mode::Read,
                connections: 1,
                initiator: InitiatorKind::Iolab,
            }
        );
        assert_eq!(cells[11].mode, Mode::Rw);
        assert_eq!(cells[11].connections, 4);
        assert!(!p.initiator.header_digest && !p.initiator.data_digest);
        let g: Vec<_> = p.guests.iter().map(|g| (g.memory_mib, g.vcpus)).collect();
        assert_eq!(g, [(3072, 8), (4096, 8)]);
    }

    #[test]
    fn the_two_host_seed_puts_target_and_initiator_on_their_own_hosts() {
        let p = Profile::parse(builtin("seed-two-hosts").unwrap(), "seed2").unwrap();
        let seed = Profile::parse(builtin("seed-lio-kvm").unwrap(), "seed").unwrap();
        assert_eq!(p.tuning, seed.tuning);
        let r = p.roles.as_ref().unwrap();
        assert_eq!(
            (r.target.as_str(), r.initiator.as_str()),
            ("lab-a", "lab-b")
        );
        assert!(p.hosts.iter().all(|h| h.ifaces == ["lab0"]));
        assert_eq!(p.workload.cells(0).len(), 24);
        assert_eq!(p.target.as_ref().unwrap().targets[0].queue_depth, 64);
    }

    #[test]
    fn roles_must_name_hosts_and_exclude_an_initiator_url() {
        let mut p = Profile::parse(builtin("seed-two-hosts").unwrap(), "seed2").unwrap();
        p.roles.as_mut().unwrap().initiator = "lab-c".into();
        p.initiator.url = Some("iscsi://10.0.0.1/iqn.2000-01.x:y/0".into());
        p.hosts[1].ssh = "-oProxyCommand=evil".into();
        let problems = p.problems();
        assert!(
            problems.iter().any(|e| e.contains("no host named 'lab-c'")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|e| e.contains("initiator.url cannot be set")),
            "{problems:?}"
        );
        assert!(
            problems
                .iter()
                .any(|e| e.contains("ssh '-oProxyCommand=evil'")),
            "{problems:?}"
        );
    }

    #[test]
    fn a_wrong_type_names_line_and_key() {
        let text = builtin("quick")
            .unwrap()
            .replace("threads = 16", "threads = \"many\"");
        let e = Profile::parse(&text, "q.toml").unwrap_err();
        let msg = e.to_string();
        let line = text.lines().position(|l| l.contains("many")).unwrap() + 1;
        assert!(
            msg.starts_with(&format!("q.toml:{line}: workload.threads: ")),
            "{msg}"
        );
    }

    #[test]
    fn an_unknown_key_names_line_and_key() {
        let text = builtin("quick")
            .unwrap()
            .replace("[initiator]\n", "[initiator]\nconections = 2\n");
        let msg = Profile::parse(&text, "q.toml").unwrap_err().to_string();
        let line = text.lines().position(|l| l.contains("conections")).unwrap() + 1;
        assert!(
            msg.starts_with(&format!("q.toml:{line}: initiator.conections: ")),
            "{msg}"
        );
        assert!(msg.contains("unknown field"), "{msg}");
    }

    #[test]
    fn a_newer_format_names_both_versions() {
        let text = builtin("quick")
            .unwrap()
            .replace("format = 1", "format = 7");
        let msg = Profile::parse(&text, "q.toml").unwrap_err().to_string();
        assert!(
            msg.contains("format 7") && msg.contains("format 1"),
            "{msg}"
        );
    }

    #[test]
    fn meaning_is_checked_beyond_types() {
        let text = builtin("quick")
            .unwrap()
            .replace("connections = [1, 2]", "connections = [1, 9]")
            .replace("block_size = \"256k\"", "block_size = \"1000\"");
        let e = Profile::parse(&text, "q.toml").unwrap_err();
        let ProfileError::Invalid { problems, .. } = e else {
            panic!("{e}")
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn a_verified_read_first_is_refused_only_on_a_fresh_ramdisk() {
        let mut p = Profile::parse(builtin("quick").unwrap(), "quick").unwrap();
        p.workload.modes = vec![Mode::Read];
        p.workload.verify = true;
        assert!(
            p.problems()
                .iter()
                .any(|e| e.contains("needs \"write\" as the first mode")),
            "{:?}",
            p.problems()
        );
        // A file keeps what an earlier run wrote: reading it back is the point.
        let t = &mut p.target.as_mut().unwrap().targets[0];
        t.luns[0].backstore = iolab_storage::BackstoreSpec::Fileio {
            path: "/var/tmp/x.img".into(),
            size: Some(1 << 20),
            direct: false,
        };
        assert!(p.problems().is_empty(), "{:?}", p.problems());
    }
}

//! The plan: a tuning profile against one namespace of the host, key by key,
//! with what the kernel would reject or what would not take effect.

use super::host::{KeyAccess, TuneHost};
use super::profile::TuningProfile;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    /// Applying is refused.
    Error,
    /// Applied anyway; the user should know.
    Warning,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lint {
    pub severity: Severity,
    pub key: String,
    pub message: String,
}

/// Prefix of MTU items' keys (`mtu:veth0`).
pub const MTU_PREFIX: &str = "mtu:";

/// One key of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanItem {
    /// A sysctl name, or `mtu:IFACE`.
    pub key: String,
    /// The host's value now; none when the key is absent.
    pub current: Option<String>,
    pub wanted: String,
    pub access: KeyAccess,
    /// Whether the value differs from the wanted one.
    pub change: bool,
    /// Why the key is skipped or refused, when it is.
    pub note: Option<String>,
}

impl PlanItem {
    pub fn will_write(&self) -> bool {
        self.change && self.access == KeyAccess::Writable && self.current.is_some()
    }
    pub fn iface(&self) -> Option<&str> {
        self.key.strip_prefix(MTU_PREFIX)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub profile: String,
    pub items: Vec<PlanItem>,
    pub lints: Vec<Lint>,
}

impl Plan {
    pub fn errors(&self) -> Vec<&Lint> {
        self.lints
            .iter()
            .filter(|l| l.severity == Severity::Error)
            .collect()
    }
    pub fn value_after(&self, host: &dyn TuneHost, key: &str) -> Option<String> {
        match self.items.iter().find(|i| i.key == key) {
            Some(i) if i.will_write() => Some(i.wanted.clone()),
            Some(i) => i.current.clone(),
            None => host.read(key).ok().flatten(),
        }
    }
}

/// Fields as the kernel separates them.
pub fn normalized(v: &str) -> String {
    v.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The MTUs to set: the profile's per-interface ones, and `ifaces` at
/// `mtu` (or the profile's MTU).
pub fn mtu_targets(
    p: &TuningProfile,
    ifaces: &[String],
    mtu: Option<u32>,
) -> Result<Vec<(String, u32)>, String> {
    let mut out: Vec<(String, u32)> = p.interfaces.iter().map(|(i, m)| (i.clone(), *m)).collect();
    if !ifaces.is_empty() {
        let m = mtu
            .or(p.mtu)
            .ok_or_else(|| format!("profile {} sets no MTU: give --mtu with --iface", p.name))?;
        for i in ifaces {
            out.retain(|(x, _)| x != i);
            out.push((i.clone(), m));
        }
    } else if mtu.is_some() {
        return Err("--mtu needs --iface".into());
    }
    Ok(out)
}

/// Plans `p` (and the MTUs in `mtus`) against `host`.
pub fn plan(host: &dyn TuneHost, p: &TuningProfile, mtus: &[(String, u32)]) -> Plan {
    let mut items = Vec::new();
    let mut lints = Vec::new();
    let mut lint = |severity, key: &str, message: String| {
        lints.push(Lint {
            severity,
            key: key.to_string(),
            message,
        })
    };
    for (key, value) in &p.sysctls {
        let wanted = value.0.clone();
        let access = host.access(key);
        let current = match host.read(key) {
            Ok(v) => v,
            Err(e) => {
                lint(Severity::Error, key, format!("cannot read it: {e}"));
                None
            }
        };
        let change = current.as_deref().map(normalized) != Some(normalized(&wanted));
        let mut note = None;
        match access {
            KeyAccess::Absent if host.in_initial_namespace(key) => {
                note = Some("only in the initial network namespace".into());
            }
            KeyAccess::Absent => lint(
                Severity::Error,
                key,
                format!(
                    "unknown sysctl (there is no {})",
                    super::host::proc_path(key).display()
                ),
            ),
            KeyAccess::ReadOnly if change => {
                note = Some("read-only in this network namespace".into());
                lint(
                    Severity::Warning,
                    key,
                    "read-only in this network namespace; it keeps its value".into(),
                );
            }
            KeyAccess::Denied if change => lint(
                Severity::Error,
                key,
                "this process may not write it: run as root".into(),
            ),
            _ => {}
        }
        if let Some(cur) = &current {
            check_value(key, cur, &wanted, &mut lint);
        }
        items.push(PlanItem {
            key: key.clone(),
            current,
            wanted,
            access,
            change,
            note,
        });
    }
    for (iface, mtu) in mtus {
        let key = format!("{MTU_PREFIX}{iface}");
        let current = match host.mtu(iface) {
            Ok(m) => Some(m.to_string()),
            Err(e) => {
                lint(Severity::Error, &key, e.to_string());
                None
            }
        };
        if current.is_some() {
            match host.mtu_range(iface) {
                Ok(Some((lo, hi))) if !(lo..=hi).contains(mtu) => lint(
                    Severity::Error,
                    &key,
                    format!("MTU {mtu} is outside what {iface} takes ({lo}..={hi})"),
                ),
                Ok(_) => {}
                Err(e) => lint(Severity::Warning, &key, format!("MTU range unknown: {e}")),
            }
        }
        let change = current.as_deref() != Some(mtu.to_string().as_str());
        let access = if host.can_set_links() {
            KeyAccess::Writable
        } else {
            if change {
                lint(
                    Severity::Error,
                    &key,
                    "setting an MTU needs CAP_NET_ADMIN: run as root".into(),
                );
            }
            KeyAccess::Denied
        };
        items.push(PlanItem {
            key,
            current,
            wanted: mtu.to_string(),
            access,
            change,
            note: None,
        });
    }
    let mut plan = Plan {
        profile: p.name.clone(),
        items,
        lints,
    };
    combination_lints(host, p, &mut plan);
    plan
}

/// Values the kernel would refuse: a different number of fields, or words where it wants numbers.
fn check_value(
    key: &str,
    current: &str,
    wanted: &str,
    lint: &mut impl FnMut(Severity, &str, String),
) {
    let cur: Vec<&str> = current.split_whitespace().collect();
    let want: Vec<&str> = wanted.split_whitespace().collect();
    if cur.len() != want.len() && cur.iter().all(|f| f.parse::<i64>().is_ok()) {
        lint(
            Severity::Error,
            key,
            format!(
                "takes {} value(s) (now \"{}\"), the profile gives {}",
                cur.len(),
                normalized(current),
                want.len()
            ),
        );
        return;
    }
    for (c, w) in cur.iter().zip(&want) {
        if c.parse::<i64>().is_ok() && w.parse::<i64>().is_err() {
            lint(
                Severity::Error,
                key,
                format!("'{w}' is not a number (now {})", normalized(current)),
            );
            return;
        }
    }
}

fn fields(v: Option<String>) -> Vec<u64> {
    v.map(|v| {
        v.split_whitespace()
            .filter_map(|f| f.parse().ok())
            .collect()
    })
    .unwrap_or_default()
}

/// Settings that are accepted but do not do what they seem to.
fn combination_lints(host: &dyn TuneHost, p: &TuningProfile, plan: &mut Plan) {
    let touches = |k: &str| p.sysctls.contains_key(k);
    let mut out = Vec::new();
    let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
    if touches("net.ipv4.tcp_mem") {
        let mem = fields(plan.value_after(host, "net.ipv4.tcp_mem"));
        let total = host.memory_bytes();
        if let Some(&max_pages) = mem.get(2) {
            let bytes = max_pages.saturating_mul(host.page_size());
            if total > 0 && bytes > total {
                out.push((
                    "net.ipv4.tcp_mem".to_string(),
                    format!(
                        "allows {max_pages} pages ({:.1} GiB) of TCP memory, more than this machine's {:.1} GiB: its pressure limits can never apply",
                        gib(bytes),
                        gib(total)
                    ),
                ));
            }
        }
    }
    for dir in ["r", "w"] {
        let tcp_key = format!("net.ipv4.tcp_{dir}mem");
        let max_key = format!("net.core.{dir}mem_max");
        let def_key = format!("net.core.{dir}mem_default");
        if !(touches(&tcp_key) || touches(&max_key) || touches(&def_key)) {
            continue;
        }
        let tcp = fields(plan.value_after(host, &tcp_key));
        let max = fields(plan.value_after(host, &max_key)).first().copied();
        let def = fields(plan.value_after(host, &def_key)).first().copied();
        let opt = if dir == "r" { "SO_RCVBUF" } else { "SO_SNDBUF" };
        if let (Some(&tcp_max), Some(max)) = (tcp.get(2), max)
            && max < tcp_max
        {
            out.push((
                max_key.clone(),
                format!(
                    "{max_key} = {max} is below {tcp_key}'s maximum {tcp_max}: applications that set {opt} get at most {max} (only autotuned sockets reach {tcp_max})"
                ),
            ));
        }
        if let (Some(def), Some(max)) = (def, max)
            && def > max
        {
            out.push((
                def_key.clone(),
                format!("{def_key} = {def} is above {max_key} = {max}"),
            ));
        }
        if tcp.len() == 3 && !(tcp[0] <= tcp[1] && tcp[1] <= tcp[2]) {
            out.push((
                tcp_key.clone(),
                format!("{tcp_key} should be min <= default <= max, not {tcp:?}"),
            ));
        }
    }
    for (key, message) in out {
        plan.lints.push(Lint {
            severity: Severity::Warning,
            key,
            message,
        });
    }
}

//! Tuning profiles: sysctl keys with values and MTUs, and the built-in sets.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A sysctl value as written to `/proc/sys`; a profile may write it as a
/// number or as a string ("4096 87380 16777216").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RawValue", into = "String")]
pub struct SysctlValue(pub String);

#[derive(Deserialize)]
#[serde(untagged)]
enum RawValue {
    Int(i64),
    Text(String),
}

impl From<RawValue> for SysctlValue {
    fn from(r: RawValue) -> Self {
        match r {
            RawValue::Int(i) => SysctlValue(i.to_string()),
            RawValue::Text(s) => SysctlValue(s),
        }
    }
}

impl From<SysctlValue> for String {
    fn from(v: SysctlValue) -> String {
        v.0
    }
}

impl SysctlValue {
    /// The value's fields, as the kernel compares them (whitespace-separated).
    pub fn fields(&self) -> Vec<&str> {
        self.0.split_whitespace().collect()
    }
}

/// A named set of sysctls and MTUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TuningProfile {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Keys as `sysctl` names them (`net.ipv4.tcp_sack`).
    #[serde(default)]
    pub sysctls: BTreeMap<String, SysctlValue>,
    /// MTU for the lab's interfaces (those named with `--iface`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtu: Option<u32>,
    /// MTU of particular interfaces.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub interfaces: BTreeMap<String, u32>,
}

impl TuningProfile {
    fn new(name: &str, description: &str, sysctls: &[(&str, &str)], mtu: Option<u32>) -> Self {
        TuningProfile {
            name: name.into(),
            description: description.into(),
            sysctls: sysctls
                .iter()
                .map(|(k, v)| (k.to_string(), SysctlValue(v.to_string())))
                .collect(),
            mtu,
            interfaces: BTreeMap::new(),
        }
    }

    /// Problems a profile has on its face (key names, MTU range), before any host is asked.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (k, v) in &self.sysctls {
            if !valid_key(k) {
                out.push(format!(
                    "'{k}' is not a sysctl name (like net.ipv4.tcp_sack)"
                ));
            }
            if v.fields().is_empty() {
                out.push(format!("{k} has an empty value"));
            }
        }
        let mtus = self.mtu.iter().map(|m| ("mtu", *m));
        for (what, m) in mtus.chain(self.interfaces.iter().map(|(i, m)| (i.as_str(), *m))) {
            if !(68..=65_535).contains(&m) {
                out.push(format!("{what}: MTU {m} is outside 68..=65535"));
            }
        }
        out
    }
}

/// A sysctl name: dotted words of letters, digits, `_` and `-`, no `..` or `/`.
pub fn valid_key(k: &str) -> bool {
    k.split('.').count() >= 2
        && k.split('.').all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

/// The seed page's host tuning.
pub fn seed() -> TuningProfile {
    TuningProfile::new(
        "seed",
        "The 2009 LIO-over-KVM page: TCP timestamps and SACK off, 10 MB TCP buffers, \
         larger core socket buffers and backlog, 9000-byte MTU",
        &[
            ("net.ipv4.tcp_timestamps", "0"),
            ("net.ipv4.tcp_sack", "0"),
            ("net.ipv4.tcp_rmem", "10000000 10000000 10000000"),
            ("net.ipv4.tcp_wmem", "10000000 10000000 10000000"),
            ("net.ipv4.tcp_mem", "10000000 10000000 10000000"),
            ("net.core.rmem_max", "524287"),
            ("net.core.wmem_max", "524287"),
            ("net.core.rmem_default", "524287"),
            ("net.core.wmem_default", "524287"),
            ("net.core.optmem_max", "524287"),
            ("net.core.netdev_max_backlog", "300000"),
        ],
        Some(9000),
    )
}

/// The built-in tuning profiles (the host's own values are `host-defaults`,
/// which comes from what the lab recorded before changing anything).
pub fn builtins() -> Vec<TuningProfile> {
    vec![
        seed(),
        TuningProfile::new(
            "network-throughput",
            "tuned's network-throughput sysctls: 16 MiB socket buffer maxima",
            &[
                ("net.core.rmem_max", "16777216"),
                ("net.core.wmem_max", "16777216"),
                ("net.ipv4.tcp_rmem", "4096 131072 16777216"),
                ("net.ipv4.tcp_wmem", "4096 16384 16777216"),
            ],
            None,
        ),
        TuningProfile::new(
            "network-latency",
            "tuned's network-latency sysctls (the networking ones): busy polling and TCP fast open",
            &[
                ("net.core.busy_read", "50"),
                ("net.core.busy_poll", "50"),
                ("net.ipv4.tcp_fastopen", "3"),
            ],
            None,
        ),
    ]
}

pub fn builtin(name: &str) -> Option<TuningProfile> {
    builtins().into_iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_are_well_formed() {
        for p in builtins() {
            assert!(p.problems().is_empty(), "{}: {:?}", p.name, p.problems());
        }
        assert_eq!(seed().sysctls.len(), 11);
        assert_eq!(seed().mtu, Some(9000));
    }

    #[test]
    fn keys_and_mtus_are_checked() {
        assert!(valid_key("net.ipv4.conf.veth-a.mtu"));
        assert!(!valid_key("net..x"));
        assert!(!valid_key("../etc/passwd"));
        assert!(!valid_key("tcp_sack"));
        let mut p = seed();
        p.mtu = Some(10);
        p.sysctls.insert("net/ipv4".into(), SysctlValue("1".into()));
        assert_eq!(p.problems().len(), 2, "{:?}", p.problems());
    }

    #[test]
    fn values_may_be_numbers_or_strings() {
        let p: TuningProfile = toml::from_str(
            "name = \"t\"\n[sysctls]\n\"net.ipv4.tcp_sack\" = 0\n\"net.ipv4.tcp_rmem\" = \"1 2 3\"\n",
        )
        .unwrap();
        assert_eq!(p.sysctls["net.ipv4.tcp_sack"].0, "0");
        assert_eq!(p.sysctls["net.ipv4.tcp_rmem"].fields(), ["1", "2", "3"]);
    }
}

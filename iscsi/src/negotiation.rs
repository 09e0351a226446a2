//! Operational key negotiation (RFC 7143 6.2, 13): the rule of every key and
//! the negotiated parameter set.

use serde::{Deserialize, Serialize};

use crate::text::parse_number;

/// How a key's result is computed from the offer and the responder's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Numeric, result = min(offer, ours).
    Min { lo: u64, hi: u64 },
    /// Numeric, result = max(offer, ours).
    Max { lo: u64, hi: u64 },
    /// Boolean, result = offer OR ours.
    Or,
    /// Boolean, result = offer AND ours.
    And,
    /// A list of choices; the responder picks the first of the offer it supports.
    List,
    /// Declarative: no negotiation, the value is stated (numeric range where given).
    Declarative { numeric: Option<(u64, u64)> },
}

/// Where a key may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Session-wide, on the leading connection only.
    LeadingOnly,
    /// Per connection.
    Connection,
    /// Login or text exchange declarations (names, aliases, session type).
    Declaration,
}

/// A key the engines know.
#[derive(Debug, Clone, Copy)]
pub struct KeyDef {
    pub name: &'static str,
    pub rule: Rule,
    pub scope: Scope,
    /// Irrelevant in discovery sessions.
    pub normal_only: bool,
}

const fn k(name: &'static str, rule: Rule, scope: Scope, normal_only: bool) -> KeyDef {
    KeyDef {
        name,
        rule,
        scope,
        normal_only,
    }
}

const LEN: (u64, u64) = (512, 16_777_215);

/// Every RFC 7143 key (security keys are handled by the login state machine).
pub static KEYS: &[KeyDef] = &[
    k("HeaderDigest", Rule::List, Scope::Connection, false),
    k("DataDigest", Rule::List, Scope::Connection, false),
    k(
        "MaxConnections",
        Rule::Min { lo: 1, hi: 65535 },
        Scope::LeadingOnly,
        true,
    ),
    k(
        "SendTargets",
        Rule::Declarative { numeric: None },
        Scope::Declaration,
        false,
    ),
    k(
        "TargetName",
        Rule::Declarative { numeric: None },
        Scope::Declaration,
        false,
    ),
    k(
        "InitiatorName",
        Rule::Declarative { numeric: None },
        Scope::Declaration,
        false,
    ),
    k(
        "TargetAlias",
        Rule::Declarative { numeric: None },
        Scope::Declaration,
        false,
    ),
    k(
        "InitiatorAlias",
        Rule::Declarative { numeric: None },
        Scope::Declaration,
        false,
    ),
    k(
        "TargetAddress",
        Rule::Declarative { numeric: None },
        Scope::Declaration,
        false,
    ),
    k(
        "TargetPortalGroupTag",
        Rule::Declarative {
            numeric: Some((0, 65535)),
        },
        Scope::Declaration,
        false,
    ),
    k("InitialR2T", Rule::Or, Scope::LeadingOnly, true),
    k("ImmediateData", Rule::And, Scope::LeadingOnly, true),
    k(
        "MaxRecvDataSegmentLength",
        Rule::Declarative { numeric: Some(LEN) },
        Scope::Connection,
        false,
    ),
    k(
        "MaxBurstLength",
        Rule::Min {
            lo: LEN.0,
            hi: LEN.1,
        },
        Scope::LeadingOnly,
        true,
    ),
    k(
        "FirstBurstLength",
        Rule::Min {
            lo: LEN.0,
            hi: LEN.1,
        },
        Scope::LeadingOnly,
        true,
    ),
    k(
        "DefaultTime2Wait",
        Rule::Max { lo: 0, hi: 3600 },
        Scope::LeadingOnly,
        false,
    ),
    k(
        "DefaultTime2Retain",
        Rule::Min { lo: 0, hi: 3600 },
        Scope::LeadingOnly,
        false,
    ),
    k(
        "MaxOutstandingR2T",
        Rule::Min { lo: 1, hi: 65535 },
        Scope::LeadingOnly,
        true,
    ),
    k("DataPDUInOrder", Rule::Or, Scope::LeadingOnly, true),
    k("DataSequenceInOrder", Rule::Or, Scope::LeadingOnly, true),
    k(
        "ErrorRecoveryLevel",
        Rule::Min { lo: 0, hi: 2 },
        Scope::LeadingOnly,
        false,
    ),
    k(
        "SessionType",
        Rule::Declarative { numeric: None },
        Scope::Declaration,
        false,
    ),
    // RFC 3720 keys obsoleted by RFC 7143; answered so older initiators proceed.
    k("IFMarker", Rule::And, Scope::Connection, false),
    k("OFMarker", Rule::And, Scope::Connection, false),
    k(
        "OFMarkInt",
        Rule::Declarative { numeric: None },
        Scope::Connection,
        false,
    ),
    k(
        "IFMarkInt",
        Rule::Declarative { numeric: None },
        Scope::Connection,
        false,
    ),
    // RFC 7143 additions.
    k("TaskReporting", Rule::List, Scope::LeadingOnly, true),
    k(
        "iSCSIProtocolLevel",
        Rule::Min { lo: 0, hi: 31 },
        Scope::LeadingOnly,
        false,
    ),
];

pub fn key_def(name: &str) -> Option<&'static KeyDef> {
    KEYS.iter().find(|d| d.name == name)
}

/// Negotiated (or default) operational parameters of a session and one connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Params {
    pub header_digest: bool,
    pub data_digest: bool,
    pub max_connections: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    /// What the peer may receive from us (its declaration).
    pub peer_max_recv_data_segment: u32,
    /// What we receive (our declaration).
    pub max_recv_data_segment: u32,
    pub max_burst: u32,
    pub first_burst: u32,
    pub default_time2wait: u32,
    pub default_time2retain: u32,
    pub max_outstanding_r2t: u32,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub error_recovery_level: u32,
}

impl Default for Params {
    /// The RFC 7143 defaults.
    fn default() -> Self {
        Params {
            header_digest: false,
            data_digest: false,
            max_connections: 1,
            initial_r2t: true,
            immediate_data: true,
            peer_max_recv_data_segment: 8192,
            max_recv_data_segment: 8192,
            max_burst: 262_144,
            first_burst: 65_536,
            default_time2wait: 2,
            default_time2retain: 20,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
        }
    }
}

/// The responder's own limits and preferences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Preferences {
    pub max_connections: u32,
    pub initial_r2t: bool,
    pub immediate_data: bool,
    pub max_recv_data_segment: u32,
    pub max_burst: u32,
    pub first_burst: u32,
    pub max_outstanding_r2t: u32,
    pub header_digest: Vec<String>,
    pub data_digest: Vec<String>,
    pub default_time2wait: u32,
    pub default_time2retain: u32,
    pub error_recovery_level: u32,
}

impl Default for Preferences {
    fn default() -> Self {
        Preferences {
            max_connections: 8,
            initial_r2t: false,
            immediate_data: true,
            max_recv_data_segment: 262_144,
            max_burst: 16_776_192,
            first_burst: 262_144,
            max_outstanding_r2t: 16,
            header_digest: vec!["None".into(), "CRC32C".into()],
            data_digest: vec!["None".into(), "CRC32C".into()],
            default_time2wait: 2,
            default_time2retain: 20,
            error_recovery_level: 0,
        }
    }
}

fn yes_no(v: &str) -> Option<bool> {
    match v {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}
fn yn(b: bool) -> String {
    (if b { "Yes" } else { "No" }).to_owned()
}

/// The answer to one offered key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// Send `key=value` back.
    Reply(String),
    /// Declarative: nothing to send.
    Silent,
}

impl Preferences {
    fn ours(&self, name: &str) -> Option<String> {
        Some(match name {
            "MaxConnections" => self.max_connections.to_string(),
            "InitialR2T" => yn(self.initial_r2t),
            "ImmediateData" => yn(self.immediate_data),
            "MaxBurstLength" => self.max_burst.to_string(),
            "FirstBurstLength" => self.first_burst.to_string(),
            "MaxOutstandingR2T" => self.max_outstanding_r2t.to_string(),
            "DefaultTime2Wait" => self.default_time2wait.to_string(),
            "DefaultTime2Retain" => self.default_time2retain.to_string(),
            "ErrorRecoveryLevel" => self.error_recovery_level.to_string(),
            "DataPDUInOrder" | "DataSequenceInOrder" => yn(true),
            "IFMarker" | "OFMarker" => yn(false),
            "iSCSIProtocolLevel" => "1".into(),
            _ => return None,
        })
    }

    fn list_for(&self, name: &str) -> Vec<String> {
        match name {
            "HeaderDigest" => self.header_digest.clone(),
            "DataDigest" => self.data_digest.clone(),
            _ => Vec::new(),
        }
    }

    /// Responds to one offered key per its rule and applies the result to `p`.
    pub fn respond(&self, def: &KeyDef, value: &str, p: &mut Params) -> Answer {
        let reject = Answer::Reply("Reject".into());
        let result = match def.rule {
            Rule::Min { lo, hi } | Rule::Max { lo, hi } => {
                let Some(v) = parse_number(value).filter(|v| (lo..=hi).contains(v)) else {
                    return reject;
                };
                let ours = self
                    .ours(def.name)
                    .and_then(|o| parse_number(&o))
                    .unwrap_or(v);
                let r = if matches!(def.rule, Rule::Min { .. }) {
                    v.min(ours)
                } else {
                    v.max(ours)
                };
                r.to_string()
            }
            Rule::Or | Rule::And => {
                let Some(v) = yes_no(value) else {
                    return reject;
                };
                let ours = self.ours(def.name).and_then(|o| yes_no(&o)).unwrap_or(v);
                yn(if def.rule == Rule::Or {
                    v || ours
                } else {
                    v && ours
                })
            }
            Rule::List => {
                let ours = self.list_for(def.name);
                match value.split(',').find(|c| ours.iter().any(|o| o == c)) {
                    Some(c) => c.to_owned(),
                    None if def.name == "TaskReporting" => "RFC3720".to_owned(),
                    None => return reject,
                }
            }
            Rule::Declarative { numeric } => {
                if let Some((lo, hi)) = numeric {
                    match parse_number(value) {
                        Some(v) if (lo..=hi).contains(&v) => {
                            if def.name == "MaxRecvDataSegmentLength" {
                                p.peer_max_recv_data_segment = v as u32;
                            }
                        }
                        _ => return reject,
                    }
                }
                if matches!(def.name, "OFMarkInt" | "IFMarkInt") {
                    return Answer::Reply("Irrelevant".into());
                }
                return Answer::Silent;
            }
        };
        apply(def.name, &result, p);
        Answer::Reply(result)
    }
}

/// Records a negotiated value in the parameter set.
pub fn apply(name: &str, value: &str, p: &mut Params) {
    let num = || parse_number(value).unwrap_or(0) as u32;
    let yes = || value == "Yes";
    match name {
        "HeaderDigest" => p.header_digest = value == "CRC32C",
        "DataDigest" => p.data_digest = value == "CRC32C",
        "MaxConnections" => p.max_connections = num(),
        "InitialR2T" => p.initial_r2t = yes(),
        "ImmediateData" => p.immediate_data = yes(),
        "MaxBurstLength" => p.max_burst = num(),
        "FirstBurstLength" => p.first_burst = num(),
        "DefaultTime2Wait" => p.default_time2wait = num(),
        "DefaultTime2Retain" => p.default_time2retain = num(),
        "MaxOutstandingR2T" => p.max_outstanding_r2t = num(),
        "DataPDUInOrder" => p.data_pdu_in_order = yes(),
        "DataSequenceInOrder" => p.data_sequence_in_order = yes(),
        "ErrorRecoveryLevel" => p.error_recovery_level = num(),
        "MaxRecvDataSegmentLength" => p.peer_max_recv_data_segment = num(),
        _ => {}
    }
    if p.first_burst > p.max_burst {
        p.first_burst = p.max_burst;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(name: &str, v: &str) -> (Answer, Params) {
        let mut p = Params::default();
        let a = Preferences::default().respond(key_def(name).unwrap(), v, &mut p);
        (a, p)
    }

    #[test]
    fn numeric_min_and_max() {
        assert_eq!(
            answer("MaxBurstLength", "262144").0,
            Answer::Reply("262144".into())
        );
        assert_eq!(answer("MaxConnections", "100").0, Answer::Reply("8".into()));
        assert_eq!(answer("DefaultTime2Wait", "0").0, Answer::Reply("2".into()));
        assert_eq!(
            answer("MaxBurstLength", "100").0,
            Answer::Reply("Reject".into())
        );
        assert_eq!(
            answer("MaxBurstLength", "abc").0,
            Answer::Reply("Reject".into())
        );
    }

    #[test]
    fn booleans_and_lists() {
        assert_eq!(answer("InitialR2T", "Yes").0, Answer::Reply("Yes".into()));
        assert_eq!(answer("InitialR2T", "No").0, Answer::Reply("No".into()));
        assert_eq!(answer("ImmediateData", "No").0, Answer::Reply("No".into()));
        let (a, p) = answer("HeaderDigest", "CRC32C,None");
        assert_eq!(a, Answer::Reply("CRC32C".into()));
        assert!(p.header_digest);
        assert_eq!(
            answer("DataDigest", "MD5").0,
            Answer::Reply("Reject".into())
        );
        assert_eq!(
            answer("InitialR2T", "maybe").0,
            Answer::Reply("Reject".into())
        );
    }

    #[test]
    fn declarative_mrdsl_is_recorded() {
        let (a, p) = answer("MaxRecvDataSegmentLength", "8192");
        assert_eq!(a, Answer::Silent);
        assert_eq!(p.peer_max_recv_data_segment, 8192);
        assert_eq!(
            answer("MaxRecvDataSegmentLength", "1").0,
            Answer::Reply("Reject".into())
        );
    }
}

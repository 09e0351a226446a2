//! The agent protocol: one JSON object per line in each direction.
//!
//! The agent speaks first with a [`Hello`] (protocol number, iolab version,
//! build id). The controller then sends [`Envelope`]s, each a request with
//! an id; the agent answers every request with exactly one [`FromAgent::Reply`]
//! of the same id, and may send [`FromAgent::Event`]s of that id before it
//! (a running cell's samples). A line that is not a message of this
//! protocol is answered with [`FromAgent::Malformed`] and the agent goes on;
//! a request of another protocol number is refused by id.

use std::net::{IpAddr, SocketAddr};

use iolab_iscsi::target::{ServerConfig, SessionInfo};
use iolab_profiles::{Cell, HostFacts, SeriesPoint};
use serde::{Deserialize, Serialize};

use crate::profile::CellPlan;
use crate::tuning::TuningProfile;

/// The protocol this build speaks. Both ends must speak the same one.
pub const PROTOCOL: u32 = 1;

/// The longest line either end accepts (a run's reply carries its series).
pub const MAX_LINE: usize = 64 << 20;

/// The agent's first line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hello {
    pub protocol: u32,
    /// `iolab --version` of the agent.
    pub version: String,
    /// The agent binary's content id (length and CRC32C): two builds of one
    /// version differ here.
    pub build: String,
    pub hostname: String,
}

/// A request as the controller sends it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    pub protocol: u32,
    pub id: u64,
    pub request: Request,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// The host's facts; `peer` picks the interfaces toward it.
    Facts {
        peer: Option<IpAddr>,
    },
    /// Applies a tuning profile (MTU on `ifaces`) in the agent's network
    /// namespace, recording originals in that host's notebook first.
    Tune {
        tuning: TuningProfile,
        ifaces: Vec<String>,
    },
    /// Puts back what `Tune` changed (also what an agent killed earlier changed).
    Revert,
    /// Starts a target (replacing none: one target per agent).
    ServeTarget {
        config: ServerConfig,
    },
    /// The running target's sessions with their counters.
    TargetSessions,
    StopTarget,
    /// Runs cell `index` of `profile` (its TOML) against the target at `target`,
    /// sending `Event::Progress` while it runs.
    RunCell {
        profile: String,
        index: u32,
        plan: CellPlan,
        target: SocketAddr,
    },
    /// Stops the target, reverts tuning, and ends the agent.
    Bye,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Reply {
    Facts {
        facts: HostFacts,
    },
    Tuned {
        written: Vec<String>,
        skipped: Vec<(String, String)>,
        /// Every planned key as it reads now (`mtu:IFACE` for MTUs).
        settings: Vec<(String, String)>,
    },
    Reverted {
        restored: Vec<(String, String)>,
    },
    Serving {
        addrs: Vec<SocketAddr>,
    },
    Sessions {
        sessions: Vec<SessionInfo>,
        /// Connections that ended lately, with their final counters.
        #[serde(default)]
        ended: Vec<SessionInfo>,
    },
    Stopped,
    CellDone {
        granted: u32,
        cell: Cell,
        series: Vec<SeriesPoint>,
    },
    Bye,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Event {
    /// A cell logged in with this many connections per session.
    CellStarted { granted: u32 },
    /// A running cell's sessions, at the statistics bus's rate.
    Progress {
        elapsed_ms: u64,
        sessions: Vec<SessionInfo>,
    },
}

/// Everything the agent writes after its hello.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum FromAgent {
    Hello(Hello),
    Reply {
        id: u64,
        #[serde(flatten)]
        result: Outcome,
    },
    Event {
        id: u64,
        event: Event,
    },
    /// A line the agent could not take; `id` when it could read one.
    Malformed {
        id: Option<u64>,
        message: String,
    },
}

/// A reply's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok(Reply),
    Err(String),
}

/// What is wrong with a line.
#[derive(Debug, thiserror::Error)]
pub enum ProtoError {
    #[error("a line of more than {MAX_LINE} bytes")]
    TooLong,
    #[error("not a message of iolab's agent protocol {PROTOCOL}: {0}")]
    Json(#[from] serde_json::Error),
}

/// One message as a line (no newline).
pub fn line<T: Serialize>(msg: &T) -> String {
    serde_json::to_string(msg).unwrap_or_else(|e| {
        // Our own types always serialise; say so rather than panic.
        serde_json::json!({"malformed": {"id": null, "message": format!("cannot encode: {e}")}})
            .to_string()
    })
}

/// Parses one line of the agent's output.
pub fn parse_from_agent(line: &str) -> Result<FromAgent, ProtoError> {
    if line.len() > MAX_LINE {
        return Err(ProtoError::TooLong);
    }
    Ok(serde_json::from_str(line)?)
}

/// Parses one line the controller sent: the envelope, or the id it had.
pub fn parse_envelope(line: &str) -> Result<Envelope, (Option<u64>, String)> {
    if line.len() > MAX_LINE {
        return Err((None, ProtoError::TooLong.to_string()));
    }
    match serde_json::from_str::<Envelope>(line) {
        Ok(e) if e.protocol != PROTOCOL => Err((
            Some(e.id),
            format!(
                "the controller speaks agent protocol {}, this agent {PROTOCOL}: use the same iolab on both (iolab hosts push)",
                e.protocol
            ),
        )),
        Ok(e) => Ok(e),
        Err(err) => {
            // A request this agent does not know, from a newer controller,
            // still has a protocol number and an id worth answering by.
            let v: Option<serde_json::Value> = serde_json::from_str(line).ok();
            let id = v
                .as_ref()
                .and_then(|v| v.get("id"))
                .and_then(|i| i.as_u64());
            let protocol = v
                .as_ref()
                .and_then(|v| v.get("protocol"))
                .and_then(|p| p.as_u64());
            let message = match protocol {
                Some(p) if p != u64::from(PROTOCOL) => format!(
                    "the controller speaks agent protocol {p}, this agent {PROTOCOL}: use the same iolab on both (iolab hosts push)"
                ),
                _ => ProtoError::Json(err).to_string(),
            };
            Err((id, message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_replies_round_trip_as_single_lines() {
        let e = Envelope {
            protocol: PROTOCOL,
            id: 7,
            request: Request::Facts {
                peer: Some("10.77.0.1".parse().unwrap()),
            },
        };
        let l = line(&e);
        assert!(!l.contains('\n'));
        let back = parse_envelope(&l).unwrap();
        assert_eq!(back.id, 7);
        assert!(matches!(back.request, Request::Facts { peer: Some(_) }));
        let r = FromAgent::Reply {
            id: 7,
            result: Outcome::Ok(Reply::Serving {
                addrs: vec!["10.77.0.1:3260".parse().unwrap()],
            }),
        };
        let FromAgent::Reply { id, result } = parse_from_agent(&line(&r)).unwrap() else {
            panic!()
        };
        assert_eq!(id, 7);
        assert!(matches!(result, Outcome::Ok(Reply::Serving { addrs }) if addrs.len() == 1));
    }

    #[test]
    fn another_protocol_is_refused_by_id_naming_both() {
        let l = r#"{"protocol":2,"id":3,"request":{"op":"revert"}}"#;
        let (id, msg) = parse_envelope(l).unwrap_err();
        assert_eq!(id, Some(3));
        assert!(
            msg.contains("protocol 2") && msg.contains("agent 1"),
            "{msg}"
        );
        // Also when the request is one this agent does not know.
        let l = r#"{"protocol":9,"id":4,"request":{"op":"teleport"}}"#;
        let (id, msg) = parse_envelope(l).unwrap_err();
        assert_eq!(id, Some(4));
        assert!(msg.contains("protocol 9"), "{msg}");
    }

    #[test]
    fn garbage_is_malformed_with_the_reason() {
        let (id, msg) = parse_envelope("hello?").unwrap_err();
        assert_eq!(id, None);
        assert!(
            msg.contains("not a message of iolab's agent protocol"),
            "{msg}"
        );
        let (id, msg) =
            parse_envelope(r#"{"protocol":1,"id":5,"request":{"op":"nope"}}"#).unwrap_err();
        assert_eq!(id, Some(5));
        assert!(msg.contains("nope"), "{msg}");
        assert!(parse_from_agent("{\"reply\":").is_err());
    }
}

//! The initiator side of login: security (None, CHAP one-way and mutual) and
//! operational negotiation, over a plain socket before the full-feature phase.

use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::error::{Violation, Waiting};
use crate::inbox::Inbox;
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::{InitiatorOptions, IscsiUrl};
use crate::chap::{self, ChapAlgorithm, ChapCredentials};
use crate::error::IscsiError;
use crate::negotiation::{Answer, Params, Preferences, apply, key_def};
use crate::pdu::{LoginStatus, Pdu, ReadLimits, ReadOutcome, Stage, read_pdu};
use crate::text;
use crate::typed::{self, Typed};

/// What one connection's login established.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub params: Params,
    pub tsih: u16,
    pub exp_stat_sn: u32,
    pub exp_cmd_sn: u32,
    pub max_cmd_sn: u32,
    pub target_portal_group: Option<u16>,
}

/// Everything a login needs to know.
pub struct LoginRequest<'a> {
    pub url: &'a IscsiUrl,
    pub opts: &'a InitiatorOptions,
    pub discovery: bool,
    pub isid: u64,
    pub tsih: u16,
    pub cid: u16,
    pub cmd_sn: u32,
    /// A connection joining an existing session negotiates only connection keys.
    pub leading: bool,
}

struct Exchange<'a> {
    rd: &'a mut Inbox<OwnedReadHalf>,
    wr: &'a mut OwnedWriteHalf,
    req: &'a LoginRequest<'a>,
    itt: u32,
    exp_stat_sn: u32,
    first: bool,
}

/// A successful Login Response and its text.
struct Reply {
    head: typed::LoginResponse,
    data: Vec<u8>,
}

impl Reply {
    /// Whether the target moved the login on to `stage`.
    fn granted(&self, stage: Stage) -> bool {
        self.head.stages.transit && self.head.stages.nsg == Some(stage)
    }
}

impl Exchange<'_> {
    async fn round(
        &mut self,
        csg: Stage,
        nsg: Stage,
        transit: bool,
        pairs: &[(String, String)],
    ) -> Result<Reply, IscsiError> {
        let b = typed::LoginRequest {
            stages: typed::LoginStages {
                transit,
                continue_: false,
                csg: Some(csg),
                // NSG is reserved unless T is set: Security (0) then.
                nsg: Some(if transit { nsg } else { Stage::Security }),
            },
            version_max: 0,
            version_min: 0,
            isid: self.req.isid,
            tsih: self.req.tsih,
            itt: self.itt,
            cid: self.req.cid,
            cmd_sn: self.req.cmd_sn,
            exp_stat_sn: self.exp_stat_sn,
        }
        .encode();
        let pdu = Pdu::new(b, text::encode(pairs));
        self.wr.write_all(&pdu.encode(false, false)).await?;
        let limits = ReadLimits {
            max_data: 65536,
            header_digest: false,
            data_digest: false,
        };
        let resp = match read_pdu(self.rd, limits).await? {
            Some(ReadOutcome::Pdu(p)) => p,
            Some(ReadOutcome::DataDigestError(_)) => {
                return Err(Violation::DigestDuringLogin.into());
            }
            None => {
                return Err(Violation::ClosedDuringLogin.into());
            }
        };
        let Some(head) = typed::LoginResponse::decode(&resp.bhs) else {
            return Err(Violation::NotLoginResponse {
                opcode: resp.bhs.opcode_raw(),
            }
            .into());
        };
        if head.status != LoginStatus::SUCCESS {
            return Err(IscsiError::Login(head.status));
        }
        self.exp_stat_sn = head.sn.stat_sn.wrapping_add(1);
        self.first = false;
        Ok(Reply {
            head,
            data: resp.data,
        })
    }
}

fn pair(k: &str, v: impl ToString) -> (String, String) {
    (k.to_string(), v.to_string())
}

fn yn(b: bool) -> &'static str {
    if b { "Yes" } else { "No" }
}

/// Our operational offers.
fn offers(req: &LoginRequest<'_>) -> Vec<(String, String)> {
    let o = req.opts;
    let digest = |on: bool| if on { "CRC32C,None" } else { "None" };
    let mut v = vec![
        pair("HeaderDigest", digest(o.header_digest)),
        pair("DataDigest", digest(o.data_digest)),
        pair("MaxRecvDataSegmentLength", o.max_recv_data_segment),
    ];
    if req.discovery || !req.leading {
        return v;
    }
    v.extend([
        pair("MaxConnections", o.connections.max(1)),
        pair("InitialR2T", yn(o.initial_r2t)),
        pair("ImmediateData", yn(o.immediate_data)),
        pair("MaxBurstLength", o.max_burst),
        pair("FirstBurstLength", o.first_burst.min(o.max_burst)),
        pair("DefaultTime2Wait", 0),
        pair("DefaultTime2Retain", 0),
        pair("MaxOutstandingR2T", 1),
        pair("DataPDUInOrder", "Yes"),
        pair("DataSequenceInOrder", "Yes"),
        pair("ErrorRecoveryLevel", 0),
    ]);
    v
}

/// Runs the login on a connected socket.
pub async fn login(
    rd: &mut Inbox<OwnedReadHalf>,
    wr: &mut OwnedWriteHalf,
    req: &LoginRequest<'_>,
) -> Result<LoginOutcome, IscsiError> {
    tokio::time::timeout(req.opts.login_timeout, login_inner(rd, wr, req))
        .await
        .map_err(|_| {
            IscsiError::Timeout(Waiting::LoginTook {
                portal: req.url.portal(),
                limit: req.opts.login_timeout,
            })
        })?
}

async fn login_inner(
    rd: &mut Inbox<OwnedReadHalf>,
    wr: &mut OwnedWriteHalf,
    req: &LoginRequest<'_>,
) -> Result<LoginOutcome, IscsiError> {
    let mut x = Exchange {
        rd,
        wr,
        req,
        itt: 0x1000_0000 | req.cid as u32,
        exp_stat_sn: 0,
        first: true,
    };
    let mut declarations = vec![pair("InitiatorName", &req.opts.initiator_name)];
    if req.discovery {
        declarations.push(pair("SessionType", "Discovery"));
    } else {
        declarations.push(pair("SessionType", "Normal"));
        let t = req
            .url
            .target
            .as_deref()
            .ok_or(IscsiError::Config(crate::error::ConfigError::NoTarget))?;
        declarations.push(pair("TargetName", t));
    }
    let mut params = Params {
        max_recv_data_segment: req.opts.max_recv_data_segment,
        ..Params::default()
    };
    let mut tpgt = None;
    let mut last;

    // Security stage, when we have credentials.
    if let Some(creds) = &req.url.chap {
        let mut p = declarations.clone();
        p.push(pair("AuthMethod", "CHAP,None"));
        last = x
            .round(Stage::Security, Stage::Operational, false, &p)
            .await?;
        let keys = text::parse(&last.data)?;
        note_tpgt(&keys, &mut tpgt);
        let method = get(&keys, "AuthMethod").unwrap_or("None");
        if method == "CHAP" {
            last = x
                .round(
                    Stage::Security,
                    Stage::Operational,
                    false,
                    &[pair("CHAP_A", ChapAlgorithm::offer())],
                )
                .await?;
            let keys = text::parse(&last.data)?;
            note_tpgt(&keys, &mut tpgt);
            let id = get(&keys, "CHAP_I")
                .and_then(text::parse_number)
                .filter(|v| *v <= 255);
            let challenge = get(&keys, "CHAP_C").and_then(text::hex_decode);
            let (Some(id), Some(challenge)) = (id, challenge) else {
                return Err(Violation::NoChapChallenge.into());
            };
            // The target must pick one of those we offered.
            let Some(alg) = get(&keys, "CHAP_A").and_then(ChapAlgorithm::from_code) else {
                return Err(Violation::ChapAlgorithm {
                    offered: ChapAlgorithm::offer(),
                    chosen: get(&keys, "CHAP_A").unwrap_or("(none)").to_string(),
                }
                .into());
            };
            tracing::debug!(algorithm = alg.name(), "CHAP");
            let resp = alg.response(id as u8, creds.secret.as_bytes(), &challenge);
            let mut p = vec![
                pair("CHAP_N", &creds.user),
                pair("CHAP_R", text::hex_encode(&resp)),
            ];
            let mut ours = None;
            if let Some(m) = &req.url.mutual {
                let rnd = chap::random_bytes(1 + alg.digest_len())?;
                p.push(pair("CHAP_I", rnd[0]));
                p.push(pair("CHAP_C", text::hex_encode(&rnd[1..])));
                ours = Some((alg, rnd[0], rnd[1..].to_vec(), m.clone()));
            }
            last = x
                .round(Stage::Security, Stage::Operational, true, &p)
                .await?;
            let keys = text::parse(&last.data)?;
            note_tpgt(&keys, &mut tpgt);
            if let Some((alg, id, c, m)) = ours {
                verify_mutual(&keys, alg, id, &c, &m)?;
            }
        } else if method != "None" {
            return Err(Violation::AuthMethod(method.to_string()).into());
        } else {
            last = x
                .round(Stage::Security, Stage::Operational, true, &[])
                .await?;
        }
        declarations.clear();
        // Keep advancing until the target grants the operational stage.
        let mut tries = 0;
        while !last.granted(Stage::Operational) {
            tries += 1;
            if tries > 4 {
                return Err(Violation::StuckInSecurity.into());
            }
            last = x
                .round(Stage::Security, Stage::Operational, true, &[])
                .await?;
        }
    }

    // Operational stage.
    let mut p = declarations;
    p.extend(offers(req));
    let mut answers_for_target: Vec<(String, String)>;
    let mut rounds = 0;
    loop {
        last = x
            .round(Stage::Operational, Stage::FullFeature, true, &p)
            .await?;
        let keys = text::parse(&last.data)?;
        note_tpgt(&keys, &mut tpgt);
        answers_for_target = Vec::new();
        for (k, v) in &keys {
            if matches!(v.as_str(), "Reject" | "Irrelevant" | "NotUnderstood") {
                continue;
            }
            let offered = p.iter().any(|(ok, _)| ok == k);
            if offered || k == "MaxRecvDataSegmentLength" {
                apply(k, v, &mut params);
            } else if let Some(def) = key_def(k) {
                // A key the target offers: answer it by its rule.
                let prefs = Preferences {
                    max_connections: req.opts.connections.max(1),
                    initial_r2t: req.opts.initial_r2t,
                    immediate_data: req.opts.immediate_data,
                    max_recv_data_segment: req.opts.max_recv_data_segment,
                    max_burst: req.opts.max_burst,
                    first_burst: req.opts.first_burst,
                    ..Preferences::default()
                };
                if let Answer::Reply(r) = prefs.respond(def, v, &mut params) {
                    answers_for_target.push((k.clone(), r));
                }
            }
        }
        if last.granted(Stage::FullFeature) && answers_for_target.is_empty() {
            break;
        }
        rounds += 1;
        if rounds > 4 {
            return Err(Violation::NegotiationLoop.into());
        }
        p = answers_for_target;
    }
    params.max_recv_data_segment = req.opts.max_recv_data_segment;
    Ok(LoginOutcome {
        params,
        tsih: last.head.tsih,
        exp_stat_sn: x.exp_stat_sn,
        exp_cmd_sn: last.head.sn.exp_cmd_sn,
        max_cmd_sn: last.head.sn.max_cmd_sn,
        target_portal_group: tpgt,
    })
}

fn get<'a>(keys: &'a [(String, String)], k: &str) -> Option<&'a str> {
    keys.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str())
}

fn note_tpgt(keys: &[(String, String)], tpgt: &mut Option<u16>) {
    if let Some(v) = get(keys, "TargetPortalGroupTag").and_then(text::parse_number) {
        *tpgt = Some(v as u16);
    }
}

fn verify_mutual(
    keys: &[(String, String)],
    alg: ChapAlgorithm,
    id: u8,
    challenge: &[u8],
    m: &ChapCredentials,
) -> Result<(), IscsiError> {
    let n = get(keys, "CHAP_N");
    let r = get(keys, "CHAP_R").and_then(text::hex_decode);
    let expected = alg.response(id, m.secret.as_bytes(), challenge);
    if n != Some(m.user.as_str()) || !r.is_some_and(|r| chap::responses_match(&r, &expected)) {
        return Err(Violation::MutualChap.into());
    }
    Ok(())
}

/// Connects with a timeout.
pub async fn connect(url: &IscsiUrl, timeout: Duration) -> Result<TcpStream, IscsiError> {
    let addr = url.portal();
    let s = tokio::time::timeout(timeout, TcpStream::connect(&addr))
        .await
        .map_err(|_| IscsiError::Timeout(Waiting::Connecting(addr.to_string())))?
        .map_err(|cause| IscsiError::Connect {
            addr: addr.to_string(),
            cause,
        })?;
    s.set_nodelay(true)?;
    Ok(s)
}

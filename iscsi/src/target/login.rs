//! The target side of the login phase (RFC 7143 6.3, 12): stages, security
//! (None / CHAP one-way and mutual) and operational negotiation.

use std::collections::HashSet;
use std::sync::Arc;

use crate::chap::{self, ChapCredentials};
use crate::negotiation::{Answer, Params, Scope, key_def};
use crate::pdu::{Bhs, LoginStatus, Pdu, Stage};
use crate::text;
use crate::typed::{self, Sn, Typed};

use super::{Registry, TargetNode};

/// Discovery or normal session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionType {
    Discovery,
    Normal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Auth {
    /// Not started.
    Start,
    /// AuthMethod=None agreed, or nothing required.
    Done,
    /// CHAP chosen; waiting for CHAP_A.
    ChapWaitAlgorithm,
    /// Challenge sent; waiting for CHAP_N/CHAP_R.
    ChapWaitResponse {
        alg: chap::ChapAlgorithm,
        id: u8,
        challenge: Vec<u8>,
    },
}

/// What the login produced once the initiator reaches full-feature phase.
#[derive(Debug, Clone)]
pub struct LoginResult {
    pub session_type: SessionType,
    pub initiator_name: String,
    pub initiator_alias: Option<String>,
    pub isid: u64,
    pub tsih: u16,
    pub cid: u16,
    pub target: Option<Arc<TargetNode>>,
    pub params: Params,
    /// The CmdSN the initiator starts with (from its first Login Request).
    pub cmd_sn: u32,
    pub exp_stat_sn: u32,
}

/// A Login Response and its text.
#[derive(Debug)]
pub struct Reply {
    pub head: typed::LoginResponse,
    pub data: Vec<u8>,
}

impl Reply {
    pub fn pdu(self) -> Pdu {
        Pdu::new(self.head.encode(), self.data)
    }

    /// The same response failed with `status`: no transit, no text.
    pub fn failed(mut self, status: LoginStatus) -> Reply {
        self.head.stages.transit = false;
        self.head.stages.nsg = Some(Stage::Security);
        self.head.status = status;
        self.data.clear();
        self
    }
}

/// One step of the state machine.
#[derive(Debug)]
pub enum Step {
    /// Send this response and read the next request.
    Continue(Reply),
    /// Send this response, then close the connection.
    Fail(Reply, LoginStatus),
    /// Send this response after binding the connection to a session (the
    /// caller sets its TSIH and window, or fails it).
    Complete(Reply, Box<LoginResult>),
}

/// What a response echoes of its request: the stage, ISID and ITT.
struct Echo {
    csg: Stage,
    isid: u64,
    itt: u32,
}

impl Echo {
    fn of(r: &typed::LoginRequest) -> Echo {
        Echo {
            csg: r.stages.csg.unwrap_or(Stage::Security),
            isid: r.isid,
            itt: r.itt,
        }
    }

    /// Of a header that may not be a Login Request at all.
    fn raw(b: &Bhs) -> Echo {
        match typed::LoginRequest::decode(b) {
            Some(r) => Echo::of(&r),
            None => Echo {
                csg: Stage::Security,
                isid: b.isid(),
                itt: b.itt(),
            },
        }
    }
}

/// The login state of one connection.
pub struct TargetLogin {
    registry: Arc<Registry>,
    stage: Stage,
    first: bool,
    auth: Auth,
    session_type: SessionType,
    initiator_name: Option<String>,
    initiator_alias: Option<String>,
    target: Option<Arc<TargetNode>>,
    params: Params,
    seen: HashSet<String>,
    declared: Vec<(String, String)>,
    partial: Vec<u8>,
    isid: u64,
    tsih: u16,
    cid: u16,
    cmd_sn: u32,
    exp_stat_sn: u32,
    pub stat_sn: u32,
    sent_tpgt: bool,
    sent_mrdsl: bool,
}

fn mismatch(msg: &str) -> LoginStatus {
    tracing::debug!("login: {msg}");
    LoginStatus::INITIATOR_ERROR
}

impl TargetLogin {
    pub fn new(registry: Arc<Registry>, initial_stat_sn: u32) -> Self {
        TargetLogin {
            registry,
            stage: Stage::Security,
            first: true,
            auth: Auth::Start,
            session_type: SessionType::Normal,
            initiator_name: None,
            initiator_alias: None,
            target: None,
            params: Params::default(),
            seen: HashSet::new(),
            declared: Vec::new(),
            partial: Vec::new(),
            isid: 0,
            tsih: 0,
            cid: 0,
            cmd_sn: 0,
            exp_stat_sn: 0,
            stat_sn: initial_stat_sn,
            sent_tpgt: false,
            sent_mrdsl: false,
        }
    }

    fn response(
        &mut self,
        req: &Echo,
        transit: bool,
        nsg: Stage,
        data: Vec<u8>,
        status: LoginStatus,
    ) -> Reply {
        let depth = self
            .target
            .as_ref()
            .map(|t| t.cfg().queue_depth)
            .unwrap_or(super::discovery::DISCOVERY_DEPTH);
        let window = self
            .registry
            .window_for_login(self.tsih, self.cmd_sn, depth);
        // A failed login names no next stage and does not transit.
        let transit = transit && status == LoginStatus::SUCCESS;
        let head = typed::LoginResponse {
            stages: typed::LoginStages {
                transit,
                continue_: false,
                csg: Some(req.csg),
                nsg: Some(if transit { nsg } else { Stage::Security }),
            },
            version_max: 0,
            version_active: 0,
            isid: req.isid,
            tsih: self.tsih,
            itt: req.itt,
            sn: Sn::take(&mut self.stat_sn, true, window),
            status,
        };
        Reply { head, data }
    }

    /// A Login Response refusing `req` with `status`, for a request the
    /// connection could not even read whole (its data segment too long).
    pub fn refuse(&mut self, req: &Bhs, status: LoginStatus) -> Reply {
        self.response(&Echo::raw(req), false, Stage::Security, Vec::new(), status)
    }

    fn fail(&mut self, req: &Echo, status: LoginStatus) -> Step {
        let p = self.response(req, false, Stage::Security, Vec::new(), status);
        Step::Fail(p, status)
    }

    /// Handles one Login Request.
    pub fn step(&mut self, req: &Pdu) -> Step {
        let Some(r) = typed::LoginRequest::decode(&req.bhs) else {
            return self.fail(&Echo::raw(&req.bhs), LoginStatus::INVALID_DURING_LOGIN);
        };
        let b = &Echo::of(&r);
        let (transit, cont, nsg) = (r.stages.transit, r.stages.continue_, r.stages.nsg);
        let Some(csg) = r.stages.csg else {
            return self.fail(b, mismatch("bad CSG"));
        };
        if transit && cont {
            return self.fail(b, mismatch("T and C both set"));
        }
        if self.first {
            if r.version_min > 0 || r.version_max < r.version_min {
                return self.fail(b, LoginStatus::UNSUPPORTED_VERSION);
            }
            self.isid = r.isid;
            self.tsih = r.tsih;
            self.cid = r.cid;
            // A TSIH names an existing session to join (RFC 7143 6.3.1): one
            // we do not have is refused at once, whatever the session type.
            if self.tsih != 0 && !self.registry.has_session(self.tsih, self.isid) {
                return self.fail(b, LoginStatus::SESSION_DOES_NOT_EXIST);
            }
            self.cmd_sn = r.cmd_sn;
            self.exp_stat_sn = r.exp_stat_sn;
        } else if r.isid != self.isid || r.tsih != self.tsih {
            return self.fail(b, mismatch("ISID or TSIH changed during login"));
        }
        if csg == Stage::FullFeature || csg < self.stage && !self.first {
            return self.fail(b, mismatch("invalid CSG"));
        }
        if csg == Stage::Operational
            && self.stage == Stage::Security
            && !self.first
            && !matches!(self.auth, Auth::Done)
        {
            return self.fail(b, LoginStatus::AUTH_FAILURE);
        }
        self.partial.extend_from_slice(&req.data);
        if self.partial.len() > 64 * 1024 {
            return self.fail(b, mismatch("login text too long"));
        }
        if cont {
            // Text continues in the next PDU: acknowledge with an empty response.
            return Step::Continue(self.response(b, false, csg, Vec::new(), LoginStatus::SUCCESS));
        }
        let data = std::mem::take(&mut self.partial);
        let pairs = match text::parse(&data) {
            Ok(p) => p,
            Err(_) => return self.fail(b, mismatch("unparsable login text")),
        };
        let mut reply: Vec<(String, String)> = Vec::new();
        if self.first
            && let Err(s) = self.first_pdu(&pairs)
        {
            return self.fail(b, s);
        }
        self.first = false;
        self.stage = csg;

        let mut auth_pairs = Vec::new();
        for (key, value) in &pairs {
            match key.as_str() {
                "InitiatorName" | "SessionType" | "TargetName" => {
                    // Some initiators (libiscsi) repeat their declarations on later
                    // login PDUs: the same value is harmless, a different one is not.
                    let first = self
                        .declared
                        .iter()
                        .find(|(k, _)| k == key)
                        .map(|(_, v)| v.clone());
                    match first {
                        None => self.declared.push((key.clone(), value.clone())),
                        Some(v) if &v == value => {}
                        Some(_) => {
                            return self.fail(b, mismatch("declaration changed during login"));
                        }
                    }
                }
                "InitiatorAlias" => self.initiator_alias = Some(value.clone()),
                "AuthMethod" | "CHAP_A" | "CHAP_N" | "CHAP_R" | "CHAP_I" | "CHAP_C" => {
                    if csg != Stage::Security {
                        return self.fail(b, mismatch("security key outside the security stage"));
                    }
                    auth_pairs.push((key.clone(), value.clone()));
                }
                _ => {
                    let Some(def) = key_def(key) else {
                        reply.push((key.clone(), "NotUnderstood".into()));
                        continue;
                    };
                    if !self.seen.insert(key.clone()) {
                        return self.fail(b, mismatch("key negotiated twice"));
                    }
                    let irrelevant = (self.session_type == SessionType::Discovery
                        && def.normal_only)
                        || (self.tsih != 0 && def.scope == Scope::LeadingOnly);
                    if irrelevant {
                        reply.push((key.clone(), "Irrelevant".into()));
                        continue;
                    }
                    let prefs = self
                        .target
                        .as_ref()
                        .map(|t| t.cfg().negotiation.clone())
                        .unwrap_or_default();
                    match prefs.respond(def, value, &mut self.params) {
                        Answer::Reply(v) => reply.push((key.clone(), v)),
                        Answer::Silent => {}
                    }
                }
            }
        }

        // FirstBurstLength may not exceed MaxBurstLength (RFC 7143 13.14):
        // answer what the session will hold to, not the larger offer.
        for (k, v) in reply.iter_mut() {
            if k == "FirstBurstLength"
                && v.parse::<u32>()
                    .is_ok_and(|fb| fb > self.params.first_burst)
            {
                *v = self.params.first_burst.to_string();
            }
        }

        if csg == Stage::Security {
            match self.security(&auth_pairs, &mut reply) {
                Ok(()) => {}
                Err(s) => return self.fail(b, s),
            }
        } else if self.auth != Auth::Done {
            // Skipping security is only allowed when nothing requires it.
            if self.chap_required().is_some() {
                return self.fail(b, LoginStatus::AUTH_FAILURE);
            }
            self.auth = Auth::Done;
        }

        // Declarations the target always makes.
        if !self.sent_tpgt
            && self.session_type == SessionType::Normal
            && let Some(t) = &self.target
        {
            reply.push(("TargetPortalGroupTag".into(), t.cfg().tpgt.to_string()));
            self.sent_tpgt = true;
        }
        if csg == Stage::Operational && !self.sent_mrdsl {
            let ours = self
                .target
                .as_ref()
                .map(|t| t.cfg().negotiation.max_recv_data_segment)
                .unwrap_or(8192);
            self.params.max_recv_data_segment = ours;
            reply.push(("MaxRecvDataSegmentLength".into(), ours.to_string()));
            self.sent_mrdsl = true;
        }

        let mut grant = false;
        let mut next = csg;
        if transit {
            let Some(nsg) = nsg else {
                return self.fail(b, mismatch("bad NSG"));
            };
            if nsg <= csg {
                return self.fail(b, mismatch("NSG not after CSG"));
            }
            let ready = csg != Stage::Security || self.auth == Auth::Done;
            if ready {
                grant = true;
                next = nsg;
            }
        }
        let body = text::encode(&reply);
        if grant && next == Stage::FullFeature {
            if !self.sent_mrdsl {
                // Jumping straight from security to full feature: declare ours anyway.
                self.params.max_recv_data_segment = 8192;
            }
            let result = LoginResult {
                session_type: self.session_type,
                initiator_name: self.initiator_name.clone().unwrap_or_default(),
                initiator_alias: self.initiator_alias.clone(),
                isid: self.isid,
                tsih: self.tsih,
                cid: self.cid,
                target: self.target.clone(),
                params: self.params.clone(),
                cmd_sn: self.cmd_sn,
                exp_stat_sn: self.exp_stat_sn,
            };
            let pdu = self.response(b, true, Stage::FullFeature, body, LoginStatus::SUCCESS);
            return Step::Complete(pdu, Box::new(result));
        }
        Step::Continue(self.response(b, grant, next, body, LoginStatus::SUCCESS))
    }

    fn first_pdu(&mut self, pairs: &[(String, String)]) -> Result<(), LoginStatus> {
        let get = |k: &str| pairs.iter().find(|(x, _)| x == k).map(|(_, v)| v.clone());
        let name = get("InitiatorName").ok_or(LoginStatus::MISSING_PARAMETER)?;
        if name.is_empty() {
            return Err(LoginStatus::MISSING_PARAMETER);
        }
        self.initiator_name = Some(name.clone());
        self.session_type = match get("SessionType").as_deref() {
            None | Some("Normal") => SessionType::Normal,
            Some("Discovery") => SessionType::Discovery,
            Some(_) => return Err(LoginStatus::SESSION_TYPE_NOT_SUPPORTED),
        };
        if self.session_type == SessionType::Normal {
            let tn = get("TargetName").ok_or(LoginStatus::MISSING_PARAMETER)?;
            let t = self
                .registry
                .find_target(&tn)
                .ok_or(LoginStatus::NOT_FOUND)?;
            if !t.allows(&name) {
                return Err(LoginStatus::AUTHORIZATION_FAILURE);
            }
            self.target = Some(t);
        }
        Ok(())
    }

    /// The credentials this initiator must prove, if any (and the mutual ones).
    fn chap_required(&self) -> Option<(ChapCredentials, Option<ChapCredentials>)> {
        let name = self.initiator_name.as_deref().unwrap_or("");
        match &self.target {
            Some(t) => t.chap_for(name),
            None => self.registry.discovery_chap(name),
        }
    }

    fn security(
        &mut self,
        pairs: &[(String, String)],
        reply: &mut Vec<(String, String)>,
    ) -> Result<(), LoginStatus> {
        let get = |k: &str| pairs.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str());
        let required = self.chap_required();
        if let Some(methods) = get("AuthMethod") {
            if self.auth != Auth::Start {
                return Err(mismatch("AuthMethod repeated"));
            }
            // List rule: the first method of the initiator's that we support.
            // A normal session with credentials supports only CHAP, one without
            // only None; discovery always allows None, and CHAP when credentials exist.
            let discovery = self.session_type == SessionType::Discovery;
            let chap_ok = required.is_some();
            let none_ok = required.is_none() || discovery;
            let chosen = methods
                .split(',')
                .find(|m| (*m == "CHAP" && chap_ok) || (*m == "None" && none_ok));
            match chosen {
                Some("CHAP") => {
                    reply.push(("AuthMethod".into(), "CHAP".into()));
                    self.auth = Auth::ChapWaitAlgorithm;
                }
                Some(_) => {
                    reply.push(("AuthMethod".into(), "None".into()));
                    self.auth = Auth::Done;
                }
                None => return Err(LoginStatus::AUTH_FAILURE),
            }
            return Ok(());
        }
        match self.auth.clone() {
            Auth::Start => {
                // No AuthMethod offered: allowed only when nothing is required.
                if required.is_some() {
                    return Err(LoginStatus::AUTH_FAILURE);
                }
                self.auth = Auth::Done;
            }
            Auth::Done => {}
            Auth::ChapWaitAlgorithm => {
                let Some(algs) = get("CHAP_A") else {
                    return Err(LoginStatus::AUTH_FAILURE);
                };
                let Some(alg) = chap::ChapAlgorithm::choose(algs) else {
                    reply.push(("CHAP_A".into(), "Reject".into()));
                    return Err(LoginStatus::AUTH_FAILURE);
                };
                let Ok(rnd) = chap::random_bytes(1 + alg.digest_len()) else {
                    tracing::error!("no random bytes for a CHAP challenge: login refused");
                    return Err(LoginStatus::TARGET_ERROR);
                };
                let id = rnd[0];
                let challenge = rnd[1..].to_vec();
                tracing::debug!(algorithm = alg.name(), "CHAP");
                reply.push(("CHAP_A".into(), alg.code()));
                reply.push(("CHAP_I".into(), id.to_string()));
                reply.push(("CHAP_C".into(), text::hex_encode(&challenge)));
                self.auth = Auth::ChapWaitResponse { alg, id, challenge };
            }
            Auth::ChapWaitResponse { alg, id, challenge } => {
                let Some((creds, mutual)) = required else {
                    return Err(LoginStatus::AUTH_FAILURE);
                };
                let (Some(n), Some(r)) = (get("CHAP_N"), get("CHAP_R")) else {
                    return Err(LoginStatus::AUTH_FAILURE);
                };
                let r = text::hex_decode(r).ok_or(LoginStatus::AUTH_FAILURE)?;
                let expected = alg.response(id, creds.secret.as_bytes(), &challenge);
                if n != creds.user || !chap::responses_match(&r, &expected) {
                    return Err(LoginStatus::AUTH_FAILURE);
                }
                match (get("CHAP_I"), get("CHAP_C")) {
                    (Some(i), Some(c)) => {
                        let Some(m) = mutual else {
                            return Err(LoginStatus::AUTH_FAILURE);
                        };
                        let i = text::parse_number(i)
                            .filter(|v| *v <= 255)
                            .ok_or(LoginStatus::AUTH_FAILURE)?;
                        let c = text::hex_decode(c).ok_or(LoginStatus::AUTH_FAILURE)?;
                        if c == challenge {
                            // A reflected challenge: refuse (RFC 7143 12.1.3).
                            return Err(LoginStatus::AUTH_FAILURE);
                        }
                        let resp = alg.response(i as u8, m.secret.as_bytes(), &c);
                        reply.push(("CHAP_N".into(), m.user.clone()));
                        reply.push(("CHAP_R".into(), text::hex_encode(&resp)));
                    }
                    (None, None) => {}
                    _ => return Err(LoginStatus::AUTH_FAILURE),
                }
                self.auth = Auth::Done;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chap::ChapAlgorithm;
    use crate::target::ServerConfig;

    const SECRET: &str = "secret-of-twelve";

    fn registry(chap: bool) -> Arc<Registry> {
        let mut cfg = ServerConfig::default_lab("127.0.0.1:0".parse().unwrap(), 1 << 20);
        if chap {
            cfg.targets[0].chap = Some(ChapCredentials {
                user: "alice".into(),
                secret: SECRET.into(),
            });
        }
        Arc::new(Registry::new(&cfg).unwrap())
    }

    fn req(csg: Stage, nsg: Stage, transit: bool, keys: &[(&str, &str)]) -> Pdu {
        let b = typed::LoginRequest {
            stages: typed::LoginStages {
                transit,
                continue_: false,
                csg: Some(csg),
                nsg: Some(nsg),
            },
            version_max: 0,
            version_min: 0,
            isid: 0x4000_0000_0001,
            tsih: 0,
            itt: 1,
            cid: 0,
            cmd_sn: 0,
            exp_stat_sn: 0,
        }
        .encode();
        let pairs: Vec<(String, String)> = keys
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Pdu::new(b, text::encode(&pairs))
    }

    fn answer(step: &Step) -> (Vec<(String, String)>, LoginStatus) {
        let (p, status) = match step {
            Step::Continue(p) => (p, LoginStatus::SUCCESS),
            Step::Fail(p, s) => (p, *s),
            Step::Complete(p, _) => (p, LoginStatus::SUCCESS),
        };
        (text::parse(&p.data).unwrap(), status)
    }

    fn get<'a>(keys: &'a [(String, String)], k: &str) -> Option<&'a str> {
        keys.iter().find(|(x, _)| x == k).map(|(_, v)| v.as_str())
    }

    /// Security stage up to the challenge, offering `algorithms`.
    fn challenge(l: &mut TargetLogin, algorithms: &str) -> (Vec<(String, String)>, LoginStatus) {
        let s = l.step(&req(
            Stage::Security,
            Stage::Operational,
            false,
            &[
                ("InitiatorName", "iqn.2026-11.io.iolab:unit"),
                ("TargetName", crate::target::config::DEFAULT_IQN),
                ("SessionType", "Normal"),
                ("AuthMethod", "CHAP,None"),
            ],
        ));
        let (k, st) = answer(&s);
        assert_eq!(st, LoginStatus::SUCCESS);
        assert_eq!(get(&k, "AuthMethod"), Some("CHAP"));
        let s = l.step(&req(
            Stage::Security,
            Stage::Operational,
            false,
            &[("CHAP_A", algorithms)],
        ));
        answer(&s)
    }

    #[test]
    fn chap_uses_the_first_offered_algorithm_we_know_with_a_challenge_of_its_size() {
        for (offer, want) in [
            ("8,7,6,5", ChapAlgorithm::Sha3_256),
            ("99,7,5", ChapAlgorithm::Sha256),
            ("6,5", ChapAlgorithm::Sha1),
            ("5", ChapAlgorithm::Md5),
        ] {
            let mut l = TargetLogin::new(registry(true), 1000);
            let (k, st) = challenge(&mut l, offer);
            assert_eq!(st, LoginStatus::SUCCESS, "{offer}");
            assert_eq!(get(&k, "CHAP_A"), Some(want.code().as_str()), "{offer}");
            let c = text::hex_decode(get(&k, "CHAP_C").unwrap()).unwrap();
            assert_eq!(c.len(), want.digest_len(), "{offer}: challenge length");
            let id: u8 = get(&k, "CHAP_I").unwrap().parse().unwrap();
            let resp = text::hex_encode(&want.response(id, SECRET.as_bytes(), &c));
            let s = l.step(&req(
                Stage::Security,
                Stage::Operational,
                true,
                &[("CHAP_N", "alice"), ("CHAP_R", &resp)],
            ));
            let (_, st) = answer(&s);
            assert_eq!(st, LoginStatus::SUCCESS, "{offer}: a right response");
            assert!(
                matches!(s, Step::Continue(ref p) if p.head.stages.transit),
                "{offer}: transit"
            );
        }
    }

    #[test]
    fn chap_refuses_a_wrong_response_a_response_of_another_digest_and_unknown_algorithms() {
        let mut l = TargetLogin::new(registry(true), 1000);
        let (k, _) = challenge(&mut l, "7");
        let c = text::hex_decode(get(&k, "CHAP_C").unwrap()).unwrap();
        let id: u8 = get(&k, "CHAP_I").unwrap().parse().unwrap();
        // The MD5 response to a SHA-256 challenge is not accepted.
        let md5 = text::hex_encode(&ChapAlgorithm::Md5.response(id, SECRET.as_bytes(), &c));
        let s = l.step(&req(
            Stage::Security,
            Stage::Operational,
            true,
            &[("CHAP_N", "alice"), ("CHAP_R", &md5)],
        ));
        assert_eq!(answer(&s).1, LoginStatus::AUTH_FAILURE);

        let mut l = TargetLogin::new(registry(true), 1000);
        let (_, st) = challenge(&mut l, "1,2,3");
        assert_eq!(st, LoginStatus::AUTH_FAILURE, "no algorithm in common");
    }

    /// Fuzz finding: a CHAP_R with a multi-byte character after "0x" made
    /// the hex decoder slice inside the character and panic the connection.
    #[test]
    fn a_chap_response_that_is_not_hex_fails_the_login_without_a_panic() {
        for bad in ["0x€1", "0xa€", "0x19it6T", "0x"] {
            let mut l = TargetLogin::new(registry(true), 1000);
            let (_, st) = challenge(&mut l, "5");
            assert_eq!(st, LoginStatus::SUCCESS);
            let s = l.step(&req(
                Stage::Security,
                Stage::Operational,
                true,
                &[("CHAP_N", "alice"), ("CHAP_R", bad)],
            ));
            assert_eq!(answer(&s).1, LoginStatus::AUTH_FAILURE, "{bad}");
        }
    }
}

//! The Sessions screen: the embedded initiator's own sessions to any
//! target, as `iscsiadm -m discovery` / `-m node --login` would make them:
//! discovery settings (portal, initiator name, CHAP, connections, digests),
//! the targets a portal offers (SendTargets), and the sessions logged in
//! with what each negotiated. Pure state and keys; the event loop does the
//! network work and reports back.

use crossterm::event::KeyCode;
use iolab_iscsi::chap::ChapCredentials;
use iolab_iscsi::initiator::{DiscoveredTarget, InitiatorOptions, IscsiUrl, SessionFacts};

use super::editor::{Field, Form, FormKind};
use super::state::Action;

/// One logged-in session as the screen shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionRow {
    /// `iscsi://host:port/iqn/lun` of the LUN it logged in to (no secrets).
    pub url: String,
    pub target: String,
    /// LUNs the target reports to it.
    pub luns: Vec<u64>,
    /// The login LUN's size: (blocks, block size), when it has one.
    pub capacity: Option<(u64, u32)>,
    pub facts: SessionFacts,
    /// The initiator name it logged in as.
    pub initiator: String,
}

impl SessionRow {
    /// A URL of each LUN it reports (no secrets).
    pub fn lun_urls(&self) -> Vec<String> {
        let Ok(u) = IscsiUrl::parse(&self.url, false) else {
            return Vec::new();
        };
        self.luns
            .iter()
            .map(|l| {
                IscsiUrl {
                    lun: *l,
                    ..u.clone()
                }
                .to_string()
            })
            .collect()
    }
}

/// Which list the arrow keys move in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pane {
    #[default]
    Targets,
    Sessions,
}

/// The Sessions screen.
#[derive(Debug, Clone)]
pub struct SessionsView {
    /// Discovery and login settings.
    pub settings: Form,
    /// The settings have the keys (e edits, Enter or Esc gives them back).
    pub editing: bool,
    pub discovered: Vec<DiscoveredTarget>,
    pub sessions: Vec<SessionRow>,
    pub pane: Pane,
    pub target_cursor: usize,
    pub session_cursor: usize,
    /// What the screen waits for ("discovering 127.0.0.1:3260...").
    pub busy: Option<String>,
    pub error: Option<String>,
}

const DIGESTS: &[&str] = &["None", "CRC32C"];

impl Default for SessionsView {
    fn default() -> Self {
        SessionsView::new("127.0.0.1:3260")
    }
}

impl SessionsView {
    pub fn new(portal: &str) -> SessionsView {
        let choice = |label, choices, value: &str| Field {
            label,
            value: value.into(),
            choices,
            hint: "Left/Right or Space to choose",
            options: Vec::new(),
        };
        let text = |label, value: &str, hint| Field {
            label,
            value: value.into(),
            choices: &[],
            hint,
            options: Vec::new(),
        };
        SessionsView {
            settings: Form {
                kind: FormKind::Workload,
                fields: vec![
                    text(
                        "portal",
                        portal,
                        "HOST:PORT of the portal to discover ([v6]:PORT)",
                    ),
                    text(
                        "initiator",
                        iolab_iscsi::initiator::DEFAULT_INITIATOR,
                        "the initiator name to log in as",
                    ),
                    text("CHAP", "", "USER:SECRET, when the target asks for CHAP"),
                    text("mutual CHAP", "", "USER:SECRET the target must answer with"),
                    text(
                        "connections",
                        "1",
                        "per session (MC/S), 1-8: as many as the target grants",
                    ),
                    choice("header digest", DIGESTS, "None"),
                    choice("data digest", DIGESTS, "None"),
                ],
                focus: 0,
                error: None,
            },
            editing: false,
            discovered: Vec::new(),
            sessions: Vec::new(),
            pane: Pane::Targets,
            target_cursor: 0,
            session_cursor: 0,
            busy: None,
            error: None,
        }
    }

    fn value(&self, label: &str) -> &str {
        self.settings
            .fields
            .iter()
            .find(|f| f.label == label)
            .map(|f| f.value.trim())
            .unwrap_or("")
    }

    fn chap(&self, label: &str) -> Result<Option<ChapCredentials>, String> {
        match self.value(label) {
            "" => Ok(None),
            v => ChapCredentials::parse(v)
                .map(Some)
                .ok_or_else(|| format!("{label}: '{v}' is not USER:SECRET")),
        }
    }

    /// The initiator's options as the settings say.
    pub fn options(&self) -> Result<InitiatorOptions, String> {
        let connections: u32 = self
            .value("connections")
            .parse()
            .ok()
            .filter(|c| (1..=8).contains(c))
            .ok_or("connections: 1-8")?;
        let name = self.value("initiator");
        if !iolab_iscsi::target::config::valid_iscsi_name(name) {
            return Err(format!("initiator: '{name}' is not an iSCSI name"));
        }
        Ok(InitiatorOptions {
            initiator_name: name.into(),
            connections,
            header_digest: self.value("header digest") == "CRC32C",
            data_digest: self.value("data digest") == "CRC32C",
            ..InitiatorOptions::default()
        })
    }

    /// The portal URL to discover, with the settings' CHAP.
    pub fn portal_url(&self) -> Result<IscsiUrl, String> {
        let mut u = IscsiUrl::parse(&format!("iscsi://{}", self.value("portal")), true)
            .map_err(|e| format!("portal: {e}"))?;
        u.chap = self.chap("CHAP")?;
        u.mutual = self.chap("mutual CHAP")?;
        Ok(u)
    }

    /// The URL to log in to a discovered target: its first address (or the
    /// portal), LUN 0 (which answers REPORT LUNS on every target), CHAP.
    pub fn login_url(&self, t: &DiscoveredTarget) -> Result<IscsiUrl, String> {
        let mut u = self.portal_url()?;
        if let Some(addr) = t.addresses.first() {
            let hp = addr.split(',').next().unwrap_or(addr);
            if let Ok(a) = IscsiUrl::parse(&format!("iscsi://{hp}"), true) {
                (u.host, u.port) = (a.host, a.port);
            }
        }
        u.target = Some(t.name.clone());
        u.lun = 0;
        Ok(u)
    }

    /// The credentials to log in to `url` with, when a logged-in session
    /// reached the same target (the Run form's LUNs of these sessions).
    pub fn credentials_for(
        &self,
        url: &str,
    ) -> Option<(Option<ChapCredentials>, Option<ChapCredentials>, String)> {
        let u = IscsiUrl::parse(url, false).ok()?;
        let s = self.sessions.iter().find(|s| {
            IscsiUrl::parse(&s.url, false)
                .is_ok_and(|v| v.host == u.host && v.port == u.port && v.target == u.target)
        })?;
        Some((
            self.chap("CHAP").ok()?,
            self.chap("mutual CHAP").ok()?,
            s.initiator.clone(),
        ))
    }

    /// Every LUN URL of the logged-in sessions.
    pub fn lun_urls(&self) -> Vec<String> {
        self.sessions
            .iter()
            .flat_map(SessionRow::lun_urls)
            .collect()
    }

    /// Whether the screen takes this key (its settings form, or its own keys).
    pub fn wants(&self, code: KeyCode) -> bool {
        self.editing
            || matches!(
                code,
                KeyCode::Char('e' | 'd' | 'l' | 'o' | 'j' | 'k')
                    | KeyCode::Up
                    | KeyCode::Down
                    | KeyCode::Left
                    | KeyCode::Right
            )
    }

    pub fn on_key(&mut self, code: KeyCode) -> Action {
        if self.editing {
            if self.settings.on_key(code).is_some() {
                self.editing = false;
                self.settings.error = self.options().and(self.portal_url()).err();
            }
            return Action::None;
        }
        let busy = self.busy.is_some();
        match code {
            KeyCode::Char('e') => {
                self.editing = true;
                self.settings.focus = 0;
            }
            KeyCode::Char('d') if !busy => return Action::Discover,
            KeyCode::Char('l') if !busy && self.target_cursor < self.discovered.len() => {
                return Action::Login(self.target_cursor);
            }
            KeyCode::Char('o') if !busy && self.session_cursor < self.sessions.len() => {
                return Action::Logout(self.session_cursor);
            }
            KeyCode::Left | KeyCode::Right => {
                self.pane = match self.pane {
                    Pane::Targets => Pane::Sessions,
                    Pane::Sessions => Pane::Targets,
                }
            }
            KeyCode::Down | KeyCode::Char('j') => match self.pane {
                Pane::Targets if self.target_cursor + 1 < self.discovered.len() => {
                    self.target_cursor += 1
                }
                Pane::Sessions if self.session_cursor + 1 < self.sessions.len() => {
                    self.session_cursor += 1
                }
                _ => {}
            },
            KeyCode::Up | KeyCode::Char('k') => match self.pane {
                Pane::Targets => self.target_cursor = self.target_cursor.saturating_sub(1),
                Pane::Sessions => self.session_cursor = self.session_cursor.saturating_sub(1),
            },
            _ => {}
        }
        Action::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_make_options_and_urls_or_say_why_not() {
        let mut v = SessionsView::new("127.0.0.1:3260");
        let o = v.options().unwrap();
        assert_eq!((o.connections, o.header_digest), (1, false));
        v.settings.fields[2].value = "alice:secret12345".into();
        v.settings.fields[4].value = "2".into();
        v.settings.fields[5].value = "CRC32C".into();
        let o = v.options().unwrap();
        assert_eq!(
            (o.connections, o.header_digest, o.data_digest),
            (2, true, false)
        );
        let t = DiscoveredTarget {
            name: "iqn.2026-12.org.example:t".into(),
            addresses: vec!["127.0.0.2:3261,1".into()],
        };
        let u = v.login_url(&t).unwrap();
        assert_eq!((u.host.as_str(), u.port, u.lun), ("127.0.0.2", 3261, 0));
        assert_eq!(u.chap.unwrap().user, "alice");
        v.settings.fields[4].value = "9".into();
        assert_eq!(v.options().unwrap_err(), "connections: 1-8");
        v.settings.fields[2].value = "nocolon".into();
        assert!(v.portal_url().unwrap_err().contains("not USER:SECRET"));
    }

    #[test]
    fn keys_discover_log_in_and_out() {
        let mut v = SessionsView::default();
        assert_eq!(v.on_key(KeyCode::Char('d')), Action::Discover);
        assert_eq!(
            v.on_key(KeyCode::Char('l')),
            Action::None,
            "nothing discovered"
        );
        v.discovered = vec![
            DiscoveredTarget {
                name: "iqn.2026-12.org.example:a".into(),
                addresses: vec![],
            };
            2
        ];
        v.on_key(KeyCode::Down);
        assert_eq!(v.on_key(KeyCode::Char('l')), Action::Login(1));
        v.busy = Some("logging in".into());
        assert_eq!(
            v.on_key(KeyCode::Char('l')),
            Action::None,
            "one thing at a time"
        );
        v.busy = None;
        assert_eq!(v.on_key(KeyCode::Char('o')), Action::None, "no session");
        // e gives the keys to the settings; Enter gives them back.
        v.on_key(KeyCode::Char('e'));
        assert!(v.editing);
        assert_eq!(
            v.on_key(KeyCode::Char('d')),
            Action::None,
            "typed into the portal"
        );
        v.on_key(KeyCode::Enter);
        assert!(!v.editing);
        assert!(
            v.settings.error.as_ref().unwrap().contains("portal"),
            "{:?}",
            v.settings.error
        );
    }
}

//! libiscsi-style URLs: `iscsi://[user[%secret]@]host[:port][/target-iqn/lun]`,
//! with `?target_user=...&target_password=...` for mutual CHAP.

use std::fmt;

use crate::chap::ChapCredentials;
use crate::error::IscsiError;

/// A parsed iSCSI URL.
#[derive(Clone, PartialEq, Eq)]
pub struct IscsiUrl {
    pub host: String,
    pub port: u16,
    pub target: Option<String>,
    pub lun: u64,
    pub chap: Option<ChapCredentials>,
    pub mutual: Option<ChapCredentials>,
}

impl fmt::Debug for IscsiUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

impl fmt::Display for IscsiUrl {
    /// The URL without secrets.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "iscsi://")?;
        if let Some(c) = &self.chap {
            write!(f, "{}@", c.user)?;
        }
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "{host}:{}", self.port)?;
        if let Some(t) = &self.target {
            write!(f, "/{t}/{}", self.lun)?;
        }
        Ok(())
    }
}

fn bad(url: &str, why: &str) -> IscsiError {
    IscsiError::BadUrl {
        url: url.to_string(),
        why: why.to_string(),
    }
}

impl IscsiUrl {
    /// The URL with its CHAP secrets, as libiscsi reads it
    /// (`user%secret@`, `?target_user=..&target_password=..`): for handing
    /// to a login, never for printing.
    pub fn with_secrets(&self) -> String {
        let plain = Self {
            chap: None,
            ..self.clone()
        }
        .to_string();
        let rest = plain.trim_start_matches("iscsi://");
        let mut out = String::from("iscsi://");
        if let Some(c) = &self.chap {
            out.push_str(&format!("{}%{}@", c.user, c.secret));
        }
        out.push_str(rest);
        if let Some(m) = &self.mutual {
            out.push_str(&format!(
                "?target_user={}&target_password={}",
                m.user, m.secret
            ));
        }
        out
    }

    /// The host as an IP address (none for a name); `[v6]` brackets dropped.
    pub fn host_ip(&self) -> Option<std::net::IpAddr> {
        self.host.trim_matches(['[', ']']).parse().ok()
    }

    /// Parses a LUN URL (target and LUN required) or, with `portal_only`, a portal URL.
    pub fn parse(url: &str, portal_only: bool) -> Result<Self, IscsiError> {
        let rest = url
            .strip_prefix("iscsi://")
            .ok_or_else(|| bad(url, "it must start with iscsi://"))?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (auth, rest) = match rest.rsplit_once('@') {
            Some((a, r)) => (Some(a), r),
            None => (None, rest),
        };
        let chap = match auth {
            None => None,
            Some(a) => {
                let (u, s) = a
                    .split_once('%')
                    .ok_or_else(|| bad(url, "credentials must be user%secret"))?;
                if u.is_empty() || s.is_empty() {
                    return Err(bad(url, "empty CHAP user or secret"));
                }
                Some(ChapCredentials {
                    user: u.into(),
                    secret: s.into(),
                })
            }
        };
        let (hostport, path) = match rest.split_once('/') {
            Some((h, p)) => (h, Some(p)),
            None => (rest, None),
        };
        let (host, port) = if let Some(h) = hostport.strip_prefix('[') {
            let (h, after) = h
                .split_once(']')
                .ok_or_else(|| bad(url, "unclosed [ in IPv6 address"))?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad(url, "bad port"))?,
                None if after.is_empty() => 3260,
                None => return Err(bad(url, "junk after ]")),
            };
            (h.to_string(), port)
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad(url, "bad port"))?),
                None => (hostport.to_string(), 3260),
            }
        };
        if host.is_empty() {
            return Err(bad(url, "no host"));
        }
        let (target, lun) = match path.filter(|p| !p.is_empty()) {
            None if portal_only => (None, 0),
            None => return Err(bad(url, "no target IQN and LUN")),
            Some(p) => {
                let (t, l) = p
                    .rsplit_once('/')
                    .ok_or_else(|| bad(url, "no LUN after the target IQN"))?;
                if t.is_empty() {
                    return Err(bad(url, "empty target IQN"));
                }
                let lun = l
                    .parse::<u64>()
                    .map_err(|_| bad(url, "the LUN must be a number"))?;
                (Some(t.to_string()), lun)
            }
        };
        let mut mutual_user = None;
        let mut mutual_secret = None;
        for kv in query.unwrap_or("").split('&').filter(|s| !s.is_empty()) {
            match kv.split_once('=') {
                Some(("target_user", v)) => mutual_user = Some(v.to_string()),
                Some(("target_password", v)) => mutual_secret = Some(v.to_string()),
                _ => return Err(bad(url, &format!("unknown URL argument '{kv}'"))),
            }
        }
        let mutual = match (mutual_user, mutual_secret) {
            (Some(user), Some(secret)) => Some(ChapCredentials { user, secret }),
            (None, None) => None,
            _ => return Err(bad(url, "target_user and target_password go together")),
        };
        if mutual.is_some() && chap.is_none() {
            return Err(bad(url, "mutual CHAP needs user%secret too"));
        }
        Ok(IscsiUrl {
            host,
            port,
            target,
            lun,
            chap,
            mutual,
        })
    }

    pub fn portal(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libiscsi_forms() {
        let u = IscsiUrl::parse(
            "iscsi://127.0.0.1:3270/iqn.2026-11.io.iolab:target0/0",
            false,
        )
        .unwrap();
        assert_eq!((u.host.as_str(), u.port, u.lun), ("127.0.0.1", 3270, 0));
        assert_eq!(u.target.as_deref(), Some("iqn.2026-11.io.iolab:target0"));
        let u = IscsiUrl::parse(
            "iscsi://u%s@host/iqn.x:y/3?target_user=t&target_password=p",
            false,
        )
        .unwrap();
        assert_eq!(u.port, 3260);
        assert_eq!(u.chap.unwrap().secret, "s");
        assert_eq!(u.mutual.unwrap().user, "t");
        let u = IscsiUrl::parse("iscsi://[::1]:3261", true).unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 3261));
        assert_eq!(u.portal(), "[::1]:3261");
    }

    #[test]
    fn rejects_bad_urls_with_a_reason() {
        for bad in [
            "http://x/iqn/0",
            "iscsi://",
            "iscsi://host",
            "iscsi://host/iqn.x",
            "iscsi://host/iqn.x/notanumber",
            "iscsi://host:99999/iqn.x/0",
            "iscsi://user@host/iqn.x/0",
            "iscsi://host/iqn.x/0?target_user=a",
        ] {
            let e = IscsiUrl::parse(bad, false).unwrap_err().to_string();
            assert!(e.contains("bad iSCSI URL"), "{bad}: {e}");
        }
    }
}

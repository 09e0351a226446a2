//! CHAP (RFC 1994) with MD5, as iSCSI uses it (RFC 7143 12.1.3).

use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};

/// CHAP_A value for MD5.
pub const CHAP_ALGORITHM_MD5: &str = "5";
/// Challenge length we send, in bytes.
pub const CHALLENGE_LEN: usize = 16;

/// A CHAP user name and secret.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChapCredentials {
    pub user: String,
    pub secret: String,
}

impl ChapCredentials {
    /// Parses `USER:SECRET`.
    pub fn parse(text: &str) -> Option<Self> {
        let (u, s) = text.split_once(':')?;
        (!u.is_empty() && !s.is_empty()).then(|| ChapCredentials {
            user: u.into(),
            secret: s.into(),
        })
    }
}

/// CHAP response: MD5(identifier || secret || challenge).
pub fn response(id: u8, secret: &[u8], challenge: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update([id]);
    h.update(secret);
    h.update(challenge);
    h.finalize().into()
}

/// Random bytes from the kernel's CSPRNG.
pub fn random_bytes(n: usize) -> Vec<u8> {
    let mut buf = vec![0u8; n];
    // SAFETY: `buf` is a valid writable buffer of `n` bytes for the duration of the call.
    let got = unsafe { libc::getrandom(buf.as_mut_ptr().cast(), n, 0) };
    if got != n as isize {
        // getrandom on Linux only fails before the pool is initialized; fall back to time-based bytes.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (t >> ((i % 16) * 8)) as u8 ^ i as u8;
        }
    }
    buf
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_chap_vector() {
        // RFC 1321 test vector "abc" via id/secret/challenge split.
        let r = response(b'a', b"b", b"c");
        assert_eq!(
            r,
            [
                0x90, 0x01, 0x50, 0x98, 0x3c, 0xd2, 0x4f, 0xb0, 0xd6, 0x96, 0x3f, 0x7d, 0x28, 0xe1,
                0x7f, 0x72
            ]
        );
    }

    #[test]
    fn credentials_parse() {
        assert_eq!(ChapCredentials::parse("u:s").unwrap().secret, "s");
        assert!(ChapCredentials::parse("nouser").is_none());
        assert!(ChapCredentials::parse(":s").is_none());
    }
}

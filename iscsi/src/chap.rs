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

/// Random bytes from the kernel's CSPRNG, for CHAP challenges, ISIDs and
/// first StatSNs. A short read (a signal) is continued; an error is
/// returned, never replaced by guessable bytes.
pub fn random_bytes(n: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        let rest = &mut buf[filled..];
        // SAFETY: `rest` is a valid writable buffer of `rest.len()` bytes for
        // the duration of the call; getrandom writes at most that many.
        let got = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if got < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += got as usize;
    }
    Ok(buf)
}

/// Compares two CHAP responses in time that depends only on their lengths.
pub fn responses_match(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    fn random_bytes_fill_and_responses_compare() {
        let a = random_bytes(64).unwrap();
        let b = random_bytes(64).unwrap();
        assert_eq!(a.len(), 64);
        assert_ne!(a, b, "two draws of 64 random bytes were equal");
        assert!(random_bytes(0).unwrap().is_empty());
        assert!(responses_match(&a, &a.clone()));
        assert!(!responses_match(&a, &b));
        assert!(!responses_match(&a[..16], &a[..15]));
        let mut c = a.clone();
        c[63] ^= 1;
        assert!(!responses_match(&a, &c));
    }

    #[test]
    fn credentials_parse() {
        assert_eq!(ChapCredentials::parse("u:s").unwrap().secret, "s");
        assert!(ChapCredentials::parse("nouser").is_none());
        assert!(ChapCredentials::parse(":s").is_none());
    }
}

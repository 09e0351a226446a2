//! CHAP (RFC 1994) as iSCSI uses it (RFC 7143 12.1.3), with MD5 and the
//! SHA-1, SHA-256 and SHA3-256 digests (CHAP_A 6, 7, 8; RFC 7143bis, as LIO
//! and open-iscsi have them).

use md5::Md5;
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::Sha256;
use sha3::Sha3_256;

/// A CHAP digest algorithm, by its CHAP_A number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChapAlgorithm {
    Md5 = 5,
    Sha1 = 6,
    Sha256 = 7,
    Sha3_256 = 8,
}

/// Every algorithm we know, strongest first, MD5 last (the only one many
/// older targets and initiators know).
pub const PREFERENCE: [ChapAlgorithm; 4] = [
    ChapAlgorithm::Sha3_256,
    ChapAlgorithm::Sha256,
    ChapAlgorithm::Sha1,
    ChapAlgorithm::Md5,
];

/// What our initiator offers (see [`ChapAlgorithm::offer`]).
pub const INITIATOR_OFFER: [ChapAlgorithm; 3] = [
    ChapAlgorithm::Sha3_256,
    ChapAlgorithm::Sha1,
    ChapAlgorithm::Md5,
];

impl ChapAlgorithm {
    /// From a CHAP_A value.
    pub fn from_code(code: &str) -> Option<Self> {
        Some(match code.trim() {
            "5" => ChapAlgorithm::Md5,
            "6" => ChapAlgorithm::Sha1,
            "7" => ChapAlgorithm::Sha256,
            "8" => ChapAlgorithm::Sha3_256,
            _ => return None,
        })
    }

    /// The CHAP_A value.
    pub fn code(self) -> String {
        (self as u8).to_string()
    }

    pub fn name(self) -> &'static str {
        match self {
            ChapAlgorithm::Md5 => "MD5",
            ChapAlgorithm::Sha1 => "SHA-1",
            ChapAlgorithm::Sha256 => "SHA-256",
            ChapAlgorithm::Sha3_256 => "SHA3-256",
        }
    }

    /// Bytes of a response, and of the challenges we send.
    pub fn digest_len(self) -> usize {
        match self {
            ChapAlgorithm::Md5 => 16,
            ChapAlgorithm::Sha1 => 20,
            ChapAlgorithm::Sha256 | ChapAlgorithm::Sha3_256 => 32,
        }
    }

    /// The response: H(identifier || secret || challenge).
    pub fn response(self, id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
        fn h<D: md5::Digest>(id: u8, secret: &[u8], challenge: &[u8]) -> Vec<u8> {
            let mut d = D::new();
            d.update([id]);
            d.update(secret);
            d.update(challenge);
            d.finalize().to_vec()
        }
        match self {
            ChapAlgorithm::Md5 => h::<Md5>(id, secret, challenge),
            ChapAlgorithm::Sha1 => h::<Sha1>(id, secret, challenge),
            ChapAlgorithm::Sha256 => h::<Sha256>(id, secret, challenge),
            ChapAlgorithm::Sha3_256 => h::<Sha3_256>(id, secret, challenge),
        }
    }

    /// The first algorithm of an offered CHAP_A list that we support (the
    /// list rule: the offerer's order decides).
    pub fn choose(offered: &str) -> Option<Self> {
        offered.split(',').find_map(Self::from_code)
    }

    /// Our initiator's offer, as a CHAP_A list: SHA3-256, SHA-1, MD5. Not 7:
    /// tgtd (1.0.85 as Debian ships it, and still 1.0.97) takes CHAP_A=7 for
    /// SHA-1, where IANA's 7 is SHA-256, so a login that offers 7 first fails
    /// against it; targets that know 8 or 6 number them as IANA does. As a
    /// target we accept all four, in the initiator's order.
    pub fn offer() -> String {
        INITIATOR_OFFER
            .iter()
            .map(|a| a.code())
            .collect::<Vec<_>>()
            .join(",")
    }
}

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

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn chap_digests_match_the_standard_vectors() {
        // "abc" via the id/secret/challenge split: FIPS 180-4, FIPS 202, RFC 1321.
        let abc = |a: ChapAlgorithm| hex(&a.response(b'a', b"b", b"c"));
        assert_eq!(abc(ChapAlgorithm::Md5), "900150983cd24fb0d6963f7d28e17f72");
        assert_eq!(
            abc(ChapAlgorithm::Sha1),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            abc(ChapAlgorithm::Sha256),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            abc(ChapAlgorithm::Sha3_256),
            "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"
        );
        for a in PREFERENCE {
            assert_eq!(
                a.response(1, b"s", b"c").len(),
                a.digest_len(),
                "{}",
                a.name()
            );
            assert_eq!(ChapAlgorithm::from_code(&a.code()), Some(a));
        }
    }

    #[test]
    fn the_offerers_order_decides() {
        // 7 is left out: tgtd takes it for SHA-1.
        assert_eq!(ChapAlgorithm::offer(), "8,6,5");
        assert_eq!(ChapAlgorithm::choose("5"), Some(ChapAlgorithm::Md5));
        assert_eq!(ChapAlgorithm::choose("7,5"), Some(ChapAlgorithm::Sha256));
        assert_eq!(ChapAlgorithm::choose("99,6,7"), Some(ChapAlgorithm::Sha1));
        assert_eq!(ChapAlgorithm::choose("1,2"), None);
        assert_eq!(ChapAlgorithm::choose(""), None);
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

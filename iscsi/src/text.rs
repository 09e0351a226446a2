//! Text key=value pairs (RFC 7143 6.1): NUL-separated, UTF-8, order kept.

use crate::error::IscsiError;
use crate::error::Violation;

/// Longest key name the RFC allows.
pub const MAX_KEY_LEN: usize = 63;
/// Longest value we accept (the RFC allows 8192 for most; SendTargets replies can be larger).
pub const MAX_VALUE_LEN: usize = 8192;

/// Parses a data segment into ordered (key, value) pairs.
pub fn parse(data: &[u8]) -> Result<Vec<(String, String)>, IscsiError> {
    let mut out = Vec::new();
    for part in data.split(|&b| b == 0) {
        if part.is_empty() {
            continue;
        }
        let s = std::str::from_utf8(part).map_err(|_| Violation::TextNotUtf8)?;
        let (k, v) = s
            .split_once('=')
            .ok_or_else(|| Violation::TextWithoutEquals(s.chars().take(40).collect()))?;
        if k.is_empty() || k.len() > MAX_KEY_LEN {
            return Err(Violation::TextKeyInvalid(k.chars().take(70).collect()).into());
        }
        if v.len() > MAX_VALUE_LEN {
            return Err(Violation::TextValueTooLong(k.to_string()).into());
        }
        out.push((k.to_owned(), v.to_owned()));
    }
    Ok(out)
}

/// Encodes pairs as `key=value\0` ...
pub fn encode(pairs: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(b'=');
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Parses a numeric value: decimal, or hex with 0x.
pub fn parse_number(v: &str) -> Option<u64> {
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        u64::from_str_radix(h, 16).ok()
    } else {
        v.parse().ok()
    }
}

/// Hex-encodes binary values (CHAP challenges and responses).
pub fn hex_encode(b: &[u8]) -> String {
    let mut s = String::from("0x");
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

/// Decodes `0x...` hex (or `0b...` base64 is not supported) into bytes.
pub fn hex_decode(v: &str) -> Option<Vec<u8>> {
    let h = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X"))?;
    if h.is_empty() || h.len() % 2 != 0 {
        return None;
    }
    // By bytes: slicing the text in twos would split a multi-byte character
    // (a panic, found by fuzzing; the value comes from the peer).
    let digit = |b: u8| (b as char).to_digit(16).map(|d| d as u8);
    h.as_bytes()
        .chunks_exact(2)
        .map(|p| Some(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_encode_round_trip() {
        let data = b"InitiatorName=iqn.x\0SessionType=Normal\0\0";
        let p = parse(data).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!(p[1], ("SessionType".into(), "Normal".into()));
        assert_eq!(encode(&p), data[..data.len() - 1].to_vec());
    }

    #[test]
    fn bad_text_is_an_error() {
        assert!(parse(b"NoEquals\0").is_err());
        assert!(parse(b"=value\0").is_err());
        assert!(parse(&[0xff, b'=', b'1', 0]).is_err());
    }

    #[test]
    fn hex_round_trip() {
        assert_eq!(
            hex_decode(&hex_encode(&[0, 1, 0xfe])).unwrap(),
            vec![0, 1, 0xfe]
        );
        assert!(hex_decode("0x1").is_none());
        // Fuzz finding: a multi-byte character after 0x panicked the slicing.
        assert!(hex_decode("0x19it6T").is_none());
        assert!(hex_decode("0x€1").is_none());
        assert!(hex_decode("0xa€").is_none());
        assert!(hex_decode("0x+1").is_none());
        assert_eq!(hex_decode("0XaB"), Some(vec![0xAB]));
        assert!(hex_decode("12").is_none());
        assert_eq!(parse_number("0x10"), Some(16));
    }
}

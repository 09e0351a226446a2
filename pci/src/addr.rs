//! PCI addresses: domain:bus:device.function.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use crate::error::PciError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    pub domain: u16,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl FromStr for Bdf {
    type Err = PciError;

    /// `0000:06:00.0`, or `06:00.0` in domain 0 (as lspci and qemu write it).
    fn from_str(s: &str) -> Result<Bdf, PciError> {
        let bad = || PciError::BadAddress(s.to_string());
        let parts: Vec<&str> = s.trim().split(':').collect();
        let (domain, bus, df) = match parts.as_slice() {
            [d, b, df] => (*d, *b, *df),
            [b, df] => ("0000", *b, *df),
            _ => return Err(bad()),
        };
        let (dev, func) = df.split_once('.').ok_or_else(bad)?;
        let hex = |t: &str, max_len: usize| {
            (!t.is_empty() && t.len() <= max_len && t.chars().all(|c| c.is_ascii_hexdigit()))
                .then(|| u32::from_str_radix(t, 16).ok())
                .flatten()
        };
        let domain = hex(domain, 4).ok_or_else(bad)?;
        let bus = hex(bus, 2).ok_or_else(bad)?;
        let device = hex(dev, 2).filter(|d| *d < 0x20).ok_or_else(bad)?;
        let function = hex(func, 1).filter(|f| *f < 8).ok_or_else(bad)?;
        Ok(Bdf {
            domain: domain as u16,
            bus: bus as u8,
            device: device as u8,
            function: function as u8,
        })
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:04x}:{:02x}:{:02x}.{:x}",
            self.domain, self.bus, self.device, self.function
        )
    }
}

impl Serialize for Bdf {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let b: Bdf = "0000:06:00.0".parse().unwrap();
        assert_eq!(b.to_string(), "0000:06:00.0");
        let b: Bdf = "af:1f.7".parse().unwrap();
        assert_eq!(b.to_string(), "0000:af:1f.7");
        for bad in [
            "",
            "06:00",
            "0000:06:20.0",
            "0000:06:00.8",
            "00000:06:00.0",
            "zz:00.0",
            "0:0:0:0.0",
        ] {
            let e = bad.parse::<Bdf>().unwrap_err();
            assert!(e.to_string().contains("is not a PCI address"), "{bad}: {e}");
        }
    }
}

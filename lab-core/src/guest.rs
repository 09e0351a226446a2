//! Guest definitions: what a qemu guest of the lab is made of.

use serde::{Deserialize, Serialize};

/// One qemu/KVM guest as a profile keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuestDef {
    pub name: String,
    pub memory_mib: u32,
    pub vcpus: u32,
    /// PCI functions passed through with vfio-pci (`0000:06:00.0`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pci: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initrd: Option<String>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub append: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
}

impl GuestDef {
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        let who = &self.name;
        if self.name.is_empty() || self.name.contains(['/', ' ']) {
            out.push(format!(
                "guest name '{who}' must be non-empty, without '/' or spaces"
            ));
        }
        if self.memory_mib < 64 {
            out.push(format!(
                "guest {who}: memory_mib {} is below 64",
                self.memory_mib
            ));
        }
        if !(1..=255).contains(&self.vcpus) {
            out.push(format!(
                "guest {who}: vcpus {} is outside 1..=255",
                self.vcpus
            ));
        }
        for bdf in &self.pci {
            if !valid_bdf(bdf) {
                out.push(format!(
                    "guest {who}: '{bdf}' is not a PCI address (domain:bus:device.function, like 0000:06:00.0)"
                ));
            }
        }
        if self.disk.is_none() && self.kernel.is_none() {
            out.push(format!("guest {who}: needs a disk or a kernel"));
        }
        out
    }
}

/// `DDDD:BB:DD.F` in hex, device < 0x20, function < 8.
pub fn valid_bdf(s: &str) -> bool {
    let hex = |p: &str, n: usize| p.len() == n && p.chars().all(|c| c.is_ascii_hexdigit());
    let mut it = s.split(':');
    let (Some(dom), Some(bus), Some(df), None) = (it.next(), it.next(), it.next(), it.next())
    else {
        return false;
    };
    let Some((dev, func)) = df.split_once('.') else {
        return false;
    };
    hex(dom, 4)
        && hex(bus, 2)
        && hex(dev, 2)
        && u8::from_str_radix(dev, 16).is_ok_and(|d| d < 0x20)
        && func.len() == 1
        && func.chars().all(|c| ('0'..='7').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pci_addresses() {
        assert!(valid_bdf("0000:06:00.0"));
        assert!(valid_bdf("0001:af:1f.7"));
        assert!(!valid_bdf("06:00.0"));
        assert!(!valid_bdf("0000:06:20.0"));
        assert!(!valid_bdf("0000:06:00.8"));
        assert!(!valid_bdf("0000:06:00.0:1"));
    }
}

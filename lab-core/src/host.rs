//! Host figures beside the I/O numbers (CPU cost is half of what a network
//! storage benchmark shows): CPU per core, memory, per-interface traffic.
//! The OS boundary is a trait so the console can run on a fake in tests.

use std::net::IpAddr;

use iolab_profiles::HostFacts;
use sysinfo::{Networks, System};

/// One interface's traffic over the last interval, in bytes per second.
#[derive(Debug, Clone, PartialEq)]
pub struct IfaceRate {
    pub name: String,
    pub rx_per_s: f64,
    pub tx_per_s: f64,
}

/// Host figures at one sample.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HostSample {
    /// Busy percentage of each core.
    pub cpu: Vec<f32>,
    pub mem_used: u64,
    pub mem_total: u64,
    pub ifaces: Vec<IfaceRate>,
}

/// Where host figures come from.
pub trait HostProbe: Send {
    /// Figures over the `secs` since the previous call.
    fn sample(&mut self, secs: f64) -> HostSample;
}

/// The real host, through sysinfo.
pub struct SysinfoProbe {
    sys: System,
    nets: Networks,
}

impl SysinfoProbe {
    pub fn new() -> Result<Self, sysinfo::Error> {
        let mut sys = System::new()?;
        sys.refresh_cpu_usage();
        Ok(SysinfoProbe {
            sys,
            nets: Networks::new_with_refreshed_list()?,
        })
    }
}

/// A host that reports nothing (when the OS figures cannot be read).
pub struct NoHost;

impl HostProbe for NoHost {
    fn sample(&mut self, _secs: f64) -> HostSample {
        HostSample::default()
    }
}

/// The real host when it can be read, otherwise nothing.
pub fn default_probe() -> Box<dyn HostProbe> {
    match SysinfoProbe::new() {
        Ok(p) => Box::new(p),
        Err(e) => {
            tracing::warn!("host figures unavailable: {e}");
            Box::new(NoHost)
        }
    }
}

impl HostProbe for SysinfoProbe {
    fn sample(&mut self, secs: f64) -> HostSample {
        self.sys.refresh_cpu_usage();
        self.sys.refresh_memory();
        self.nets.refresh(true);
        let per = |b: u64| if secs > 0.0 { b as f64 / secs } else { 0.0 };
        let mut ifaces: Vec<IfaceRate> = self
            .nets
            .iter()
            .map(|(name, d)| IfaceRate {
                name: name.to_string_lossy().into_owned(),
                rx_per_s: per(d.received()),
                tx_per_s: per(d.transmitted()),
            })
            .collect();
        ifaces.sort_by(|a, b| a.name.cmp(&b.name));
        HostSample {
            cpu: self.sys.cpus().iter().map(|c| c.usage()).collect(),
            mem_used: self.sys.used_memory(),
            mem_total: self.sys.total_memory(),
            ifaces,
        }
    }
}

/// Facts about this host for a run record: kernel, CPU, memory, and the
/// interfaces (with their drivers) that carry traffic to `peer`.
pub fn facts(peer: Option<IpAddr>) -> HostFacts {
    let mut f = HostFacts {
        kernel: System::kernel_version().unwrap_or_default(),
        ..HostFacts::default()
    };
    if let Ok(mut sys) = System::new() {
        sys.refresh_cpu_usage();
        sys.refresh_memory();
        f.cores = sys.cpus().len() as u32;
        f.cpu_model = sys
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_string())
            .unwrap_or_default();
        f.memory_bytes = sys.total_memory();
    }
    if let (Some(ip), Ok(nets)) = (peer, Networks::new_with_refreshed_list()) {
        let mut names: Vec<String> = nets
            .iter()
            .filter(|(_, d)| {
                d.ip_networks()
                    .iter()
                    .any(|n| same_subnet(n.addr, ip, n.prefix))
            })
            .map(|(n, _)| n.to_string_lossy().into_owned())
            .collect();
        if names.is_empty() && ip.is_loopback() {
            names.push("lo".into());
        }
        names.sort();
        f.interfaces = names
            .into_iter()
            .map(|n| {
                let d = driver_of(&n);
                format!("{n} ({d})")
            })
            .collect();
    }
    f
}

/// The kernel driver behind an interface: its device's driver, or what kind of virtual one it is.
fn driver_of(iface: &str) -> String {
    let base = std::path::Path::new("/sys/class/net").join(iface);
    if let Ok(link) = std::fs::read_link(base.join("device/driver"))
        && let Some(name) = link.file_name()
    {
        return name.to_string_lossy().into_owned();
    }
    if iface == "lo" {
        return "loopback".into();
    }
    std::fs::read_to_string(base.join("uevent"))
        .ok()
        .and_then(|u| {
            u.lines()
                .find_map(|l| l.strip_prefix("DEVTYPE=").map(str::to_owned))
        })
        .unwrap_or_else(|| "virtual".into())
}

/// Whether `a` and `b` share the first `prefix` bits.
fn same_subnet(a: IpAddr, b: IpAddr, prefix: u8) -> bool {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(prefix.min(32)))
                .unwrap_or(0);
            u32::from(a) & m == u32::from(b) & m
        }
        (IpAddr::V6(a), IpAddr::V6(b)) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(prefix.min(128)))
                .unwrap_or(0);
            u128::from(a) & m == u128::from(b) & m
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets() {
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert!(same_subnet(ip("127.0.0.1"), ip("127.5.0.9"), 8));
        assert!(!same_subnet(ip("10.0.0.1"), ip("10.0.1.1"), 24));
        assert!(same_subnet(ip("10.0.0.1"), ip("99.0.1.1"), 0));
        assert!(same_subnet(ip("fe80::1"), ip("fe80::2"), 64));
        assert!(!same_subnet(ip("::1"), ip("127.0.0.1"), 0));
    }

    #[test]
    fn facts_name_the_loopback_for_a_local_peer() {
        let f = facts(Some(ip_lo()));
        assert!(f.cores > 0 && f.memory_bytes > 0, "{f:?}");
        assert!(!f.kernel.is_empty());
        assert_eq!(f.interfaces, ["lo (loopback)"]);
    }

    fn ip_lo() -> IpAddr {
        IpAddr::from([127, 0, 0, 1])
    }

    #[test]
    fn real_probe_sees_cores_memory_and_loopback() {
        let mut p = SysinfoProbe::new().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(250));
        let s = p.sample(0.25);
        assert!(!s.cpu.is_empty());
        assert!(
            s.cpu.iter().all(|c| (0.0..=100.0).contains(c)),
            "{:?}",
            s.cpu
        );
        assert!(s.mem_total > 0 && s.mem_used <= s.mem_total);
        assert!(s.ifaces.iter().any(|i| i.name == "lo"), "{:?}", s.ifaces);
    }
}

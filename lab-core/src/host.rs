//! Host figures beside the I/O numbers (CPU cost is half of what a network
//! storage benchmark shows): CPU per core, memory, per-interface traffic.
//! The OS boundary is a trait so the console can run on a fake in tests.

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

#[cfg(test)]
mod tests {
    use super::*;

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

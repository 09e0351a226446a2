//! Network namespaces that a test creates and deletes: two "hosts" joined by
//! a veth pair. Nothing here touches the namespace the tests run in.

use std::process::Command;

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Two namespaces `a` and `b`, each with loopback up, joined by veth
/// `va` (10.77.0.1/24, in `a`) and `vb` (10.77.0.2/24, in `b`). Deleted on drop.
pub struct NetnsPair {
    pub a: String,
    pub b: String,
}

impl NetnsPair {
    pub const A_IP: &'static str = "10.77.0.1";
    pub const B_IP: &'static str = "10.77.0.2";

    pub fn new(tag: &str) -> NetnsPair {
        let n = crate::unique();
        let pid = std::process::id();
        let pair = NetnsPair {
            a: format!("iolab-{tag}-{pid}-{n}-a"),
            b: format!("iolab-{tag}-{pid}-{n}-b"),
        };
        let setup = || -> Result<(), String> {
            ip(&["netns", "add", &pair.a])?;
            ip(&["netns", "add", &pair.b])?;
            ip(&[
                "-n", &pair.a, "link", "add", "va", "type", "veth", "peer", "name", "vb", "netns",
                &pair.b,
            ])?;
            ip(&["-n", &pair.a, "addr", "add", "10.77.0.1/24", "dev", "va"])?;
            ip(&["-n", &pair.b, "addr", "add", "10.77.0.2/24", "dev", "vb"])?;
            for (ns, dev) in [(&pair.a, "va"), (&pair.b, "vb")] {
                ip(&["-n", ns, "link", "set", "lo", "up"])?;
                ip(&["-n", ns, "link", "set", dev, "up"])?;
            }
            Ok(())
        };
        if let Err(e) = setup() {
            drop(pair);
            panic!("setting up network namespaces: {e}");
        }
        pair
    }

    /// A command run inside namespace `ns` (`ip netns exec`).
    pub fn exec(ns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns]).arg(program);
        c
    }

    /// Every value under /proc/sys/net/core and /proc/sys/net/ipv4 in `ns`
    /// (one `path:value` line each), plus the interfaces and their MTUs.
    pub fn snapshot(ns: &str) -> String {
        let out = Self::exec(ns, "sh")
            .args([
                "-c",
                "grep -rs ^ /proc/sys/net/core /proc/sys/net/ipv4 | grep -v -e /route/ -e /neigh/ ; ip -o link show | sed 's/ qdisc.*//'",
            ])
            .output()
            .expect("snapshot");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// One sysctl in `ns`, raw.
    pub fn sysctl(ns: &str, key: &str) -> String {
        let out = Self::exec(ns, "cat")
            .arg(format!("/proc/sys/{}", key.replace('.', "/")))
            .output()
            .expect("cat");
        String::from_utf8_lossy(&out.stdout).trim_end().to_string()
    }

    pub fn mtu(ns: &str, dev: &str) -> u32 {
        let out = Self::exec(ns, "cat")
            .arg(format!("/sys/class/net/{dev}/mtu"))
            .output()
            .expect("cat");
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or(0)
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = ip(&["netns", "del", ns]);
        }
    }
}

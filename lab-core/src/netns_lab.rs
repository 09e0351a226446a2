//! A two-host lab on one machine: network namespaces `iolab-NAME-a` and
//! `iolab-NAME-b` joined by a veth pair (`lab0` in each, 10.77.0.1/24 and
//! 10.77.0.2/24), each running a real `sshd` (Debian's openssh-server)
//! with throw-away keys. The ssh configuration it writes names the hosts
//! `NAME-a` and `NAME-b` and reaches each sshd through `iolab lab relay`
//! run inside its namespace (a ProxyCommand), so nothing is added to the
//! namespace iolab runs in: no interface, no route, no listening port.
//!
//! `up` and `down` change only what they create; `down` stops every
//! process left in the namespaces (sshd, agents) before deleting them.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The lab interface in each namespace.
pub const LAB_IFACE: &str = "lab0";
pub const A_ADDR: &str = "10.77.0.1";
pub const B_ADDR: &str = "10.77.0.2";
const PREFIX_LEN: u8 = 24;

#[derive(Debug, thiserror::Error)]
pub enum NetnsLabError {
    #[error("{0} is not installed (install-peers installs openssh-server and openssh-client)")]
    Missing(&'static str),
    #[error("`{command}` failed: {message}")]
    Command { command: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the lab '{0}' is up already (`iolab lab netns down` first)")]
    Exists(String),
    #[error("sshd in {ns} did not accept a login within 10 s: {message}")]
    NoSsh { ns: String, message: String },
    #[error("lab name '{0}' must be 1-8 lower-case letters or digits")]
    BadName(String),
}

/// A lab's names and files.
#[derive(Debug, Clone)]
pub struct NetnsLab {
    pub name: String,
}

impl NetnsLab {
    pub fn new(name: &str) -> Result<NetnsLab, NetnsLabError> {
        if name.is_empty()
            || name.len() > 8
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return Err(NetnsLabError::BadName(name.into()));
        }
        Ok(NetnsLab { name: name.into() })
    }

    /// The namespace of host `side` ('a' or 'b').
    pub fn netns(&self, side: char) -> String {
        format!("iolab-{}-{side}", self.name)
    }

    /// The ssh alias of host `side`.
    pub fn host(&self, side: char) -> String {
        format!("{}-{side}", self.name)
    }

    /// Keys, configurations, logs and pid files.
    pub fn dir(&self) -> PathBuf {
        PathBuf::from(format!("/run/iolab/netns-{}", self.name))
    }

    /// The ssh configuration that reaches both hosts (`ssh -F`).
    pub fn ssh_config(&self) -> PathBuf {
        self.dir().join("ssh_config")
    }

    pub fn is_up(&self) -> bool {
        Path::new("/run/netns").join(self.netns('a')).exists()
    }

    /// The sshd listener's pid in namespace `side`.
    pub fn sshd_pid(&self, side: char) -> Option<u32> {
        std::fs::read_to_string(self.dir().join(format!("sshd-{side}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Builds the lab; `iolab` is the binary the ssh configuration relays with.
    pub fn up(&self, iolab: &Path) -> Result<(), NetnsLabError> {
        for (prog, what) in [
            ("/usr/sbin/sshd", "sshd"),
            ("ssh-keygen", "ssh-keygen"),
            ("ssh", "ssh"),
            ("ip", "ip"),
        ] {
            if !have(prog) {
                return Err(NetnsLabError::Missing(what));
            }
        }
        if self.is_up() {
            return Err(NetnsLabError::Exists(self.name.clone()));
        }
        let r = self.build(iolab);
        if r.is_err() {
            self.down();
        }
        r
    }

    fn build(&self, iolab: &Path) -> Result<(), NetnsLabError> {
        let dir = self.dir();
        let _ = std::fs::remove_dir_all(&dir);
        mkdir(&dir, 0o700)?;
        // sshd's privilege separation directory.
        mkdir(Path::new("/run/sshd"), 0o755)?;
        let (a, b) = (self.netns('a'), self.netns('b'));
        run("ip", &["netns", "add", &a])?;
        run("ip", &["netns", "add", &b])?;
        run(
            "ip",
            &[
                "-n", &a, "link", "add", LAB_IFACE, "type", "veth", "peer", "name", LAB_IFACE,
                "netns", &b,
            ],
        )?;
        for (ns, addr) in [(&a, A_ADDR), (&b, B_ADDR)] {
            run(
                "ip",
                &[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{addr}/{PREFIX_LEN}"),
                    "dev",
                    LAB_IFACE,
                ],
            )?;
            run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
            run("ip", &["-n", ns, "link", "set", LAB_IFACE, "up"])?;
        }
        let key = |file: &str, comment: &str| -> Result<(), NetnsLabError> {
            let path = dir.join(file);
            run(
                "ssh-keygen",
                &[
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    comment,
                    "-f",
                    &path.display().to_string(),
                ],
            )
        };
        key("id_ed25519", "iolab-lab-controller")?;
        std::fs::copy(dir.join("id_ed25519.pub"), dir.join("authorized_keys"))
            .map_err(|e| io_err(&dir.join("authorized_keys"), e))?;
        let mut known = String::new();
        let mut config = format!(
            "# Written by `iolab lab netns up`; removed by `iolab lab netns down`.\n\
             # Hosts {} and {}: sshd in namespaces {a} and {b}.\n",
            self.host('a'),
            self.host('b')
        );
        for side in ['a', 'b'] {
            let ns = self.netns(side);
            let host = self.host(side);
            key(&format!("host_{side}"), &host)?;
            let pub_key = read(&dir.join(format!("host_{side}.pub")))?;
            known += &format!("{host} {}\n", pub_key.trim());
            let sshd_config = dir.join(format!("sshd_{side}.conf"));
            write(
                &sshd_config,
                &format!(
                    "ListenAddress 127.0.0.1:22\n\
                     HostKey {dir}/host_{side}\n\
                     AuthorizedKeysFile {dir}/authorized_keys\n\
                     PidFile {dir}/sshd-{side}.pid\n\
                     PermitRootLogin prohibit-password\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     UsePAM no\n\
                     StrictModes no\n\
                     X11Forwarding no\n\
                     AllowTcpForwarding no\n\
                     PrintMotd no\n",
                    dir = dir.display()
                ),
            )?;
            run(
                "ip",
                &[
                    "netns",
                    "exec",
                    &ns,
                    "/usr/sbin/sshd",
                    "-f",
                    &sshd_config.display().to_string(),
                    "-E",
                    &dir.join(format!("sshd_{side}.log")).display().to_string(),
                ],
            )?;
            config += &format!(
                "\nHost {host}\n  HostName 127.0.0.1\n  HostKeyAlias {host}\n  User root\n  \
                 IdentityFile {dir}/id_ed25519\n  IdentitiesOnly yes\n  \
                 UserKnownHostsFile {dir}/known_hosts\n  StrictHostKeyChecking yes\n  \
                 ProxyCommand ip netns exec {ns} {iolab} lab relay 127.0.0.1:22\n",
                dir = dir.display(),
                iolab = iolab.display(),
            );
        }
        write(&dir.join("known_hosts"), &known)?;
        write(&self.ssh_config(), &config)?;
        for side in ['a', 'b'] {
            self.wait_for_ssh(side)?;
        }
        Ok(())
    }

    fn wait_for_ssh(&self, side: char) -> Result<(), NetnsLabError> {
        let until = Instant::now() + Duration::from_secs(10);
        let cfg = self.ssh_config().display().to_string();
        loop {
            let out = Command::new("ssh")
                .args([
                    "-F",
                    &cfg,
                    "-T",
                    "-o",
                    "BatchMode=yes",
                    &self.host(side),
                    "true",
                ])
                .stdin(Stdio::null())
                .output()
                .map_err(|e| io_err(Path::new("ssh"), e))?;
            if out.status.success() {
                return Ok(());
            }
            if Instant::now() > until {
                return Err(NetnsLabError::NoSsh {
                    ns: self.netns(side),
                    message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Stops every process in the lab's namespaces, deletes them and the
    /// lab's files. Returns what it stopped, as "pid command".
    pub fn down(&self) -> Vec<String> {
        let mut stopped = Vec::new();
        for side in ['a', 'b'] {
            let ns = self.netns(side);
            for sig in [
                nix::sys::signal::Signal::SIGTERM,
                nix::sys::signal::Signal::SIGKILL,
            ] {
                let pids = pids_in(&ns);
                if pids.is_empty() {
                    break;
                }
                for pid in &pids {
                    if sig == nix::sys::signal::Signal::SIGTERM {
                        stopped.push(format!("{pid} {}", comm(*pid)));
                    }
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(*pid as i32), sig);
                }
                let until = Instant::now() + Duration::from_secs(3);
                while !pids_in(&ns).is_empty() && Instant::now() < until {
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
            let _ = run("ip", &["netns", "del", &ns]);
        }
        let _ = std::fs::remove_dir_all(self.dir());
        stopped
    }
}

/// The processes in network namespace `ns` (`ip netns pids`).
pub fn pids_in(ns: &str) -> Vec<u32> {
    Command::new("ip")
        .args(["netns", "pids", ns])
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A process's command line, for messages.
pub fn comm(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            String::from_utf8_lossy(&b)
                .split('\0')
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

fn have(prog: &str) -> bool {
    if prog.contains('/') {
        return Path::new(prog).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(prog).exists()))
}

fn run(prog: &str, args: &[&str]) -> Result<(), NetnsLabError> {
    let command = format!("{prog} {}", args.join(" "));
    let out = Command::new(prog)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| NetnsLabError::Command {
            command: command.clone(),
            message: e.to_string(),
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(NetnsLabError::Command {
            command,
            message: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

fn io_err(path: &Path, source: std::io::Error) -> NetnsLabError {
    NetnsLabError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn mkdir(path: &Path, mode: u32) -> Result<(), NetnsLabError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
    {
        Ok(()) => Ok(()),
        Err(e) => Err(io_err(path, e)),
    }
}

fn read(path: &Path) -> Result<String, NetnsLabError> {
    std::fs::read_to_string(path).map_err(|e| io_err(path, e))
}

fn write(path: &Path, text: &str) -> Result<(), NetnsLabError> {
    std::fs::write(path, text).map_err(|e| io_err(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_lab_name_and_bad_names_are_refused() {
        let l = NetnsLab::new("lab").unwrap();
        assert_eq!(l.netns('a'), "iolab-lab-a");
        assert_eq!(l.host('b'), "lab-b");
        assert_eq!(l.ssh_config(), Path::new("/run/iolab/netns-lab/ssh_config"));
        for bad in ["", "Lab", "a b", "../x", "toolongname"] {
            assert!(NetnsLab::new(bad).is_err(), "{bad}");
        }
    }
}

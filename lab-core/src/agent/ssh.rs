//! Reaching a host's agent with OpenSSH: `ssh -T … iolab agent`, one
//! multiplexed master connection per host (ControlMaster/ControlPersist),
//! BatchMode (never a password prompt), host keys checked as the user's
//! ssh configuration says. No port of ours is opened for control.
//!
//! The remote command prefers the copy `iolab hosts push` left for this
//! very build (`~/.cache/iolab/bin/iolab-BUILD`), then the profile's
//! `iolab` path, then `iolab` on the PATH; when the agent that answers is
//! another build, or there is none, [`connect`] can push this binary over
//! (through the same ssh connection, on its standard input) and start again.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use super::client::{AgentError, AgentLink};
use super::serve::build_id;
use crate::profile::HostSpec;

/// How long a host has to say hello (ssh connect + agent start).
pub const HELLO_WITHIN: Duration = Duration::from_secs(30);

/// Where the ssh master connections' sockets live (mode 0700).
pub fn control_dir() -> PathBuf {
    let base = std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|p| p.is_dir())
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
    base.join(format!("iolab-ssh-{uid}"))
}

fn ensure_control_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let d = control_dir();
    match std::fs::DirBuilder::new().mode(0o700).create(&d) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o700))?;
        }
        Err(e) => return Err(e),
    }
    Ok(d)
}

/// ssh's options for `spec`, before the destination.
pub fn ssh_options(spec: &HostSpec, control: &Path) -> Vec<String> {
    let mut a: Vec<String> = vec!["-T".into()];
    if let Some(f) = &spec.ssh_config {
        a.extend(["-F".into(), f.clone()]);
    }
    for o in [
        "BatchMode=yes".to_string(),
        "ControlMaster=auto".into(),
        // %C alone hashes the address ssh ends up at: two hosts behind
        // proxies (or aliases of one address) would share a master.
        format!("ControlPath={}/{}-%C", control.display(), master_key(spec)),
        "ControlPersist=60".into(),
        // A dropped host is noticed within ~15 s even when nothing is sent.
        "ServerAliveInterval=5".into(),
        "ServerAliveCountMax=3".into(),
    ] {
        a.extend(["-o".into(), o]);
    }
    if let Some(p) = spec.port {
        a.extend(["-p".into(), p.to_string()]);
    }
    if let Some(i) = &spec.identity {
        a.extend([
            "-i".into(),
            i.clone(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
        ]);
    }
    a
}

/// What tells one way of reaching a host from another (destination, port,
/// key, configuration file), for its master connection's socket name.
fn master_key(spec: &HostSpec) -> String {
    let what = format!(
        "{}\0{:?}\0{:?}\0{:?}",
        spec.ssh, spec.port, spec.identity, spec.ssh_config
    );
    format!("{:08x}", crc32c::crc32c(what.as_bytes()))
}

/// A word for the remote shell.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Where a pushed copy of build `build` lives on the remote host (for its shell).
fn pushed_path(build: &str) -> String {
    format!("\"$HOME/.cache/iolab/bin/iolab-{build}\"")
}

/// The remote shell command that starts the agent.
pub fn remote_agent_command(spec: &HostSpec, build: &str) -> String {
    let fallback = quote(spec.iolab.as_deref().unwrap_or("iolab"));
    format!(
        "p={}; [ -x \"$p\" ] || p={fallback}; exec \"$p\" agent",
        pushed_path(build)
    )
}

/// The command that starts `spec`'s agent; `db` is this host's notebook for a local agent.
pub fn agent_command(spec: &HostSpec, db: Option<&Path>) -> std::io::Result<Command> {
    if let Some(g) = &spec.guest {
        // A micro-guest's agent, through its virtio-serial channel's socket.
        let dir = if Path::new(g).is_absolute() {
            PathBuf::from(g)
        } else {
            crate::guest::lifecycle::state_dir(g)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::NotFound, e.to_string()))?
        };
        let sock = crate::guest::command::GuestPaths::new(dir).agent();
        if !sock.exists() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "{} does not exist: is guest {g} running (iolab guest start {g})?",
                    sock.display()
                ),
            ));
        }
        let mut c = Command::new(std::env::current_exe()?);
        c.args(["lab", "relay"]).arg(sock);
        return Ok(c);
    }
    if spec.is_local() {
        let mut c = Command::new(std::env::current_exe()?);
        c.arg("agent");
        if let Some(db) = db {
            c.arg("--db").arg(db);
        }
        return Ok(c);
    }
    let control = ensure_control_dir()?;
    let mut c = Command::new("ssh");
    c.args(ssh_options(spec, &control))
        .arg(&spec.ssh)
        .arg("--")
        .arg(remote_agent_command(spec, &build_id()));
    Ok(c)
}

/// Copies this iolab binary to `spec` as `~/.cache/iolab/bin/iolab-BUILD`
/// (removing other builds' copies older than ten minutes); returns that
/// path as the remote shell writes it.
pub async fn push(spec: &HostSpec) -> Result<String, AgentError> {
    let build = build_id();
    let fail = |cause: String| AgentError::Refused {
        host: spec.name.clone(),
        message: format!("copying iolab there: {cause}"),
    };
    if spec.is_local() {
        return Err(fail("it is this host".into()));
    }
    let exe = std::fs::read("/proc/self/exe").map_err(|e| fail(e.to_string()))?;
    let control = ensure_control_dir().map_err(|e| fail(e.to_string()))?;
    let dest = pushed_path(&build);
    let script = format!(
        "set -e; d=\"$HOME/.cache/iolab/bin\"; mkdir -p \"$d\"; t=\"$d/.iolab-{build}.$$\"; cat > \"$t\"; chmod 755 \"$t\"; mv -f \"$t\" {dest}; \
         find \"$d\" -maxdepth 1 -name 'iolab-*' ! -name 'iolab-{build}' -mmin +10 -exec rm -f {{}} + 2>/dev/null || true"
    );
    let mut child = Command::new("ssh")
        .args(ssh_options(spec, &control))
        .arg(&spec.ssh)
        .arg("--")
        .arg(script)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| fail(format!("cannot start ssh: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&exe)
            .await
            .map_err(|e| fail(format!("sending the binary: {e}")))?;
        let _ = stdin.shutdown().await;
    }
    let out = tokio::time::timeout(Duration::from_secs(300), child.wait_with_output())
        .await
        .map_err(|_| fail("no end within 300 s".into()))?
        .map_err(|e| fail(e.to_string()))?;
    if !out.status.success() {
        return Err(fail(format!(
            "ssh: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(format!("~/.cache/iolab/bin/iolab-{build}"))
}

/// Starts `spec`'s agent and checks it speaks this protocol. With `push`,
/// a host with no iolab, another protocol or another build gets this
/// binary first (`note` says so).
pub async fn connect(
    spec: &HostSpec,
    db: Option<&Path>,
    push_if_needed: bool,
    mut note: impl FnMut(String),
) -> Result<AgentLink, AgentError> {
    let spawn_err = |e: std::io::Error| AgentError::Spawn {
        host: spec.name.clone(),
        command: "ssh".into(),
        cause: e.to_string(),
    };
    let start = || async {
        AgentLink::start(
            &spec.name,
            agent_command(spec, db).map_err(spawn_err)?,
            HELLO_WITHIN,
        )
        .await
    };
    let first = start().await;
    if spec.is_local() || spec.guest.is_some() || !push_if_needed {
        return first;
    }
    let why = match &first {
        Ok(l) if l.hello().build == build_id() => return first,
        Ok(l) => format!(
            "{} there is another build ({}, {})",
            l.hello().version,
            l.hello().build,
            build_id()
        ),
        Err(AgentError::Gone { status, .. }) if status.contains("127") => {
            "no iolab there".to_string()
        }
        Err(AgentError::Protocol { theirs, .. }) => format!("its iolab speaks protocol {theirs}"),
        Err(_) => return first,
    };
    if let Ok(l) = first {
        let _ = l.close(Duration::from_secs(10)).await;
    }
    note(format!(
        "host {}: {why}: copying this iolab there",
        spec.name
    ));
    let path = push(spec).await?;
    note(format!("host {}: iolab copied to {path}", spec.name));
    start().await
}

/// Ends the ssh master connection to `spec` (left by ControlPersist).
pub async fn stop_master(spec: &HostSpec) {
    if spec.is_local() || spec.guest.is_some() {
        return;
    }
    let control = control_dir();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        Command::new("ssh")
            .args(ssh_options(spec, &control))
            .args(["-O", "exit"])
            .arg(&spec.ssh)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .status(),
    )
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> HostSpec {
        HostSpec {
            name: "lab-a".into(),
            ssh: "root@lab-a".into(),
            port: Some(2222),
            identity: Some("/k/id".into()),
            ssh_config: Some("/k/ssh_config".into()),
            iolab: Some("/opt/it's/iolab".into()),
            ifaces: vec![],
            address: None,
            guest: None,
            portal: None,
        }
    }

    #[test]
    fn ssh_is_batch_multiplexed_and_keeps_host_key_checking() {
        let a = ssh_options(&spec(), Path::new("/run/x"));
        let s = a.join(" ");
        assert!(a.starts_with(&["-T".into(), "-F".into(), "/k/ssh_config".into()]));
        assert!(s.contains("-o BatchMode=yes"), "{s}");
        let key = master_key(&spec());
        assert!(
            s.contains(&format!(
                "-o ControlMaster=auto -o ControlPath=/run/x/{key}-%C -o ControlPersist=60"
            )),
            "{s}"
        );
        // Two hosts behind the same address (proxies) get masters of their own.
        let mut b = spec();
        b.ssh = "root@lab-b".into();
        assert_ne!(master_key(&b), key);
        assert!(s.contains("-p 2222") && s.contains("-i /k/id -o IdentitiesOnly=yes"));
        // Host keys are checked as the user's configuration says.
        assert!(!s.contains("StrictHostKeyChecking"), "{s}");
    }

    #[test]
    fn the_remote_command_prefers_this_build_and_quotes_the_path() {
        let c = remote_agent_command(&spec(), "123-abcd");
        assert_eq!(
            c,
            r#"p="$HOME/.cache/iolab/bin/iolab-123-abcd"; [ -x "$p" ] || p='/opt/it'\''s/iolab'; exec "$p" agent"#
        );
        let sh = std::process::Command::new("sh")
            .args(["-n", "-c", &c])
            .status()
            .unwrap();
        assert!(sh.success(), "not valid sh: {c}");
    }
}

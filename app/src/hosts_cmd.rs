//! Labs across hosts from the command line: `iolab agent`, `iolab hosts`,
//! `iolab lab netns`, and `iolab run` of a profile with `[roles]`.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use iolab_lab_core::agent::proto::{Reply, Request};
use iolab_lab_core::agent::{self, HostsEvent, HostsOptions, ssh};
use iolab_lab_core::netns_lab::{self, NetnsLab};
use iolab_lab_core::notebook::{load_profile, open as open_store};
use iolab_lab_core::profile::Profile;
use iolab_lab_core::profile_run::RunnerEvent;
use iolab_profiles::Store;

use crate::cli::{HostsCmd, LabCmd, NetnsCmd, RunArgs};

/// `iolab agent`: serves a controller on standard input and output.
pub async fn agent(db: Option<&Path>, wait_for_input: bool) -> anyhow::Result<()> {
    agent::serve(
        tokio::io::BufReader::new(tokio::io::stdin()),
        tokio::io::stdout(),
        agent::AgentOptions {
            db: db.map(Path::to_path_buf),
            wait_for_input,
        },
    )
    .await
    .context("agent")
}

/// `iolab run` of a profile whose `[roles]` put target and initiator on hosts.
pub async fn run_across(
    db: Option<&Path>,
    store: &mut Store,
    p: &Profile,
    body: &str,
    a: &RunArgs,
) -> anyhow::Result<()> {
    if a.keep_tuning {
        bail!("--keep-tuning: a lab across hosts puts every host back when its run ends");
    }
    if a.netns.is_some() || !a.ifaces.is_empty() {
        bail!(
            "--netns and --iface are for runs on this host; a host's lab interfaces are its `ifaces` in [[hosts]]"
        );
    }
    if a.metrics.is_some() {
        bail!("--metrics is for runs on this host; `iolab watch` a host's own exporter instead");
    }
    let mut p = p.clone();
    let mut body = body.to_string();
    if a.no_tuning && p.tuning.is_some() {
        p.tuning = None;
        body = p.to_toml();
    }
    let opts = HostsOptions {
        db: db.map(Path::to_path_buf),
        push: !a.no_push,
    };
    let mut cell_target: Vec<iolab_iscsi::target::SessionInfo> = Vec::new();
    let run = agent::run_across_hosts(&p, &body, &opts, |e| match e {
        HostsEvent::Note(m) => eprintln!("{m}"),
        // The host's own note says where its target listens.
        HostsEvent::Runner(RunnerEvent::TargetStarted(_)) => {}
        HostsEvent::Runner(done @ RunnerEvent::CellDone { .. }) => {
            let conns: Vec<String> = cell_target
                .iter()
                .flat_map(|s| &s.connections)
                .map(|c| {
                    format!(
                        "cid {} {} mss {}",
                        c.cid,
                        c.peer,
                        c.mss.map_or("?".into(), |m| m.to_string())
                    )
                })
                .collect();
            if let Some(l) = crate::runner::progress_line(&done) {
                eprintln!("{l}; the target saw: {}", conns.join(", "));
            }
        }
        HostsEvent::Runner(e) => {
            if let Some(l) = crate::runner::progress_line(&e) {
                eprintln!("{l}");
            }
        }
        HostsEvent::CellTarget { sessions, .. } => cell_target = sessions,
        HostsEvent::Sessions { .. } => {}
    })
    .await?;
    crate::runner::store_and_print(store, run)
}

pub async fn hosts_cmd(db: Option<&Path>, c: HostsCmd) -> anyhow::Result<()> {
    let store = open_store(db)?;
    match c {
        HostsCmd::Check { profile, push } => {
            let (_, p) = load_profile(&store, &profile)?;
            if p.hosts.is_empty() {
                bail!("profile {} has no [[hosts]]", p.name);
            }
            let mut failed = 0;
            for h in &p.hosts {
                match ssh::connect(h, db, push, |m| eprintln!("{m}")).await {
                    Ok(link) => {
                        let hello = link.hello().clone();
                        let facts = link
                            .call(Request::Facts { peer: h.address }, Duration::from_secs(30))
                            .await;
                        let _ = link.close(Duration::from_secs(10)).await;
                        ssh::stop_master(h).await;
                        let mine = agent::serve::build_id();
                        println!(
                            "{}: {} ({}{}) on {}",
                            h.name,
                            hello.version,
                            hello.build,
                            if hello.build == mine {
                                ", this build"
                            } else if h.guest.is_some() {
                                ", the guest image's"
                            } else {
                                ", another build: iolab hosts push"
                            },
                            hello.hostname
                        );
                        if let Ok(Reply::Facts { facts: f }) = facts {
                            println!(
                                "  {}, {} x {}, {} MiB, lab interfaces: {}",
                                f.kernel,
                                f.cores,
                                f.cpu_model,
                                f.memory_bytes >> 20,
                                if f.interfaces.is_empty() {
                                    "none found".into()
                                } else {
                                    f.interfaces.join(", ")
                                }
                            );
                        }
                    }
                    Err(e) => {
                        failed += 1;
                        println!("{}: {e}", h.name);
                    }
                }
            }
            if failed > 0 {
                bail!("{failed} of {} host(s) cannot be reached", p.hosts.len());
            }
        }
        HostsCmd::Push { profile, hosts } => {
            let (_, p) = load_profile(&store, &profile)?;
            for name in &hosts {
                if !p.hosts.iter().any(|h| &h.name == name) {
                    bail!("profile {} has no host named {name}", p.name);
                }
            }
            for h in p
                .hosts
                .iter()
                .filter(|h| hosts.is_empty() || hosts.contains(&h.name))
            {
                if h.is_local() {
                    println!("{}: this host (nothing to copy)", h.name);
                    continue;
                }
                let path = ssh::push(h).await?;
                ssh::stop_master(h).await;
                println!("{}: iolab copied to {path}", h.name);
            }
        }
    }
    Ok(())
}

pub async fn lab_cmd(c: LabCmd) -> anyhow::Result<()> {
    match c {
        LabCmd::Relay { addr } => relay(addr).await,
        LabCmd::Netns(NetnsCmd::Up { name }) => {
            let lab = NetnsLab::new(&name)?;
            let exe = std::env::current_exe().context("finding this iolab binary")?;
            lab.up(&exe)?;
            println!(
                "lab '{name}' is up: hosts {} ({} {}/24 on {}) and {} ({} {}/24), sshd in each",
                lab.host('a'),
                lab.netns('a'),
                netns_lab::A_ADDR,
                netns_lab::LAB_IFACE,
                lab.host('b'),
                lab.netns('b'),
                netns_lab::B_ADDR
            );
            println!(
                "ssh -F {} {} reaches the first; `iolab lab netns down` removes it all",
                lab.ssh_config().display(),
                lab.host('a')
            );
            Ok(())
        }
        LabCmd::Netns(NetnsCmd::Down { name }) => {
            let lab = NetnsLab::new(&name)?;
            if !lab.is_up() {
                println!("lab '{name}' is not up");
            }
            for s in lab.down() {
                println!("stopped {s}");
            }
            Ok(())
        }
        LabCmd::Netns(NetnsCmd::Status { name }) => {
            let lab = NetnsLab::new(&name)?;
            if !lab.is_up() {
                println!("lab '{name}' is down");
                return Ok(());
            }
            println!("lab '{name}' is up ({})", lab.ssh_config().display());
            for side in ['a', 'b'] {
                let ns = lab.netns(side);
                println!("{} ({ns}):", lab.host(side));
                for pid in netns_lab::pids_in(&ns) {
                    println!("  {pid} {}", netns_lab::comm(pid));
                }
            }
            Ok(())
        }
    }
}

/// Copies standard input to `addr` (a TCP address, or a Unix socket's
/// path) and what comes back to standard output.
async fn relay(addr: String) -> anyhow::Result<()> {
    match addr.parse::<std::net::SocketAddr>() {
        Ok(a) => {
            let sock = tokio::net::TcpStream::connect(a)
                .await
                .with_context(|| format!("connecting to {a}"))?;
            let (r, w) = sock.into_split();
            pump(r, w).await
        }
        Err(_) => {
            let sock = tokio::net::UnixStream::connect(&addr)
                .await
                .with_context(|| format!("connecting to {addr}"))?;
            let (r, w) = sock.into_split();
            pump(r, w).await
        }
    }
}

async fn pump(
    mut r: impl tokio::io::AsyncRead + Unpin,
    mut w: impl tokio::io::AsyncWrite + Unpin,
) -> anyhow::Result<()> {
    let up = async {
        let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut w).await;
        let _ = tokio::io::AsyncWriteExt::shutdown(&mut w).await;
    };
    let down = async {
        let mut out = tokio::io::stdout();
        let _ = tokio::io::copy(&mut r, &mut out).await;
        let _ = tokio::io::AsyncWriteExt::flush(&mut out).await;
    };
    // The connection's end ends the relay; the end of stdin does not.
    tokio::select! {
        _ = async { up.await; std::future::pending::<()>().await } => {}
        _ = down => {}
    }
    Ok(())
}

//! `iolab target serve`.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use iolab_iscsi::Target;
use iolab_iscsi::chap::ChapCredentials;
use iolab_iscsi::target::config::{Acl, DEFAULT_IQN, DEFAULT_PORT};
use iolab_iscsi::target::{ServerConfig, TargetConfig};
use iolab_storage::BackstoreSpec;
use iolab_storage::backstore::parse_size;

use iolab_lab_core::target_file;

use crate::cli::{ServeArgs, TargetCmd};

/// `iolab target import` and `iolab target export`.
pub fn convert(cmd: TargetCmd) -> anyhow::Result<()> {
    let (text, notes, output) = match cmd {
        TargetCmd::Import {
            file,
            format,
            output,
        } => {
            let imported = target_file::load(&file, format)?;
            let (text, _) = target_file::export(&imported.config, target_file::Format::Toml)?;
            (text, imported.notes, output)
        }
        TargetCmd::Export {
            config,
            format,
            output,
        } => {
            let imported = target_file::load(&config, None)?;
            let (text, mut notes) = target_file::export(&imported.config, format)?;
            notes.splice(0..0, imported.notes);
            (text, notes, output)
        }
        TargetCmd::Serve(_) => bail!("serve is not a conversion"),
    };
    for n in &notes {
        eprintln!("iolab: not represented: {n}");
    }
    match output {
        Some(p) => std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?,
        None => {
            use std::io::Write;
            std::io::stdout().write_all(text.as_bytes())?;
        }
    }
    Ok(())
}

/// Builds the server configuration from the command line (and `--config`).
pub fn build_config(a: &ServeArgs) -> anyhow::Result<ServerConfig> {
    let mut cfg = match &a.config {
        Some(path) => {
            let imported = target_file::load(path, None)?;
            for n in &imported.notes {
                eprintln!("iolab: {}: not represented: {n}", path.display());
            }
            imported.config
        }
        None => ServerConfig {
            listen: Vec::new(),
            targets: vec![TargetConfig::new(DEFAULT_IQN)],
        },
    };
    if !a.listen.is_empty() {
        cfg.listen = a.listen.clone();
    }
    if cfg.listen.is_empty() {
        cfg.listen
            .push(SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)).into());
    }
    let t = cfg
        .targets
        .first_mut()
        .context("the configuration has no target")?;
    if let Some(iqn) = &a.iqn {
        t.iqn = iqn.clone();
    }
    for s in &a.ramdisk {
        t.add_lun(BackstoreSpec::Ramdisk {
            size: parse_size(s)?,
        });
    }
    for f in &a.fileio {
        let (path, size) = match f.rsplit_once(':') {
            Some((p, s)) if parse_size(s).is_ok() => (p, Some(parse_size(s)?)),
            _ => (f.as_str(), None),
        };
        t.add_lun(BackstoreSpec::Fileio {
            path: path.into(),
            size,
            direct: a.direct,
        });
    }
    for b in &a.block {
        t.add_lun(BackstoreSpec::Block {
            path: b.clone(),
            direct: a.direct,
        });
    }
    if t.luns.is_empty() {
        t.add_lun(BackstoreSpec::Ramdisk { size: 1 << 30 });
    }
    if let Some(c) = &a.chap {
        t.chap = Some(ChapCredentials::parse(c).context("--chap takes USER:SECRET")?);
    }
    if let Some(c) = &a.mutual_chap {
        if t.chap.is_none() {
            bail!("--mutual-chap needs --chap");
        }
        t.mutual_chap = Some(ChapCredentials::parse(c).context("--mutual-chap takes USER:SECRET")?);
    }
    if !a.acl.is_empty() {
        t.demo_mode = false;
        for iqn in &a.acl {
            t.acls.push(Acl {
                initiator: iqn.clone(),
                chap: t.chap.clone(),
                mutual_chap: t.mutual_chap.clone(),
            });
        }
    }
    if let Some(d) = a.queue_depth {
        t.queue_depth = d;
    }
    if let Some(n) = a.nop_interval {
        t.nop_in_interval = n;
    }
    for l in &mut t.luns {
        l.attributes.read_only |= a.read_only;
        l.attributes.removable |= a.removable;
        if let Some(p) = a.physical_block_size {
            l.attributes.physical_block_size = p;
        }
    }
    cfg.validate().map_err(|e| anyhow::anyhow!(e))?;
    Ok(cfg)
}

/// One connection's counters, as `--stats` prints them.
#[derive(serde::Serialize)]
pub struct Stat {
    pub tsih: u16,
    pub cid: u16,
    pub initiator: String,
    pub peer: String,
    pub mss: Option<u32>,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub commands: u64,
    pub errors: u64,
}

/// The connections whose counters moved since the last call.
pub fn stats(
    sessions: &[iolab_iscsi::SessionInfo],
    last: &mut std::collections::HashMap<(u16, u16), u64>,
) -> Vec<Stat> {
    let mut out = Vec::new();
    for s in sessions {
        for c in &s.connections {
            let st = &c.stats;
            let moved = st.bytes_in + st.bytes_out;
            if last.insert((s.tsih, c.cid), moved) == Some(moved) {
                continue;
            }
            out.push(Stat {
                tsih: s.tsih,
                cid: c.cid,
                initiator: s.initiator.clone(),
                peer: c.peer.to_string(),
                mss: c.mss,
                read_bytes: st.read_bytes,
                write_bytes: st.write_bytes,
                commands: st.commands,
                errors: st.errors,
            });
        }
    }
    out
}

/// One line per connection whose counters moved since the last call.
pub fn stats_lines(
    sessions: &[iolab_iscsi::SessionInfo],
    last: &mut std::collections::HashMap<(u16, u16), u64>,
) -> Vec<String> {
    stats(sessions, last)
        .into_iter()
        .map(|s| {
            format!(
                "stats tsih={} cid={} initiator={} peer={} mss={} read_bytes={} write_bytes={} commands={} errors={}",
                s.tsih,
                s.cid,
                s.initiator,
                s.peer,
                s.mss.map(|m| m.to_string()).unwrap_or_else(|| "-".into()),
                s.read_bytes,
                s.write_bytes,
                s.commands,
                s.errors
            )
        })
        .collect()
}

/// Targets reachable from other hosts in demo mode without CHAP.
pub fn exposure_warnings(cfg: &ServerConfig) -> Vec<String> {
    let mut out = Vec::new();
    for p in &cfg.listen {
        let addr = p.bind;
        for t in &cfg.targets {
            if !addr.ip().is_loopback() && t.demo_mode && t.chap.is_none() {
                out.push(format!(
                    "{} is served on {addr} in demo mode without CHAP: any host that reaches it can read and write its LUNs",
                    t.iqn
                ));
            }
        }
    }
    out
}

pub async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let cfg = build_config(&a)?;
    for w in exposure_warnings(&cfg) {
        eprintln!("iolab: warning: {w}");
    }
    let target = Target::start(cfg).await?;
    let _metrics = match a.metrics {
        Some(addr) => {
            let source = iolab_lab_core::metrics::registry_source(target.registry().clone());
            let r = target.registry().clone();
            let extra: iolab_lab_core::metrics::Extra =
                std::sync::Arc::new(move || iolab_lab_core::metrics::target_extra(&r));
            let (bound, task) = iolab_lab_core::metrics::serve(addr, source, extra)
                .await
                .with_context(|| format!("serving metrics on {addr}"))?;
            say(
                &a,
                &Said::Metrics {
                    url: format!("http://{bound}/metrics"),
                },
            )?;
            Some(task)
        }
        None => None,
    };
    luns(&a, &target)?;
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut tick = tokio::time::interval(a.stats.unwrap_or(std::time::Duration::from_secs(3600)));
    let mut last: std::collections::HashMap<(u16, u16), u64> = std::collections::HashMap::new();
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => { r?; break; }
            _ = term.recv() => break,
            _ = hup.recv() => {
                reload(&a, &target).await;
                let _ = std::io::stdout().flush();
            }
            _ = tick.tick(), if a.stats.is_some() => {
                if a.json {
                    for s in stats(&target.sessions(), &mut last) {
                        println!("{}", crate::json::line("iolab.stats.v1", &s)?);
                    }
                } else {
                    for line in stats_lines(&target.sessions(), &mut last) {
                        println!("{line}");
                    }
                }
                let _ = std::io::stdout().flush();
            }
        }
    }
    target.shutdown();
    Ok(())
}

/// SIGHUP: reads the configuration again (`--config` and the options) and
/// applies the difference to the running target, as `tgt-admin --update`
/// does; sessions on untouched LUNs keep running. Prints `reconfigured:
/// WHAT` and a `lun` line per LUN now served, or `reconfigure failed:
/// WHY` (nothing changed then).
async fn reload(a: &ServeArgs, target: &Target) {
    let result = match build_config(a) {
        Ok(cfg) => {
            for w in exposure_warnings(&cfg) {
                eprintln!("iolab: warning: {w}");
            }
            target.reconfigure(cfg).await.map_err(anyhow::Error::from)
        }
        Err(e) => Err(e),
    };
    let said = match result {
        Ok(changes) if changes.is_empty() => say(
            a,
            &Said::Reconfigured {
                changes: Vec::new(),
            },
        ),
        Ok(changes) => say(
            a,
            &Said::Reconfigured {
                changes: changes.summary(),
            },
        )
        .and_then(|()| luns(a, target)),
        Err(e) => say(
            a,
            &Said::ReconfigureFailed {
                error: format!("{e:#}"),
            },
        ),
    };
    if let Err(e) = said {
        eprintln!("iolab: {e:#}");
    }
}

/// What `target serve` tells its reader on stdout, as text or JSON lines.
#[derive(serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
enum Said {
    Lun {
        url: String,
        target: String,
        lun: u64,
        portal: String,
    },
    Metrics {
        url: String,
    },
    Reconfigured {
        changes: Vec<String>,
    },
    ReconfigureFailed {
        error: String,
    },
}

fn say(a: &ServeArgs, s: &Said) -> anyhow::Result<()> {
    if a.json {
        println!("{}", crate::json::line("iolab.serve.v1", s)?);
        return Ok(());
    }
    match s {
        Said::Lun { url, .. } => println!("lun {url}"),
        Said::Metrics { url } => println!("metrics {url}"),
        Said::Reconfigured { changes } if changes.is_empty() => {
            println!("reconfigured: nothing changed")
        }
        Said::Reconfigured { changes } => println!("reconfigured: {}", changes.join("; ")),
        Said::ReconfigureFailed { error } => println!("reconfigure failed: {error}"),
    }
    Ok(())
}

/// One `lun` line (or JSON object) per LUN URL the target serves.
fn luns(a: &ServeArgs, target: &Target) -> anyhow::Result<()> {
    for url in target.lun_urls() {
        let parsed = iolab_iscsi::initiator::IscsiUrl::parse(&url, false)?;
        say(
            a,
            &Said::Lun {
                target: parsed.target.clone().unwrap_or_default(),
                lun: parsed.lun,
                portal: parsed.portal(),
                url,
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn args(extra: &[&str]) -> ServeArgs {
        let mut v = vec!["iolab", "target", "serve"];
        v.extend_from_slice(extra);
        match crate::cli::Cli::parse_from(v).command {
            Some(crate::cli::Command::Target(crate::cli::TargetCmd::Serve(a))) => *a,
            other => panic!("parsed {other:?}"),
        }
    }

    #[test]
    fn defaults_are_one_gib_ramdisk_on_loopback() {
        let c = build_config(&args(&[])).unwrap();
        assert_eq!(c.listen, vec!["127.0.0.1:3260".parse().unwrap()]);
        let c = build_config(&args(&["--listen", "127.0.0.1:0=10.0.2.2:3260"])).unwrap();
        assert_eq!(
            c.listen[0].advertise,
            Some("10.0.2.2:3260".parse().unwrap())
        );
        assert_eq!(c.targets[0].iqn, DEFAULT_IQN);
        assert_eq!(
            c.targets[0].luns[0].backstore,
            BackstoreSpec::Ramdisk { size: 1 << 30 }
        );
        assert!(exposure_warnings(&c).is_empty());
    }

    #[test]
    fn demo_mode_without_chap_off_loopback_warns() {
        let c = build_config(&args(&["--listen", "0.0.0.0:3260"])).unwrap();
        let w = exposure_warnings(&c);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("demo mode without CHAP"), "{w:?}");
        let c = build_config(&args(&[
            "--listen",
            "0.0.0.0:3260",
            "--chap",
            "u:secret12345",
        ]))
        .unwrap();
        assert!(exposure_warnings(&c).is_empty());
        let c = build_config(&args(&[
            "--listen",
            "0.0.0.0:3260",
            "--acl",
            "iqn.2026-11.org.example:h",
        ]))
        .unwrap();
        assert!(exposure_warnings(&c).is_empty(), "an ACL is not demo mode");
    }

    #[test]
    fn luns_from_the_command_line_are_numbered_in_order() {
        let c = build_config(&args(&[
            "--ramdisk",
            "16M",
            "--fileio",
            "/tmp/x.img:8M",
            "--block",
            "/dev/null",
            "--read-only",
        ]))
        .unwrap();
        let l = &c.targets[0].luns;
        assert_eq!(l.iter().map(|x| x.lun).collect::<Vec<_>>(), vec![0, 1, 2]);
        assert!(l.iter().all(|x| x.attributes.read_only));
        assert!(
            matches!(l[1].backstore, BackstoreSpec::Fileio { size: Some(s), .. } if s == 8 << 20)
        );
        assert!(
            build_config(&args(&["--mutual-chap", "a:b"])).is_err(),
            "mutual CHAP without CHAP"
        );
        assert!(build_config(&args(&["--iqn", "bad"])).is_err());
    }
}

//! `iolab target serve`.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use iolab_iscsi::Target;
use iolab_iscsi::chap::ChapCredentials;
use iolab_iscsi::target::config::{Acl, DEFAULT_IQN, DEFAULT_PORT};
use iolab_iscsi::target::{ServerConfig, TargetConfig};
use iolab_storage::BackstoreSpec;
use iolab_storage::backstore::parse_size;

use crate::cli::ServeArgs;

/// Builds the server configuration from the command line (and `--config`).
pub fn build_config(a: &ServeArgs) -> anyhow::Result<ServerConfig> {
    let mut cfg = match &a.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            toml::from_str::<ServerConfig>(&text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?
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
            .push(SocketAddr::from(([127, 0, 0, 1], DEFAULT_PORT)));
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

pub async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    let cfg = build_config(&a)?;
    for (addr, t) in cfg
        .listen
        .iter()
        .flat_map(|l| cfg.targets.iter().map(move |t| (l, t)))
    {
        if !addr.ip().is_loopback() && t.demo_mode && t.chap.is_none() {
            eprintln!(
                "iolab: warning: {} is served on {addr} in demo mode without CHAP: any host that reaches it can read and write its LUNs",
                t.iqn
            );
        }
    }
    let target = Target::start(cfg).await?;
    for url in target.lun_urls() {
        println!("lun {url}");
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    target.shutdown();
    Ok(())
}

//! `iolab tune`: plan, apply and revert host tuning, here or in a network namespace.

use std::path::Path;

use anyhow::bail;
use iolab_lab_core::tuning::apply::HOST_DEFAULTS;
use iolab_lab_core::tuning::plan::{mtu_targets, normalized};
use iolab_lab_core::tuning::{self, Namespace, Plan, TuneHost, profile as tprofile};
use iolab_profiles::Store;

use crate::cli::{TuneCmd, TuneProfileArgs};
use crate::tune_steps::{apply_plan, render_plan, revert, where_};
use iolab_lab_core::notebook::{open as open_store, resolve_tuning as resolve};

fn namespace(netns: Option<&str>) -> anyhow::Result<Namespace> {
    Namespace::open(netns).map_err(|e| anyhow::anyhow!(e))
}

/// Plans a profile from its command-line arguments.
fn planned(
    store: &Store,
    host: &dyn TuneHost,
    a: &TuneProfileArgs,
) -> anyhow::Result<(Plan, String)> {
    let scope = tuning::scope(a.target.netns.as_deref());
    let profile = resolve(store, &a.profile, &scope)?;
    let problems = profile.problems();
    if !problems.is_empty() {
        bail!("tuning profile {}: {}", profile.name, problems.join("; "));
    }
    let mtus = mtu_targets(&profile, &a.ifaces, a.mtu).map_err(|e| anyhow::anyhow!(e))?;
    Ok((tuning::plan(host, &profile, &mtus), scope))
}

pub fn tune_cmd(db: Option<&Path>, cmd: TuneCmd) -> anyhow::Result<()> {
    let mut store = open_store(db)?;
    match cmd {
        TuneCmd::Show(t) => {
            let netns = t.netns.as_deref();
            let host = namespace(netns)?;
            let scope = tuning::scope(netns);
            println!("host values in {}:", where_(netns));
            let mut keys: Vec<String> = tprofile::builtins()
                .iter()
                .flat_map(|p| p.sysctls.keys().cloned())
                .collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let v = match host.read(&k) {
                    Ok(Some(v)) => normalized(&v),
                    Ok(None) => "(not in this namespace)".into(),
                    Err(e) => format!("({e})"),
                };
                println!("  {k:<34} {v}");
            }
            for i in host.interfaces() {
                let m = host
                    .mtu(&i)
                    .map(|m| m.to_string())
                    .unwrap_or_else(|e| format!("({e})"));
                println!("  mtu:{i:<30} {m}");
            }
            let originals = store.originals(&scope)?;
            if originals.is_empty() {
                println!("nothing recorded: the lab has not changed this namespace");
            } else {
                println!(
                    "recorded before the lab changed them (`iolab tune revert` puts them back):"
                );
                for o in originals {
                    println!("  {:<34} {}", o.key, normalized(&o.value));
                }
            }
            println!("tuning profiles:");
            for p in tprofile::builtins() {
                println!("  {:<20} {}", p.name, p.description);
            }
            println!("  {HOST_DEFAULTS:<20} the recorded values above");
        }
        TuneCmd::Plan(a) => {
            let host = namespace(a.target.netns.as_deref())?;
            let (plan, _) = planned(&store, &host, &a)?;
            print!("{}", render_plan(&plan, a.target.netns.as_deref()));
        }
        TuneCmd::Apply(a) => {
            let netns = a.target.netns.as_deref();
            let host = namespace(netns)?;
            let (plan, scope) = planned(&store, &host, &a)?;
            print!("{}", render_plan(&plan, netns));
            apply_plan(&mut store, &host, &plan, &scope, netns)?;
        }
        TuneCmd::Revert(t) => {
            let host = namespace(t.netns.as_deref())?;
            revert(&mut store, &host, t.netns.as_deref())?;
        }
    }
    Ok(())
}

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
            let netns = t.target.netns.as_deref();
            let host = namespace(netns)?;
            let scope = tuning::scope(netns);
            let mut keys: Vec<String> = tprofile::builtins()
                .iter()
                .flat_map(|p| p.sysctls.keys().cloned())
                .collect();
            keys.sort();
            keys.dedup();
            // Each value, or why there is none.
            let sysctls: Vec<(String, Result<String, String>)> = keys
                .into_iter()
                .map(|k| {
                    let v = match host.read(&k) {
                        Ok(Some(v)) => Ok(normalized(&v)),
                        Ok(None) => Err("not in this namespace".to_string()),
                        Err(e) => Err(e.to_string()),
                    };
                    (k, v)
                })
                .collect();
            let mtus: Vec<(String, Result<u32, String>)> = host
                .interfaces()
                .into_iter()
                .map(|i| {
                    let m = host.mtu(&i).map_err(|e| e.to_string());
                    (i, m)
                })
                .collect();
            let originals = store.originals(&scope)?;
            if t.json {
                #[derive(serde::Serialize)]
                struct Value {
                    key: String,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    value: Option<String>,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    error: Option<String>,
                }
                #[derive(serde::Serialize)]
                struct Mtu {
                    interface: String,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    mtu: Option<u32>,
                    #[serde(skip_serializing_if = "Option::is_none")]
                    error: Option<String>,
                }
                #[derive(serde::Serialize)]
                struct Show {
                    netns: Option<String>,
                    sysctls: Vec<Value>,
                    mtus: Vec<Mtu>,
                    /// What the lab changed here, as it was before.
                    originals: Vec<Value>,
                    profiles: Vec<String>,
                }
                let doc = Show {
                    netns: netns.map(str::to_string),
                    sysctls: sysctls
                        .into_iter()
                        .map(|(key, v)| Value {
                            key,
                            value: v.as_ref().ok().cloned(),
                            error: v.err(),
                        })
                        .collect(),
                    mtus: mtus
                        .into_iter()
                        .map(|(interface, m)| Mtu {
                            interface,
                            mtu: m.as_ref().ok().copied(),
                            error: m.err(),
                        })
                        .collect(),
                    originals: originals
                        .into_iter()
                        .map(|o| Value {
                            key: o.key,
                            value: Some(normalized(&o.value)),
                            error: None,
                        })
                        .collect(),
                    profiles: tprofile::builtins()
                        .iter()
                        .map(|p| p.name.clone())
                        .collect(),
                };
                println!("{}", crate::json::pretty("iolab.tune-show.v1", &doc)?);
                return Ok(());
            }
            println!("host values in {}:", where_(netns));
            for (k, v) in sysctls {
                let v = v.unwrap_or_else(|e| format!("({e})"));
                println!("  {k:<34} {v}");
            }
            for (i, m) in mtus {
                let m = m
                    .map(|m| m.to_string())
                    .unwrap_or_else(|e| format!("({e})"));
                println!("  mtu:{i:<30} {m}");
            }
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

//! `iolab tune`: plan, apply and revert host tuning, here or in a network namespace.

use std::path::Path;

use anyhow::{Context, bail};
use iolab_lab_core::tuning::apply::{HOST_DEFAULTS, host_defaults};
use iolab_lab_core::tuning::plan::{mtu_targets, normalized};
use iolab_lab_core::tuning::{
    self, KeyAccess, Namespace, Plan, Severity, TuneHost, TuningProfile, profile as tprofile,
};
use iolab_profiles::Store;

use crate::cli::{TuneCmd, TuneProfileArgs};
use crate::notebook_cmd::{load_profile, open_store};

fn where_(netns: Option<&str>) -> String {
    match netns {
        Some(n) => format!("network namespace {n}"),
        None => "the current network namespace".into(),
    }
}

/// A tuning profile by name: built-in, host-defaults, a lab profile's [tuning], or a file.
pub fn resolve(store: &Store, name: &str, scope: &str) -> anyhow::Result<TuningProfile> {
    if let Some(t) = tprofile::builtin(name) {
        return Ok(t);
    }
    if name == HOST_DEFAULTS {
        return Ok(host_defaults(store, scope)?);
    }
    if Path::new(name).is_file() {
        let text = std::fs::read_to_string(name).with_context(|| format!("reading {name}"))?;
        if let Ok(t) = toml::from_str::<TuningProfile>(&text) {
            return Ok(t);
        }
    }
    match load_profile(store, name) {
        Ok((_, p)) => p
            .tuning
            .with_context(|| format!("profile {name} has no [tuning]")),
        Err(e) => bail!(
            "{e:#}\n(tuning profiles: {}, {HOST_DEFAULTS})",
            tprofile::builtins()
                .iter()
                .map(|t| t.name.clone())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

fn status(i: &tuning::PlanItem) -> String {
    if let Some(n) = &i.note {
        return format!("skip: {n}");
    }
    match (i.change, i.access) {
        (false, _) => "same".into(),
        (true, KeyAccess::Writable) => "change".into(),
        (true, KeyAccess::Denied) => "refused: no permission".into(),
        (true, KeyAccess::ReadOnly) => "skip: read-only here".into(),
        (true, KeyAccess::Absent) => "refused: unknown".into(),
    }
}

pub fn render_plan(plan: &Plan, netns: Option<&str>) -> String {
    let mut out = format!(
        "tuning profile {} in {}\n{:<34} {:<28} {:<28} {}\n",
        plan.profile,
        where_(netns),
        "key",
        "current",
        "wanted",
        "action"
    );
    for i in &plan.items {
        out += &format!(
            "{:<34} {:<28} {:<28} {}\n",
            i.key,
            i.current
                .as_deref()
                .map(normalized)
                .unwrap_or_else(|| "-".into()),
            normalized(&i.wanted),
            status(i)
        );
    }
    for (sev, title) in [(Severity::Warning, "warning"), (Severity::Error, "error")] {
        for l in plan.lints.iter().filter(|l| l.severity == sev) {
            out += &format!("{title}: {}: {}\n", l.key, l.message);
        }
    }
    out
}

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

/// Applies a plan and says what happened; the caller reverts with [`revert`].
pub fn apply_plan(
    store: &mut Store,
    host: &dyn TuneHost,
    plan: &Plan,
    scope: &str,
    netns: Option<&str>,
) -> anyhow::Result<()> {
    let r = tuning::apply(host, store, scope, plan)
        .with_context(|| format!("applying {} in {}", plan.profile, where_(netns)))?;
    eprintln!(
        "tuning {} applied in {}: {} value(s) written, {} skipped; the previous values are recorded in {}",
        plan.profile,
        where_(netns),
        r.written.len(),
        r.skipped.len(),
        store.path().display()
    );
    for (k, why) in &r.skipped {
        eprintln!("  skipped {k}: {why}");
    }
    for w in &r.readback {
        eprintln!("  warning: {w}");
    }
    Ok(())
}

pub fn revert(store: &mut Store, host: &dyn TuneHost, netns: Option<&str>) -> anyhow::Result<()> {
    let scope = tuning::scope(netns);
    let restored = tuning::revert(host, store, &scope)
        .with_context(|| format!("reverting tuning in {}", where_(netns)))?;
    if restored.is_empty() {
        eprintln!("nothing to revert in {}", where_(netns));
    }
    for o in &restored {
        eprintln!("restored {} = {}", o.key, normalized(&o.value));
    }
    Ok(())
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

//! Host tuning as the command line shows it, shared by `iolab tune` and
//! `iolab run`: a plan as a table, applying it with a report, reverting.

use anyhow::Context;
use iolab_lab_core::tuning::plan::normalized;
use iolab_lab_core::tuning::{self, KeyAccess, Plan, Severity, TuneHost};
use iolab_profiles::Store;

/// Where tuning happens, in words.
pub fn where_(netns: Option<&str>) -> String {
    match netns {
        Some(n) => format!("network namespace {n}"),
        None => "the current network namespace".into(),
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

/// A plan as a table: key, current, wanted, what will happen; then its lints.
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

/// Puts back what the lab recorded, and says what.
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

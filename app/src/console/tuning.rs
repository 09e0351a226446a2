//! The Network screen's work: planning the chosen tuning profile against
//! this namespace, and applying or reverting it once confirmed.

use iolab_lab_core::tuning::apply::HOST_DEFAULTS;
use iolab_lab_core::tuning::{self, TuneHost, TuningProfile, profile as tprofile};
use iolab_profiles::Store;

use super::state::NetworkView;

/// The tuning profiles the screen offers.
pub fn profile_names() -> Vec<String> {
    let mut v: Vec<String> = tprofile::builtins().into_iter().map(|p| p.name).collect();
    v.push(HOST_DEFAULTS.into());
    v
}

/// A profile the screen offers, resolved as `iolab tune` does.
fn profile(name: &str, store: Option<&Store>, scope: &str) -> Result<TuningProfile, String> {
    match store {
        Some(s) => {
            iolab_lab_core::notebook::resolve_tuning(s, name, scope).map_err(|e| e.to_string())
        }
        None => tprofile::builtin(name).ok_or_else(|| "the notebook is unavailable".into()),
    }
}

/// Re-reads the interfaces and plans the selected profile.
pub fn refresh(
    view: &mut NetworkView,
    host: &dyn TuneHost,
    store: Option<&Store>,
    scope: &str,
) -> Result<(), String> {
    let marked = if view.ifaces.is_empty() {
        view.premarked.clone()
    } else {
        view.marked()
    };
    view.ifaces = host
        .interfaces()
        .into_iter()
        .map(|i| {
            let mtu = host.mtu(&i).ok();
            let m = marked.contains(&i);
            (i, mtu, m)
        })
        .collect();
    view.cursor = view.cursor.min(view.ifaces.len().saturating_sub(1));
    view.recorded = store
        .and_then(|s| s.originals(scope).ok())
        .map_or(0, |o| o.len());
    let name = view.profile().unwrap_or("seed").to_string();
    let p = match &view.lab_tuning {
        Some(t) if t.name == name => t.clone(),
        _ => profile(&name, store, scope)?,
    };
    let mtus: Vec<(String, u32)> = match p.mtu {
        Some(m) => view.marked().into_iter().map(|i| (i, m)).collect(),
        None => p.interfaces.iter().map(|(i, m)| (i.clone(), *m)).collect(),
    };
    view.plan = Some(tuning::plan(host, &p, &mtus));
    view.chosen = Some(p);
    Ok(())
}

/// Applies the current plan; returns the line for the status bar.
pub fn apply(
    view: &NetworkView,
    host: &dyn TuneHost,
    store: Option<&mut Store>,
    scope: &str,
) -> String {
    let (Some(plan), Some(store)) = (&view.plan, store) else {
        return "nothing applied: no plan, or the notebook (which records the values first) is unavailable".into();
    };
    match tuning::apply(host, store, scope, plan) {
        Ok(r) => format!(
            "{} applied: {} value(s) written, {} skipped; u puts them back",
            plan.profile,
            r.written.len(),
            r.skipped.len()
        ),
        Err(e) => e.to_string().replace('\n', " "),
    }
}

/// Reverts what the lab recorded; returns the line for the status bar.
pub fn revert(host: &dyn TuneHost, store: Option<&mut Store>, scope: &str) -> String {
    let Some(store) = store else {
        return "the notebook is unavailable: nothing to revert from".into();
    };
    match tuning::revert(host, store, scope) {
        Ok(v) if v.is_empty() => "nothing to revert".into(),
        Ok(v) => format!("{} value(s) put back", v.len()),
        Err(e) => e.to_string(),
    }
}

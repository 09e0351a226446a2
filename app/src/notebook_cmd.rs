//! `iolab profile`, `iolab runs` and `iolab run`: the lab notebook from the command line.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use iolab_lab_core::profile::{self, PROFILE_FORMAT, Profile};
use iolab_lab_core::tuning;
use iolab_profiles::{Run, Store};

use crate::cli::{ChartKind, ExportFormat, ProfileCmd, RunArgs, RunsCmd, SaveArgs};
use crate::runner::execute_live;
use crate::{json, picture, table};
use iolab_lab_core::notebook::{load_profile, open as open_store};

fn write_out(output: Option<&PathBuf>, text: &str) -> anyhow::Result<()> {
    match output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            std::io::stdout().write_all(text.as_bytes())?;
            Ok(())
        }
    }
}

/// The text with its top-level `name = ...` changed, comments kept.
fn renamed(text: &str, to: &str) -> Option<String> {
    let (mut in_table, mut replaced) = (false, false);
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let t = line.trim_start();
        in_table |= t.starts_with('[');
        if !in_table
            && !replaced
            && let Some(rest) = t.strip_prefix("name")
            && rest.trim_start().starts_with('=')
        {
            out += &format!("name = \"{to}\"\n");
            replaced = true;
            continue;
        }
        out += line;
    }
    replaced.then_some(out)
}

/// Stores a profile's text under its (possibly new) name after checking it.
fn store_profile(
    store: &mut Store,
    text: &str,
    origin: &str,
    name: Option<&str>,
    replace: bool,
) -> anyhow::Result<String> {
    let mut p = Profile::parse(text, origin)?;
    let mut body = text.to_string();
    if let Some(n) = name.filter(|n| *n != p.name) {
        body = match renamed(text, n) {
            Some(b) if Profile::parse(&b, origin).is_ok_and(|q| q.name == n) => b,
            _ => {
                p.name = n.to_string();
                p.to_toml()
            }
        };
        p = Profile::parse(&body, origin)?;
    }
    if profile::builtin(&p.name).is_some() {
        bail!(
            "'{}' is a built-in profile name; save under another name (--name)",
            p.name
        );
    }
    store.put_profile(&p.name, PROFILE_FORMAT, &body, replace)?;
    Ok(p.name)
}

pub fn profile_cmd(db: Option<&Path>, cmd: ProfileCmd) -> anyhow::Result<()> {
    let mut store = open_store(db)?;
    match cmd {
        ProfileCmd::List { json } => {
            #[derive(serde::Serialize)]
            struct Entry {
                name: String,
                kind: &'static str,
                description: String,
                #[serde(skip_serializing_if = "Option::is_none")]
                error: Option<String>,
            }
            let mut all = Vec::new();
            for (name, text) in profile::builtins() {
                let description = Profile::parse(text, name)
                    .map(|p| p.description)
                    .unwrap_or_default();
                all.push(Entry {
                    name: name.to_string(),
                    kind: "built-in",
                    description,
                    error: None,
                });
            }
            for p in store.profiles()? {
                let (description, error) = match Profile::parse(&p.body, &p.name) {
                    Ok(q) => (q.description, None),
                    Err(e) => (String::new(), Some(e.to_string())),
                };
                all.push(Entry {
                    name: p.name,
                    kind: "saved",
                    description,
                    error,
                });
            }
            if json {
                #[derive(serde::Serialize)]
                struct Profiles {
                    profiles: Vec<Entry>,
                }
                println!(
                    "{}",
                    json::pretty("iolab.profiles.v1", &Profiles { profiles: all })?
                );
            } else {
                println!("{:<24} {:<9} description", "name", "kind");
                for e in all {
                    let d = match e.error {
                        Some(err) => format!("(does not parse: {err})"),
                        None => e.description,
                    };
                    println!("{:<24} {:<9} {d}", e.name, e.kind);
                }
            }
        }
        ProfileCmd::Show { name } => {
            let (text, _) = load_profile(&store, &name)?;
            print!("{text}");
        }
        ProfileCmd::Export { name, output } => {
            let (text, _) = load_profile(&store, &name)?;
            write_out(output.as_ref(), &text)?;
        }
        ProfileCmd::Import {
            file,
            name,
            replace,
        } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let saved = store_profile(
                &mut store,
                &text,
                &file.display().to_string(),
                name.as_deref(),
                replace,
            )?;
            println!("imported profile {saved}");
        }
        ProfileCmd::Copy { from, to } => {
            let (text, _) = load_profile(&store, &from)?;
            let saved = store_profile(&mut store, &text, &from, Some(&to), false)?;
            println!("copied {from} to {saved}");
        }
        ProfileCmd::Delete { name } => {
            if profile::builtin(&name).is_some() {
                bail!("'{name}' is built in and cannot be deleted (copy it to change it)");
            }
            store.delete_profile(&name)?;
            println!("deleted profile {name}");
        }
        ProfileCmd::Save(a) => {
            let p = profile_from_args(&a)?;
            let text = p.to_toml();
            let saved = store_profile(&mut store, &text, &a.name, None, a.replace)?;
            println!("saved profile {saved}");
        }
    }
    Ok(())
}

fn profile_from_args(a: &SaveArgs) -> anyhow::Result<Profile> {
    use iolab_iscsi::target::{ServerConfig, TargetConfig};
    use iolab_lab_core::profile::{InitiatorSettings, WorkloadMatrix};
    let tuning = match &a.tuning {
        Some(t) => Some(tuning::profile::builtin(t).with_context(|| {
            format!("no built-in tuning profile '{t}' (seed, network-throughput, network-latency)")
        })?),
        None => None,
    };
    let target = match &a.url {
        Some(_) => None,
        None => {
            let size = iolab_storage::backstore::parse_size(&a.ramdisk)?;
            let mut t =
                TargetConfig::new(&format!("iqn.2026-11.io.iolab:{}", a.name.to_lowercase()));
            t.add_lun(iolab_storage::BackstoreSpec::Ramdisk { size });
            Some(ServerConfig {
                listen: vec!["127.0.0.1:0".parse::<std::net::SocketAddr>()?.into()],
                targets: vec![t],
            })
        }
    };
    let p = Profile {
        format: PROFILE_FORMAT,
        name: a.name.clone(),
        description: a.description.clone(),
        tuning,
        target,
        initiator: InitiatorSettings {
            url: a.url.clone(),
            sessions: a.sessions,
            ..InitiatorSettings::default()
        },
        workload: WorkloadMatrix {
            modes: crate::cli::modes_of(&a.shape.modes),
            connections: a.conns.clone(),
            luns: None,
            block_size: a.shape.bs.clone(),
            threads: a.shape.threads,
            time: a.time.clone(),
            pattern: crate::cli::pattern_of(a.pattern),
            verify: a.verify,
            range: None,
            initiators: vec![iolab_lab_core::profile::InitiatorKind::Iolab],
        },
        guests: Vec::new(),
        hosts: Vec::new(),
        roles: None,
    };
    let problems = p.problems();
    if !problems.is_empty() {
        bail!("{}", problems.join("; "));
    }
    Ok(p)
}

pub fn runs_cmd(db: Option<&Path>, cmd: RunsCmd) -> anyhow::Result<()> {
    let mut store = open_store(db)?;
    match cmd {
        RunsCmd::List { json } => {
            let runs = store.runs()?;
            if json {
                #[derive(serde::Serialize)]
                struct Runs {
                    runs: Vec<iolab_profiles::RunSummary>,
                }
                println!("{}", json::pretty("iolab.runs.v1", &Runs { runs })?);
                return Ok(());
            }
            println!(
                "{:>5} {:<24} {:<19} {:>8} {:>5}  kernel",
                "id", "profile", "started (UTC)", "seconds", "cells"
            );
            for r in runs {
                println!(
                    "{:>5} {:<24} {:<19} {:>8.1} {:>5}  {}",
                    r.id,
                    r.profile_name,
                    iolab_profiles::time::utc_string(r.started_ms),
                    (r.ended_ms - r.started_ms) as f64 / 1000.0,
                    r.cells,
                    r.kernel
                );
            }
        }
        RunsCmd::Show { id } => {
            let r = store.run(id)?;
            print!("{}\n{}", table::header(&r), table::cells(&r.cells));
        }
        RunsCmd::Compare { a, b } => {
            let (ra, rb) = (store.run(a)?, store.run(b)?);
            println!("A: {}B: {}", table::header(&ra), table::header(&rb));
            print!(
                "{}",
                table::compare(a, b, &iolab_profiles::compare(&ra, &rb))
            );
        }
        RunsCmd::Export { id, format, output } => {
            let r = store.run(id)?;
            let text = match format {
                ExportFormat::Csv => table::csv(&r),
                ExportFormat::Json => serde_json::to_string_pretty(&r)? + "\n",
            };
            write_out(output.as_ref(), &text)?;
        }
        RunsCmd::Chart {
            id,
            vs,
            kind,
            output,
            size,
        } => {
            let a = store.run(id)?;
            let b = vs.map(|v| store.run(v)).transpose()?;
            let kind = kind.unwrap_or(if a.series.is_empty() {
                ChartKind::Cells
            } else {
                ChartKind::Series
            });
            let what = match (&b, kind) {
                (Some(b), _) => picture::Picture::Versus(&a, b),
                (None, ChartKind::Series) if a.series.is_empty() => {
                    bail!("run {id} has no per-connection series: try --kind cells")
                }
                (None, ChartKind::Series) => picture::Picture::Series(&a),
                (None, ChartKind::Cells) => picture::Picture::Cells(&a),
            };
            picture::write(&what, &output, size)?;
            println!("wrote {}", output.display());
        }
        RunsCmd::Import { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let run: Run = serde_json::from_str(&text)
                .map_err(|e| anyhow::anyhow!("{}:{}: {e}", file.display(), e.line()))?;
            let id = store.add_run(&run)?;
            println!("stored as run {id}");
        }
    }
    Ok(())
}

/// Stores a run; a bench or matrix still succeeds when the notebook cannot be written.
pub async fn run_cmd(db: Option<&Path>, a: RunArgs) -> anyhow::Result<()> {
    let mut store = open_store(db)?;
    let (mut body, mut p) = load_profile(&store, &a.profile)?;
    if a.time.is_some() || !a.luns.is_empty() {
        // The run stores the profile as it ran.
        if let Some(t) = &a.time {
            p.workload.time = t.clone();
        }
        if !a.luns.is_empty() {
            p.workload.luns = Some(a.luns.clone());
        }
        let problems = p.problems();
        if !problems.is_empty() {
            bail!("{}", problems.join("; "));
        }
        body = p.to_toml();
    }
    if p.roles.is_some() {
        return crate::hosts_cmd::run_across(db, &mut store, &p, &body, &a).await;
    }
    let netns = a.netns.as_deref();
    let tuned = match (&p.tuning, a.no_tuning) {
        (Some(t), false) => {
            let host =
                iolab_lab_core::tuning::Namespace::open(netns).map_err(|e| anyhow::anyhow!(e))?;
            let mtus = iolab_lab_core::tuning::plan::mtu_targets(t, &a.ifaces, None)
                .map_err(|e| anyhow::anyhow!(e))?;
            let plan = tuning::plan(&host, t, &mtus);
            eprint!("{}", crate::tune_steps::render_plan(&plan, netns));
            let scope = tuning::scope(netns);
            crate::tune_steps::apply_plan(&mut store, &host, &plan, &scope, netns)?;
            Some(host)
        }
        _ => None,
    };
    let live = iolab_lab_core::profile_run::LiveSessions::default();
    let _metrics = match a.metrics {
        Some(addr) => {
            match crate::runner::serve_initiator_metrics(addr, std::sync::Arc::new(live.clone()))
                .await
            {
                Ok(task) => Some(task),
                Err(e) => {
                    // Tuning is applied already: put it back before giving up.
                    if let Some(host) = &tuned
                        && let Err(r) = crate::tune_steps::revert(&mut store, host, netns)
                    {
                        eprintln!("iolab: warning: {r:#}");
                    }
                    return Err(e);
                }
            }
        }
        None => None,
    };
    let result = execute_live(&p, &body, &live).await;
    if let Some(host) = &tuned {
        if a.keep_tuning {
            eprintln!("tuning kept (--keep-tuning): `iolab tune revert` puts the host back");
        } else if let Err(e) = crate::tune_steps::revert(&mut store, host, netns) {
            eprintln!("iolab: warning: {e:#}");
        }
    }
    crate::runner::store_and_print(&mut store, result?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renaming_keeps_comments_and_only_touches_the_top_level_name() {
        let text = "# mine\nformat = 1\nname = \"a\"\n[tuning]\nname = \"seed\"\n";
        assert_eq!(
            renamed(text, "b").unwrap(),
            "# mine\nformat = 1\nname = \"b\"\n[tuning]\nname = \"seed\"\n"
        );
        assert!(renamed("[x]\nname = \"a\"\n", "b").is_none());
    }
}

//! Runs a workload with the embedded initiator in the background and reports
//! its progress as events, for the console (which must never block on it).

use std::sync::Arc;
use std::time::Duration;

use iolab_iscsi::initiator::{InitiatorOptions, IscsiUrl};
use iolab_iscsi::target::ServerConfig;
use tokio::sync::mpsc;

use iolab_profiles::Run;

use crate::profile::{CellPlan, InitiatorSettings, PROFILE_FORMAT, Profile, WorkloadMatrix};
use crate::profile_run::cell_of;
use crate::workload::{self, Mode, Pattern, Progress, Report, Workload};

/// The run form: what a person picks on the Run screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunForm {
    pub mode: Mode,
    pub block_bytes: u32,
    pub threads: u32,
    pub seconds: u32,
    pub connections: u32,
    pub sessions: u32,
    /// LUN URL to run against; None: the embedded target's first LUN.
    pub url: Option<String>,
    /// Write a self-checking pattern / check it on reads (disktest -T).
    pub verify: bool,
    /// Use only the first this many bytes of the LUN (0: all of it).
    pub range_bytes: u64,
    /// The initiator name to log in as (None: iolab's default), for targets
    /// whose ACLs name their initiators.
    pub initiator: Option<String>,
}

impl Default for RunForm {
    /// The seed's disktest settings, for a 10-second run.
    fn default() -> Self {
        RunForm {
            mode: Mode::Read,
            block_bytes: 256 * 1024,
            threads: 64,
            seconds: 10,
            connections: 1,
            sessions: 1,
            url: None,
            verify: false,
            range_bytes: 0,
            initiator: None,
        }
    }
}

impl RunForm {
    /// The form filled from a profile's first cell.
    pub fn from_profile(p: &Profile) -> RunForm {
        let w = &p.workload;
        let d = RunForm::default();
        RunForm {
            mode: w.modes.first().copied().unwrap_or(d.mode),
            block_bytes: w.block_bytes().unwrap_or(d.block_bytes),
            threads: w.threads,
            seconds: w
                .duration()
                .map(|t| t.as_secs().max(1) as u32)
                .unwrap_or(d.seconds),
            connections: w.connections.first().copied().unwrap_or(d.connections),
            sessions: p.initiator.sessions,
            url: p.initiator.url.clone(),
            verify: w.verify,
            range_bytes: w.range_bytes().unwrap_or(0),
            initiator: p.initiator.name.clone(),
        }
    }

    /// The profile this form amounts to against `url` (kept with the stored run).
    pub fn profile(&self, url: &str) -> Profile {
        Profile {
            format: PROFILE_FORMAT,
            name: "console".into(),
            description: format!("a run from the console's Run screen against {url}"),
            tuning: None,
            target: None,
            initiator: InitiatorSettings {
                url: Some(url.into()),
                name: self.initiator.clone(),
                sessions: self.sessions,
                ..InitiatorSettings::default()
            },
            workload: WorkloadMatrix {
                modes: vec![self.mode],
                connections: vec![self.connections],
                luns: None,
                block_size: self.block_bytes.to_string(),
                threads: self.threads,
                time: format!("{}s", self.seconds),
                pattern: Pattern::Seq,
                verify: self.verify,
                range: (self.range_bytes > 0).then(|| self.range_bytes.to_string()),
                initiators: vec![crate::profile::InitiatorKind::Iolab],
            },
            guests: Vec::new(),
            hosts: Vec::new(),
            roles: None,
        }
    }

    /// The seed page's matrix with this form's block size, outstanding I/Os
    /// and time per cell: READ, WRITE and READ+WRITE at 1 to 4 connections.
    pub fn matrix_profile(&self, url: &str) -> Profile {
        let mut p = self.profile(url);
        p.name = "console-matrix".into();
        p.description = format!("the seed's matrix from the console's Run screen against {url}");
        p.workload.modes = vec![Mode::Read, Mode::Write, Mode::Rw];
        p.workload.connections = vec![1, 2, 3, 4];
        p
    }

    /// The run record of a finished console run.
    pub fn record(
        &self,
        url: &str,
        started_ms: i64,
        granted: usize,
        report: &Report,
        series: Vec<iolab_profiles::SeriesPoint>,
    ) -> Run {
        let p = self.profile(url);
        let parsed = IscsiUrl::parse(url, false).ok();
        let plan = CellPlan {
            lun: parsed.as_ref().map_or(0, |u| u.lun),
            mode: self.mode,
            connections: self.connections,
            initiator: crate::profile::InitiatorKind::Iolab,
        };
        let peer = parsed.as_ref().and_then(IscsiUrl::host_ip);
        Run {
            id: None,
            profile_name: p.name.clone(),
            profile_body: p.to_toml(),
            started_ms,
            ended_ms: iolab_profiles::time::now_ms(),
            host: crate::host::facts(peer),
            cells: vec![cell_of(&plan, granted, &p, self.block_bytes, report)],
            series,
            hosts: Vec::new(),
        }
    }
}

/// The lab as it stands, as a profile named `name`: `base` (the profile the
/// lab was opened from) with the running target's configuration and, when
/// the Run form was changed since (`opened_form`), the form's workload. A
/// lab saved unchanged is `base` again, field for field.
pub fn lab_profile(
    base: &Profile,
    name: &str,
    target: Option<&ServerConfig>,
    embedded_urls: &[String],
    form: &RunForm,
    opened_form: &RunForm,
) -> Profile {
    let mut p = base.clone();
    p.name = name.into();
    if let Some(t) = target {
        p.target = Some(t.clone());
    }
    if form == opened_form {
        return p;
    }
    let w = &mut p.workload;
    w.modes = vec![form.mode];
    w.connections = vec![form.connections];
    w.block_size = crate::units::size_text(form.block_bytes as u64);
    w.threads = form.threads;
    w.time = format!("{}s", form.seconds);
    w.verify = form.verify;
    w.range = (form.range_bytes > 0).then(|| crate::units::size_text(form.range_bytes));
    p.initiator.sessions = form.sessions;
    p.initiator.name = form.initiator.clone();
    // A URL of the lab's own target is a LUN of it (whatever credentials it
    // carries: those come from the target's ACLs); another is a target elsewhere.
    let own = |u: &str| {
        let plain = |s: &str| {
            IscsiUrl::parse(s, false).ok().map(|u| IscsiUrl {
                chap: None,
                mutual: None,
                ..u
            })
        };
        let u = plain(u);
        u.is_some() && embedded_urls.iter().any(|e| plain(e) == u)
    };
    match &form.url {
        Some(u) if own(u) => {
            w.luns = IscsiUrl::parse(u, false).ok().map(|u| vec![u.lun]);
            p.initiator.url = None;
        }
        Some(u) => p.initiator.url = Some(u.clone()),
        None => {
            w.luns = None;
            p.initiator.url = None;
        }
    }
    p
}

/// `url` ready to log in with: a URL of the lab's own target (`cfg`) gets
/// the CHAP credentials `initiator` (None: the default initiator) must use
/// there (its ACL's, else the target's), unless it carries its own.
pub fn login_url(url: &str, cfg: Option<&ServerConfig>, initiator: Option<&str>) -> String {
    let (Ok(mut u), Some(cfg)) = (IscsiUrl::parse(url, false), cfg) else {
        return url.to_string();
    };
    if u.chap.is_some() {
        return url.to_string();
    }
    let Some(t) = cfg
        .targets
        .iter()
        .find(|t| u.target.as_deref() == Some(&t.iqn))
    else {
        return url.to_string();
    };
    let default = InitiatorOptions::default().initiator_name;
    let (chap, mutual) = crate::profile::chap_for_initiator(t, initiator.unwrap_or(&default));
    if chap.is_none() {
        return url.to_string();
    }
    u.chap = chap;
    u.mutual = mutual;
    u.with_secrets()
}

/// What a background run reports.
#[derive(Debug, Clone)]
pub enum RunEvent {
    /// Logged in: the target session handles (TSIH) of the run's sessions.
    Started {
        tsihs: Vec<u16>,
        connections: usize,
    },
    Progress(Progress),
    /// The run's sessions as the initiator counts them (every 250 ms), for
    /// per-connection rates when the target is not ours to ask.
    Sample(Vec<iolab_iscsi::SessionInfo>),
    /// The run's per-connection series at 4 Hz, as the notebook stores
    /// them; sent right before `Done`.
    Series(Vec<iolab_profiles::SeriesPoint>),
    Done(Report),
    Failed(String),
}

/// How often a run reports its initiator-side counters.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(250);

/// Starts a run against `url`; events arrive on the returned channel.
pub fn spawn_run(url: String, form: RunForm) -> mpsc::UnboundedReceiver<RunEvent> {
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let r = async {
            let url = IscsiUrl::parse(&url, false)?;
            let d = InitiatorOptions::default();
            let opts = InitiatorOptions {
                connections: form.connections,
                initiator_name: form.initiator.clone().unwrap_or(d.initiator_name.clone()),
                ..d
            };
            let (sessions, shards) = workload::connect(&url, &opts, form.sessions).await?;
            let tsihs = sessions.iter().map(|s| s.facts().tsih).collect();
            let connections = sessions.iter().map(|s| s.connection_count()).sum();
            let _ = tx.send(RunEvent::Started { tsihs, connections });
            let w = Workload {
                mode: form.mode,
                block_bytes: form.block_bytes,
                threads: form.threads,
                duration: Duration::from_secs(form.seconds as u64),
                pattern: Pattern::Seq,
                verify: form.verify,
                range_bytes: form.range_bytes,
            };
            let sessions = Arc::new(sessions);
            let ptx = tx.clone();
            let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
            // One task samples the sessions every 250 ms: the console's live
            // figures (Sample) and the series the notebook stores.
            let sampler = {
                let (sessions, tx) = (sessions.clone(), tx.clone());
                let name = opts.initiator_name.clone();
                tokio::spawn(async move {
                    let start = std::time::Instant::now();
                    let mut series = crate::series::Recorder::new(0, &sessions);
                    let mut tick = tokio::time::interval(SAMPLE_EVERY);
                    tick.tick().await;
                    loop {
                        let infos = sessions.iter().map(|s| s.info(&name)).collect();
                        let _ = tx.send(RunEvent::Sample(infos));
                        tokio::select! {
                            _ = tick.tick() => series.sample(&sessions, start.elapsed()),
                            _ = stop_rx.changed() => break,
                        }
                    }
                    (series, start)
                })
            };
            let report = workload::run(
                sessions.clone(),
                shards.as_ref(),
                w,
                Duration::from_millis(500),
                move |p| {
                    let _ = ptx.send(RunEvent::Progress(p));
                },
            )
            .await;
            // The final counters, then the sampler lets go of the sessions.
            let _ = stop_tx.send(true);
            if let Ok((mut series, start)) = sampler.await {
                series.sample(&sessions, start.elapsed());
                let _ = tx.send(RunEvent::Series(series.into_points()));
            }
            let infos = sessions
                .iter()
                .map(|s| s.info(&opts.initiator_name))
                .collect();
            let _ = tx.send(RunEvent::Sample(infos));
            let report = report?;
            // Let the statistics bus take one more sample of the final counters before logout.
            tokio::time::sleep(Duration::from_millis(600)).await;
            if let Ok(list) = Arc::try_unwrap(sessions) {
                for s in list {
                    let _ = s.logout().await;
                }
            }
            Ok::<Report, crate::LabError>(report)
        }
        .await;
        let _ = tx.send(match r {
            Ok(report) => RunEvent::Done(report),
            Err(e) => RunEvent::Failed(e.to_string()),
        });
    });
    rx
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{builtin, builtins};

    #[test]
    fn a_lab_saved_unchanged_is_its_profile_again() {
        for (name, text) in builtins() {
            let p = Profile::parse(text, name).unwrap();
            let form = RunForm::from_profile(&p);
            let again = lab_profile(&p, name, p.target.as_ref(), &[], &form, &form);
            assert_eq!(again, p, "{name}");
            // And through its TOML, as the notebook stores it.
            assert_eq!(Profile::parse(&again.to_toml(), name).unwrap(), p);
        }
    }

    #[test]
    fn runs_on_the_labs_own_target_log_in_with_its_acl_chap() {
        use iolab_iscsi::chap::ChapCredentials;
        use iolab_iscsi::target::Acl;
        let mut cfg = ServerConfig::default_lab("127.0.0.1:3260".parse().unwrap(), 1 << 20);
        let own = "iscsi://127.0.0.1:3260/iqn.2026-11.io.iolab:target0/0";
        assert_eq!(login_url(own, Some(&cfg), None), own, "no CHAP asked");
        cfg.targets[0].acls.push(Acl {
            initiator: InitiatorOptions::default().initiator_name,
            chap: ChapCredentials::parse("alice:secret12345"),
            mutual_chap: ChapCredentials::parse("tgt:othersecret12"),
        });
        let u = IscsiUrl::parse(&login_url(own, Some(&cfg), None), false).unwrap();
        assert_eq!(u.chap.unwrap().secret, "secret12345");
        assert_eq!(u.mutual.unwrap().user, "tgt");
        assert_eq!((u.lun, u.port), (0, 3260));
        // Credentials typed in the URL win; other targets are left alone.
        let typed = "iscsi://bob%pw123456789012@127.0.0.1:3260/iqn.2026-11.io.iolab:target0/0";
        assert_eq!(login_url(typed, Some(&cfg), None), typed);
        let other = "iscsi://127.0.0.1:3260/iqn.2003-01.org.example:other/0";
        assert_eq!(login_url(other, Some(&cfg), None), other);
        assert_eq!(login_url(own, None, None), own);
    }

    #[test]
    fn a_changed_form_becomes_the_saved_workload() {
        let p = Profile::parse(builtin("quick").unwrap(), "quick").unwrap();
        let opened = RunForm::from_profile(&p);
        let url = "iscsi://127.0.0.1:3260/iqn.2026-11.io.iolab:target0/1".to_string();
        let form = RunForm {
            mode: Mode::Write,
            block_bytes: 64 << 10,
            threads: 16,
            seconds: 5,
            connections: 2,
            sessions: 1,
            url: Some(url.clone()),
            verify: true,
            range_bytes: 32 << 20,
            initiator: None,
        };
        let mut target = p.target.clone().unwrap();
        target.targets[0].add_lun(iolab_storage::BackstoreSpec::Ramdisk { size: 64 << 20 });
        let saved = lab_profile(
            &p,
            "mylab",
            Some(&target),
            std::slice::from_ref(&url),
            &form,
            &opened,
        );
        assert_eq!(saved.name, "mylab");
        assert_eq!(saved.target.as_ref(), Some(&target));
        let w = &saved.workload;
        assert_eq!(w.modes, vec![Mode::Write]);
        assert_eq!(w.connections, vec![2]);
        assert_eq!(
            w.luns,
            Some(vec![1]),
            "a URL of the lab's own target is its LUN"
        );
        assert_eq!(
            (w.block_size.as_str(), w.threads, w.time.as_str()),
            ("64K", 16, "5s")
        );
        assert!(w.verify);
        assert_eq!(w.range.as_deref(), Some("32M"));
        assert_eq!(saved.initiator.url, None);
        assert!(saved.problems().is_empty(), "{:?}", saved.problems());
        // Opened again, the form is the one that was saved.
        let back = RunForm::from_profile(&saved);
        assert_eq!(
            RunForm {
                url: Some(url.clone()),
                ..back
            },
            form
        );

        // Another target's URL is kept as the initiator's.
        let elsewhere = "iscsi://10.0.0.2:3260/iqn.2003-01.org.linux-iscsi:t/0".to_string();
        let form = RunForm {
            url: Some(elsewhere.clone()),
            ..form
        };
        let saved = lab_profile(&p, "mylab", Some(&target), &[url], &form, &opened);
        assert_eq!(saved.initiator.url, Some(elsewhere));
        assert!(
            saved.target.is_some(),
            "the lab still serves its own target"
        );
        assert!(saved.problems().is_empty(), "{:?}", saved.problems());
    }

    /// A console run's one sampling task gives both the live Samples and
    /// the stored series, and the series adds up to what the run read.
    #[test]
    fn a_run_sends_its_series_and_live_samples() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let cfg = ServerConfig::default_lab("127.0.0.1:0".parse().unwrap(), 16 << 20);
            let target = iolab_iscsi::Target::start(cfg).await.unwrap();
            let addr = target.local_addrs()[0];
            let url = format!("iscsi://{addr}/iqn.2026-11.io.iolab:target0/0");
            let form = RunForm {
                seconds: 1,
                block_bytes: 64 << 10,
                threads: 4,
                ..RunForm::default()
            };
            let mut rx = spawn_run(url, form);
            let (mut samples, mut series, mut report) = (0, None, None);
            while let Some(ev) = rx.recv().await {
                match ev {
                    RunEvent::Sample(_) => samples += 1,
                    RunEvent::Series(points) => series = Some(points),
                    RunEvent::Done(r) => report = Some(r),
                    RunEvent::Failed(why) => panic!("{why}"),
                    _ => {}
                }
            }
            let (series, report) = (series.expect("series"), report.expect("done"));
            assert!(samples >= 4, "{samples} live samples in a 1 s run");
            assert!(series.len() >= 4, "{} points", series.len());
            assert!(series.windows(2).all(|w| w[0].t_ms <= w[1].t_ms));
            let read: u64 = series.iter().map(|p| p.read_bytes).sum();
            // The series also counts the run's READ CAPACITY data.
            assert!(
                read >= report.read.bytes && read <= report.read.bytes + 64,
                "series {read} vs run {}",
                report.read.bytes
            );
            target.shutdown();
        });
    }
}

//! `iolab agent`: what the console does on this host, asked for over
//! standard input and output by a controller elsewhere (through ssh).
//!
//! Requests run as tasks of their own, so a target's sessions can be read
//! while a cell runs on the same host. When the input ends (the controller
//! or its ssh session went away) or on `bye`, the agent stops its target,
//! reverts its tuning from this host's notebook, and ends: nothing it
//! started outlives it.

use std::path::PathBuf;
use std::sync::Arc;

use iolab_iscsi::Target;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Mutex, mpsc};

use super::proto::{
    Envelope, Event, FromAgent, Hello, MAX_LINE, Outcome, PROTOCOL, Reply, Request, line,
    parse_envelope,
};
use crate::profile::Profile;
use crate::profile_run::{self, CellEvent, LiveSessions};
use crate::tuning::{self, Namespace, TuneHost};

/// How the agent was started.
#[derive(Debug, Clone, Default)]
pub struct AgentOptions {
    /// This host's notebook (where tuning originals are recorded).
    pub db: Option<PathBuf>,
    /// Say hello only once a first line arrives: on a channel that exists
    /// before anyone listens (a guest's virtio-serial port), a hello sent
    /// early would be lost.
    pub wait_for_input: bool,
}

#[derive(Default)]
struct State {
    target: Option<Target>,
    /// Tuning was applied by this agent and is not yet reverted.
    tuned: bool,
}

/// This build's hello.
pub fn hello() -> Hello {
    Hello {
        protocol: PROTOCOL,
        version: version(),
        build: build_id(),
        hostname: std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_default(),
    }
}

/// `iolab VERSION`.
pub fn version() -> String {
    format!("iolab {}", env!("CARGO_PKG_VERSION"))
}

/// The running binary's content id: its length and CRC32C.
pub fn build_id() -> String {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| match std::fs::read("/proc/self/exe") {
        Ok(b) => format!("{}-{:08x}", b.len(), crc32c::crc32c(&b)),
        Err(_) => "unknown".into(),
    })
    .clone()
}

/// Serves requests from `input` until it ends or a `bye`, answering on `output`.
pub async fn serve<R, W>(input: R, output: W, opts: AgentOptions) -> std::io::Result<()>
where
    R: AsyncBufRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let writer = tokio::spawn(async move {
        let mut out = output;
        while let Some(l) = rx.recv().await {
            if out.write_all(l.as_bytes()).await.is_err()
                || out.write_all(b"\n").await.is_err()
                || out.flush().await.is_err()
            {
                break;
            }
        }
    });
    let state = Arc::new(Mutex::new(State::default()));
    let mut input = input;
    let mut buf = Vec::new();
    let mut tasks = tokio::task::JoinSet::new();
    let mut greeted = false;
    if !opts.wait_for_input {
        let _ = tx.send(line(&FromAgent::Hello(hello())));
        greeted = true;
    }
    loop {
        buf.clear();
        let n = (&mut input)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .await?;
        if n == 0 {
            break;
        }
        if !greeted {
            let _ = tx.send(line(&FromAgent::Hello(hello())));
            greeted = true;
        }
        if buf.last() != Some(&b'\n') && buf.len() > MAX_LINE {
            let _ = tx.send(line(&FromAgent::Malformed {
                id: None,
                message: format!("a line of more than {MAX_LINE} bytes"),
            }));
            // Skip the rest of that line.
            loop {
                buf.clear();
                let n = (&mut input)
                    .take(MAX_LINE as u64)
                    .read_until(b'\n', &mut buf)
                    .await?;
                if n == 0 || buf.last() == Some(&b'\n') {
                    break;
                }
            }
            continue;
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let env = match parse_envelope(text) {
            Ok(e) => e,
            Err((id, message)) => {
                let _ = tx.send(line(&FromAgent::Malformed { id, message }));
                continue;
            }
        };
        if matches!(env.request, Request::Bye) {
            cleanup(&state, &opts).await;
            let _ = tx.send(line(&FromAgent::Reply {
                id: env.id,
                result: Outcome::Ok(Reply::Bye),
            }));
            break;
        }
        let (state, tx, opts) = (state.clone(), tx.clone(), opts.clone());
        tasks.spawn(async move {
            let Envelope { id, request, .. } = env;
            let result = match handle(request, id, &state, &tx, &opts).await {
                Ok(r) => Outcome::Ok(r),
                Err(e) => Outcome::Err(e),
            };
            let _ = tx.send(line(&FromAgent::Reply { id, result }));
        });
    }
    // Input ended (or bye): nothing of ours stays behind.
    tasks.abort_all();
    cleanup(&state, &opts).await;
    drop(tx);
    let _ = writer.await;
    Ok(())
}

async fn cleanup(state: &Mutex<State>, opts: &AgentOptions) {
    let mut s = state.lock().await;
    if let Some(t) = s.target.take() {
        t.shutdown();
    }
    if s.tuned {
        match revert(opts) {
            Ok(_) => s.tuned = false,
            Err(e) => tracing::warn!("agent: reverting tuning: {e}"),
        }
    }
}

fn revert(opts: &AgentOptions) -> Result<Vec<(String, String)>, String> {
    let host = Namespace::current();
    let mut store = crate::notebook::open(opts.db.as_deref()).map_err(|e| e.to_string())?;
    let restored = tuning::revert(&host, &mut store, &tuning::scope(None))
        .map_err(|e| format!("reverting tuning: {e}"))?;
    Ok(restored.into_iter().map(|o| (o.key, o.value)).collect())
}

async fn handle(
    request: Request,
    id: u64,
    state: &Mutex<State>,
    tx: &mpsc::UnboundedSender<String>,
    opts: &AgentOptions,
) -> Result<Reply, String> {
    match request {
        Request::Facts { peer } => Ok(Reply::Facts {
            facts: tokio::task::spawn_blocking(move || crate::host::facts(peer))
                .await
                .map_err(|e| e.to_string())?,
        }),
        Request::Tune { tuning: t, ifaces } => {
            let host = Namespace::current();
            let mtus = tuning::plan::mtu_targets(&t, &ifaces, None)?;
            let plan = tuning::plan(&host, &t, &mtus);
            let mut store = crate::notebook::open(opts.db.as_deref()).map_err(|e| e.to_string())?;
            let mut s = state.lock().await;
            let r = tuning::apply(&host, &mut store, &tuning::scope(None), &plan)
                .map_err(|e| format!("applying tuning {}: {e}", t.name))?;
            s.tuned = true;
            // Keys this namespace does not have are left out.
            let settings = plan
                .items
                .iter()
                .filter_map(|i| {
                    let now = match i.iface() {
                        Some(iface) => host.mtu(iface).map(|m| Some(m.to_string())),
                        None => host.read(&i.key),
                    };
                    match now {
                        Ok(Some(v)) => Some((i.key.clone(), tuning::plan::normalized(&v))),
                        Ok(None) => None,
                        Err(e) => Some((i.key.clone(), format!("unreadable: {e}"))),
                    }
                })
                .collect();
            Ok(Reply::Tuned {
                written: r.written,
                skipped: r.skipped,
                settings,
            })
        }
        Request::Revert => {
            let mut s = state.lock().await;
            let restored = revert(opts)?;
            s.tuned = false;
            Ok(Reply::Reverted { restored })
        }
        Request::ServeTarget { config } => {
            let mut s = state.lock().await;
            if s.target.is_some() {
                return Err("this agent serves a target already (stop_target first)".into());
            }
            let t = Target::start(config)
                .await
                .map_err(|e| format!("starting the target: {e}"))?;
            let addrs = t.local_addrs();
            s.target = Some(t);
            Ok(Reply::Serving { addrs })
        }
        Request::TargetSessions => {
            let s = state.lock().await;
            match &s.target {
                Some(t) => Ok(Reply::Sessions {
                    sessions: t.sessions(),
                    ended: t.registry().ended_connections(),
                }),
                None => Err("no target is running here".into()),
            }
        }
        Request::StopTarget => {
            let mut s = state.lock().await;
            if let Some(t) = s.target.take() {
                t.shutdown();
            }
            Ok(Reply::Stopped)
        }
        Request::RunCell {
            profile,
            index,
            plan,
            target,
        } => {
            let p =
                Profile::parse(&profile, "the controller's profile").map_err(|e| e.to_string())?;
            let name = p.initiator.options(plan.connections).initiator_name;
            let done = profile_run::run_cell(
                &p,
                &plan,
                index as usize,
                Some(target),
                &LiveSessions::default(),
                |e| {
                    let event = match e {
                        CellEvent::Started { granted } => Event::CellStarted {
                            granted: granted as u32,
                        },
                        CellEvent::Progress { progress, sessions } => Event::Progress {
                            elapsed_ms: progress.elapsed.as_millis() as u64,
                            sessions: sessions.iter().map(|s| s.info(&name)).collect(),
                        },
                    };
                    let _ = tx.send(line(&FromAgent::Event { id, event }));
                },
            )
            .await
            .map_err(|e| e.to_string())?;
            Ok(Reply::CellDone {
                granted: done.cell.connections,
                cell: done.cell,
                series: done.series,
            })
        }
        Request::Bye => Ok(Reply::Bye),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncBufReadExt, BufReader};

    #[tokio::test]
    async fn waiting_for_input_it_says_hello_only_when_a_line_comes() {
        let (client, server) = tokio::io::duplex(1 << 16);
        let (server_r, server_w) = tokio::io::split(server);
        let opts = AgentOptions {
            wait_for_input: true,
            ..AgentOptions::default()
        };
        let agent = tokio::spawn(serve(BufReader::new(server_r), server_w, opts));
        let (client_r, mut client_w) = tokio::io::split(client);
        let mut r = BufReader::new(client_r).lines();
        let early =
            tokio::time::timeout(std::time::Duration::from_millis(300), r.next_line()).await;
        assert!(early.is_err(), "a hello before any input: {early:?}");
        client_w.write_all(b"\n").await.unwrap();
        let l = r.next_line().await.unwrap().unwrap();
        assert!(matches!(
            super::super::proto::parse_from_agent(&l).unwrap(),
            FromAgent::Hello(_)
        ));
        // The end of the input ends the agent.
        client_w.shutdown().await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(10), agent)
            .await
            .expect("the agent ended with its input")
            .unwrap()
            .unwrap();
    }

    /// Sends `lines`, reads `expect` messages, ends the input, reads the rest.
    async fn ask(lines: &str, expect: usize) -> Vec<FromAgent> {
        let (client, server) = tokio::io::duplex(1 << 20);
        let (server_r, server_w) = tokio::io::split(server);
        let agent = tokio::spawn(serve(
            BufReader::new(server_r),
            server_w,
            AgentOptions::default(),
        ));
        let (client_r, mut client_w) = tokio::io::split(client);
        client_w.write_all(lines.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        let mut r = BufReader::new(client_r).lines();
        let mut next = async || {
            tokio::time::timeout(std::time::Duration::from_secs(10), r.next_line())
                .await
                .expect("the agent answered in time")
                .unwrap()
        };
        while out.len() < expect {
            let l = next().await.expect("a message");
            out.push(super::super::proto::parse_from_agent(&l).unwrap());
        }
        client_w.shutdown().await.unwrap();
        drop(client_w);
        while let Some(l) = next().await {
            out.push(super::super::proto::parse_from_agent(&l).unwrap());
        }
        agent.await.unwrap().unwrap();
        out
    }

    #[tokio::test]
    async fn it_says_hello_first_and_answers_garbage_without_ending() {
        let out = ask(
            "what?\n{\"protocol\":1,\"id\":2,\"request\":{\"op\":\"target_sessions\"}}\n",
            3,
        )
        .await;
        let FromAgent::Hello(h) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(h.protocol, PROTOCOL);
        assert!(h.version.starts_with("iolab "));
        assert!(
            matches!(&out[1], FromAgent::Malformed { id: None, message } if message.contains("not a message")),
            "{out:?}"
        );
        assert!(
            matches!(&out[2], FromAgent::Reply { id: 2, result: Outcome::Err(e) } if e.contains("no target")),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn another_protocol_gets_an_error_by_id() {
        let out = ask(
            "{\"protocol\":2,\"id\":9,\"request\":{\"op\":\"revert\"}}\n",
            2,
        )
        .await;
        assert!(
            matches!(&out[1], FromAgent::Malformed { id: Some(9), message } if message.contains("protocol 2")),
            "{out:?}"
        );
    }

    #[tokio::test]
    async fn a_target_serves_and_stops_with_the_input() {
        let cfg = r#"{"protocol":1,"id":1,"request":{"op":"serve_target","config":{"listen":["127.0.0.1:0"],"targets":[{"iqn":"iqn.2026-12.io.iolab:agent","luns":[{"lun":0,"backstore":{"kind":"ramdisk","size":1048576}}]}]}}}"#;
        let out = ask(&format!("{cfg}\n"), 2).await;
        let addr = out
            .iter()
            .find_map(|m| match m {
                FromAgent::Reply {
                    id: 1,
                    result: Outcome::Ok(Reply::Serving { addrs }),
                } => addrs.first().copied(),
                _ => None,
            })
            .unwrap_or_else(|| panic!("{out:?}"));
        // The input ended: the agent stopped its target on the way out.
        let mut gone = false;
        for _ in 0..50 {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                gone = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert!(gone, "the target at {addr} outlived its agent");
    }
}

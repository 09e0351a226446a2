//! The controller's end of an agent: a child process (`ssh … iolab agent`,
//! or `iolab agent` for this host) spoken to over its standard input and
//! output. Every request waits for its reply with a deadline; when the
//! process ends, every waiting request fails at once with the exit status
//! and the last lines it wrote on standard error, so a dropped host is an
//! error naming it, never a hang.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::{mpsc, oneshot};

use super::proto::{
    Envelope, Event, FromAgent, Hello, Outcome, PROTOCOL, Reply, Request, line, parse_from_agent,
};

/// Why talking to a host's agent failed; every variant names the host.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AgentError {
    #[error("host {host}: cannot start `{command}`: {cause}")]
    Spawn {
        host: String,
        command: String,
        cause: String,
    },
    #[error("host {host}: the agent did not say hello within {secs} s{}", tail(.stderr))]
    NoHello {
        host: String,
        secs: u64,
        stderr: String,
    },
    #[error(
        "host {host}: its iolab speaks agent protocol {theirs}, this one {PROTOCOL} ({version}): run `iolab hosts push` or install the same iolab there"
    )]
    Protocol {
        host: String,
        theirs: u32,
        version: String,
    },
    #[error("host {host}: the connection to its agent ended ({status}){}", tail(.stderr))]
    Gone {
        host: String,
        status: String,
        stderr: String,
    },
    #[error("host {host}: {message}")]
    Refused { host: String, message: String },
    #[error("host {host}: a malformed message from its agent: {message}")]
    Malformed { host: String, message: String },
    #[error("host {host}: no answer to `{op}` within {secs} s")]
    Timeout { host: String, op: String, secs: u64 },
}

impl AgentError {
    /// The host the error is about.
    pub fn host(&self) -> &str {
        match self {
            AgentError::Spawn { host, .. }
            | AgentError::NoHello { host, .. }
            | AgentError::Protocol { host, .. }
            | AgentError::Gone { host, .. }
            | AgentError::Refused { host, .. }
            | AgentError::Malformed { host, .. }
            | AgentError::Timeout { host, .. } => host,
        }
    }
}

fn tail(stderr: &str) -> String {
    let s = stderr.trim();
    if s.is_empty() {
        String::new()
    } else {
        format!(": {s}")
    }
}

/// How a request ended, before the host's name is put on it.
enum Failure {
    Refused(String),
    Malformed(String),
    Gone,
}

struct Pending {
    reply: oneshot::Sender<Result<Reply, Failure>>,
    events: Option<mpsc::UnboundedSender<Event>>,
}

type PendingMap = Arc<std::sync::Mutex<HashMap<u64, Pending>>>;

/// Ends every waiting request with `why`.
fn fail_all(pending: &PendingMap, why: impl Fn() -> Failure) {
    let all: Vec<Pending> = pending
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .map(|(_, p)| p)
        .collect();
    for p in all {
        let _ = p.reply.send(Err(why()));
    }
}

/// Lines of standard error kept for error messages.
const STDERR_KEPT: usize = 12;

/// A running agent on one host.
pub struct AgentLink {
    host: String,
    hello: Hello,
    stdin: tokio::sync::Mutex<Option<ChildStdin>>,
    next_id: AtomicU64,
    pending: PendingMap,
    child: Arc<tokio::sync::Mutex<Child>>,
    stderr: Arc<std::sync::Mutex<VecDeque<String>>>,
    /// Set when the agent's output ended; nothing waits after that.
    ended: Arc<std::sync::atomic::AtomicBool>,
}

impl AgentLink {
    /// Starts `cmd` (standard streams are set here) and waits for its hello.
    pub async fn start(
        host: &str,
        mut cmd: Command,
        hello_within: Duration,
    ) -> Result<AgentLink, AgentError> {
        let shown = format!("{:?}", cmd.as_std());
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().map_err(|e| AgentError::Spawn {
            host: host.into(),
            command: shown.clone(),
            cause: e.to_string(),
        })?;
        let (Some(stdin), Some(stdout), Some(stderr_pipe)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(AgentError::Spawn {
                host: host.into(),
                command: shown,
                cause: "no pipes to the process".into(),
            });
        };
        let stderr = Arc::new(std::sync::Mutex::new(VecDeque::new()));
        {
            let stderr = stderr.clone();
            let host = host.to_string();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr_pipe).lines();
                while let Ok(Some(l)) = lines.next_line().await {
                    tracing::debug!(host = %host, "agent: {l}");
                    let mut q = stderr.lock().unwrap_or_else(|e| e.into_inner());
                    q.push_back(l);
                    while q.len() > STDERR_KEPT {
                        q.pop_front();
                    }
                }
            });
        }
        // An empty line first: an agent that waits for input before its hello
        // (a guest's) answers it; any other ignores it.
        let mut stdin = stdin;
        let _ = stdin.write_all(b"\n").await;
        let _ = stdin.flush().await;
        let mut lines = BufReader::new(stdout).lines();
        let first = tokio::time::timeout(hello_within, lines.next_line()).await;
        let hello = match first {
            Ok(Ok(Some(l))) => match parse_from_agent(&l) {
                Ok(FromAgent::Hello(h)) => h,
                Ok(_) | Err(_) => {
                    // Not an agent of this protocol at all: perhaps a newer one
                    // whose hello has other fields, perhaps not iolab.
                    let theirs = serde_json::from_str::<serde_json::Value>(&l)
                        .ok()
                        .and_then(|v| v.get("hello")?.get("protocol")?.as_u64());
                    return Err(match theirs {
                        Some(p) => AgentError::Protocol {
                            host: host.into(),
                            theirs: p as u32,
                            version: super::serve::version(),
                        },
                        None => AgentError::Malformed {
                            host: host.into(),
                            message: format!("expected a hello, got: {}", clip(&l)),
                        },
                    });
                }
            },
            Ok(_) => {
                // Give stderr a moment to arrive: it says why.
                let status = match tokio::time::timeout(Duration::from_secs(2), child.wait()).await
                {
                    Ok(Ok(s)) => describe(s),
                    _ => "no hello".into(),
                };
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err(AgentError::Gone {
                    host: host.into(),
                    status,
                    stderr: stderr_tail(&stderr),
                });
            }
            Err(_) => {
                return Err(AgentError::NoHello {
                    host: host.into(),
                    secs: hello_within.as_secs(),
                    stderr: stderr_tail(&stderr),
                });
            }
        };
        if hello.protocol != PROTOCOL {
            return Err(AgentError::Protocol {
                host: host.into(),
                theirs: hello.protocol,
                version: hello.version,
            });
        }
        let pending: PendingMap = Arc::default();
        let ended = Arc::new(std::sync::atomic::AtomicBool::new(false));
        {
            let pending = pending.clone();
            let ended = ended.clone();
            let host = host.to_string();
            tokio::spawn(async move {
                loop {
                    let l = match lines.next_line().await {
                        Ok(Some(l)) => l,
                        _ => break,
                    };
                    match parse_from_agent(&l) {
                        Ok(FromAgent::Reply { id, result }) => {
                            let p = pending
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .remove(&id);
                            if let Some(p) = p {
                                let _ = p.reply.send(match result {
                                    Outcome::Ok(r) => Ok(r),
                                    Outcome::Err(e) => Err(Failure::Refused(e)),
                                });
                            }
                        }
                        Ok(FromAgent::Event { id, event }) => {
                            let map = pending.lock().unwrap_or_else(|e| e.into_inner());
                            if let Some(tx) = map.get(&id).and_then(|p| p.events.as_ref()) {
                                let _ = tx.send(event);
                            }
                        }
                        Ok(FromAgent::Malformed {
                            id: Some(id),
                            message,
                        }) => {
                            let p = pending
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .remove(&id);
                            if let Some(p) = p {
                                let _ = p.reply.send(Err(Failure::Malformed(message)));
                            }
                        }
                        Ok(FromAgent::Malformed { id: None, message }) => {
                            tracing::warn!(host = %host, "the agent could not read a line: {message}");
                        }
                        Ok(FromAgent::Hello(_)) => {}
                        Err(e) => {
                            // The stream is not the protocol any more: fail
                            // everything waiting rather than guess.
                            let msg = format!("{e}: {}", clip(&l));
                            fail_all(&pending, || Failure::Malformed(msg.clone()));
                        }
                    }
                }
                ended.store(true, Ordering::SeqCst);
                fail_all(&pending, || Failure::Gone);
            });
        }
        Ok(AgentLink {
            host: host.into(),
            hello,
            stdin: tokio::sync::Mutex::new(Some(stdin)),
            next_id: AtomicU64::new(1),
            pending,
            child: Arc::new(tokio::sync::Mutex::new(child)),
            stderr,
            ended,
        })
    }

    pub fn host(&self) -> &str {
        &self.host
    }

    pub fn hello(&self) -> &Hello {
        &self.hello
    }

    /// Sends `request` and waits up to `within` for its reply.
    pub async fn call(&self, request: Request, within: Duration) -> Result<Reply, AgentError> {
        self.call_with_events(request, None, within).await
    }

    /// [`call`](Self::call), passing the request's events to `events` as they come.
    pub async fn call_with_events(
        &self,
        request: Request,
        events: Option<mpsc::UnboundedSender<Event>>,
        within: Duration,
    ) -> Result<Reply, AgentError> {
        let op = op_name(&request);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, Pending { reply: tx, events });
        if self.ended.load(Ordering::SeqCst) {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            return Err(self.gone().await);
        }
        let text = line(&Envelope {
            protocol: PROTOCOL,
            id,
            request,
        });
        let sent = {
            let mut stdin = self.stdin.lock().await;
            match stdin.as_mut() {
                Some(w) => {
                    w.write_all(text.as_bytes()).await.is_ok()
                        && w.write_all(b"\n").await.is_ok()
                        && w.flush().await.is_ok()
                }
                None => false,
            }
        };
        if !sent {
            self.pending
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
            return Err(self.gone().await);
        }
        match tokio::time::timeout(within, rx).await {
            Ok(Ok(Ok(r))) => Ok(r),
            Ok(Ok(Err(Failure::Refused(message)))) => Err(AgentError::Refused {
                host: self.host.clone(),
                message,
            }),
            Ok(Ok(Err(Failure::Malformed(message)))) => Err(AgentError::Malformed {
                host: self.host.clone(),
                message,
            }),
            Ok(Ok(Err(Failure::Gone))) | Ok(Err(_)) => Err(self.gone().await),
            Err(_) => {
                self.pending
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&id);
                Err(AgentError::Timeout {
                    host: self.host.clone(),
                    op: op.into(),
                    secs: within.as_secs(),
                })
            }
        }
    }

    /// The error for an agent whose process ended: its status and stderr.
    async fn gone(&self) -> AgentError {
        let status = {
            let mut child = self.child.lock().await;
            match tokio::time::timeout(Duration::from_secs(3), child.wait()).await {
                Ok(Ok(s)) => describe(s),
                Ok(Err(e)) => format!("cannot wait for it: {e}"),
                Err(_) => "its output ended".into(),
            }
        };
        AgentError::Gone {
            host: self.host.clone(),
            status,
            stderr: stderr_tail(&self.stderr),
        }
    }

    /// Whether the agent's output has ended.
    pub fn has_ended(&self) -> bool {
        self.ended.load(Ordering::SeqCst)
    }

    /// Says bye (the agent stops its target and reverts its tuning) and
    /// waits for the process to end.
    pub async fn close(self, within: Duration) -> Result<(), AgentError> {
        let r = if self.has_ended() {
            Ok(())
        } else {
            self.call(Request::Bye, within).await.map(|_| ())
        };
        *self.stdin.lock().await = None;
        let mut child = self.child.lock().await;
        if tokio::time::timeout(within, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
        r
    }
}

/// The agent's last lines on standard error, one line.
fn stderr_tail(q: &std::sync::Mutex<VecDeque<String>>) -> String {
    let q = q.lock().unwrap_or_else(|e| e.into_inner());
    q.iter().cloned().collect::<Vec<_>>().join("; ")
}

fn op_name(r: &Request) -> &'static str {
    match r {
        Request::Facts { .. } => "facts",
        Request::Tune { .. } => "tune",
        Request::Revert => "revert",
        Request::ServeTarget { .. } => "serve_target",
        Request::TargetSessions => "target_sessions",
        Request::StopTarget => "stop_target",
        Request::RunCell { .. } => "run_cell",
        Request::Bye => "bye",
    }
}

fn describe(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(255), _) => "ssh exited with status 255: the connection failed or was cut".into(),
        (Some(127), _) => "exit status 127: iolab is not installed there".into(),
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        (None, None) => "ended".into(),
    }
}

fn clip(s: &str) -> String {
    let mut t: String = s.chars().take(160).collect();
    if t.len() < s.len() {
        t.push('…');
    }
    t
}

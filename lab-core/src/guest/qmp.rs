//! A small QMP client: qemu's JSON monitor on a unix socket.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::GuestError;

/// A PCI function as the guest sees it (`query-pci`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestPci {
    pub bus: u64,
    pub slot: u64,
    pub function: u64,
    pub vendor: u64,
    pub device: u64,
}

pub struct Qmp {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Connects, reads the greeting and leaves capabilities negotiation mode.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Qmp, GuestError> {
        let err = |msg: String| GuestError::Qmp {
            path: path.to_owned(),
            msg,
        };
        let stream = UnixStream::connect(path).map_err(|e| err(e.to_string()))?;
        stream
            .set_read_timeout(Some(timeout))
            .map_err(|e| err(e.to_string()))?;
        let writer = stream.try_clone().map_err(|e| err(e.to_string()))?;
        let mut q = Qmp {
            path: path.to_owned(),
            reader: BufReader::new(stream),
            writer,
        };
        let greeting = q.read()?;
        if greeting.get("QMP").is_none() {
            return Err(err(format!("not a QMP greeting: {greeting}")));
        }
        q.execute("qmp_capabilities", None)?;
        Ok(q)
    }

    fn read(&mut self) -> Result<Value, GuestError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| GuestError::Qmp {
                path: self.path.clone(),
                msg: e.to_string(),
            })?;
        if n == 0 {
            return Err(GuestError::Qmp {
                path: self.path.clone(),
                msg: "qemu closed the monitor".into(),
            });
        }
        serde_json::from_str(&line).map_err(|e| GuestError::Qmp {
            path: self.path.clone(),
            msg: format!("bad JSON from qemu: {e}"),
        })
    }

    /// Runs a command and returns its `return` value (events in between are skipped).
    pub fn execute(
        &mut self,
        command: &str,
        arguments: Option<Value>,
    ) -> Result<Value, GuestError> {
        let mut req = serde_json::json!({ "execute": command });
        if let Some(a) = arguments {
            req["arguments"] = a;
        }
        let err = |msg: String| GuestError::Qmp {
            path: self.path.clone(),
            msg,
        };
        writeln!(self.writer, "{req}").map_err(|e| err(e.to_string()))?;
        loop {
            let v = self.read()?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(GuestError::Qmp {
                    path: self.path.clone(),
                    msg: format!("{command}: {}", e["desc"].as_str().unwrap_or("error")),
                });
            }
        }
    }

    /// `query-status`: "running", "paused", "shutdown", ...
    pub fn status(&mut self) -> Result<String, GuestError> {
        let r = self.execute("query-status", None)?;
        Ok(r["status"].as_str().unwrap_or("unknown").to_string())
    }

    /// `query-pci`: every PCI function the guest got.
    pub fn pci(&mut self) -> Result<Vec<GuestPci>, GuestError> {
        let r = self.execute("query-pci", None)?;
        let mut out = Vec::new();
        for bus in r.as_array().into_iter().flatten() {
            for d in bus["devices"].as_array().into_iter().flatten() {
                let n = |v: &Value| v.as_u64().unwrap_or(0);
                out.push(GuestPci {
                    bus: n(&d["bus"]),
                    slot: n(&d["slot"]),
                    function: n(&d["function"]),
                    vendor: n(&d["id"]["vendor"]),
                    device: n(&d["id"]["device"]),
                });
            }
        }
        Ok(out)
    }
}

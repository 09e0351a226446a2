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

/// A [`GuestPci`] with qemu's device id (`hostdev-...` for a function
/// passed through; empty for one qemu made itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPciDevice {
    pub pci: GuestPci,
    pub id: String,
}

pub struct Qmp {
    path: PathBuf,
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Events read while a command waited for its return, oldest first
    /// (a device_del that completes at once reports before it returns).
    events: Vec<Value>,
}

/// Events kept for later readers at the most.
const KEPT_EVENTS: usize = 64;

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
            events: Vec::new(),
        };
        let greeting = q.read()?;
        if greeting.get("QMP").is_none() {
            return Err(err(format!("not a QMP greeting: {greeting}")));
        }
        q.execute("qmp_capabilities", None)?;
        Ok(q)
    }

    fn read(&mut self) -> Result<Value, GuestError> {
        self.try_read()?.ok_or_else(|| GuestError::Qmp {
            path: self.path.clone(),
            msg: "qemu did not answer in time".into(),
        })
    }

    /// One message, or `None` when the read timeout passed first.
    fn try_read(&mut self) -> Result<Option<Value>, GuestError> {
        let mut line = String::new();
        let n = match self.reader.read_line(&mut line) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Ok(None);
            }
            Err(e) => {
                return Err(GuestError::Qmp {
                    path: self.path.clone(),
                    msg: e.to_string(),
                });
            }
        };
        if n == 0 {
            return Err(GuestError::Qmp {
                path: self.path.clone(),
                msg: "qemu closed the monitor".into(),
            });
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| GuestError::Qmp {
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
            if v.get("event").is_some() {
                if self.events.len() == KEPT_EVENTS {
                    self.events.remove(0);
                }
                self.events.push(v);
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
        Ok(self.pci_devices()?.into_iter().map(|d| d.pci).collect())
    }

    /// `query-pci` with qemu's device ids, functions behind bridges and
    /// root ports included.
    pub fn pci_devices(&mut self) -> Result<Vec<GuestPciDevice>, GuestError> {
        let r = self.execute("query-pci", None)?;
        Ok(pci_of(&r))
    }

    /// Asks qemu to unplug device `id` (the guest's OS must let it go:
    /// [`Qmp::wait_deleted`] waits for that).
    pub fn device_del(&mut self, id: &str) -> Result<(), GuestError> {
        self.execute("device_del", Some(serde_json::json!({ "id": id })))
            .map(|_| ())
    }

    /// Waits until qemu reports `DEVICE_DELETED` for `id`, up to `within`,
    /// calling `tick` about once a second with the time waited. False when
    /// the time ran out.
    pub fn wait_deleted(
        &mut self,
        id: &str,
        within: Duration,
        mut tick: impl FnMut(Duration),
    ) -> Result<bool, GuestError> {
        let deleted = |v: &Value| v["event"] == "DEVICE_DELETED" && v["data"]["device"] == id;
        if let Some(at) = self.events.iter().position(deleted) {
            self.events.remove(at);
            return Ok(true);
        }
        let start = std::time::Instant::now();
        let mut last_tick = Duration::ZERO;
        loop {
            let waited = start.elapsed();
            if waited >= within {
                return Ok(false);
            }
            if waited >= last_tick + Duration::from_secs(1) {
                last_tick = waited;
                tick(waited);
            }
            let slice = (within - waited).min(Duration::from_millis(250));
            self.reader
                .get_ref()
                .set_read_timeout(Some(slice))
                .map_err(|e| GuestError::Qmp {
                    path: self.path.clone(),
                    msg: e.to_string(),
                })?;
            // No event within the slice: look at the clock again.
            if self.try_read()?.is_some_and(|v| deleted(&v)) {
                return Ok(true);
            }
        }
    }
}

/// The functions of a `query-pci` answer, recursing into bridges.
fn pci_of(r: &Value) -> Vec<GuestPciDevice> {
    fn walk(devices: &Value, out: &mut Vec<GuestPciDevice>) {
        for d in devices.as_array().into_iter().flatten() {
            let n = |v: &Value| v.as_u64().unwrap_or(0);
            out.push(GuestPciDevice {
                pci: GuestPci {
                    bus: n(&d["bus"]),
                    slot: n(&d["slot"]),
                    function: n(&d["function"]),
                    vendor: n(&d["id"]["vendor"]),
                    device: n(&d["id"]["device"]),
                },
                id: d["qdev_id"].as_str().unwrap_or("").to_string(),
            });
            walk(&d["pci_bridge"]["devices"], out);
        }
    }
    let mut out = Vec::new();
    for bus in r.as_array().into_iter().flatten() {
        walk(&bus["devices"], &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A qemu that unplugs at once sends DEVICE_DELETED before device_del's
    /// return: the event must still count.
    #[test]
    fn a_deletion_reported_before_the_commands_return_is_not_missed() {
        use std::io::{BufRead, BufReader, Write};
        let dir = std::env::temp_dir().join(format!("iolab-qmp-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("qmp.sock");
        let _ = std::fs::remove_file(&sock);
        let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
        let qemu = std::thread::spawn(move || {
            let (s, _) = l.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let mut r = BufReader::new(s);
            writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            let mut line = String::new();
            r.read_line(&mut line).unwrap(); // qmp_capabilities
            writeln!(w, r#"{{"return": {{}}}}"#).unwrap();
            line.clear();
            r.read_line(&mut line).unwrap(); // device_del
            writeln!(
                w,
                r#"{{"event": "DEVICE_DELETED", "data": {{"device": "hostdev-x"}}}}"#
            )
            .unwrap();
            writeln!(w, r#"{{"return": {{}}}}"#).unwrap();
            // Nothing more: a missed event would wait the full time.
            r.read_line(&mut line).ok();
        });
        let mut q = Qmp::connect(&sock, Duration::from_secs(5)).unwrap();
        q.device_del("hostdev-x").unwrap();
        let t = std::time::Instant::now();
        assert!(
            q.wait_deleted("hostdev-x", Duration::from_secs(2), |_| {})
                .unwrap()
        );
        assert!(t.elapsed() < Duration::from_secs(1), "{:?}", t.elapsed());
        drop(q);
        qemu.join().unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn functions_behind_root_ports_are_listed_with_their_ids() {
        // The shape qemu 7.2 answers for a q35 guest with one function
        // passed through on a root port of its own.
        let r = serde_json::json!([{
            "bus": 0,
            "devices": [
                {"bus": 0, "slot": 0, "function": 0, "id": {"vendor": 32902, "device": 10688}, "qdev_id": ""},
                {"bus": 0, "slot": 2, "function": 0, "id": {"vendor": 6966, "device": 12}, "qdev_id": "hostdev-port0",
                 "pci_bridge": {"bus": {"number": 1}, "devices": [
                    {"bus": 1, "slot": 0, "function": 0, "id": {"vendor": 32902, "device": 4307}, "qdev_id": "hostdev-0000-01-00.0"}
                 ]}}
            ]
        }]);
        let got = pci_of(&r);
        assert_eq!(got.len(), 3);
        let nic = &got[2];
        assert_eq!(
            (nic.pci.bus, nic.pci.slot, nic.pci.vendor, nic.pci.device),
            (1, 0, 0x8086, 0x10d3)
        );
        assert_eq!(nic.id, "hostdev-0000-01-00.0");
    }
}

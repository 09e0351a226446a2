//! Helpers for the integration tests: find the `iolab` binary, start peers on
//! free loopback ports, and make sure every process a test starts is stopped.

pub mod nbd;
pub mod netns;
pub mod proxy;
pub mod raw;
pub mod tmux;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Path of the `iolab` binary of the profile the tests were built with; built on first use.
pub fn iolab_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test executable path");
        // target/<profile>/deps/<test> -> target/<profile>/iolab
        let profile_dir = exe
            .parent()
            .and_then(|d| d.parent())
            .expect("target dir")
            .to_path_buf();
        let bin = profile_dir.join("iolab");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "-q", "-p", "iolab"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("running cargo build -p iolab");
        assert!(status.success(), "cargo build -p iolab failed");
        assert!(bin.exists(), "{} was not built", bin.display());
        bin
    })
    .clone()
}

/// Whether a peer program is on PATH. Missing peers fail the test unless
/// `IOLAB_ALLOW_MISSING_PEERS=1`, in which case the caller skips.
pub fn require_peer(program: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if found {
        return true;
    }
    if std::env::var("IOLAB_ALLOW_MISSING_PEERS").as_deref() == Ok("1") {
        eprintln!("SKIPPED: {program} is not installed (IOLAB_ALLOW_MISSING_PEERS=1)");
        return false;
    }
    panic!("{program} is not installed: run ./scripts/test (or set IOLAB_ALLOW_MISSING_PEERS=1)");
}

/// A test that cannot do its work on this machine (no PCI function, no
/// kernel) fails, unless `IOLAB_ALLOW_MISSING_PEERS=1`: then it says SKIPPED
/// and the caller returns. A test that skips silently would pass doing nothing.
pub fn missing_or_skip(what: &str) {
    if std::env::var("IOLAB_ALLOW_MISSING_PEERS").as_deref() == Ok("1") {
        eprintln!("SKIPPED: {what} (IOLAB_ALLOW_MISSING_PEERS=1)");
        return;
    }
    panic!("{what}: this test cannot run here (set IOLAB_ALLOW_MISSING_PEERS=1 to skip it)");
}

/// The micro-guest image (kernel, initramfs with this build's iolab), built
/// once per test binary into the build directory. `None` only when peers may
/// be missing (`IOLAB_ALLOW_MISSING_PEERS=1`); otherwise a missing kernel or
/// qemu fails the test.
pub fn micro_image() -> Option<(PathBuf, PathBuf)> {
    static IMG: OnceLock<Option<(PathBuf, PathBuf)>> = OnceLock::new();
    IMG.get_or_init(|| build_image("micro-image", &[])).clone()
}

/// The IOMMU lab's micro-guest (`guest image --iommu-lab`: VFIO modules,
/// e1000e, qemu and its firmware), as [`micro_image`].
pub fn iommu_lab_image() -> Option<(PathBuf, PathBuf)> {
    static IMG: OnceLock<Option<(PathBuf, PathBuf)>> = OnceLock::new();
    IMG.get_or_init(|| build_image("iommu-lab-image", &["--iommu-lab"]))
        .clone()
}

fn build_image(dir: &str, args: &[&str]) -> Option<(PathBuf, PathBuf)> {
    if !require_peer("qemu-system-x86_64") || !require_peer("busybox") {
        return None;
    }
    let out = iolab_bin().parent().expect("build directory").join(dir);
    let (ok, text) = run(
        iolab()
            .args(["guest", "image", "--out", out.to_str().expect("UTF-8 path")])
            .args(args),
        Duration::from_secs(120),
    );
    if !ok {
        missing_or_skip(&format!("no micro-guest image: {text}"));
        return None;
    }
    Some((out.join("vmlinuz"), out.join("initrd.cpio")))
}

/// `iolab guest boot --kernel K --initrd I --dir D`: options and `--` with
/// the guest's command follow.
pub fn guest_boot(
    kernel: &std::path::Path,
    initrd: &std::path::Path,
    dir: &std::path::Path,
) -> Command {
    let mut c = iolab();
    c.args(["guest", "boot", "--kernel"])
        .arg(kernel)
        .arg("--initrd")
        .arg(initrd)
        .arg("--dir")
        .arg(dir);
    c
}

/// SIGKILLs the qemu of a guest started with `--dir guest_dir` (by its pid
/// file) and waits until it is gone: a power failure, and no qemu left behind.
pub fn kill_guest_qemu(guest_dir: &std::path::Path) {
    let pid: i32 = std::fs::read_to_string(guest_dir.join("qemu.pid"))
        .expect("qemu pid file")
        .trim()
        .parse()
        .expect("qemu pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap_or_else(|e| panic!("kill qemu {pid}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(10);
    // The boot command, qemu's parent, reaps it.
    let gone = || !std::path::Path::new(&format!("/proc/{pid}")).exists();
    while !gone() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(gone(), "qemu {pid} still runs 10 s after SIGKILL");
}

/// A child process killed (SIGKILL) and reaped when dropped.
pub struct Proc {
    pub child: Child,
    pub lines: Vec<String>,
    /// Standard output lines that arrived after start-up.
    pub rx: Option<std::sync::mpsc::Receiver<String>>,
}

impl Proc {
    pub fn new(child: Child) -> Proc {
        Proc {
            child,
            lines: Vec::new(),
            rx: None,
        }
    }

    /// Spawns `cmd` with its standard output read line by line into [`Proc::wait_line`].
    pub fn spawn(cmd: &mut Command) -> Proc {
        let mut child = cmd.stdout(Stdio::piped()).spawn().expect("spawn");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Proc {
            child,
            lines: Vec::new(),
            rx: Some(rx),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
    /// Waits up to `within` for an output line containing `what` (keeping every line).
    pub fn wait_line(&mut self, what: &str, within: Duration) -> Option<String> {
        self.wait_line_where(|l| l.contains(what), within)
    }

    /// Waits up to `within` for an output line for which `wanted` holds
    /// (keeping every line); lines already read count first.
    pub fn wait_line_where(
        &mut self,
        wanted: impl Fn(&str) -> bool,
        within: Duration,
    ) -> Option<String> {
        let deadline = Instant::now() + within;
        if let Some(l) = self.lines.iter().find(|l| wanted(l)) {
            return Some(l.clone());
        }
        let rx = self.rx.as_ref()?;
        while Instant::now() < deadline {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(100)) {
                self.lines.push(l.clone());
                if wanted(&l) {
                    return Some(l);
                }
            }
        }
        None
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A command running the `iolab` binary with its notebook (runs that `bench`
/// and `matrix` store) in the build directory rather than the user's home.
pub fn iolab() -> Command {
    let bin = iolab_bin();
    let mut cmd = Command::new(&bin);
    if let Some(dir) = bin.parent() {
        cmd.env("XDG_DATA_HOME", dir.join("test-data"));
    }
    cmd
}

/// Starts `iolab target serve ARGS` on a free loopback port and waits for its `lun` lines.
pub fn serve(args: &[&str]) -> (Proc, Vec<String>) {
    let mut cmd = iolab();
    cmd.args(["target", "serve", "--listen", "127.0.0.1:0"])
        .args(args);
    serve_cmd(cmd)
}

/// Starts a prepared `iolab target serve` command and waits for its `lun` lines.
pub fn serve_cmd(cmd: Command) -> (Proc, Vec<String>) {
    serve_cmd_within(cmd, Duration::from_secs(30))
}

/// [`serve_cmd`] with a longer wait, for a target that first boots a guest.
pub fn serve_cmd_within(mut cmd: Command, wait: Duration) -> (Proc, Vec<String>) {
    // Warnings and errors only: test output stays readable.
    cmd.env(
        "IOLAB_LOG",
        std::env::var("IOLAB_LOG").unwrap_or_else(|_| "warn".into()),
    );
    cmd.stderr(Stdio::inherit());
    let mut proc = Proc::spawn(&mut cmd);
    let rx = proc.rx.take().expect("spawned with a line reader");
    let deadline = Instant::now() + wait;
    let mut urls = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(line) => {
                proc.lines.push(line.clone());
                if let Some(u) = line.strip_prefix("lun ") {
                    urls.push(u.to_string());
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if !urls.is_empty() {
                    break;
                }
                if let Ok(Some(st)) = proc.child.try_wait() {
                    panic!("iolab target serve exited early: {st}");
                }
            }
            Err(_) => break,
        }
    }
    assert!(
        !urls.is_empty(),
        "iolab target serve printed no lun line: {:?}",
        proc.lines
    );
    proc.rx = Some(rx);
    (proc, urls)
}

/// `host:port` of an `iscsi://host:port/iqn/lun` URL.
pub fn portal_of(url: &str) -> String {
    url.trim_start_matches("iscsi://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

/// Runs a command with a timeout; returns (success, stdout+stderr).
pub fn run(cmd: &mut Command, timeout: Duration) -> (bool, String) {
    let out_path =
        std::env::temp_dir().join(format!("iolab-run-{}-{}.log", std::process::id(), unique()));
    let file = std::fs::File::create(&out_path).expect("log file");
    let err = file.try_clone().expect("clone");
    let mut child = cmd.stdout(file).stderr(err).spawn().expect("spawn");
    let deadline = Instant::now() + timeout;
    let ok = loop {
        if let Ok(Some(st)) = child.try_wait() {
            break st.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    let _ = std::fs::remove_file(&out_path);
    (ok, text)
}

/// A process-unique counter for temporary names.
pub fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);
impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p =
            std::env::temp_dir().join(format!("iolab-{tag}-{}-{}", std::process::id(), unique()));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Per-test verdicts of libiscsi's `iscsi-test-cu` output: a test is SKIP when
/// it printed `[SKIPPED]` and nothing failed, FAIL when anything failed.
pub fn classify_cu(log: &str) -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = Vec::new();
    let mut suite = String::new();
    let mut current: Option<(String, &'static str)> = None;
    for line in log.lines() {
        if let Some(s) = line.strip_prefix("Suite: ") {
            if let Some(c) = current.take() {
                out.push(c);
            }
            suite = s.split_whitespace().next().unwrap_or("").to_string();
            continue;
        }
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix("Test: ")
            && let Some(name) = rest.split(" ...").next()
        {
            if let Some(c) = current.take() {
                out.push(c);
            }
            current = Some((format!("{suite}.{}", name.trim()), "PASS"));
        }
        if let Some(c) = current.as_mut() {
            let failed = line.contains("[FAILED]")
                || (line.split_whitespace().any(|w| w == "FAILED") && !line.contains("Test:"));
            if failed {
                c.1 = "FAIL";
            } else if line.contains("[SKIPPED]") && c.1 != "FAIL" {
                c.1 = "SKIP";
            }
        }
    }
    if let Some(c) = current.take() {
        out.push(c);
    }
    out
}

/// A free TCP port on loopback (bound and released; good enough for tests).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Debian's tgtd serving one RAM-file LUN on a free loopback port; SIGKILLed on drop.
pub struct Tgtd {
    proc: Proc,
    pub control_port: u16,
    pub port: u16,
    pub iqn: String,
    _dir: TempDir,
}

impl Tgtd {
    /// Starts tgtd with LUN 1 backed by a file of `size_mib` MiB. `params` are
    /// target parameters set with `tgtadm --op update` (e.g. ("ImmediateData", "No")).
    pub fn start(size_mib: u64, params: &[(&str, &str)]) -> Tgtd {
        let dir = TempDir::new("tgtd");
        let img = dir.0.join("lun.img");
        let f = std::fs::File::create(&img).expect("backing file");
        f.set_len(size_mib << 20).expect("size");
        let port = free_port();
        // tgtd accepts control ports up to about 32767: derive one from the portal port.
        let control_port = port % 30_000 + 1;
        let child = Command::new("tgtd")
            .args([
                "-f",
                "-C",
                &control_port.to_string(),
                "--iscsi",
                &format!("portal=127.0.0.1:{port}"),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tgtd");
        let t = Tgtd {
            proc: Proc::new(child),
            control_port,
            port,
            iqn: format!("iqn.2026-11.test.tgtd:{port}"),
            _dir: dir,
        };
        // tgtd needs a moment before its control socket answers.
        let deadline = Instant::now() + Duration::from_secs(10);
        while t.adm(&["--op", "show", "--mode", "target"]).is_err() {
            assert!(Instant::now() < deadline, "tgtd did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        t.adm(&[
            "--op", "new", "--mode", "target", "--tid", "1", "-T", &t.iqn,
        ])
        .expect("new target");
        t.adm(&[
            "--op",
            "new",
            "--mode",
            "logicalunit",
            "--tid",
            "1",
            "--lun",
            "1",
            "-b",
            img.to_str().expect("path"),
        ])
        .expect("new lun");
        for (k, v) in params {
            t.adm(&[
                "--op", "update", "--mode", "target", "--tid", "1", "--name", k, "--value", v,
            ])
            .expect("update param");
        }
        t.adm(&[
            "--op", "bind", "--mode", "target", "--tid", "1", "-I", "ALL",
        ])
        .expect("bind");
        t
    }

    /// Runs tgtadm against this instance.
    pub fn adm(&self, args: &[&str]) -> Result<String, String> {
        let out = Command::new("tgtadm")
            .args(["-C", &self.control_port.to_string(), "--lld", "iscsi"])
            .args(args)
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    pub fn url(&self, lun: u32) -> String {
        format!("iscsi://127.0.0.1:{}/{}/{lun}", self.port, self.iqn)
    }

    pub fn pid(&self) -> u32 {
        self.proc.pid()
    }
}

/// Debian's istgt (a userspace target that grants MC/S, MaxConnections 4)
/// serving one 64 MiB LUN on a free loopback port; SIGKILLed on drop.
pub struct Istgt {
    _proc: Proc,
    pub port: u16,
    _dir: TempDir,
}

impl Istgt {
    pub fn start() -> Istgt {
        let dir = TempDir::new("istgt");
        let port = free_port();
        let ctl = free_port();
        let d = dir.0.display();
        std::fs::write(dir.0.join("auth.conf"), "").expect("auth.conf");
        let conf = format!(
            "[Global]\n  NodeBase \"iqn.2026-11.test.istgt\"\n  PidFile {d}/istgt.pid\n  AuthFile {d}/auth.conf\n  MediaDirectory {d}\n  \
             Timeout 30\n  NopInInterval 20\n  DiscoveryAuthMethod None\n  MaxSessions 16\n  MaxConnections 4\n  MaxR2T 32\n  \
             MaxOutstandingR2T 16\n  FirstBurstLength 262144\n  MaxBurstLength 1048576\n  MaxRecvDataSegmentLength 262144\n  \
             InitialR2T Yes\n  ImmediateData Yes\n  ErrorRecoveryLevel 0\n\
             [UnitControl]\n  AuthMethod None\n  Portal UC1 127.0.0.1:{ctl}\n  Netmask 127.0.0.1\n\
             [PortalGroup1]\n  Portal DA1 127.0.0.1:{port}\n\
             [InitiatorGroup1]\n  InitiatorName \"ALL\"\n  Netmask 127.0.0.0/8\n\
             [LogicalUnit1]\n  TargetName disk1\n  Mapping PortalGroup1 InitiatorGroup1\n  AuthMethod None\n  UseDigest Auto\n  \
             UnitType Disk\n  LUN0 Storage {d}/disk1.img 64MB\n"
        );
        let conf_path = dir.0.join("istgt.conf");
        std::fs::write(&conf_path, conf).expect("istgt.conf");
        let child = Command::new("istgt")
            .arg("-D")
            .arg("-c")
            .arg(&conf_path)
            .arg("-p")
            .arg(dir.0.join("istgt.pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn istgt");
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "istgt did not come up");
            std::thread::sleep(Duration::from_millis(50));
        }
        Istgt {
            _proc: Proc::new(child),
            port,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!(
            "iscsi://127.0.0.1:{}/iqn.2026-11.test.istgt:disk1/0",
            self.port
        )
    }
}

/// The run a command stored (its "stored as run N" line in `out`), as
/// `iolab runs export N --format json` gives it.
pub fn stored_run(db: &std::path::Path, out: &str) -> serde_json::Value {
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("stored as run "))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no run id: {out}"))
        .to_string();
    let (ok, json) = run(
        iolab()
            .arg("--db")
            .arg(db)
            .args(["runs", "export", &id, "--format", "json"]),
        Duration::from_secs(30),
    );
    assert!(ok, "{json}");
    serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"))
}

/// Asserts that, per cell and connection, the bytes a run across hosts
/// counted on the initiator's side moved something and are within 1% of
/// what the target counted; returns how many connections it compared.
pub fn sides_agree(run: &serde_json::Value) -> usize {
    let mut sums: std::collections::BTreeMap<(String, u64, u64), u64> = Default::default();
    for p in run["series"].as_array().expect("series") {
        let key = (
            p["side"].as_str().unwrap_or("").to_string(),
            p["cell"].as_u64().unwrap_or(0),
            p["cid"].as_u64().unwrap_or(0),
        );
        *sums.entry(key).or_default() +=
            p["read_bytes"].as_u64().unwrap_or(0) + p["write_bytes"].as_u64().unwrap_or(0);
    }
    let mut compared = 0;
    for ((side, cell, cid), ini) in &sums {
        if side != "initiator" {
            continue;
        }
        let tgt = sums
            .get(&("target".to_string(), *cell, *cid))
            .copied()
            .unwrap_or_else(|| panic!("no target series for cell {cell} cid {cid}"));
        assert!(*ini > 0, "cell {cell} cid {cid} moved nothing");
        let diff = (*ini as f64 - tgt as f64).abs() / *ini as f64;
        assert!(
            diff <= 0.01,
            "cell {cell} cid {cid}: initiator {ini} target {tgt}"
        );
        compared += 1;
    }
    compared
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifier_counts_like_the_reference_script() {
        let log = "Suite: A\n  Test: One ...passed\n  Test: Two ...    [SKIPPED] nope\n  Test: Three ... [FAILED] bad\nFAILED\nSuite: B\n  Test: Four ...passed\n";
        let r = classify_cu(log);
        assert_eq!(
            r,
            vec![
                ("A.One".to_string(), "PASS"),
                ("A.Two".to_string(), "SKIP"),
                ("A.Three".to_string(), "FAIL"),
                ("B.Four".to_string(), "PASS")
            ]
        );
    }
}

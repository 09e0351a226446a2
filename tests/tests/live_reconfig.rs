//! A running target changed under load: while `qemu-img bench` reads LUN 0,
//! `iolab target serve --config` is given a new configuration (SIGHUP) that
//! adds a FILEIO LUN 1 and a second portal, then one that removes LUN 1.
//! The bench completes without error, the new portal serves the new LUN,
//! and a second initiator logged in to LUN 0 is told REPORTED LUNS DATA HAS
//! CHANGED.

use std::process::Command;
use std::time::Duration;

use iolab_tests::raw::RawConn;
use iolab_tests::{Proc, TempDir, free_port, iolab, portal_of, require_peer, run, serve_cmd};

const IQN: &str = "iqn.2026-12.io.iolab:live";

fn config(port: u16, extra_portal: Option<u16>, lun1: Option<&std::path::Path>) -> String {
    let mut listen = format!("\"127.0.0.1:{port}\"");
    if let Some(p) = extra_portal {
        listen.push_str(&format!(", \"127.0.0.1:{p}\""));
    }
    let mut s = format!(
        "listen = [{listen}]\n[[targets]]\niqn = \"{IQN}\"\n\
         [[targets.luns]]\nlun = 0\nbackstore = {{ kind = \"ramdisk\", size = 268435456 }}\n"
    );
    if let Some(path) = lun1 {
        s.push_str(&format!(
            "[[targets.luns]]\nlun = 1\nbackstore = {{ kind = \"fileio\", path = \"{}\", size = 33554432 }}\n",
            path.display()
        ));
    }
    s
}

fn hup(p: &Proc) {
    let pid = nix::unistd::Pid::from_raw(p.pid() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
}

/// TEST UNIT READY until it is GOOD (unit attentions from the login first).
fn settle(c: &mut RawConn) {
    for _ in 0..4 {
        if c.test_unit_ready(0) == Some((0, 0, 0, 0)) {
            return;
        }
    }
    panic!("LUN 0 never became ready for the second initiator");
}

#[test]
fn luns_and_portals_change_while_qemu_img_reads() {
    if !require_peer("qemu-img") || !require_peer("iscsi-ls") {
        return;
    }
    let dir = TempDir::new("live-reconfig");
    let file = dir.0.join("config.toml");
    let lun1 = dir.0.join("lun1.img");
    let (port, port2) = (free_port(), free_port());
    std::fs::write(&file, config(port, None, None)).unwrap();
    let mut cmd = iolab();
    cmd.args(["target", "serve", "--config"]).arg(&file);
    let (mut target, urls) = serve_cmd(cmd);
    assert_eq!(urls, vec![format!("iscsi://127.0.0.1:{port}/{IQN}/0")]);

    let mut second = RawConn::connect(&portal_of(&urls[0]));
    let r = second.login(IQN, &[]);
    assert_eq!(r.bhs[36], 0, "second initiator's login");
    settle(&mut second);

    // About 20 GB of 64 KiB reads: seconds on any machine, longer than the changes.
    // Its output goes to a file; Proc kills it if the test ends early.
    let out_path = dir.0.join("bench.log");
    let out_file = std::fs::File::create(&out_path).unwrap();
    let mut bench = Proc::new(
        Command::new("qemu-img")
            .args([
                "bench", "-f", "raw", "-c", "300000", "-d", "32", "-s", "65536",
            ])
            .arg(&urls[0])
            .stdout(out_file.try_clone().unwrap())
            .stderr(out_file)
            .spawn()
            .expect("qemu-img bench"),
    );
    std::thread::sleep(Duration::from_millis(500));

    // Add LUN 1 (FILEIO) and a second portal.
    std::fs::write(&file, config(port, Some(port2), Some(&lun1))).unwrap();
    hup(&target);
    let line = target
        .wait_line("reconfigured:", Duration::from_secs(20))
        .expect("no 'reconfigured' line");
    assert!(
        line.contains("LUN 1 added") && line.contains(&format!("portal 127.0.0.1:{port2}")),
        "{line}"
    );
    assert_eq!(std::fs::metadata(&lun1).unwrap().len(), 32 << 20);
    let (ok, out) = run(
        Command::new("iscsi-ls").args(["-s", &format!("iscsi://127.0.0.1:{port2}")]),
        Duration::from_secs(20),
    );
    assert!(ok, "iscsi-ls on the new portal: {out}");
    // iscsi-ls prints the last LBA's offset in MiB: 31M for 32 MiB (255M for LUN 0's 256).
    assert!(
        out.contains(&format!("Portal:127.0.0.1:{port2},1"))
            && out.contains("Lun:1    Type:DIRECT_ACCESS (Size:31M)"),
        "the new portal does not show LUN 1 of 32 MiB: {out}"
    );
    // The second initiator is told once, then LUN 0 is ready again.
    assert_eq!(second.test_unit_ready(0), Some((2, 6, 0x3f, 0x0e)));
    assert_eq!(second.test_unit_ready(0), Some((0, 0, 0, 0)));

    // Remove LUN 1 again (the portal stays).
    std::fs::write(&file, config(port, Some(port2), None)).unwrap();
    target.lines.clear();
    hup(&target);
    let line = target
        .wait_line("reconfigured:", Duration::from_secs(20))
        .expect("no second 'reconfigured' line");
    assert!(line.contains("LUN 1 removed"), "{line}");
    assert_eq!(second.test_unit_ready(0), Some((2, 6, 0x3f, 0x0e)));
    assert_eq!(second.test_unit_ready(1), Some((2, 5, 0x25, 0x00)));
    assert!(
        bench.child.try_wait().unwrap().is_none(),
        "qemu-img bench ended before the changes were made: the test proved nothing"
    );

    // A configuration that cannot be applied changes nothing and says why.
    std::fs::write(
        &file,
        config(port, Some(port2), Some(&dir.0.join("no/such/dir.img"))),
    )
    .unwrap();
    target.lines.clear();
    hup(&target);
    let line = target
        .wait_line("reconfigure", Duration::from_secs(20))
        .expect("no answer to the bad configuration");
    assert!(
        line.starts_with("reconfigure failed:") && line.contains("no/such/dir.img"),
        "{line}"
    );
    assert_eq!(
        second.test_unit_ready(0),
        Some((0, 0, 0, 0)),
        "nothing changed"
    );

    let status = bench.child.wait().expect("qemu-img bench");
    let text = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(status.success(), "qemu-img bench failed: {text}");
    assert!(text.contains("Run completed"), "{text}");
    target.kill();
}

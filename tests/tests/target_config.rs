//! `iolab target serve --config FILE`: a LIO-style TOML configuration, and
//! clear errors for bad ones.

use std::time::Duration;

use iolab_tests::{TempDir, iolab, run, serve};

#[test]
fn toml_config_exports_its_luns_and_acls() {
    let dir = TempDir::new("config");
    let file = dir.0.join("target.toml");
    let img = dir.0.join("lun1.img");
    std::fs::write(
        &file,
        format!(
            r#"
listen = ["127.0.0.1:0"]

[[targets]]
iqn = "iqn.2026-11.org.example:lab"
tpgt = 3
queue_depth = 32
demo_mode = false

[[targets.acls]]
initiator = "iqn.2026-11.org.example:host1"

[[targets.luns]]
lun = 0
backstore = {{ kind = "ramdisk", size = 33554432 }}

[[targets.luns]]
lun = 1
backstore = {{ kind = "fileio", path = "{}", size = 16777216 }}
attributes = {{ read_only = true }}
"#,
            img.display()
        ),
    )
    .unwrap();
    let (_srv, urls) = serve(&["--config", file.to_str().unwrap()]);
    assert_eq!(urls.len(), 2, "{urls:?}");
    assert!(
        urls[0].ends_with("/iqn.2026-11.org.example:lab/0"),
        "{urls:?}"
    );
    assert!(
        urls[1].ends_with("/iqn.2026-11.org.example:lab/1"),
        "{urls:?}"
    );
    assert_eq!(
        std::fs::metadata(&img).unwrap().len(),
        16 << 20,
        "FILEIO file created at its size"
    );
}

#[test]
fn bad_configurations_fail_with_one_clear_message() {
    let dir = TempDir::new("badconfig");
    let cases: &[(&str, &str)] = &[
        (
            "listen = [\"127.0.0.1:0\"]\n[[targets]]\niqn = \"not-an-iqn\"\n",
            "not a valid iSCSI name",
        ),
        (
            "listen = [\"127.0.0.1:0\"]\n[[targets]]\niqn = \"iqn.2026-11.org.x:t\"\nbogus = 1\n",
            "unknown field `bogus`",
        ),
        ("listen = \"nope\"\n", "invalid type"),
    ];
    for (i, (text, want)) in cases.iter().enumerate() {
        let file = dir.0.join(format!("bad{i}.toml"));
        std::fs::write(&file, text).unwrap();
        let (ok, out) = run(
            iolab().args(["target", "serve", "--config"]).arg(&file),
            Duration::from_secs(10),
        );
        assert!(!ok, "bad config {i} was accepted");
        assert!(
            out.contains(want),
            "config {i}: expected '{want}' in: {out}"
        );
        assert!(!out.contains("panicked"), "{out}");
    }
    for (opt, value, want) in [
        ("--ramdisk", "12x", "invalid size '12x'"),
        (
            "--fileio",
            "/nonexistent/dir/x.img:1M",
            "/nonexistent/dir/x.img",
        ),
    ] {
        let (ok, out) = run(
            iolab().args(["target", "serve", "--listen", "127.0.0.1:0", opt, value]),
            Duration::from_secs(10),
        );
        assert!(!ok && out.contains(want), "{opt} {value}: {out}");
    }
}

#[test]
fn an_error_says_its_cause_once() {
    let (ok, out) = run(
        iolab().args([
            "target",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--fileio",
            "/nonexistent-iolab/y.img",
        ]),
        Duration::from_secs(10),
    );
    assert!(!ok, "{out}");
    assert!(out.contains("/nonexistent-iolab/y.img"), "{out}");
    // Each layer's message already holds what it wraps: printed as a chain,
    // nothing may repeat (it once said the path and the OS error three times).
    assert_eq!(out.matches("No such file or directory").count(), 1, "{out}");
    assert_eq!(out.matches("/nonexistent-iolab/y.img").count(), 1, "{out}");
}

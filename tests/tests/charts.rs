//! Runs keep their per-connection series and become pictures: `iolab bench`
//! stores the series of each connection at 4 Hz (their bytes add up to what
//! the run moved), and `iolab runs chart` draws the run as SVG and PNG.

use std::time::Duration;

use iolab_tests::{TempDir, iolab, run, serve};

fn stored_run(db: &str, id: &str) -> serde_json::Value {
    let (ok, out) = run(
        iolab().args(["--db", db, "runs", "export", id, "--format", "json"]),
        Duration::from_secs(30),
    );
    assert!(ok, "runs export: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn bench_stores_its_series_and_runs_chart_draws_them() {
    let dir = TempDir::new("charts");
    let db = dir.0.join("nb.db");
    let db = db.to_str().unwrap();
    let (_srv, urls) = serve(&["--ramdisk", "128M"]);
    for (mode, conns) in [("read", "2"), ("write", "1")] {
        let (ok, out) = run(
            iolab().args([
                "--db",
                db,
                "bench",
                &urls[0],
                "--mode",
                mode,
                "--time",
                "3",
                "--connections",
                conns,
                "--threads",
                "8",
                "--bs",
                "64K",
            ]),
            Duration::from_secs(60),
        );
        assert!(ok, "bench: {out}");
    }
    let r = stored_run(db, "1");
    let series = r["series"].as_array().expect("series");
    let cids: std::collections::BTreeSet<u64> =
        series.iter().map(|p| p["cid"].as_u64().unwrap()).collect();
    assert_eq!(cids.len(), 2, "one line per connection: {cids:?}");
    // Three seconds at 4 Hz per connection (the last sample may be partial).
    for cid in &cids {
        let n = series.iter().filter(|p| p["cid"] == *cid).count();
        assert!((11..=14).contains(&n), "cid {cid}: {n} points");
    }
    let stored: u64 = series
        .iter()
        .map(|p| p["read_bytes"].as_u64().unwrap())
        .sum();
    let cell = r["cells"][0]["read_bytes"].as_u64().unwrap();
    assert!(cell > 0);
    assert!(
        stored.abs_diff(cell) <= cell / 1000,
        "the series add up to what the run read: {stored} vs {cell}"
    );

    let out = |name: &str| dir.0.join(name).to_str().unwrap().to_string();
    for args in [
        vec!["runs", "chart", "1", "-o", &out("series.svg")],
        vec!["runs", "chart", "1", "-o", &out("series.png")],
        vec![
            "runs",
            "chart",
            "1",
            "--kind",
            "cells",
            "-o",
            &out("cells.png"),
        ],
        vec!["runs", "chart", "1", "--vs", "2", "-o", &out("vs.svg")],
    ] {
        let (ok, text) = run(
            iolab().args(["--db", db]).args(&args),
            Duration::from_secs(60),
        );
        assert!(ok, "{args:?}: {text}");
    }
    let svg = std::fs::read_to_string(out("series.svg")).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..60.min(svg.len())]);
    assert!(svg.contains("session 0 cid 1"), "legend per connection");
    for png in ["series.png", "cells.png"] {
        let bytes = std::fs::read(out(png)).unwrap();
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "{png}");
        // IHDR width 1200, height 700 (the default size).
        assert_eq!(&bytes[16..24], &[0, 0, 4, 176, 0, 0, 2, 188], "{png}");
        assert!(bytes.len() > 10_000, "{png}: {} bytes", bytes.len());
    }
    let vs = std::fs::read_to_string(out("vs.svg")).unwrap();
    assert!(
        vs.contains("run #1") && vs.contains("run #2"),
        "both runs named"
    );

    // Bad requests get a reason, and nothing is written.
    for (args, why) in [
        (
            vec!["runs", "chart", "1", "-o", &out("x.gif")],
            "must end in .svg or .png",
        ),
        (vec!["runs", "chart", "9", "-o", &out("y.svg")], "9"),
        (
            vec!["runs", "chart", "1", "--size", "10x10", "-o", &out("z.svg")],
            "200..=8000",
        ),
    ] {
        let (ok, text) = run(
            iolab().args(["--db", db]).args(&args),
            Duration::from_secs(30),
        );
        assert!(!ok && text.contains(why), "{args:?}: {text}");
    }
    assert!(!dir.0.join("x.gif").exists() && !dir.0.join("y.svg").exists());
}

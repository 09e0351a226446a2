//! The lab notebook from the command line: profiles saved, exported, edited,
//! imported and run; runs stored, exported and compared; bad input refused
//! without storing anything; two processes writing at once.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use iolab_tests::{TempDir, iolab, run};

fn nb(db: &Path, args: &[&str]) -> (bool, String) {
    let mut cmd = iolab();
    cmd.arg("--db").arg(db).args(args).env("IOLAB_LOG", "warn");
    run(&mut cmd, Duration::from_secs(180))
}

/// The cells of `runs export ID --format csv`, as (mode, conns, read MB/s, read IOPS, write MB/s, write IOPS).
fn csv_cells(db: &Path, id: &str) -> Vec<(String, u32, f64, f64, f64, f64, u32)> {
    let (ok, out) = nb(db, &["runs", "export", id, "--format", "csv"]);
    assert!(ok, "{out}");
    let mut lines = out.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    lines
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            let n = |name: &str| f[col(name)].parse::<f64>().unwrap();
            (
                f[col("mode")].to_string(),
                f[col("connections")].parse().unwrap(),
                n("read_mbps"),
                n("read_iops"),
                n("write_mbps"),
                n("write_iops"),
                f[col("threads")].parse().unwrap(),
            )
        })
        .collect()
}

/// Rows of a printed cell table: (mode, conns, read MB/s, read IOPS, write MB/s, write IOPS).
fn printed_cells(out: &str) -> Vec<(String, u32, f64, f64, f64, f64)> {
    out.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() != 9 || f[0].parse::<u64>().is_err() {
                return None;
            }
            let n = |i: usize| f[i].parse::<f64>().ok();
            Some((
                f[1].to_string(),
                f[2].parse().ok()?,
                n(3)?,
                n(4)?,
                n(5)?,
                n(6)?,
            ))
        })
        .collect()
}

fn stored_id(out: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix("stored as run "))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no stored run id:\n{out}"))
        .to_string()
}

#[test]
fn run_quick_stores_what_it_printed() {
    let d = TempDir::new("nb-quick");
    let db = d.0.join("lab.db");
    let (ok, out) = nb(&db, &["run", "quick"]);
    assert!(ok, "{out}");
    let printed = printed_cells(&out);
    assert_eq!(printed.len(), 6, "{out}");
    let stored = csv_cells(&db, &stored_id(&out));
    assert_eq!(stored.len(), printed.len());
    for (p, s) in printed.iter().zip(&stored) {
        assert_eq!((&p.0, p.1), (&s.0, s.1), "cell order");
        for (a, b, prec) in [
            (p.2, s.2, 0.01),
            (p.3, s.3, 0.1),
            (p.4, s.4, 0.01),
            (p.5, s.5, 0.1),
        ] {
            assert!(
                (a - b).abs() <= prec / 2.0 + 1e-9,
                "printed {p:?}, stored {s:?}"
            );
        }
        match p.0.as_str() {
            "write" => assert!(p.4 > 0.0 && p.2 == 0.0, "{p:?}"),
            "read" => assert!(p.2 > 0.0 && p.4 == 0.0, "{p:?}"),
            _ => assert!(p.2 > 0.0 && p.4 > 0.0, "{p:?}"),
        }
    }
    let (ok, list) = nb(&db, &["runs", "list"]);
    assert!(ok && list.lines().any(|l| l.contains("quick")), "{list}");
}

#[test]
fn save_export_edit_import_and_run_a_profile() {
    let d = TempDir::new("nb-edit");
    let db = d.0.join("lab.db");
    let (ok, out) = nb(
        &db,
        &[
            "profile",
            "save",
            "mine",
            "--ramdisk",
            "32M",
            "--modes",
            "write,read",
            "--bs",
            "64k",
            "--threads",
            "4",
            "--time",
            "1s",
            "--verify",
        ],
    );
    assert!(ok, "{out}");
    let (ok, list) = nb(&db, &["profile", "list"]);
    assert!(ok, "{list}");
    for name in ["quick", "seed-lio-kvm", "mine"] {
        assert!(list.lines().any(|l| l.starts_with(name)), "{list}");
    }
    let file = d.0.join("mine.toml");
    let (ok, out) = nb(
        &db,
        &["profile", "export", "mine", "-o", file.to_str().unwrap()],
    );
    assert!(ok, "{out}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.contains("threads = 4"), "{text}");
    let edited = format!(
        "# edited by hand\n{}",
        text.replace("threads = 4", "threads = 8  # more")
    );
    std::fs::write(&file, edited).unwrap();
    let (ok, out) = nb(
        &db,
        &[
            "profile",
            "import",
            file.to_str().unwrap(),
            "--name",
            "edited",
        ],
    );
    assert!(ok, "{out}");
    let (ok, shown) = nb(&db, &["profile", "show", "edited"]);
    assert!(ok, "{shown}");
    assert!(
        shown.contains("# edited by hand") && shown.contains("threads = 8"),
        "{shown}"
    );
    assert!(shown.contains("name = \"edited\""), "{shown}");
    let (ok, out) = nb(&db, &["run", "edited"]);
    assert!(ok, "{out}");
    let cells = csv_cells(&db, &stored_id(&out));
    assert_eq!(cells.len(), 2);
    assert!(cells.iter().all(|c| c.6 == 8), "{cells:?}");
    // Copying and deleting; built-ins stay.
    let (ok, out) = nb(&db, &["profile", "copy", "seed-lio-kvm", "my-seed"]);
    assert!(ok, "{out}");
    let (ok, shown) = nb(&db, &["profile", "show", "my-seed"]);
    assert!(
        ok && shown.contains("name = \"my-seed\"") && shown.contains("# The 2009"),
        "{shown}"
    );
    let (ok, out) = nb(&db, &["profile", "delete", "seed-lio-kvm"]);
    assert!(!ok && out.contains("built in"), "{out}");
    let (ok, out) = nb(&db, &["profile", "delete", "my-seed"]);
    assert!(ok, "{out}");
}

#[test]
fn bad_profiles_are_refused_naming_file_line_and_key_and_store_nothing() {
    let d = TempDir::new("nb-bad");
    let db = d.0.join("lab.db");
    let (ok, good) = nb(&db, &["profile", "show", "quick"]);
    assert!(ok, "{good}");
    let good = good.replace("name = \"quick\"", "name = \"bad\"");
    let cases = [
        (
            good.replace("threads = 16", "threads = \"sixteen\""),
            "threads = \"sixteen\"",
            "workload.threads",
        ),
        (
            good.replace("[initiator]\n", "[initiator]\nconections = 2\n"),
            "conections = 2",
            "initiator.conections",
        ),
    ];
    for (text, needle, key) in &cases {
        let file = d.0.join("bad.toml");
        std::fs::write(&file, text).unwrap();
        let line = text.lines().position(|l| l.contains(needle)).unwrap() + 1;
        let (ok, out) = nb(&db, &["profile", "import", file.to_str().unwrap()]);
        assert!(!ok, "{out}");
        let want = format!("{}:{line}: {key}: ", file.display());
        assert!(out.contains(&want), "wanted {want:?} in:\n{out}");
    }
    let file = d.0.join("newer.toml");
    std::fs::write(&file, good.replace("format = 1", "format = 3")).unwrap();
    let (ok, out) = nb(&db, &["profile", "import", file.to_str().unwrap()]);
    assert!(
        !ok && out.contains("format 3") && out.contains("format 1"),
        "{out}"
    );
    let (ok, list) = nb(&db, &["profile", "list"]);
    assert!(ok, "{list}");
    assert!(!list.lines().any(|l| l.starts_with("bad")), "{list}");
}

#[test]
fn a_file_that_is_not_a_database_is_reported_and_kept() {
    let d = TempDir::new("nb-notdb");
    let db = d.0.join("notes.txt");
    let text = "my lab notes: 10 GbE cards in slots 6 and 7\n".repeat(50);
    std::fs::write(&db, &text).unwrap();
    for args in [
        &["profile", "list"][..],
        &["runs", "list"],
        &["run", "quick"],
    ] {
        let (ok, out) = nb(&db, args);
        assert!(
            !ok && out.contains("not an SQLite database"),
            "{args:?}: {out}"
        );
    }
    assert_eq!(std::fs::read_to_string(&db).unwrap(), text);
}

fn run_json(profile: &str, read_mib: u64, ios: u64) -> String {
    format!(
        r#"{{"profile_name":"{profile}","profile_body":"","started_ms":1000,"ended_ms":3000,
        "host":{{"kernel":"k","cpu_model":"c","cores":2,"memory_bytes":1}},
        "cells":[{{"mode":"read","lun":0,"connections":1,"sessions":1,"block_bytes":262144,"threads":64,
        "seconds":2.0,"read_bytes":{},"read_transfers":{ios},"write_bytes":0,"write_transfers":0,"errors":0,
        "p50_us":1.0,"p99_us":2.0,"p999_us":3.0,"max_us":4.0}}]}}"#,
        read_mib << 20
    )
}

#[test]
fn compare_gives_the_change_per_cell() {
    let d = TempDir::new("nb-compare");
    let db = d.0.join("lab.db");
    let mut ids = Vec::new();
    for (name, mib, ios) in [("a", 800, 4000), ("b", 1200, 3000)] {
        let f = d.0.join(format!("{name}.json"));
        std::fs::write(&f, run_json(name, mib, ios)).unwrap();
        let (ok, out) = nb(&db, &["runs", "import", f.to_str().unwrap()]);
        assert!(ok, "{out}");
        ids.push(stored_id(&out));
    }
    let (ok, out) = nb(&db, &["runs", "compare", &ids[0], &ids[1]]);
    assert!(ok, "{out}");
    let row = out
        .lines()
        .find(|l| l.trim_start().starts_with("0 read"))
        .unwrap_or_else(|| panic!("{out}"));
    // 400 -> 600 MB/s is +50%; 2000 -> 1500 IOPS is -25%.
    let f: Vec<&str> = row.split_whitespace().filter(|x| *x != "|").collect();
    assert_eq!(
        &f[5..],
        ["400.00", "600.00", "+50.0%", "2000.0", "1500.0", "-25.0%"],
        "{row}"
    );
    let f = d.0.join("broken.json");
    std::fs::write(&f, "{\"profile_name\": 3}").unwrap();
    let (ok, out) = nb(&db, &["runs", "import", f.to_str().unwrap()]);
    assert!(!ok && out.contains("broken.json:1"), "{out}");
}

#[test]
fn two_processes_writing_runs_at_once_lose_nothing() {
    let d = TempDir::new("nb-concurrent");
    let db = d.0.join("lab.db");
    let f = d.0.join("r.json");
    std::fs::write(&f, run_json("c", 1, 1)).unwrap();
    let bin = iolab_tests::iolab_bin();
    let script = format!(
        "for i in $(seq 40); do IOLAB_LOG=warn '{}' --db '{}' runs import '{}' >/dev/null || exit 1; done",
        bin.display(),
        db.display(),
        f.display()
    );
    let children: Vec<_> = (0..2)
        .map(|_| Command::new("sh").args(["-c", &script]).spawn().unwrap())
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let (ok, out) = nb(&db, &["runs", "list"]);
    assert!(ok, "{out}");
    let rows = out.lines().filter(|l| l.contains(" c ")).count();
    assert_eq!(rows, 80, "{out}");
}

//! What scripts read: every listing's `--json` is one document naming its
//! schema, `target serve --json` prints JSON lines, and the shell
//! completions and manual page come from the same command definitions.

use std::process::Command;
use std::time::Duration;

use iolab_tests::{Proc, TempDir, iolab, run};

fn json_of(args: &[&str], db: &str) -> serde_json::Value {
    let (ok, out) = run(
        iolab().args(["--db", db]).args(args),
        Duration::from_secs(60),
    );
    assert!(ok, "{args:?}: {out}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
}

#[test]
fn listings_are_versioned_json_documents() {
    let dir = TempDir::new("cli-json");
    let db = dir.0.join("nb.db");
    let db = db.to_str().unwrap();

    let v = json_of(&["profile", "list", "--json"], db);
    assert_eq!(v["schema"], "iolab.profiles.v1");
    let names: Vec<&str> = v["profiles"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"quick") && names.contains(&"seed-lio-kvm"),
        "{names:?}"
    );
    assert_eq!(v["profiles"][0]["kind"], "built-in");

    let v = json_of(&["runs", "list", "--json"], db);
    assert_eq!(v["schema"], "iolab.runs.v1");
    assert_eq!(
        v["runs"],
        serde_json::json!([]),
        "a new notebook has no runs"
    );

    let v = json_of(&["guest", "list", "--json"], db);
    assert_eq!(v["schema"], "iolab.guests.v1");
    assert!(v["guests"].is_array());

    // Reads only: the current namespace's values, nothing changed.
    let v = json_of(&["tune", "show", "--json"], db);
    assert_eq!(v["schema"], "iolab.tune-show.v1");
    let sysctls = v["sysctls"].as_array().unwrap();
    let rmem = sysctls
        .iter()
        .find(|s| s["key"] == "net.core.rmem_max")
        .expect("net.core.rmem_max listed");
    let here = std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap();
    assert_eq!(rmem["value"], here.trim(), "the value the kernel has");
    let lo = v["mtus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["interface"] == "lo")
        .expect("lo listed");
    assert!(lo["mtu"].as_u64().unwrap() >= 1280);
}

#[test]
fn target_serve_json_prints_its_luns_as_json_lines() {
    let mut srv = Proc::spawn(iolab().args([
        "target",
        "serve",
        "--json",
        "--listen",
        "127.0.0.1:0",
        "--ramdisk",
        "16M",
        "--ramdisk",
        "16M",
    ]));
    let mut luns = Vec::new();
    for _ in 0..2 {
        let l = srv
            .wait_line_where(
                |l| l.contains("\"event\":\"lun\"") && !luns.contains(&l.to_string()),
                Duration::from_secs(20),
            )
            .expect("a lun line");
        luns.push(l);
    }
    for (n, l) in luns.iter().enumerate() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}"));
        assert_eq!(v["schema"], "iolab.serve.v1");
        assert_eq!(v["lun"], n as u64);
        assert_eq!(v["target"], "iqn.2026-11.io.iolab:target0");
        let url = v["url"].as_str().unwrap();
        let portal = v["portal"].as_str().unwrap();
        assert_eq!(
            url,
            format!("iscsi://{portal}/iqn.2026-11.io.iolab:target0/{n}")
        );
    }
    // Every line is JSON: nothing else was printed.
    assert!(
        srv.lines.iter().all(|l| l.starts_with('{')),
        "{:?}",
        srv.lines
    );
    srv.kill();
}

#[test]
fn completions_and_the_manual_come_from_the_commands() {
    let text = |args: &[&str]| {
        let (ok, out) = run(iolab().args(args), Duration::from_secs(30));
        assert!(ok, "{args:?}: {out}");
        out
    };
    let bash = text(&["completions", "bash"]);
    let dir = TempDir::new("completions");
    let file = dir.0.join("iolab.bash");
    std::fs::write(&file, &bash).unwrap();
    // bash itself loads it, and it completes the new subcommands.
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "source {} && COMP_WORDS=(iolab wa) COMP_CWORD=1 && _iolab iolab wa iolab && echo ${{COMPREPLY[@]}}",
            file.display()
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "watch");
    assert!(text(&["completions", "zsh"]).starts_with("#compdef iolab"));
    assert!(text(&["completions", "fish"]).contains("complete -c iolab"));
    let man = text(&["man"]);
    assert!(
        man.contains(".TH iolab 1"),
        "{}",
        &man[..200.min(man.len())]
    );
    for sub in ["watch", "completions", "target", "bench"] {
        assert!(man.contains(sub), "the manual lists {sub}");
    }
    let (ok, out) = run(
        iolab().args(["completions", "tcsh"]),
        Duration::from_secs(30),
    );
    assert!(!ok && out.contains("invalid value 'tcsh'"), "{out}");
}

/// Output cut short by its reader ends the command quietly, as `cat` does:
/// no "Broken pipe" message, no panic.
#[test]
fn a_closed_pipe_ends_output_quietly() {
    let bin = iolab_tests::iolab_bin();
    for args in ["man", "completions bash", "profile show seed-lio-kvm"] {
        let out = Command::new("bash")
            .arg("-c")
            .arg(format!(
                "set -o pipefail; {} {args} | head -c 1 >/dev/null; echo \"rc=${{PIPESTATUS[0]}}\" >&2",
                bin.display()
            ))
            .output()
            .expect("bash");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !err.contains("Broken pipe") && !err.contains("panicked"),
            "{args}: {err}"
        );
        let rc = err.trim().rsplit("rc=").next().unwrap_or("");
        assert!(rc == "0" || rc == "141", "{args}: {err}");
    }
}

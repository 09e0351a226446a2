//! `iolab pci` on this machine (against `lspci`) and on fake sysfs trees.

use std::collections::BTreeSet;
use std::time::Duration;

use iolab_pci::fake::FakeTree;
use iolab_tests::{iolab, missing_or_skip, require_peer, run};

fn pci(args: &[&str]) -> (bool, String) {
    let mut c = iolab();
    c.arg("pci").args(args).env("IOLAB_LOG", "warn");
    run(&mut c, Duration::from_secs(60))
}

/// Address, vendor, device and whether it has a name, of each device of
/// `pci list --json` (schema iolab.pci-devices.v1).
fn json_devices(text: &str) -> Vec<(String, u64, u64, bool)> {
    let v: serde_json::Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(v["schema"], "iolab.pci-devices.v1", "{text}");
    v["devices"]
        .as_array()
        .unwrap_or_else(|| panic!("no devices in {text}"))
        .iter()
        .map(|d| {
            (
                d["address"].as_str().unwrap().to_string(),
                d["vendor_id"].as_u64().unwrap(),
                d["device_id"].as_u64().unwrap(),
                !d["device"].is_null(),
            )
        })
        .collect()
}

#[test]
fn list_json_matches_lspci_on_this_machine() {
    if !require_peer("lspci") {
        return;
    }
    let (ok, json) = pci(&["list", "--json"]);
    assert!(ok, "{json}");
    let ours = json_devices(&json);
    let ids = std::process::Command::new("lspci")
        .arg("-Dn")
        .output()
        .unwrap();
    let ids = String::from_utf8_lossy(&ids.stdout).into_owned();
    let theirs: BTreeSet<(String, u64, u64)> = ids
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (v, d) = f.get(2)?.split_once(':')?;
            Some((
                f[0].to_string(),
                u64::from_str_radix(v, 16).ok()?,
                u64::from_str_radix(d, 16).ok()?,
            ))
        })
        .collect();
    assert!(!theirs.is_empty(), "{ids}");
    let mine: BTreeSet<(String, u64, u64)> = ours
        .iter()
        .map(|(a, v, d, _)| (a.clone(), *v, *d))
        .collect();
    assert_eq!(mine, theirs);
    // Where lspci has a device name, so do we.
    let named = std::process::Command::new("lspci")
        .arg("-D")
        .output()
        .unwrap();
    for l in String::from_utf8_lossy(&named.stdout).lines() {
        let addr = l.split_whitespace().next().unwrap();
        let (_, _, dev, has_name) = ours.iter().find(|o| o.0 == addr).unwrap();
        let lspci_named = !l.contains(&format!("Device {dev:04x}"));
        assert!(
            !lspci_named || *has_name,
            "lspci names {addr} ({l}) and we do not"
        );
    }
    let (ok, text) = pci(&["list"]);
    assert!(ok && text.lines().count() == theirs.len(), "{text}");
}

#[test]
fn binding_here_explains_what_is_missing() {
    let (ok, list) = pci(&["list"]);
    assert!(ok, "{list}");
    let Some(first) = list.split_whitespace().next() else {
        missing_or_skip("this machine's PCI bus has no functions to try binding");
        return;
    };
    let (ok, out) = pci(&["bind", first, "--dry-run"]);
    assert!(!out.contains("panicked"), "{out}");
    let iommu = std::fs::read_dir("/sys/kernel/iommu_groups").is_ok_and(|mut d| d.next().is_some());
    if !iommu {
        // Without an IOMMU no function can go to vfio-pci: refused, with the fix.
        assert!(!ok, "a dry run without an IOMMU succeeded: {out}");
        assert!(
            out.contains("no IOMMU is active") && out.contains("intel_iommu=on"),
            "{out}"
        );
    } else if ok {
        // With one, a dry run that goes through shows the sysfs writes.
        assert!(out.lines().any(|l| l.starts_with("echo ")), "{out}");
    } else {
        // Or it refuses (default route, group, bridge), naming the function.
        assert!(out.contains(first), "{out}");
    }
}

fn fake() -> FakeTree {
    let t = FakeTree::new("cli");
    t.device("0000:00:00.0", 0x8086, 0x0d57, 0x060000, Some(0), None)
        .x520("0000:07:00.0", 13, Some("ixgbe"))
        .net("0000:07:00.0", "eth8", 9000)
        .device(
            "0000:09:00.0",
            0x8086,
            0x2922,
            0x010601,
            Some(15),
            Some("ahci"),
        )
        .driver("vfio-pci");
    t
}

#[test]
fn fake_tree_list_show_dry_run_and_bad_input() {
    let t = fake();
    let root = t.root.to_str().unwrap().to_string();
    let before = t.snapshot();
    let (ok, out) = pci(&["--sysfs-root", &root, "list", "--class", "net"]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().count(), 1, "{out}");
    assert!(
        out.contains("0000:07:00.0 Ethernet controller [0200]") && out.contains("82599"),
        "{out}"
    );
    let (ok, out) = pci(&["--sysfs-root", &root, "show", "07:00.0"]);
    assert!(
        ok && out.contains("interface eth8") && out.contains("mtu 9000"),
        "{out}"
    );
    let (ok, out) = pci(&["--sysfs-root", &root, "bind", "0000:07:00.0", "--dry-run"]);
    assert!(ok, "{out}");
    assert_eq!(out.lines().count(), 3, "{out}");
    assert!(
        out.lines()
            .next()
            .unwrap()
            .starts_with("echo 'vfio-pci' > "),
        "{out}"
    );
    assert_eq!(t.snapshot(), before, "a dry run wrote");
    for (args, want) in [
        (vec!["show", "06:00"], "'06:00' is not a PCI address"),
        (
            vec!["show", "0000:42:00.0"],
            "there is no PCI device 0000:42:00.0",
        ),
        (
            vec!["bind", "0000:42:00.0", "--dry-run"],
            "there is no PCI device",
        ),
        (vec!["list", "--class", "toaster"], "--class toaster"),
    ] {
        let mut a = vec!["--sysfs-root", root.as_str()];
        a.extend(args.iter());
        let (ok, out) = pci(&a);
        assert!(!ok && out.contains(want), "{args:?}: {out}");
        assert!(!out.contains("panicked"), "{out}");
    }
    std::fs::remove_file(t.dev_dir("0000:09:00.0").join("vendor")).unwrap();
    let (ok, out) = pci(&["--sysfs-root", &root, "list"]);
    assert!(!ok && out.contains("0000:09:00.0/vendor"), "{out}");
}

#[test]
fn reattach_all_with_nothing_recorded_says_so() {
    let d = iolab_tests::TempDir::new("pci-db");
    let db = d.0.join("lab.db");
    let (ok, out) = pci(&[
        "--sysfs-root",
        "/nonexistent",
        "reattach",
        "--all",
        "--db",
        db.to_str().unwrap(),
    ]);
    assert!(ok && out.contains("nothing to reattach"), "{out}");
    let (ok, out) = pci(&["reattach", "0000:07:00.0", "--db", db.to_str().unwrap()]);
    assert!(!ok && out.contains("was not bound by iolab"), "{out}");
}

//! `iolab pci` on a real kernel with real IOMMU groups: the IOMMU-lab
//! micro-guest (q35 with an emulated Intel VT-d, `intel_iommu=on`) with
//! three emulated e1000e NICs — one alone on a root port, two behind a
//! PCIe-to-PCI bridge sharing a group — runs a script of iolab commands,
//! including a nested guest (qemu inside the guest) that gets a NIC passed
//! through with vfio-pci. Everything happens inside the guest: nothing on
//! this machine is bound, unbound or changed.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use iolab_tests::{TempDir, guest_boot, iommu_lab_image, run};

/// The emulated devices: e1000e on a root port of its own, two behind a
/// PCIe-to-PCI bridge (conventional PCI: one IOMMU group for both).
const TOPOLOGY: [&str; 6] = [
    "pcie-root-port,id=rp1,chassis=1",
    "e1000e,bus=rp1",
    "pcie-root-port,id=rp2,chassis=2",
    "pcie-pci-bridge,id=br1,bus=rp2",
    "e1000e,bus=br1,addr=1",
    "e1000e,bus=br1,addr=2",
];

/// Each step prints `== NAME`, then what it printed, then `RC NAME N`.
const SCRIPT: &str = r#"
step() { name=$1; shift; echo "== $name"; "$@" 2>&1; echo "RC $name $?"; }
drv() { l=$(readlink /sys/bus/pci/devices/$1/driver); echo "DRIVER $1 ${l##*/}"; }
for g in /sys/kernel/iommu_groups/*; do
  for d in "$g"/devices/*; do echo "SYSFS-GROUP ${g##*/} ${d##*/}"; done
done
ALONE=0000:01:00.0; SHARED=0000:03:01.0; PEER=0000:03:02.0
ROUTE=$(readlink -f /sys/class/net/eth0/device/..); ROUTE=${ROUTE##*/}
GROUP=$(readlink /sys/bus/pci/devices/$ALONE/iommu_group); GROUP=${GROUP##*/}
echo "ROUTE $ROUTE GROUP $GROUP"
step list iolab pci list
step route iolab pci bind $ROUTE
step alone iolab pci bind $ALONE
drv $ALONE
for f in /dev/vfio/*; do echo "VFIO ${f##*/}"; done
step shared iolab pci bind $SHARED
drv $PEER
step group iolab pci bind $SHARED --group
drv $SHARED; drv $PEER
# A process that is not a guest of iolab's holds the group.
exec 3</dev/vfio/$GROUP
step held iolab pci reattach $ALONE 3<&-
exec 3<&-
drv $ALONE
head -c 1048576 /dev/zero > /tmp/disk.img
cat > /tmp/nested.toml <<EOT
format = 1
name = "nested"
[target]
listen = ["127.0.0.1:0"]
[[target.targets]]
iqn = "iqn.2026-12.io.iolab:nested"
[[target.targets.luns]]
lun = 0
backstore = { kind = "ramdisk", size = 16777216 }
[workload]
modes = ["read"]
block_size = "4k"
threads = 1
time = "1s"
[[guests]]
name = "inner"
memory_mib = 64
vcpus = 1
disk = "/tmp/disk.img"
pci = ["$ALONE"]
accel = "tcg"
EOT
step import iolab profile import /tmp/nested.toml
step start iolab guest start inner
sleep 1
step show iolab guest show inner
step unplug iolab pci reattach $ALONE --unplug-timeout 3s
drv $ALONE
# Stopped while it waits (SIGTERM: a script's background job ignores SIGINT):
# nothing written, the record kept (`back` below needs it).
echo "== interrupted"
iolab pci reattach $ALONE --unplug-timeout 60s > /tmp/int.log 2>&1 &
P=$!
sleep 3
kill -TERM $P
wait $P
echo "INT-RC $?"
cat /tmp/int.log
drv $ALONE
step stop iolab guest stop inner --grace 2s
step back iolab pci reattach $ALONE
drv $ALONE
step all iolab pci reattach --all
drv $SHARED; drv $PEER
step after iolab pci list --class net
exit 0
"#;

/// Each step's output and exit status.
fn steps(serial: &str) -> BTreeMap<String, (String, i32)> {
    let mut out = BTreeMap::new();
    let mut name: Option<String> = None;
    let mut text = String::new();
    for l in serial.lines() {
        if let Some(n) = l.strip_prefix("== ") {
            name = Some(n.trim().to_string());
            text.clear();
        } else if let Some(rest) = l.strip_prefix("RC ") {
            let mut f = rest.split_whitespace();
            if let (Some(n), Some(rc)) = (f.next(), f.next().and_then(|r| r.parse().ok())) {
                out.insert(n.to_string(), (std::mem::take(&mut text), rc));
            }
            name = None;
        } else if name.is_some() && !l.starts_with('[') {
            text.push_str(l);
            text.push('\n');
        }
    }
    out
}

/// The `DRIVER BDF NAME` lines, in order.
fn drivers(serial: &str) -> Vec<(String, String)> {
    serial
        .lines()
        .filter_map(|l| {
            let mut f = l.strip_prefix("DRIVER ")?.split_whitespace();
            Some((f.next()?.to_string(), f.next().unwrap_or("").to_string()))
        })
        .collect()
}

#[test]
fn pci_bind_reattach_and_passthrough_on_a_real_kernel_under_an_emulated_vtd() {
    let Some((kernel, initrd)) = iommu_lab_image() else {
        return;
    };
    let d = TempDir::new("iommu-lab");
    let script = d.0.join("lab.sh");
    std::fs::write(&script, SCRIPT).expect("script");
    let mut c = guest_boot(&kernel, &initrd, &d.0.join("guest"));
    c.args([
        "--memory",
        "1024",
        "--iommu",
        "--timeout",
        "400s",
        "--script",
    ])
    .arg(&script);
    for dev in TOPOLOGY {
        c.arg("--qemu-arg=-device").arg(format!("--qemu-arg={dev}"));
    }
    let (ok, serial) = run(&mut c, Duration::from_secs(420));
    assert!(ok, "the IOMMU lab guest failed:\n{serial}");
    assert!(serial.contains("IOLAB-EXIT 0"), "{serial}");
    check(&serial);
    assert_eq!(qemus_in(&d.0), "", "a qemu outlived the test");
}

fn check(serial: &str) {
    let s = steps(serial);
    let step = |n: &str| -> (&str, i32) {
        let (t, rc) = s
            .get(n)
            .unwrap_or_else(|| panic!("no step {n} in:\n{serial}"));
        (t.as_str(), *rc)
    };
    let drv = drivers(serial);
    let driver_at = |i: usize| drv.get(i).map(|(b, n)| format!("{b} {n}"));

    // Groups as sysfs has them: every function's group in `pci list`.
    let sysfs: BTreeMap<String, String> = serial
        .lines()
        .filter_map(|l| {
            let mut f = l.strip_prefix("SYSFS-GROUP ")?.split_whitespace();
            let g = f.next()?.to_string();
            Some((f.next()?.to_string(), g))
        })
        .collect();
    assert!(
        sysfs.len() >= 10,
        "IOMMU groups in sysfs: {sysfs:?}\n{serial}"
    );
    let (list, rc) = step("list");
    assert_eq!(rc, 0, "{list}");
    for (bdf, group) in &sysfs {
        let line = list
            .lines()
            .find(|l| l.starts_with(bdf.as_str()))
            .unwrap_or_else(|| panic!("{bdf} not listed:\n{list}"));
        assert!(line.contains(&format!(" group={group} ")), "{line}");
    }
    let e1000e: Vec<&str> = list.lines().filter(|l| l.contains("[8086:10d3]")).collect();
    assert_eq!(e1000e.len(), 3, "{list}");
    assert!(e1000e.iter().all(|l| l.contains("driver=e1000e")), "{list}");
    // The two behind the bridge share a group; the first is alone in its own.
    assert_eq!(sysfs["0000:03:01.0"], sysfs["0000:03:02.0"]);
    let alone_group = &sysfs["0000:01:00.0"];
    assert_eq!(
        sysfs.values().filter(|g| *g == alone_group).count(),
        1,
        "{sysfs:?}"
    );

    // The default-route guard on real sysfs.
    let (t, rc) = step("route");
    assert_ne!(rc, 0, "{t}");
    assert!(t.contains("carries the default route"), "{t}");

    // A viable single-device group is bound: /dev/vfio/N appears.
    let (t, rc) = step("alone");
    assert_eq!(rc, 0, "{t}");
    assert!(t.contains("is on vfio-pci (was e1000e)"), "{t}");
    assert_eq!(driver_at(0).as_deref(), Some("0000:01:00.0 vfio-pci"));
    assert!(
        serial
            .lines()
            .any(|l| l.trim() == format!("VFIO {alone_group}")),
        "no /dev/vfio/{alone_group}:\n{serial}"
    );

    // A shared group is refused (nothing moved), then moved with --group.
    let (t, rc) = step("shared");
    assert_ne!(rc, 0, "{t}");
    assert!(t.contains("not viable") && t.contains("--group"), "{t}");
    assert_eq!(driver_at(1).as_deref(), Some("0000:03:02.0 e1000e"));
    let (t, rc) = step("group");
    assert_eq!(rc, 0, "{t}");
    assert_eq!(driver_at(2).as_deref(), Some("0000:03:01.0 vfio-pci"));
    assert_eq!(driver_at(3).as_deref(), Some("0000:03:02.0 vfio-pci"));

    // Held by a process that is not iolab's guest: refused by name, not hung.
    let (t, rc) = step("held");
    assert_ne!(rc, 0, "{t}");
    assert!(
        t.contains(&format!("held through /dev/vfio/{alone_group} by pid"))
            && t.contains("(sh /tmp/script.sh)"),
        "{t}"
    );
    assert!(!t.contains("iolab pci reattach"), "iolab named itself: {t}");
    assert_eq!(driver_at(4).as_deref(), Some("0000:01:00.0 vfio-pci"));

    // Given to a nested guest: qemu in the guest opens the group and QMP
    // query-pci shows the NIC behind its root port with iolab's device id.
    let (t, rc) = step("import");
    assert_eq!(rc, 0, "{t}");
    let (t, rc) = step("start");
    assert_eq!(rc, 0, "{t}");
    assert!(t.contains("guest inner started (pid"), "{t}");
    let (t, rc) = step("show");
    assert_eq!(rc, 0, "{t}");
    assert!(t.contains("state: running"), "{t}");
    assert!(
        t.lines().any(|l| l.contains("guest PCI")
            && l.contains("[8086:10d3]")
            && l.ends_with("hostdev-0000-01-00.0")),
        "the passed-through NIC is not in the nested guest:\n{t}"
    );

    // Reattach while the nested guest has it: qemu is asked to unplug it;
    // its guest has no OS to answer, so iolab says so within the time
    // given and changes nothing.
    let (t, rc) = step("unplug");
    assert_ne!(rc, 0, "{t}");
    assert!(
        t.contains("asking guest inner (pid")
            && t.contains("to unplug 0000:01:00.0 (qemu device hostdev-0000-01-00.0)"),
        "{t}"
    );
    assert!(
        t.contains("waiting for guest inner to let go of 0000:01:00.0"),
        "{t}"
    );
    assert!(
        t.contains("did not let go of 0000:01:00.0 within 3 s")
            && t.contains("nothing was changed"),
        "{t}"
    );
    assert_eq!(driver_at(5).as_deref(), Some("0000:01:00.0 vfio-pci"));
    // Killed while waiting: it ends at once (128 + SIGTERM), and the device
    // stays where it was.
    let int_rc = serial
        .lines()
        .find_map(|l| l.strip_prefix("INT-RC "))
        .unwrap_or_else(|| panic!("no INT-RC in:\n{serial}"));
    assert_eq!(int_rc.trim(), "143", "{serial}");
    assert_eq!(driver_at(6).as_deref(), Some("0000:01:00.0 vfio-pci"));

    // Stopped, the NIC goes back to its driver; then the shared group.
    let (t, rc) = step("stop");
    assert_eq!(rc, 0, "{t}");
    let (t, rc) = step("back");
    assert_eq!(rc, 0, "{t}");
    assert!(t.contains("0000:01:00.0 is back on e1000e"), "{t}");
    assert_eq!(driver_at(7).as_deref(), Some("0000:01:00.0 e1000e"));
    let (t, rc) = step("all");
    assert_eq!(rc, 0, "{t}");
    assert_eq!(driver_at(8).as_deref(), Some("0000:03:01.0 e1000e"));
    assert_eq!(driver_at(9).as_deref(), Some("0000:03:02.0 e1000e"));
    let (t, _) = step("after");
    assert_eq!(
        t.lines().filter(|l| l.contains("driver=e1000e")).count(),
        3,
        "{t}"
    );
}

/// qemu processes whose command line mentions `dir`.
fn qemus_in(dir: &Path) -> String {
    let (_, out) = run(
        std::process::Command::new("pgrep").args(["-af", "qemu-system"]),
        Duration::from_secs(10),
    );
    out.lines()
        .filter(|l| l.contains(&*dir.to_string_lossy()))
        .collect::<Vec<_>>()
        .join("\n")
}

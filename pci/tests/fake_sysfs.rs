//! Enumeration and binding against fake sysfs trees: the exact writes for
//! bind and reattach, refusals, dry-run lines, and a failure injected at
//! every step leaving the tree as it was.

use iolab_pci::bind::{VFIO_PCI, plan_reattach};
use iolab_pci::fake::{FakeKernel, FakeTree};
use iolab_pci::{Bdf, BindOptions, PciError, bind, device, enumerate, plan_bind, reattach};

const INTEL: u16 = 0x8086;
const X520: u16 = 0x10fb; // 82599ES 10-Gigabit SFI/SFP+
const E1000E: u16 = 0x10d3; // 82574L
const ICH9_AHCI: u16 = 0x2922;

fn bdf(s: &str) -> Bdf {
    s.parse().unwrap()
}

/// A host with two 10 GbE ports sharing a group, a third alone, the NIC with
/// the default route, a SATA controller with the root file system, a bridge.
fn lab(tag: &str, with_vfio: bool) -> FakeTree {
    let t = FakeTree::new(tag);
    t.device("0000:00:00.0", INTEL, 0x0d57, 0x060000, Some(0), None)
        .x520("0000:06:00.0", 12, Some("ixgbe"))
        .net("0000:06:00.0", "eth6", 9000)
        .x520("0000:06:00.1", 12, Some("ixgbe"))
        .net("0000:06:00.1", "eth7", 1500)
        .x520("0000:07:00.0", 13, Some("ixgbe"))
        .net("0000:07:00.0", "eth8", 1500)
        .device(
            "0000:08:00.0",
            INTEL,
            E1000E,
            0x020000,
            Some(14),
            Some("e1000e"),
        )
        .net("0000:08:00.0", "eth0", 1500)
        .default_route("eth0")
        .device(
            "0000:09:00.0",
            INTEL,
            ICH9_AHCI,
            0x010601,
            Some(15),
            Some("ahci"),
        )
        .disk("0000:09:00.0", "sda", &["sda1", "sda2"])
        .mount("/dev/sda2", "/")
        .device(
            "0000:0a:00.0",
            INTEL,
            0x3c04,
            0x060400,
            Some(16),
            Some("pcieport"),
        );
    if with_vfio {
        t.driver(VFIO_PCI);
    }
    t
}

fn kernel(t: &FakeTree) -> FakeKernel<'_> {
    let mut k = FakeKernel::new(t);
    for (b, d) in [
        ("0000:06:00.0", "ixgbe"),
        ("0000:06:00.1", "ixgbe"),
        ("0000:07:00.0", "ixgbe"),
    ] {
        k.native.insert(bdf(b), d.into());
    }
    k
}

fn w(path: &str, value: &str) -> (String, String) {
    (path.to_string(), value.to_string())
}

#[test]
fn enumeration_names_devices_and_sees_groups_routes_and_mounts() {
    let t = lab("enum", false);
    let all = enumerate(&t.sysfs()).unwrap();
    assert_eq!(all.len(), 7);
    let x = all.iter().find(|d| d.address == bdf("06:00.0")).unwrap();
    assert_eq!(x.vendor, Some("Intel Corporation"));
    assert!(x.device.unwrap().contains("82599"), "{:?}", x.device);
    assert_eq!(x.class_label(), "Ethernet controller");
    assert_eq!(x.iommu_group, Some(12));
    assert_eq!(x.group_peers, [bdf("06:00.1")]);
    assert_eq!(x.driver.as_deref(), Some("ixgbe"));
    assert_eq!(x.net[0].mtu, Some(9000));
    assert_eq!(x.link.as_ref().unwrap().current_width.as_deref(), Some("8"));
    assert!(x.is_endpoint());
    let nic = all.iter().find(|d| d.address == bdf("08:00.0")).unwrap();
    assert!(nic.net[0].default_route);
    let sata = all.iter().find(|d| d.address == bdf("09:00.0")).unwrap();
    assert_eq!(sata.block[0].name, "sda");
    assert_eq!(sata.block[0].mounts, ["/"]);
    assert!(
        all.iter()
            .find(|d| d.address == bdf("0a:00.0"))
            .unwrap()
            .is_bridge()
    );
}

#[test]
fn bind_and_reattach_make_exactly_the_established_writes() {
    let t = lab("bind", true);
    let sys = t.sysfs();
    let before = t.snapshot();
    let k = kernel(&t);
    let plan = plan_bind(&sys, bdf("07:00.0"), BindOptions::default()).unwrap();
    assert!(!plan.load_module);
    assert_eq!(plan.devices[0].original_driver.as_deref(), Some("ixgbe"));
    bind(&sys, &k, &plan).unwrap();
    assert_eq!(
        k.writes(),
        [
            w(
                "sys/bus/pci/devices/0000:07:00.0/driver_override",
                "vfio-pci"
            ),
            w("sys/bus/pci/drivers/ixgbe/unbind", "0000:07:00.0"),
            w("sys/bus/pci/drivers_probe", "0000:07:00.0"),
        ]
    );
    assert_eq!(
        device(&sys, bdf("07:00.0")).unwrap().driver.as_deref(),
        Some(VFIO_PCI)
    );
    // Binding again changes nothing.
    let again = plan_bind(&sys, bdf("07:00.0"), BindOptions::default()).unwrap();
    assert!(again.devices[0].writes.is_empty());
    k.log.borrow_mut().clear();
    let back = plan_reattach(&sys, bdf("07:00.0"), Some("ixgbe")).unwrap();
    reattach(&sys, &k, &back).unwrap();
    assert_eq!(
        k.writes(),
        [
            w("sys/bus/pci/devices/0000:07:00.0/driver_override", "\n"),
            w("sys/bus/pci/drivers/vfio-pci/unbind", "0000:07:00.0"),
            w("sys/bus/pci/drivers_probe", "0000:07:00.0"),
        ]
    );
    assert_eq!(t.snapshot(), before);
}

#[test]
fn vfio_pci_is_loaded_when_missing() {
    let t = lab("modprobe", false);
    let sys = t.sysfs();
    let k = kernel(&t);
    let plan = plan_bind(&sys, bdf("07:00.0"), BindOptions::default()).unwrap();
    assert!(plan.load_module);
    assert_eq!(plan.lines()[0], "modprobe vfio-pci");
    bind(&sys, &k, &plan).unwrap();
    assert_eq!(
        device(&sys, bdf("07:00.0")).unwrap().driver.as_deref(),
        Some(VFIO_PCI)
    );

    let t = lab("nomodule", false);
    let mut k = kernel(&t);
    k.module_loads = false;
    let before = t.snapshot();
    let plan = plan_bind(&t.sysfs(), bdf("07:00.0"), BindOptions::default()).unwrap();
    let e = bind(&t.sysfs(), &k, &plan).unwrap_err();
    assert!(matches!(e, PciError::NoVfio(_)), "{e}");
    assert!(e.to_string().contains("not found"), "{e}");
    assert_eq!(t.snapshot(), before);
}

#[test]
fn a_group_with_a_member_on_a_host_driver_is_refused_unless_moved_whole() {
    let t = lab("group", true);
    let sys = t.sysfs();
    let e = plan_bind(&sys, bdf("06:00.0"), BindOptions::default()).unwrap_err();
    let msg = e.to_string();
    assert!(
        matches!(e, PciError::GroupNotViable { group: 12, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("0000:06:00.1 (on ixgbe)") && msg.contains("--group"),
        "{msg}"
    );
    let plan = plan_bind(
        &sys,
        bdf("06:00.0"),
        BindOptions {
            group: true,
            force: false,
        },
    )
    .unwrap();
    let moved: Vec<Bdf> = plan.devices.iter().map(|d| d.bdf).collect();
    assert_eq!(moved, [bdf("06:00.0"), bdf("06:00.1")]);
    let k = kernel(&t);
    bind(&sys, &k, &plan).unwrap();
    for b in ["06:00.0", "06:00.1"] {
        assert_eq!(
            device(&sys, bdf(b)).unwrap().driver.as_deref(),
            Some(VFIO_PCI)
        );
    }
}

#[test]
fn devices_the_host_uses_are_refused_unless_forced() {
    let t = lab("inuse", true);
    let sys = t.sysfs();
    let e = plan_bind(&sys, bdf("08:00.0"), BindOptions::default()).unwrap_err();
    assert!(
        e.to_string().contains("eth0 carries the default route"),
        "{e}"
    );
    assert!(e.to_string().contains("--force"), "{e}");
    let e = plan_bind(&sys, bdf("09:00.0"), BindOptions::default()).unwrap_err();
    assert!(e.to_string().contains("sda is mounted on /"), "{e}");
    assert!(
        plan_bind(
            &sys,
            bdf("08:00.0"),
            BindOptions {
                force: true,
                group: false
            }
        )
        .is_ok()
    );
    let e = plan_bind(&sys, bdf("0a:00.0"), BindOptions::default()).unwrap_err();
    assert!(matches!(e, PciError::NotEndpoint(_)), "{e}");
}

#[test]
fn dry_run_lines_are_the_writes() {
    let t = lab("dry", true);
    let before = t.snapshot();
    let plan = plan_bind(&t.sysfs(), bdf("07:00.0"), BindOptions::default()).unwrap();
    let root = t.root.display().to_string();
    assert_eq!(
        plan.lines(),
        [
            format!(
                "echo 'vfio-pci' > {root}/sys/bus/pci/devices/0000:07:00.0/driver_override    # setting driver_override to 'vfio-pci'"
            ),
            format!(
                "echo '0000:07:00.0' > {root}/sys/bus/pci/drivers/ixgbe/unbind    # unbinding from ixgbe"
            ),
            format!(
                "echo '0000:07:00.0' > {root}/sys/bus/pci/drivers_probe    # asking the PCI core to probe drivers"
            ),
        ]
    );
    assert_eq!(t.snapshot(), before, "planning wrote something");
}

#[test]
fn a_failure_at_any_step_leaves_the_tree_as_it_was() {
    for step in 0..3 {
        let t = lab(&format!("fail{step}"), true);
        let sys = t.sysfs();
        let before = t.snapshot();
        let mut k = kernel(&t);
        k.fail_at = Some(step);
        let plan = plan_bind(&sys, bdf("07:00.0"), BindOptions::default()).unwrap();
        let e = bind(&sys, &k, &plan).unwrap_err();
        let msg = e.to_string();
        let failed = &plan.devices[0].writes[step];
        assert!(
            msg.contains(&failed.path.display().to_string()),
            "step {step}: {msg}"
        );
        assert!(msg.contains("put back as it was"), "step {step}: {msg}");
        assert_eq!(t.snapshot(), before, "step {step} left a change");
    }
    // The probe "succeeds" but vfio-pci does not take the device.
    let t = lab("verify", true);
    let sys = t.sysfs();
    let plan = plan_bind(&sys, bdf("07:00.0"), BindOptions::default()).unwrap();
    std::fs::remove_dir_all(t.root.join("sys/bus/pci/drivers/vfio-pci")).unwrap();
    let before = t.snapshot();
    let e = bind(&sys, &kernel(&t), &plan).unwrap_err();
    assert!(matches!(e, PciError::Verify { .. }), "{e}");
    assert_eq!(t.snapshot(), before);
    // Reattach failures leave the device on vfio-pci.
    for step in 0..3 {
        let t = lab(&format!("refail{step}"), true);
        let sys = t.sysfs();
        let k = kernel(&t);
        bind(
            &sys,
            &k,
            &plan_bind(&sys, bdf("07:00.0"), BindOptions::default()).unwrap(),
        )
        .unwrap();
        let before = t.snapshot();
        let mut k = kernel(&t);
        k.fail_at = Some(step);
        let back = plan_reattach(&sys, bdf("07:00.0"), Some("ixgbe")).unwrap();
        assert!(reattach(&sys, &k, &back).is_err());
        assert_eq!(t.snapshot(), before, "reattach step {step} left a change");
    }
}

#[test]
fn a_group_member_failing_puts_back_the_ones_already_moved() {
    let t = lab("groupfail", true);
    let sys = t.sysfs();
    let before = t.snapshot();
    let mut k = kernel(&t);
    k.fail_at = Some(4); // the second function's unbind
    let plan = plan_bind(
        &sys,
        bdf("06:00.0"),
        BindOptions {
            group: true,
            force: false,
        },
    )
    .unwrap();
    assert!(bind(&sys, &k, &plan).is_err());
    assert_eq!(t.snapshot(), before);
}

#[test]
fn without_write_access_binding_says_it_needs_root() {
    let t = lab("perm", true);
    let probe = t.root.join("sys/bus/pci/drivers_probe");
    std::fs::remove_file(&probe).unwrap();
    std::fs::create_dir(&probe).unwrap(); // opening a directory for writing fails, even for root
    let e = plan_bind(&t.sysfs(), bdf("07:00.0"), BindOptions::default()).unwrap_err();
    assert!(e.to_string().starts_with("binding needs root:"), "{e}");
}

#[test]
fn no_iommu_and_bad_input_are_one_clear_message_each() {
    let t = FakeTree::new("noiommu");
    t.device("0000:07:00.0", INTEL, X520, 0x020000, None, Some("ixgbe"));
    let e = plan_bind(&t.sysfs(), bdf("07:00.0"), BindOptions::default()).unwrap_err();
    assert!(e.to_string().contains("intel_iommu=on"), "{e}");

    let t = lab("bad", true);
    let sys = t.sysfs();
    let e = device(&sys, bdf("0000:42:00.0")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "there is no PCI device 0000:42:00.0 (see `iolab pci list`)"
    );
    std::fs::write(t.dev_dir("0000:07:00.0").join("vendor"), "intel\n").unwrap();
    let e = device(&sys, bdf("07:00.0")).unwrap_err();
    assert!(
        e.to_string().contains("0000:07:00.0/vendor")
            && e.to_string().contains("not a hexadecimal"),
        "{e}"
    );
    std::fs::remove_file(t.dev_dir("0000:07:00.0").join("vendor")).unwrap();
    let e = enumerate(&sys).unwrap_err();
    assert!(e.to_string().contains("0000:07:00.0/vendor"), "{e}");
    let e = enumerate(&iolab_pci::Sysfs::at("/nonexistent-root")).unwrap_err();
    assert!(e.to_string().contains("no PCI bus"), "{e}");
}

//! The BLOCK backstore on a real block device without touching the host:
//! the target runs in the micro-guest with `--block /dev/vda`, a virtio disk
//! backed by a host file (512-byte logical, 4096-byte physical blocks,
//! discards passed on), reached from the host through a slirp port forward
//! that the portal advertises. From the host: a verified write and read with
//! `iolab bench`, `qemu-img` writing a file the host then finds in the disk
//! image, READ CAPACITY and the Block Limits VPD reporting the device's block
//! sizes, and UNMAP deallocating the range in the image.

use std::os::unix::fs::{FileExt, MetadataExt};
use std::process::Command;
use std::time::Duration;

use iolab_tests::raw::RawConn;
use iolab_tests::{
    TempDir, free_port, guest_boot, iolab, kill_guest_qemu, micro_image, require_peer, run,
    serve_cmd_within,
};

const IQN: &str = "iqn.2026-11.io.iolab:target0";
const DISK: u64 = 64 << 20;

fn bench(url: &str, mode: &str) -> String {
    let (ok, out) = run(
        iolab().args([
            "bench",
            url,
            "--mode",
            mode,
            "--verify",
            "--bs",
            "64k",
            "--threads",
            "4",
            "--time",
            "2s",
            "--range",
            "16M",
        ]),
        Duration::from_secs(120),
    );
    assert!(
        ok && out.contains("Test Done (Passed)"),
        "bench {mode}: {out}"
    );
    out
}

#[test]
fn the_block_backstore_serves_a_virtio_disk_from_a_guest() {
    if !require_peer("qemu-img") {
        return;
    }
    let Some((kernel, initrd)) = micro_image() else {
        return;
    };
    let dir = TempDir::new("block");
    let image = dir.0.join("disk.img");
    std::fs::File::create(&image)
        .and_then(|f| f.set_len(DISK))
        .expect("disk image");
    let port = free_port();
    let guest_dir = dir.0.join("guest");
    let mut boot = guest_boot(&kernel, &initrd, &guest_dir);
    boot.arg("--disk")
        .arg(&image)
        .args(["--forward", &format!("127.0.0.1:{port}=3260")])
        .args([
            "--qemu-arg=-global",
            "--qemu-arg=virtio-blk-pci.physical_block_size=4096",
        ])
        .args(["--", "target", "serve", "--block", "/dev/vda", "--direct"])
        // The guest listens on its slirp address and tells initiators the host's forward.
        .args(["--listen", &format!("10.0.2.15:3260=127.0.0.1:{port}")]);
    let (mut guest, urls) = serve_cmd_within(boot, Duration::from_secs(180));
    let url = format!("iscsi://127.0.0.1:{port}/{IQN}/0");
    assert_eq!(urls, [url.as_str()], "the advertised URL");

    // READ CAPACITY as libiscsi sees it: the device's size.
    let (ok, out) = run(
        Command::new("qemu-img").args(["info", &url]),
        Duration::from_secs(60),
    );
    assert!(
        ok && out.contains(&format!("{DISK} bytes")),
        "qemu-img info: {out}"
    );

    bench(&url, "write");
    bench(&url, "read");

    // qemu-img writes 1 MiB; O_DIRECT in the guest puts it through to the image.
    let src = dir.0.join("src.img");
    let data: Vec<u8> = (0..1u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&src, &data).expect("source image");
    let (ok, out) = run(
        Command::new("qemu-img")
            .args(["convert", "-n", "-f", "raw", "-O", "raw"])
            .arg(&src)
            .arg(&url),
        Duration::from_secs(120),
    );
    assert!(ok, "qemu-img convert: {out}");
    let f = std::fs::File::open(&image).expect("disk image");
    let mut got = vec![0u8; data.len()];
    f.read_exact_at(&mut got, 0).expect("read disk image");
    assert!(
        got == data,
        "the disk image does not hold what qemu-img wrote"
    );

    let mut c = RawConn::connect(&format!("127.0.0.1:{port}"));
    let r = c.login(IQN, &[("ImmediateData", "Yes")]);
    assert_eq!(r.bhs[36], 0, "login: {}", r.text());
    // READ CAPACITY(16): 512-byte blocks, 8 per physical block (exponent 3).
    let mut rc16 = [0u8; 16];
    rc16[0] = 0x9e;
    rc16[1] = 0x10;
    rc16[13] = 32;
    let itt = c.scsi(&rc16, 32, true, false, &[]);
    let (status, d) = c.wait_status(itt).expect("READ CAPACITY(16)");
    assert_eq!(status, 0);
    let last_lba = u64::from_be_bytes(d[0..8].try_into().expect("8 bytes"));
    assert_eq!((last_lba + 1) * 512, DISK, "capacity");
    assert_eq!(
        u32::from_be_bytes(d[8..12].try_into().expect("4 bytes")),
        512
    );
    assert_eq!(
        d[13] & 0x0f,
        3,
        "logical blocks per physical block exponent"
    );
    // Block Limits VPD: OPTIMAL TRANSFER LENGTH GRANULARITY = one physical block.
    let itt = c.scsi(&[0x12, 0x01, 0xb0, 0, 64, 0], 64, true, false, &[]);
    let (status, vpd) = c.wait_status(itt).expect("Block Limits VPD");
    assert_eq!(status, 0);
    assert_eq!(u16::from_be_bytes([vpd[6], vpd[7]]), 8, "{vpd:02x?}");

    // UNMAP the first MiB: it reads back as zeros and the image loses its blocks.
    let allocated = std::fs::metadata(&image).expect("stat").blocks();
    let mut param = vec![0u8; 24];
    param[0..2].copy_from_slice(&22u16.to_be_bytes());
    param[2..4].copy_from_slice(&16u16.to_be_bytes());
    param[16..20].copy_from_slice(&2048u32.to_be_bytes());
    let mut unmap = [0u8; 10];
    unmap[0] = 0x42;
    unmap[7..9].copy_from_slice(&24u16.to_be_bytes());
    let itt = c.scsi(&unmap, 24, false, true, &param);
    assert_eq!(c.wait_status(itt).map(|s| s.0), Some(0), "UNMAP");
    let mut read = [0u8; 10];
    read[0] = 0x28;
    read[7..9].copy_from_slice(&2048u16.to_be_bytes());
    let itt = c.scsi(&read, 1 << 20, true, false, &[]);
    let (status, back) = c.wait_status(itt).expect("READ after UNMAP");
    assert_eq!(status, 0);
    assert!(
        back.iter().all(|&b| b == 0),
        "unmapped blocks do not read as zeros"
    );
    f.read_exact_at(&mut got, 0).expect("read disk image");
    assert!(
        got.iter().all(|&b| b == 0),
        "the image still holds the unmapped data"
    );
    let after = std::fs::metadata(&image).expect("stat").blocks();
    assert!(
        after + 2048 <= allocated,
        "the image kept its blocks: {allocated} -> {after} (512-byte units)"
    );

    drop(c);
    kill_guest_qemu(&guest_dir);
    let _ = guest.child.wait();
}

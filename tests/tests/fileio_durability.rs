//! FILEIO durability across a power failure: data written with FUA, or
//! followed by SYNCHRONIZE CACHE, is on the disk when the power goes; data
//! written without either is not (which shows the failure is real).
//!
//! Killing a target process on the host cannot show this: what it wrote sits
//! in the host's page cache, which survives the process. So the target runs
//! in the micro-guest, its FILEIO LUN on the guest's virtio disk (/dev/vda),
//! and that disk is a test-owned NBD server with a volatile write cache
//! (`iolab_tests::nbd`): a write reaches the backing file only when the
//! guest flushes it or writes it with FUA. The test logs in from the host
//! (slirp forwards a loopback port to the guest), writes, then SIGKILLs qemu
//! (the guest's page cache dies with it) and drops the disk's unflushed cache.

use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::Duration;

use iolab_tests::nbd::VolatileDisk;
use iolab_tests::raw::RawConn;
use iolab_tests::{TempDir, free_port, guest_boot, kill_guest_qemu, micro_image, serve_cmd_within};

const IQN: &str = "iqn.2026-11.io.iolab:target0";
const DISK: u64 = 64 << 20;

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn write10(c: &mut RawConn, lun: u8, lba: u32, blocks: u16, fua: bool, data: &[u8]) -> u8 {
    let mut cdb = [0u8; 10];
    cdb[0] = 0x2a;
    cdb[1] = if fua { 0x08 } else { 0 };
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
    let itt = c.scsi_lun(lun, &cdb, data.len() as u32, false, true, data);
    c.wait_status(itt).expect("WRITE(10) status").0
}

fn read_file(path: &Path, lba: u64, len: usize) -> Vec<u8> {
    let f = std::fs::File::open(path).expect("backing file");
    let mut got = vec![0u8; len];
    f.read_exact_at(&mut got, lba * 512)
        .expect("read backing file");
    got
}

/// A zeroed backing file of [`DISK`] bytes behind a volatile-cache NBD disk.
fn disk(dir: &Path, name: &str) -> (std::path::PathBuf, VolatileDisk) {
    let path = dir.join(name);
    std::fs::File::create(&path)
        .and_then(|f| f.set_len(DISK))
        .expect("backing file");
    let d = VolatileDisk::serve(&path);
    (path, d)
}

fn survives_power_loss(direct: bool) {
    let Some((kernel, initrd)) = micro_image() else {
        return;
    };
    let dir = TempDir::new("durability");
    // Two disks, so that one LUN's flush cannot make the other's data durable:
    // LUN 0 (/dev/vda) gets the FUA write, LUN 1 (/dev/vdb) the write + SYNC CACHE.
    let (fua_path, fua_disk) = disk(&dir.0, "fua.img");
    let (sync_path, sync_disk) = disk(&dir.0, "sync.img");
    let port = free_port();
    let guest_dir = dir.0.join("guest");
    let mut boot = guest_boot(&kernel, &initrd, &guest_dir);
    boot.args(["--disk", &fua_disk.url(), "--disk", &sync_disk.url()])
        .args(["--forward", &format!("127.0.0.1:{port}=3260")])
        .args(["--", "target", "serve", "--listen", "10.0.2.15:3260"])
        .args(["--fileio", "/dev/vda", "--fileio", "/dev/vdb"]);
    if direct {
        boot.arg("--direct");
    }
    let (mut guest, urls) = serve_cmd_within(boot, Duration::from_secs(180));
    assert_eq!(urls.len(), 2, "{urls:?}");

    let mut c = RawConn::connect(&format!("127.0.0.1:{port}"));
    let r = c.login(
        IQN,
        &[
            ("ImmediateData", "Yes"),
            ("MaxRecvDataSegmentLength", "262144"),
        ],
    );
    assert_eq!(r.bhs[36], 0, "login: {}", r.text());

    // LUN 0: WRITE(10) with FUA at LBA 2048.
    let a = pattern(7, 8 * 512);
    assert_eq!(write10(&mut c, 0, 2048, 8, true, &a), 0, "FUA write");
    // LUN 1: WRITE(10) without FUA at LBA 4096, then SYNCHRONIZE CACHE(10).
    let b = pattern(99, 16 * 512);
    assert_eq!(write10(&mut c, 1, 4096, 16, false, &b), 0, "plain write");
    let mut sync = [0u8; 10];
    sync[0] = 0x35;
    let itt = c.scsi_lun(1, &sync, 0, false, false, &[]);
    assert_eq!(c.wait_status(itt).expect("SYNCHRONIZE CACHE status").0, 0);
    // The control, on both LUNs: WRITE(10) without FUA and without a sync.
    let unsynced = pattern(42, 8 * 512);
    for lun in [0, 1] {
        assert_eq!(
            write10(&mut c, lun, 8192, 8, false, &unsynced),
            0,
            "unsynced write"
        );
    }

    // The power goes: qemu and the guest's page cache, then the disks' caches.
    kill_guest_qemu(&guest_dir);
    let fua_stats = fua_disk.power_loss();
    let sync_stats = sync_disk.power_loss();
    let _ = guest.child.wait();
    drop(c);
    let stats = format!("LUN 0 disk {fua_stats:?}, LUN 1 disk {sync_stats:?}");

    assert!(
        read_file(&fua_path, 2048, a.len()) == a,
        "FUA data is not on the disk after the power loss ({stats})"
    );
    assert!(
        read_file(&sync_path, 4096, b.len()) == b,
        "synchronized data is not on the disk after the power loss ({stats})"
    );
    // What was only acknowledged is gone: the failure this test simulates is real.
    for p in [&fua_path, &sync_path] {
        assert!(
            read_file(p, 8192, unsynced.len()) != unsynced,
            "data written without FUA or a sync survived in {}: the power loss lost nothing ({stats})",
            p.display()
        );
    }
}

#[test]
fn fua_and_sync_cache_data_survive_power_loss_buffered() {
    survives_power_loss(false);
}

#[test]
fn fua_and_sync_cache_data_survive_power_loss_o_direct() {
    survives_power_loss(true);
}

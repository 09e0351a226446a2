//! FILEIO durability: data written with FUA, or followed by SYNCHRONIZE CACHE,
//! is in the backing file after the target is killed with SIGKILL.

use std::os::unix::fs::FileExt;

use iolab_tests::raw::RawConn;
use iolab_tests::{TempDir, portal_of, serve};

const IQN: &str = "iqn.2026-11.io.iolab:target0";

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn write10(c: &mut RawConn, lba: u32, blocks: u16, fua: bool, data: &[u8]) -> u8 {
    let mut cdb = [0u8; 10];
    cdb[0] = 0x2a;
    cdb[1] = if fua { 0x08 } else { 0 };
    cdb[2..6].copy_from_slice(&lba.to_be_bytes());
    cdb[7..9].copy_from_slice(&blocks.to_be_bytes());
    let itt = c.scsi(&cdb, data.len() as u32, false, true, data);
    c.wait_status(itt).expect("WRITE(10) status").0
}

fn survives_sigkill(direct: bool) {
    let dir = TempDir::new("durability");
    let path = dir.0.join("lun.img");
    let spec = format!("{}:64M", path.display());
    let mut args = vec!["--fileio", spec.as_str()];
    if direct {
        args.push("--direct");
    }
    let (mut srv, urls) = serve(&args);
    let mut c = RawConn::connect(&portal_of(&urls[0]));
    let r = c.login(
        IQN,
        &[
            ("ImmediateData", "Yes"),
            ("MaxRecvDataSegmentLength", "262144"),
        ],
    );
    assert_eq!(r.bhs[36], 0, "login: {}", r.text());

    // 1. WRITE(10) with FUA at LBA 2048.
    let a = pattern(7, 8 * 512);
    assert_eq!(write10(&mut c, 2048, 8, true, &a), 0, "FUA write");
    // 2. WRITE(10) without FUA at LBA 4096, then SYNCHRONIZE CACHE(10) over it.
    let b = pattern(99, 16 * 512);
    assert_eq!(write10(&mut c, 4096, 16, false, &b), 0, "plain write");
    let mut sync = [0u8; 10];
    sync[0] = 0x35;
    let itt = c.scsi(&sync, 0, false, false, &[]);
    assert_eq!(c.wait_status(itt).expect("SYNCHRONIZE CACHE status").0, 0);

    srv.kill(); // SIGKILL: no chance to flush anything after the status went out.

    let f = std::fs::File::open(&path).expect("backing file");
    let mut got = vec![0u8; a.len()];
    f.read_exact_at(&mut got, 2048 * 512).unwrap();
    assert!(got == a, "FUA data is not in the file after SIGKILL");
    let mut got = vec![0u8; b.len()];
    f.read_exact_at(&mut got, 4096 * 512).unwrap();
    assert!(
        got == b,
        "synchronized data is not in the file after SIGKILL"
    );
}

#[test]
fn fua_and_sync_cache_data_survive_sigkill_buffered() {
    survives_sigkill(false);
}

#[test]
fn fua_and_sync_cache_data_survive_sigkill_o_direct() {
    survives_sigkill(true);
}

//! The SCSI command set: any CDB with any data-out on a small RAMDISK LU
//! (and a second LU for EXTENDED COPY to name). Answers only: no panic, no
//! more Data-In than the CDB's allocation or transfer length allows.
#![no_main]

use std::sync::{Arc, OnceLock};

use iolab_storage::backstore::RamDisk;
use iolab_storage::scsi::{LogicalUnit, LuConfig, Nexus};
use libfuzzer_sys::fuzz_target;

fn lus() -> &'static (Arc<LogicalUnit>, Arc<LogicalUnit>) {
    static LUS: OnceLock<(Arc<LogicalUnit>, Arc<LogicalUnit>)> = OnceLock::new();
    LUS.get_or_init(|| {
        let lu = |naa: u64| {
            let cfg = LuConfig {
                naa,
                removable: true,
                ..LuConfig::default()
            };
            let store = RamDisk::new(1 << 20).expect("ramdisk");
            Arc::new(LogicalUnit::new(Box::new(store), cfg).expect("lu"))
        };
        (lu(0x0600_1405_0000_0001), lu(0x0600_1405_0000_0002))
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&len, rest)) = data.split_first() else {
        return;
    };
    let len = 6 + usize::from(len % 27);
    if rest.len() < len {
        return;
    }
    let (cdb, data_out) = rest.split_at(len);
    let (a, b) = lus();
    let nexus = Nexus::new("iqn.2026-12.org.example:fuzz", 1);
    let r = a.execute_with(&nexus, cdb, data_out, std::slice::from_ref(b));
    // No command of this LU answers with more than 16 MiB (its whole size
    // plus headers is far less).
    assert!(r.data_len() <= 16 << 20);
});

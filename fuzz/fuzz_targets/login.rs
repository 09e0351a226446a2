//! The target's login state machine, fed the PDUs an initiator (or an
//! attacker) might send on a new connection, one after another, without a
//! socket: every step answers, none panics.
#![no_main]

use std::sync::{Arc, OnceLock};

use iolab_iscsi::pdu::{ReadLimits, ReadOutcome, decode};
use iolab_iscsi::target::login::{Step, TargetLogin};
use iolab_iscsi::target::{Registry, ServerConfig};
use libfuzzer_sys::fuzz_target;

fn registry() -> Arc<Registry> {
    static REG: OnceLock<Arc<Registry>> = OnceLock::new();
    REG.get_or_init(|| {
        let cfg = ServerConfig::default_lab("127.0.0.1:3260".parse().expect("addr"), 1 << 20);
        Arc::new(Registry::new(&cfg).expect("registry"))
    })
    .clone()
}

fuzz_target!(|data: &[u8]| {
    let limits = ReadLimits {
        max_data: 1 << 16,
        header_digest: false,
        data_digest: false,
    };
    let mut login = TargetLogin::new(registry(), 1);
    let mut at = 0;
    while let Ok(Some((ReadOutcome::Pdu(pdu), used))) = decode(&data[at..], limits) {
        at += used;
        match login.step(&pdu) {
            Step::Continue(_) => {}
            Step::Fail(..) | Step::Complete(..) => break,
        }
    }
});

//! The PDU decoder: any bytes, any digest setting. Whatever decodes must
//! encode back and decode alike; nothing may panic or read past the input.
#![no_main]

use iolab_iscsi::pdu::{ReadLimits, ReadOutcome, decode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let limits = ReadLimits {
        max_data: 1 << 16,
        header_digest: flags & 1 != 0,
        data_digest: flags & 2 != 0,
    };
    let mut at = 0;
    while let Ok(Some((outcome, used))) = decode(&rest[at..], limits) {
        assert!(used >= 48 && at + used <= rest.len());
        at += used;
        let ReadOutcome::Pdu(p) = outcome else {
            continue;
        };
        let _ = p.full_cdb();
        let _ = p.bhs.opcode();
        let wire = p.encode(limits.header_digest, limits.data_digest);
        match decode(&wire, limits) {
            Ok(Some((ReadOutcome::Pdu(q), n))) => {
                assert_eq!(n, wire.len());
                assert_eq!((&q.ahs, &q.data), (&p.ahs, &p.data));
                assert_eq!(q.bhs.0[5..], p.bhs.0[5..]);
            }
            other => panic!("an encoded PDU did not decode: {other:?}"),
        }
    }
});

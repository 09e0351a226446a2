//! Property tests: the PDU decoder, the text parser and the target login state
//! machine take arbitrary bytes without panicking, and encode/decode round-trips.

use std::sync::Arc;

use iolab_iscsi::pdu::{Bhs, Opcode, Pdu, ReadLimits, ReadOutcome, read_pdu};
use iolab_iscsi::target::login::{Step, TargetLogin};
use iolab_iscsi::target::{Registry, ServerConfig};
use iolab_iscsi::text;
use proptest::prelude::*;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

fn registry() -> Arc<Registry> {
    let cfg = ServerConfig::default_lab("127.0.0.1:3260".parse().expect("addr"), 1 << 20);
    Arc::new(Registry::new(&cfg).expect("registry"))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600), hd: bool, dd: bool) {
        let limits = ReadLimits { max_data: 256, header_digest: hd, data_digest: dd };
        let _ = rt().block_on(read_pdu(&mut &bytes[..], limits));
    }

    #[test]
    fn encode_decode_round_trip(op in prop::sample::select(vec![Opcode::NopOut, Opcode::ScsiCommand, Opcode::DataOut, Opcode::TextRequest]),
                                itt: u32, sn: u32, data in proptest::collection::vec(any::<u8>(), 0..300),
                                hd: bool, dd: bool) {
        let mut b = Bhs::new(op);
        b.set_flags(0x80).set_itt(itt).set_word24(sn);
        let pdu = Pdu::new(b, data.clone());
        let wire = pdu.encode(hd, dd);
        let limits = ReadLimits { max_data: 4096, header_digest: hd, data_digest: dd };
        match rt().block_on(read_pdu(&mut &wire[..], limits)) {
            Ok(Some(ReadOutcome::Pdu(p))) => {
                prop_assert_eq!(p.data, data);
                prop_assert_eq!(p.bhs.itt(), itt);
                prop_assert_eq!(p.bhs.cmd_sn(), sn);
            }
            other => prop_assert!(false, "decode failed: {:?}", other),
        }
    }

    #[test]
    fn text_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
        let _ = text::parse(&bytes);
    }

    #[test]
    fn text_round_trip(pairs in proptest::collection::vec(("[A-Za-z][A-Za-z0-9.-]{0,20}", "[ -~&&[^=]]{0,40}"), 0..8)) {
        let pairs: Vec<(String, String)> = pairs;
        let enc = text::encode(&pairs);
        prop_assert_eq!(text::parse(&enc).expect("parse"), pairs);
    }

    #[test]
    fn login_machine_never_panics(pdus in proptest::collection::vec((any::<[u8; 48]>(), proptest::collection::vec(any::<u8>(), 0..200)), 1..5)) {
        let mut login = TargetLogin::new(registry(), 1);
        for (mut bhs, data) in pdus {
            bhs[0] = 0x43; // Login Request, so the machine goes past the opcode check
            let step = login.step(&Pdu::new(Bhs(bhs), data));
            if !matches!(step, Step::Continue(_)) {
                break;
            }
        }
    }

    #[test]
    fn login_keys_from_text_never_panic(keys in proptest::collection::vec(("[A-Za-z_]{1,24}", "[ -~]{0,30}"), 0..12), t: bool, csg in 0u8..4, nsg in 0u8..4) {
        let mut data = Vec::new();
        data.extend_from_slice(b"InitiatorName=iqn.2026-11.test:prop\0TargetName=iqn.2026-11.io.iolab:target0\0");
        for (k, v) in &keys {
            data.extend_from_slice(format!("{k}={v}").as_bytes());
            data.push(0);
        }
        let mut b = Bhs::new(Opcode::LoginRequest);
        b.set_immediate(true).set_flags((if t { 0x80 } else { 0 }) | (csg << 2) | nsg);
        let mut login = TargetLogin::new(registry(), 1);
        let _ = login.step(&Pdu::new(b, data));
    }
}

//! Text keys (login and Text requests) and their negotiation: parse, encode
//! and parse again to the same pairs; answer every key as the target does.
#![no_main]

use iolab_iscsi::negotiation::{Params, Preferences, apply, key_def};
use iolab_iscsi::text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(pairs) = text::parse(data) else {
        return;
    };
    let again = text::parse(&text::encode(&pairs)).expect("encoded keys parse");
    assert_eq!(again, pairs);
    let prefs = Preferences::default();
    let mut p = Params::default();
    for (k, v) in &pairs {
        if let Some(def) = key_def(k) {
            let _ = prefs.respond(def, v, &mut p);
        }
        apply(k, v, &mut p);
        let _ = text::parse_number(v);
        let _ = text::hex_decode(v);
    }
});

//! Client certificates (PEM bundles, DER, chains) through the host's parser:
//! no panic, no hang, and anything accepted has well-formed fields.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mqtt_policy_host::cert;

fuzz_target!(|data: &[u8]| {
    let hex = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
    if let Ok(chain) = cert::parse_chain(data) {
        assert!(!chain.is_empty() && chain.len() <= cert::MAX_CHAIN_LEN);
        for c in &chain {
            assert!(!c.der.is_empty());
            assert!(hex(&c.sha1, 40) && hex(&c.sha256, 64));
            // The DER a policy sees re-parses to the same certificate.
            assert_eq!(cert::parse_der(&c.der).as_ref(), Ok(c));
        }
    }
    // Split the input as a chain of DER blobs too.
    let parts: Vec<&[u8]> = data.split(|b| *b == 0xFF).collect();
    let _ = cert::parse_der_chain(parts);
});

//! Tokens through the SDK's JWT verifier (HS256 and ES256 keys configured):
//! no panic, no hang, and nothing malformed verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mqtt_policy_sdk::jwt::{KeyConfig, Verifier};
use std::sync::OnceLock;

const ES256_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEySIooYkYiuaGRv+0Ur2zp3DdTxlF\nVsCkCq0RwNvUYQLrvYU9RBhtnB0nXc4kPQgG+YrT8iNg6aEPYHalicwaUQ==\n-----END PUBLIC KEY-----\n";

fn verifier() -> &'static Verifier {
    static V: OnceLock<Verifier> = OnceLock::new();
    V.get_or_init(|| {
        let hs = KeyConfig { alg: "HS256".into(), kid: None, secret: Some("fuzz-secret".into()), secret_base64: None, public_key_pem: None };
        let es = KeyConfig { alg: "ES256".into(), kid: Some("es".into()), secret: None, secret_base64: None, public_key_pem: Some(ES256_PUBLIC.into()) };
        match Verifier::new().key(&hs).and_then(|v| v.key(&es)) {
            Ok(v) => v.audiences(vec!["mqtt".into()]),
            Err(e) => panic!("fuzz keys: {e}"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    if let Ok(claims) = verifier().verify(&token, 1_700_000_000) {
        // Only a well-formed, correctly signed, unexpired token gets here.
        assert_eq!(token.split('.').count(), 3);
        assert!(claims.get("exp").and_then(|e| e.as_u64()).is_some_and(|e| e + 30 > 1_700_000_000));
    }
});

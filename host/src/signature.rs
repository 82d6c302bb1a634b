//! The `verify-signature` import (contract `0.2.0`): JWS signatures checked
//! natively with `ring`, so a policy verifying an ES256 token pays native
//! speed instead of big-number arithmetic in wasm.
//!
//! Bounded like every host call a guest can make: input sizes are capped,
//! a check may verify at most [`MAX_VERIFICATIONS_PER_CALL`] signatures, and
//! the time spent here counts against the check's deadline.

use ring::signature::{self as sig, RsaPublicKeyComponents, UnparsedPublicKey};

use crate::sandbox::Stopped;
use crate::state::StoreState;

/// Longest signed message (a JWS header and payload) the host verifies.
pub(crate) const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// Longest key, in any form.
pub(crate) const MAX_KEY_BYTES: usize = 16 * 1024;
/// Longest signature (an RSA-8192 signature is 1 KiB).
pub(crate) const MAX_SIGNATURE_BYTES: usize = 1024;
/// Signatures one check may verify.
/// Signatures one call (a check, or `init`) may verify. Calls with an empty
/// signature (the SDK's load-time key check) are not counted: they fail
/// before any arithmetic, and their time still counts.
pub(crate) const MAX_VERIFICATIONS_PER_CALL: u32 = 64;

/// The algorithms of the contract, in the host's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Algorithm {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

/// A public key as the contract passes it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum PublicKey<'a> {
    RsaDer(&'a [u8]),
    RsaComponents { n: &'a [u8], e: &'a [u8] },
    EcPoint(&'a [u8]),
    Ed25519(&'a [u8]),
}

impl PublicKey<'_> {
    fn len(&self) -> usize {
        match self {
            PublicKey::RsaDer(b) | PublicKey::EcPoint(b) | PublicKey::Ed25519(b) => b.len(),
            PublicKey::RsaComponents { n, e } => n.len() + e.len(),
        }
    }
}

/// The import as a policy's store calls it: at most
/// [`MAX_VERIFICATIONS_PER_CALL`] per call, and the time it takes counts
/// against the call's deadline (host code is not interrupted by the epoch,
/// so the budget is checked here). Either bound traps the check.
pub(crate) fn verify_for(
    state: &mut StoreState,
    algorithm: Algorithm,
    key: PublicKey<'_>,
    message: &[u8],
    signature: &[u8],
) -> wasmtime::Result<Result<bool, String>> {
    if !signature.is_empty() {
        if state.signatures >= MAX_VERIFICATIONS_PER_CALL {
            return Err(Stopped::Signatures(MAX_VERIFICATIONS_PER_CALL).into());
        }
        state.signatures += 1;
    }
    let started = std::time::Instant::now();
    let result = verify(algorithm, key, message, signature);
    state.signature_time += started.elapsed();
    if state.signature_time > state.deadline.budget {
        return Err(wasmtime::Trap::Interrupt.into());
    }
    Ok(result)
}

/// Does `signature` sign `message` under `key`? `Err` names what the host
/// refuses (sizes, a key of the wrong kind or shape); a well-formed key and
/// a signature that does not verify is `Ok(false)`.
pub(crate) fn verify(
    algorithm: Algorithm,
    key: PublicKey<'_>,
    message: &[u8],
    signature: &[u8],
) -> Result<bool, String> {
    if message.len() > MAX_MESSAGE_BYTES {
        return Err(format!(
            "message of {} bytes is over the limit of {MAX_MESSAGE_BYTES}",
            message.len()
        ));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(format!(
            "key of {} bytes is over the limit of {MAX_KEY_BYTES}",
            key.len()
        ));
    }
    if signature.len() > MAX_SIGNATURE_BYTES {
        return Err(format!(
            "signature of {} bytes is over the limit of {MAX_SIGNATURE_BYTES}",
            signature.len()
        ));
    }
    use Algorithm::*;
    match (algorithm, key) {
        (Rs256 | Rs384 | Rs512 | Ps256 | Ps384 | Ps512, PublicKey::RsaDer(der)) => {
            let (n, e) =
                pkcs1_components(der).ok_or("the RSA key is not a DER RSAPublicKey (PKCS#1)")?;
            verify_rsa(algorithm, n, e, message, signature)
        }
        (Rs256 | Rs384 | Rs512 | Ps256 | Ps384 | Ps512, PublicKey::RsaComponents { n, e }) => {
            verify_rsa(algorithm, n, e, message, signature)
        }
        (Es256 | Es384, PublicKey::EcPoint(point)) => {
            let (params, len): (&'static sig::EcdsaVerificationAlgorithm, usize) =
                if algorithm == Es256 {
                    (&sig::ECDSA_P256_SHA256_FIXED, 65)
                } else {
                    (&sig::ECDSA_P384_SHA384_FIXED, 97)
                };
            if point.len() != len || point.first() != Some(&0x04) {
                return Err(format!(
                    "an {} key is a {len}-byte uncompressed point (04 || x || y), not {} bytes",
                    if algorithm == Es256 { "ES256" } else { "ES384" },
                    point.len()
                ));
            }
            Ok(UnparsedPublicKey::new(params, point)
                .verify(message, signature)
                .is_ok())
        }
        (EdDsa, PublicKey::Ed25519(raw)) => {
            if raw.len() != 32 {
                return Err(format!("an Ed25519 key is 32 bytes, not {}", raw.len()));
            }
            Ok(UnparsedPublicKey::new(&sig::ED25519, raw)
                .verify(message, signature)
                .is_ok())
        }
        (alg, _) => Err(format!("the key does not fit {alg:?}")),
    }
}

fn verify_rsa(
    algorithm: Algorithm,
    n: &[u8],
    e: &[u8],
    message: &[u8],
    signature: &[u8],
) -> Result<bool, String> {
    let n = strip_zeros(n);
    let bits = n
        .first()
        .map_or(0, |b| n.len() * 8 - b.leading_zeros() as usize);
    if !(2048..=8192).contains(&bits) {
        return Err(format!(
            "an RSA modulus of {bits} bits is outside 2048..=8192"
        ));
    }
    let params: &'static sig::RsaParameters = match algorithm {
        Algorithm::Rs256 => &sig::RSA_PKCS1_2048_8192_SHA256,
        Algorithm::Rs384 => &sig::RSA_PKCS1_2048_8192_SHA384,
        Algorithm::Rs512 => &sig::RSA_PKCS1_2048_8192_SHA512,
        Algorithm::Ps256 => &sig::RSA_PSS_2048_8192_SHA256,
        Algorithm::Ps384 => &sig::RSA_PSS_2048_8192_SHA384,
        Algorithm::Ps512 => &sig::RSA_PSS_2048_8192_SHA512,
        other => return Err(format!("{other:?} is not an RSA algorithm")),
    };
    let key = RsaPublicKeyComponents {
        n,
        e: strip_zeros(e),
    };
    Ok(key.verify(params, message, signature).is_ok())
}

fn strip_zeros(mut bytes: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`,
/// read with x509-parser (the whole input, nothing after it).
fn pkcs1_components(der: &[u8]) -> Option<(&[u8], &[u8])> {
    use x509_parser::prelude::FromDer as _;
    match x509_parser::public_key::RSAPublicKey::from_der(der) {
        Ok(([], key)) => Some((key.modulus, key.exponent)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_shapes_are_refused_with_a_reason() {
        let big = vec![0u8; MAX_MESSAGE_BYTES + 1];
        let err = verify(Algorithm::Es256, PublicKey::EcPoint(&[4; 65]), &big, &[]);
        assert!(err.is_err_and(|e| e.contains("message of 65537 bytes")));
        let err = verify(Algorithm::Es256, PublicKey::EcPoint(&[4; 33]), b"m", &[]);
        assert!(err.is_err_and(|e| e.contains("65-byte uncompressed point")));
        let err = verify(Algorithm::Es256, PublicKey::Ed25519(&[0; 32]), b"m", &[]);
        assert!(err.is_err_and(|e| e.contains("does not fit")));
        let err = verify(Algorithm::Rs256, PublicKey::RsaDer(b"nope"), b"m", &[]);
        assert!(err.is_err_and(|e| e.contains("PKCS#1")));
        let small = PublicKey::RsaComponents {
            n: &[0xff; 128],
            e: &[1, 0, 1],
        };
        let err = verify(Algorithm::Rs256, small, b"m", &[]);
        assert!(err.is_err_and(|e| e.contains("1024 bits")));
        // A modulus of nothing but zeros is 0 bits, not an underflow.
        let zero = PublicKey::RsaComponents {
            n: &[0, 0],
            e: &[3],
        };
        let err = verify(Algorithm::Rs256, zero, b"m", &[]);
        assert!(err.is_err_and(|e| e.contains("of 0 bits")));
    }

    #[test]
    fn a_good_key_with_a_bad_signature_is_false_not_an_error() {
        // A point on P-256 (the generator).
        let g = hex::decode(concat!(
            "04",
            "6B17D1F2E12C4247F8BCE6E563A440F277037D812DEB33A0F4A13945D898C296",
            "4FE342E2FE1A7F9B8EE7EB4A7C0F9E162BCE33576B315ECECBB6406837BF51F5"
        ))
        .unwrap_or_default();
        let got = verify(Algorithm::Es256, PublicKey::EcPoint(&g), b"m", &[0; 64]);
        assert_eq!(got, Ok(false));
        let got = verify(Algorithm::EdDsa, PublicKey::Ed25519(&[7; 32]), b"m", &[]);
        assert_eq!(got, Ok(false));
    }
}

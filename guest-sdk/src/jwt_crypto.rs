//! JWT signatures in the wasm build: HMAC in the guest (cheap), every
//! public-key algorithm through the host's `verify-signature` import, which
//! runs native crypto. The guest then carries no RSA, ECDSA or EdDSA code.
//!
//! Installed as `jsonwebtoken`'s process-wide crypto provider the first time
//! a [`crate::jwt::Verifier`] is made. Native builds (unit tests) keep
//! `jsonwebtoken`'s pure-Rust provider.

use hmac::{Hmac, Mac};
use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature::{self, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, DecodingKeyKind, EncodingKey};
use sha2::{Sha256, Sha384, Sha512};

use crate::bindings::mqtt::policy::host::{self, PublicKey, RsaComponents, SignatureAlgorithm};

static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: no_signer,
    verifier_factory: verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

/// Make the host-backed provider `jsonwebtoken`'s default (once; later
/// calls find it installed).
pub(crate) fn install() {
    let _ = PROVIDER.install_default();
}

fn no_signer(_: &Algorithm, _: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    // Policies verify tokens; they never sign.
    Err(ErrorKind::InvalidAlgorithm.into())
}

fn verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let alg = *alg;
    if alg.family() != key.family() {
        return Err(ErrorKind::InvalidKeyFormat.into());
    }
    if alg.family() == AlgorithmFamily::Hmac {
        let secret = key.try_get_as_bytes()?.to_vec();
        return Ok(Box::new(HmacVerifier { alg, secret }));
    }
    match verifier_parts(alg, key) {
        Some((host_alg, host_key)) => Ok(Box::new(HostVerifier {
            alg,
            host_alg,
            key: host_key,
        })),
        None => Err(ErrorKind::InvalidKeyFormat.into()),
    }
}

/// The host's names for a public-key algorithm and its key.
fn verifier_parts(alg: Algorithm, key: &DecodingKey) -> Option<(SignatureAlgorithm, PublicKey)> {
    let host_alg = match alg {
        Algorithm::RS256 => SignatureAlgorithm::Rs256,
        Algorithm::RS384 => SignatureAlgorithm::Rs384,
        Algorithm::RS512 => SignatureAlgorithm::Rs512,
        Algorithm::PS256 => SignatureAlgorithm::Ps256,
        Algorithm::PS384 => SignatureAlgorithm::Ps384,
        Algorithm::PS512 => SignatureAlgorithm::Ps512,
        Algorithm::ES256 => SignatureAlgorithm::Es256,
        Algorithm::ES384 => SignatureAlgorithm::Es384,
        Algorithm::EdDSA => SignatureAlgorithm::EdDsa,
        _ => return None,
    };
    let host_key = match (alg.family(), key.kind()) {
        (AlgorithmFamily::Rsa, DecodingKeyKind::SecretOrDer(der)) => PublicKey::RsaDer(der.clone()),
        (AlgorithmFamily::Rsa, DecodingKeyKind::RsaModulusExponent { n, e }) => {
            PublicKey::RsaComponents(RsaComponents {
                n: n.clone(),
                e: e.clone(),
            })
        }
        (AlgorithmFamily::Ec, DecodingKeyKind::SecretOrDer(point)) => {
            PublicKey::EcPoint(point.clone())
        }
        (AlgorithmFamily::Ed, DecodingKeyKind::SecretOrDer(raw)) => PublicKey::Ed25519(raw.clone()),
        _ => return None,
    };
    Some((host_alg, host_key))
}

struct HostVerifier {
    alg: Algorithm,
    host_alg: SignatureAlgorithm,
    key: PublicKey,
}

impl Verifier<Vec<u8>> for HostVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        match host::verify_signature(self.host_alg, &self.key, msg, sig) {
            Ok(true) => Ok(()),
            // A refused key or input is as good as a bad signature to the
            // token: it does not verify. The message goes nowhere, by
            // design of `signature::Error`.
            Ok(false) | Err(_) => Err(signature::Error::new()),
        }
    }
}

impl JwtVerifier for HostVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

struct HmacVerifier {
    alg: Algorithm,
    secret: Vec<u8>,
}

fn hmac_ok<M: Mac + hmac::digest::KeyInit>(secret: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    match <M as hmac::digest::KeyInit>::new_from_slice(secret) {
        Ok(mut mac) => {
            mac.update(msg);
            // Constant time, from the `hmac` crate.
            mac.verify_slice(sig).is_ok()
        }
        Err(_) => false,
    }
}

impl Verifier<Vec<u8>> for HmacVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let ok = match self.alg {
            Algorithm::HS256 => hmac_ok::<Hmac<Sha256>>(&self.secret, msg, sig),
            Algorithm::HS384 => hmac_ok::<Hmac<Sha384>>(&self.secret, msg, sig),
            Algorithm::HS512 => hmac_ok::<Hmac<Sha512>>(&self.secret, msg, sig),
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(signature::Error::new())
        }
    }
}

impl JwtVerifier for HmacVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

/// Would the host take `key` for `alg`? Asked at load with an empty
/// signature: a key the host refuses fails the configuration, not every
/// token.
pub(crate) fn probe(alg: Algorithm, key: &DecodingKey) -> Result<(), String> {
    if alg.family() == AlgorithmFamily::Hmac {
        return Ok(());
    }
    let (host_alg, host_key) = match verifier_parts(alg, key) {
        Some(parts) => parts,
        None => return Err("the key does not fit the algorithm".into()),
    };
    host::verify_signature(host_alg, &host_key, b"", b"").map(drop)
}

//! JWT verification with strict defaults, built on `jsonwebtoken`'s pure-Rust
//! crypto so it compiles to wasm. Needs the SDK's `jwt` feature:
//! `mqtt-policy-sdk = { ..., features = ["jwt"] }`.
//!
//! - Algorithms: HS256/384/512, RS256/384/512, PS256/384/512, ES256/384 and
//!   EdDSA (Ed25519). `alg: none` and anything else are rejected.
//! - Each key is bound to one algorithm, and a token is only tried against keys
//!   of its header's algorithm: an RSA public key can never be used as an HMAC
//!   secret (algorithm confusion).
//! - Key selection: a token whose `kid` names configured keys is tried only
//!   against those keys. Any other token (no `kid`, or a `kid` no key carries)
//!   is tried against the keys configured *without* a `kid`. So a single key
//!   configured without a `kid` verifies tokens from identity providers that
//!   always send one (Auth0, Azure AD, Cognito), and a key with a `kid` is only
//!   used for tokens naming it.
//! - Keys come from [`KeyConfig`]s (secrets, PEM public keys) or a JWKS
//!   document ([`Verifier::jwks`]).
//! - The header is read strictly: exactly three base64url parts, no duplicate
//!   member names, and any `crit` is refused (RFC 7515 §4.1.11: this verifier
//!   understands no extensions).
//! - Claims: `exp` is required by default; `exp`, `nbf` and `iat` (not in the
//!   future) are checked against the host's clock with a leeway of at most
//!   [`MAX_LEEWAY_SECS`]. A configured issuer is required and `iss` must be a
//!   single string equal to one of them. A configured audience is required and
//!   `aud` (a string or an array of strings) must name one of them; with no
//!   audience configured a token carrying `aud` is refused unless
//!   [`Verifier::accept_any_audience`] opts out. Duplicate claim names are
//!   refused.
//! - Tokens longer than [`Verifier::max_token_bytes`] (default
//!   [`MAX_TOKEN_BYTES`], at most [`TOKEN_BYTES_LIMIT`]) are rejected before any
//!   parsing. The exact bytes are verified: nothing is trimmed.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

/// The default cap on a token's length, in bytes.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The highest cap [`Verifier::max_token_bytes`] accepts: an MQTT password
/// carries at most 65,535 bytes.
pub const TOKEN_BYTES_LIMIT: usize = 65_535;

/// The largest clock-skew leeway a verifier applies.
pub const MAX_LEEWAY_SECS: u64 = 300;

/// RSA moduli outside this range are refused at load: RFC 7518 §3.3 requires
/// at least 2048 bits, and the RSA backend verifies at most 4096.
const RSA_MIN_BITS: usize = 2048;
const RSA_MAX_BITS: usize = 4096;

/// The verified claims of a token.
pub type Claims = Map<String, Value>;

/// Why a token was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum JwtError {
    /// The token is this many bytes, over [`Verifier::max_token_bytes`].
    TooLarge(usize),
    /// Not three base64url parts of JSON, a duplicate member, bad claims.
    Malformed(String),
    /// The header names an algorithm that is refused (`none`, unknown).
    UnsupportedAlgorithm(String),
    /// No configured key matches the header's algorithm and `kid`.
    UnknownKey(String),
    /// The header has `crit`: it names extensions this verifier does not
    /// understand (it understands none), or is malformed.
    CriticalHeader(String),
    /// The signature does not verify with any candidate key.
    BadSignature,
    /// `exp` is past (beyond the leeway).
    Expired,
    /// `nbf` is in the future (beyond the leeway).
    NotYetValid,
    /// `iat` is later than now plus the leeway.
    IssuedInFuture,
    /// `iss` is missing, not a string, or not a configured issuer.
    WrongIssuer,
    /// `aud` names no configured audience, or is present when none is configured.
    WrongAudience,
    /// A required claim (such as `exp`) is absent.
    MissingClaim(String),
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtError::TooLarge(n) => write!(f, "token is {n} bytes, over the configured limit"),
            JwtError::Malformed(m) => write!(f, "malformed token: {m}"),
            JwtError::UnsupportedAlgorithm(a) => write!(f, "algorithm {a} is not accepted"),
            JwtError::UnknownKey(k) => write!(f, "no key for {k}"),
            JwtError::CriticalHeader(m) => write!(f, "critical header refused: {m}"),
            JwtError::BadSignature => f.write_str("bad signature"),
            JwtError::Expired => f.write_str("token expired"),
            JwtError::NotYetValid => f.write_str("token not yet valid"),
            JwtError::IssuedInFuture => f.write_str("token issued in the future"),
            JwtError::WrongIssuer => f.write_str("wrong issuer"),
            JwtError::WrongAudience => f.write_str("wrong audience"),
            JwtError::MissingClaim(c) => write!(f, "missing claim {c}"),
        }
    }
}

impl std::error::Error for JwtError {}

/// A verification key as written in a policy's configuration.
///
/// ```json
/// {"alg": "HS256", "secret": "..."}            // or "secret_base64"
/// {"alg": "RS256", "public_key_pem": "-----BEGIN PUBLIC KEY-----..."}
/// {"alg": "ES256", "public_key_pem": "...", "kid": "2024-1"}
/// {"alg": "PS256", "public_key_pem": "..."}    // also PS384, PS512
/// {"alg": "EdDSA", "public_key_pem": "..."}    // Ed25519
/// ```
///
/// A key with a `kid` verifies only tokens naming that `kid`; a key without
/// one verifies any token of its algorithm whose `kid` (if any) names no
/// configured key. `public_key_pem` must hold a public key (or certificate),
/// never a private key; RSA moduli must be 2048 to 4096 bits.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    /// The JOSE algorithm this key verifies: `HS256`, `RS256`, `ES256`, ...
    pub alg: String,
    /// The key id tokens name in their header to select this key.
    #[serde(default)]
    pub kid: Option<String>,
    /// An HMAC secret as text (HS*).
    #[serde(default)]
    pub secret: Option<String>,
    /// An HMAC secret as standard base64 (HS*), for binary secrets.
    #[serde(default)]
    pub secret_base64: Option<String>,
    /// A PEM public key or certificate (RS*, PS*, ES*, EdDSA).
    #[serde(default)]
    pub public_key_pem: Option<String>,
}

impl std::fmt::Debug for KeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets stay out of any debug output.
        f.debug_struct("KeyConfig")
            .field("alg", &self.alg)
            .field("kid", &self.kid)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field(
                "secret_base64",
                &self.secret_base64.as_ref().map(|_| "<redacted>"),
            )
            .field("public_key_pem", &self.public_key_pem.is_some())
            .finish()
    }
}

struct Key {
    kid: Option<String>,
    alg: Algorithm,
    decoding: DecodingKey,
}

/// Verifies tokens against a fixed set of keys and claim rules.
pub struct Verifier {
    keys: Vec<Key>,
    issuers: Option<Vec<String>>,
    audiences: Option<Vec<String>>,
    accept_any_audience: bool,
    leeway_secs: u64,
    require_exp: bool,
    max_token_bytes: usize,
    /// Tokens this verifier accepted, with their claims (see
    /// [`Verifier::remember_verified`]); `None` when off.
    remembered: Option<Remembered>,
}

/// Bounds on the tokens a verifier remembers (a few reconnecting clients'
/// worth): at most this many tokens, with their claims.
pub const REMEMBER_MAX_TOKENS: usize = 64;
/// The longest token remembered (longer ones are verified every time).
pub const REMEMBER_MAX_TOKEN_BYTES: usize = 4 * 1024;
/// The most token bytes remembered at once (the tokens' text; their parsed
/// claims come on top, smaller than the text they were decoded from).
pub const REMEMBER_MAX_BYTES: usize = 64 * 1024;

/// Verified tokens, by their exact bytes.
#[derive(Default)]
struct Remembered {
    tokens: std::sync::Mutex<RememberedTokens>,
    /// Verifies answered from here (tests prove the path is taken).
    #[cfg(test)]
    hits: std::sync::atomic::AtomicUsize,
}

#[derive(Default)]
struct RememberedTokens {
    by_token: std::collections::HashMap<Box<str>, Claims>,
    bytes: usize,
}

impl RememberedTokens {
    fn clear(&mut self) {
        self.by_token.clear();
        self.bytes = 0;
    }
}

impl Remembered {
    fn tokens(&self) -> std::sync::MutexGuard<'_, RememberedTokens> {
        // Entries are inserted or removed whole: a poisoned map is consistent.
        self.tokens.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn claims(&self, token: &str) -> Option<Claims> {
        let claims = self.tokens().by_token.get(token).cloned();
        #[cfg(test)]
        if claims.is_some() {
            self.hits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        claims
    }

    /// Forget `token`, or every token.
    fn forget(&self, token: Option<&str>) {
        let mut t = self.tokens();
        match token {
            Some(token) => {
                if t.by_token.remove(token).is_some() {
                    t.bytes = t.bytes.saturating_sub(token.len());
                }
            }
            None => t.clear(),
        }
    }

    fn remember(&self, token: &str, claims: &Claims) {
        if token.len() > REMEMBER_MAX_TOKEN_BYTES {
            return;
        }
        let mut t = self.tokens();
        if t.by_token.contains_key(token) {
            return;
        }
        // Full: forget everything rather than track ages; the clients that
        // reconnect are remembered again on their next verify.
        if t.by_token.len() >= REMEMBER_MAX_TOKENS || t.bytes + token.len() > REMEMBER_MAX_BYTES {
            t.clear();
        }
        t.bytes += token.len();
        t.by_token.insert(token.into(), claims.clone());
    }

    fn len(&self) -> usize {
        self.tokens().by_token.len()
    }
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Verifier")
            .field("keys", &self.keys.len())
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("accept_any_audience", &self.accept_any_audience)
            .field("leeway_secs", &self.leeway_secs)
            .field("require_exp", &self.require_exp)
            .field("max_token_bytes", &self.max_token_bytes)
            .field("remembered", &self.remembered.as_ref().map(Remembered::len))
            .finish()
    }
}

/// Every algorithm accepted, by its JOSE name.
const ALGORITHMS: [(&str, Algorithm); 12] = [
    ("HS256", Algorithm::HS256),
    ("HS384", Algorithm::HS384),
    ("HS512", Algorithm::HS512),
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
    ("EdDSA", Algorithm::EdDSA),
];

fn find_alg(name: &str) -> Option<Algorithm> {
    ALGORITHMS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, alg)| *alg)
}

fn alg_name(alg: Algorithm) -> &'static str {
    ALGORITHMS
        .iter()
        .find(|(_, a)| *a == alg)
        .map_or("?", |(n, _)| n)
}

fn parse_alg(name: &str) -> Result<Algorithm, String> {
    find_alg(name).ok_or_else(|| format!("unsupported key algorithm \"{name}\""))
}

fn is_rsa(alg: Algorithm) -> bool {
    matches!(
        alg,
        Algorithm::RS256
            | Algorithm::RS384
            | Algorithm::RS512
            | Algorithm::PS256
            | Algorithm::PS384
            | Algorithm::PS512
    )
}

/// A JSON object that refuses duplicate member names. RFC 7515 §5.2 and RFC
/// 7519 §4 let a parser reject them; a last-wins parser could read a token
/// differently from the library that checked its signature and claims.
struct UniqueMap(Claims);

impl<'de> Deserialize<'de> for UniqueMap {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = UniqueMap;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<UniqueMap, A::Error> {
                let mut map = Claims::new();
                while let Some(name) = access.next_key::<String>()? {
                    if map.contains_key(&name) {
                        return Err(serde::de::Error::custom("duplicate member name"));
                    }
                    let value = access.next_value::<Value>()?;
                    map.insert(name, value);
                }
                Ok(UniqueMap(map))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// What the verifier reads from a token's header before choosing keys.
struct TokenHeader {
    alg: Algorithm,
    kid: Option<String>,
}

fn is_base64url(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

fn parse_header(token: &str) -> Result<TokenHeader, JwtError> {
    let malformed = |m: &str| JwtError::Malformed(m.to_owned());
    let mut parts = token.split('.');
    let (Some(header), Some(_), Some(_), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(malformed("a token has three dot-separated parts"));
    };
    // The exact bytes: whitespace, padding or any other character is refused
    // here rather than left to each decoder.
    if !token.bytes().all(|b| b == b'.' || is_base64url(b)) {
        return Err(malformed("token has a character outside base64url"));
    }
    let bytes = URL_SAFE_NO_PAD
        .decode(header)
        .map_err(|_| malformed("header is not base64url"))?;
    let UniqueMap(header) =
        serde_json::from_slice(&bytes).map_err(|e| JwtError::Malformed(format!("header: {e}")))?;
    // RFC 7515 §4.1.11: a recipient must reject a token whose `crit` lists an
    // extension it does not understand. This verifier understands none, so
    // any `crit`, well-formed or not, is refused.
    if let Some(crit) = header.get("crit") {
        let well_formed = crit
            .as_array()
            .is_some_and(|names| !names.is_empty() && names.iter().all(Value::is_string));
        return Err(JwtError::CriticalHeader(if well_formed {
            "crit names extensions this verifier does not understand".into()
        } else {
            "crit is malformed".into()
        }));
    }
    let alg = match header.get("alg") {
        Some(Value::String(name)) if name == "none" => {
            return Err(JwtError::UnsupportedAlgorithm("none".into()));
        }
        Some(Value::String(name)) => find_alg(name)
            .ok_or_else(|| JwtError::UnsupportedAlgorithm("in header (unrecognised)".into()))?,
        Some(_) => {
            return Err(JwtError::UnsupportedAlgorithm(
                "in header (not a string)".into(),
            ));
        }
        None => return Err(JwtError::UnsupportedAlgorithm("in header (missing)".into())),
    };
    let kid = match header.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.clone()),
        Some(_) => return Err(malformed("kid is not a string")),
    };
    Ok(TokenHeader { alg, kid })
}

/// The length and value of a DER element at the start of `input`:
/// (tag, contents, rest). Definite lengths only, at most four length bytes.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let count = usize::from(first & 0x7f);
        if count == 0 || count > 4 {
            return None;
        }
        let (bytes, rest) = rest.split_at_checked(count)?;
        let len = bytes.iter().try_fold(0usize, |acc, b| {
            acc.checked_mul(256)?.checked_add(usize::from(*b))
        })?;
        (len, rest)
    };
    let (contents, rest) = rest.split_at_checked(len)?;
    Some((tag, contents, rest))
}

/// `n` and `e` of a PKCS#1 `RSAPublicKey` (SEQUENCE { INTEGER, INTEGER }).
fn pkcs1_components(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (0x30, body, []) = der_element(der)? else {
        return None;
    };
    let (0x02, n, rest) = der_element(body)? else {
        return None;
    };
    let (0x02, e, []) = der_element(rest)? else {
        return None;
    };
    Some((n, e))
}

fn strip_leading_zeros(mut bytes: &[u8]) -> &[u8] {
    while let [0, rest @ ..] = bytes {
        bytes = rest;
    }
    bytes
}

/// Refuse RSA moduli and exponents the backend would reject on every token,
/// and moduli below RFC 7518's minimum.
fn check_rsa(n: &[u8], e: &[u8]) -> Result<(), String> {
    let n = strip_leading_zeros(n);
    let bits = n.first().map_or(0, |top| {
        (n.len() - 1) * 8 + (8 - usize::try_from(top.leading_zeros()).unwrap_or(8))
    });
    if !(RSA_MIN_BITS..=RSA_MAX_BITS).contains(&bits) {
        return Err(format!(
            "RSA modulus is {bits} bits; {RSA_MIN_BITS} to {RSA_MAX_BITS} are accepted"
        ));
    }
    let e = strip_leading_zeros(e);
    let exponent = if e.len() > 8 {
        u64::MAX
    } else {
        e.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
    };
    // The backend accepts public exponents from 2 to 2^33 - 1; 1 and even
    // exponents cannot be RSA.
    if exponent < 3 || exponent % 2 == 0 || exponent >= 1 << 33 {
        return Err("RSA public exponent is not valid".into());
    }
    Ok(())
}

/// Make sure the backend can use `key` for `alg` at load, so a bad key fails
/// the configuration instead of every token. A token with an empty signature
/// reaches signature checking only if the backend accepted the key.
fn probe(alg: Algorithm, key: &DecodingKey) -> Result<(), String> {
    if alg == Algorithm::EdDSA {
        // The Ed25519 backend slices the first 32 bytes of the key; anything
        // but exactly 32 is refused here so it never sees a short key.
        let len = key.try_get_as_bytes().map_or(0, <[u8]>::len);
        if len != 32 {
            return Err(format!("an Ed25519 public key is 32 bytes, not {len}"));
        }
    }
    // In wasm the host verifies: ask it whether it takes the key.
    #[cfg(all(target_arch = "wasm32", not(feature = "guest-crypto")))]
    {
        crate::jwt_crypto::probe(alg, key)
            .map_err(|e| format!("not a usable {} public key: {e}", alg_name(alg)))
    }
    #[cfg(any(not(target_arch = "wasm32"), feature = "guest-crypto"))]
    {
        let header = URL_SAFE_NO_PAD.encode(format!(r#"{{"alg":"{}"}}"#, alg_name(alg)));
        let token = format!("{header}.e30.");
        let mut validation = Validation::new(alg);
        validation.required_spec_claims.clear();
        validation.validate_exp = false;
        validation.validate_aud = false;
        match jsonwebtoken::decode::<Claims>(&token, key, &validation) {
            Err(e) if matches!(e.kind(), ErrorKind::InvalidSignature) => Ok(()),
            _ => Err(format!("not a usable {} public key", alg_name(alg))),
        }
    }
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// A verifier with no keys (add some), `exp` required, 30 s leeway, tokens
    /// up to [`MAX_TOKEN_BYTES`], no issuer or audience configured (a token
    /// carrying `aud` is then refused).
    pub fn new() -> Self {
        #[cfg(all(target_arch = "wasm32", not(feature = "guest-crypto")))]
        crate::jwt_crypto::install();
        Verifier {
            keys: Vec::new(),
            issuers: None,
            audiences: None,
            accept_any_audience: false,
            leeway_secs: 30,
            require_exp: true,
            max_token_bytes: MAX_TOKEN_BYTES,
            remembered: None,
        }
    }

    /// Remember tokens this verifier accepted (default off), so the same
    /// token presented again (a client reconnecting) skips the signature and
    /// the parse. Every claim rule (`exp`, `nbf`, `iat`, issuer, audience) is
    /// still applied on each verify. At most [`REMEMBER_MAX_TOKENS`] tokens of
    /// up to [`REMEMBER_MAX_TOKEN_BYTES`] each, [`REMEMBER_MAX_BYTES`] in all,
    /// are kept, compared by their exact bytes. The trade-off: the guest's
    /// memory then holds recently used tokens (bearer credentials until they
    /// expire) besides the keys.
    pub fn remember_verified(mut self, on: bool) -> Self {
        self.remembered = on.then(Remembered::default);
        self
    }

    /// How many tokens are remembered now (see [`Self::remember_verified`]).
    pub fn remembered_tokens(&self) -> usize {
        self.remembered.as_ref().map_or(0, Remembered::len)
    }

    fn forget_verified(&mut self) {
        if let Some(r) = &self.remembered {
            r.forget(None);
        }
    }

    /// Add a key from its configuration. Errors name what is wrong.
    pub fn key(mut self, config: &KeyConfig) -> Result<Self, String> {
        // New keys change which key a token's `kid` selects: what was
        // verified before is verified again.
        self.forget_verified();
        let alg = parse_alg(&config.alg)?;
        let what = |m: &str| match &config.kid {
            Some(kid) => format!("key \"{kid}\" ({}): {m}", config.alg),
            None => format!("{} key: {m}", config.alg),
        };
        let decoding = match alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => {
                match (
                    &config.secret,
                    &config.secret_base64,
                    &config.public_key_pem,
                ) {
                    (Some(s), None, None) if !s.is_empty() => {
                        DecodingKey::from_secret(s.as_bytes())
                    }
                    (None, Some(b), None) => {
                        let bytes = STANDARD
                            .decode(b)
                            .or_else(|_| URL_SAFE_NO_PAD.decode(b))
                            .map_err(|e| what(&format!("bad secret_base64: {e}")))?;
                        if bytes.is_empty() {
                            return Err(what("secret_base64 decodes to an empty key"));
                        }
                        DecodingKey::from_secret(&bytes)
                    }
                    _ => return Err(what("needs exactly one non-empty secret or secret_base64")),
                }
            }
            _ => {
                let pem = match (
                    &config.public_key_pem,
                    &config.secret,
                    &config.secret_base64,
                ) {
                    (Some(p), None, None) => p,
                    _ => return Err(what("needs public_key_pem and no secret")),
                };
                // jsonwebtoken would take a private key here too; a private
                // key has no place in a verifier's configuration.
                if pem.contains("PRIVATE KEY") {
                    return Err(what(
                        "public_key_pem holds a private key; configure the public key only",
                    ));
                }
                let key = match alg {
                    Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem.as_bytes()),
                    Algorithm::EdDSA => DecodingKey::from_ed_pem(pem.as_bytes()),
                    _ => DecodingKey::from_rsa_pem(pem.as_bytes()),
                };
                let key = key.map_err(|e| what(&format!("bad public_key_pem: {e}")))?;
                if is_rsa(alg) {
                    let der = key.try_get_as_bytes().unwrap_or_default();
                    let (n, e) = pkcs1_components(der)
                        .ok_or_else(|| what("public_key_pem is not an RSA public key"))?;
                    check_rsa(n, e).map_err(|m| what(&format!("public_key_pem: {m}")))?;
                }
                probe(alg, &key).map_err(|m| what(&format!("public_key_pem: {m}")))?;
                key
            }
        };
        self.keys.push(Key {
            kid: config.kid.clone(),
            alg,
            decoding,
        });
        Ok(self)
    }

    /// Add the keys of a JWKS document (JSON text): `{"keys": [...]}`.
    pub fn jwks(self, text: &str) -> Result<Self, String> {
        let set: Value =
            serde_json::from_str(text).map_err(|e| format!("jwks is not JSON: {e}"))?;
        self.jwks_value(&set)
    }

    /// Add the keys of a parsed JWKS document.
    ///
    /// - `RSA` keys need `alg` (RS256/384/512 or PS256/384/512): the key type
    ///   alone does not say which, so a key without it is refused.
    /// - `EC` keys: `crv` `P-256` is ES256 and `P-384` is ES384; `OKP` keys:
    ///   `crv` `Ed25519` is EdDSA. An `alg`, if given, must agree.
    /// - `oct` (symmetric) keys are refused: a key set is published, and a
    ///   secret does not belong in it. Configure HMAC secrets as
    ///   [`KeyConfig`]s.
    /// - A key holding private members (`d`, `p`, `q`, ...) is refused.
    /// - Keys not meant for verifying signatures (`use` other than `sig`, or
    ///   `key_ops` without `verify`) are skipped, as RFC 7517 intends; other
    ///   unknown members are ignored.
    /// - The set must yield at least one key. Errors name the key by index
    ///   and `kid`.
    pub fn jwks_value(mut self, set: &Value) -> Result<Self, String> {
        self.forget_verified();
        let keys = set
            .get("keys")
            .and_then(Value::as_array)
            .ok_or("jwks must be an object with a \"keys\" array")?;
        let before = self.keys.len();
        for (index, jwk) in keys.iter().enumerate() {
            if let Some(key) = jwk_key(index, jwk)? {
                self.keys.push(key);
            }
        }
        if self.keys.len() == before {
            return Err("jwks holds no signature-verification key".into());
        }
        Ok(self)
    }

    /// Accept only tokens whose `iss` is a string equal to one of these.
    pub fn issuers(mut self, issuers: Vec<String>) -> Self {
        self.issuers = Some(issuers);
        self
    }

    /// Accept only tokens whose `aud` names one of these.
    pub fn audiences(mut self, audiences: Vec<String>) -> Self {
        self.audiences = Some(audiences);
        self
    }

    /// With no audience configured, accept tokens carrying any `aud` (default
    /// false: such tokens are refused, since they were issued for someone).
    /// Configured audiences take precedence.
    pub fn accept_any_audience(mut self, accept: bool) -> Self {
        self.accept_any_audience = accept;
        self
    }

    /// Clock skew tolerated on `exp`, `nbf` and `iat`; values above
    /// [`MAX_LEEWAY_SECS`] are capped to it.
    pub fn leeway_secs(mut self, secs: u64) -> Self {
        self.leeway_secs = secs.min(MAX_LEEWAY_SECS);
        self
    }

    /// Whether a token without `exp` is rejected (default true).
    pub fn require_exp(mut self, require: bool) -> Self {
        self.require_exp = require;
        self
    }

    /// The longest token accepted, 1 to [`TOKEN_BYTES_LIMIT`] bytes (default
    /// [`MAX_TOKEN_BYTES`]).
    pub fn max_token_bytes(mut self, bytes: usize) -> Result<Self, String> {
        if !(1..=TOKEN_BYTES_LIMIT).contains(&bytes) {
            return Err(format!(
                "max_token_bytes must be between 1 and {TOKEN_BYTES_LIMIT}, got {bytes}"
            ));
        }
        self.max_token_bytes = bytes;
        Ok(self)
    }

    /// Is at least one key configured? A verifier without keys refuses
    /// every token.
    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The keys `header` may be verified with.
    fn candidates(&self, header: &TokenHeader) -> Result<Vec<&Key>, JwtError> {
        let named: Vec<&Key> = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                .collect(),
            None => Vec::new(),
        };
        let name = alg_name(header.alg);
        if !named.is_empty() {
            let usable: Vec<&Key> = named.into_iter().filter(|k| k.alg == header.alg).collect();
            if usable.is_empty() {
                return Err(JwtError::UnsupportedAlgorithm(format!(
                    "{name} for this token's kid"
                )));
            }
            return Ok(usable);
        }
        let usable: Vec<&Key> = self
            .keys
            .iter()
            .filter(|k| k.kid.is_none() && k.alg == header.alg)
            .collect();
        if !usable.is_empty() {
            Ok(usable)
        } else if !self.keys.iter().any(|k| k.alg == header.alg) {
            Err(JwtError::UnsupportedAlgorithm(name.into()))
        } else {
            Err(JwtError::UnknownKey(match &header.kid {
                Some(kid) => format!("kid \"{kid}\""),
                None => "a token without kid".into(),
            }))
        }
    }

    /// Verify `token` (its exact bytes) at time `now_secs` (Unix seconds) and
    /// return its claims.
    ///
    /// ```
    /// use mqtt_policy_sdk::jwt::{JwtError, KeyConfig, Verifier};
    ///
    /// let key: KeyConfig = mqtt_policy_sdk::config(r#"{"alg": "HS256", "secret": "change-me"}"#)?;
    /// let verifier = Verifier::new().key(&key)?;
    /// let token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
    ///     eyJzdWIiOiJ0aGVybW9zdGF0LTFhIiwiZXhwIjo0MTAyNDQ0ODAwLCJ0b3BpY3MiOlsidGVtcGVyYXR1cmUiXX0.\
    ///     c5yLjctR1vHZ4XDQSzMPiidIEZUUIa7gip-Q7jRtTbE";
    /// let now = mqtt_policy_sdk::log::now_unix_secs();
    /// let claims = verifier.verify(token, now).map_err(|e| e.to_string())?;
    /// assert_eq!(claims["sub"], "thermostat-1a");
    /// // Expired in 2100, one second after `exp` plus the 30 s leeway:
    /// assert_eq!(verifier.verify(token, 4_102_444_831), Err(JwtError::Expired));
    /// # Ok::<(), String>(())
    /// ```
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<Claims, JwtError> {
        if token.len() > self.max_token_bytes {
            return Err(JwtError::TooLarge(token.len()));
        }
        if let Some(r) = &self.remembered
            && let Some(claims) = r.claims(token)
        {
            let checked = self.check_claims(claims, now_secs);
            if checked.is_err() {
                // Expired (or refused by a rule changed since): not kept.
                r.forget(Some(token));
            }
            return checked;
        }
        let header = parse_header(token)?;
        let mut last = JwtError::BadSignature;
        for key in self.candidates(&header)? {
            // jsonwebtoken checks the algorithm and signature only; every
            // claim rule is applied below, on the same claims it parsed.
            let mut validation = Validation::new(key.alg);
            validation.validate_exp = false;
            validation.validate_nbf = false;
            validation.validate_aud = false;
            validation.required_spec_claims.clear();
            match jsonwebtoken::decode::<UniqueMap>(token, &key.decoding, &validation) {
                Ok(data) => {
                    let claims = self.check_claims(data.claims.0, now_secs)?;
                    if let Some(r) = &self.remembered {
                        r.remember(token, &claims);
                    }
                    return Ok(claims);
                }
                Err(e) => match e.kind() {
                    ErrorKind::InvalidSignature => last = JwtError::BadSignature,
                    // Keys are probed at load, so these are not expected; a
                    // key the backend cannot use verifies nothing.
                    ErrorKind::InvalidKeyFormat
                    | ErrorKind::InvalidEcdsaKey
                    | ErrorKind::InvalidEddsaKey
                    | ErrorKind::InvalidRsaKey(_) => last = JwtError::BadSignature,
                    _ => return Err(JwtError::Malformed(e.to_string())),
                },
            }
        }
        Err(last)
    }

    fn check_claims(&self, claims: Claims, now: u64) -> Result<Claims, JwtError> {
        if let Some(issuers) = &self.issuers {
            match claims.get("iss") {
                None => return Err(JwtError::MissingClaim("iss".into())),
                // RFC 7519 §4.1.1: one StringOrURI. An array is not an issuer,
                // even one containing ours.
                Some(Value::String(iss)) if issuers.iter().any(|i| i == iss) => {}
                Some(_) => return Err(JwtError::WrongIssuer),
            }
        }
        match (&self.audiences, claims.get("aud")) {
            (Some(_), None) => return Err(JwtError::MissingClaim("aud".into())),
            (Some(ours), Some(aud)) => {
                let named = audience_values(aud)?;
                if !named.iter().any(|a| ours.iter().any(|o| o == a)) {
                    return Err(JwtError::WrongAudience);
                }
            }
            // RFC 7519 §4.1.3: a recipient that does not identify itself with
            // a value in a present `aud` must reject the token.
            (None, Some(aud)) => {
                audience_values(aud)?;
                if !self.accept_any_audience {
                    return Err(JwtError::WrongAudience);
                }
            }
            (None, None) => {}
        }
        self.check_times(claims, now)
    }

    fn check_times(&self, claims: Claims, now: u64) -> Result<Claims, JwtError> {
        let number = |name: &str| -> Result<Option<u64>, JwtError> {
            match claims.get(name) {
                None => Ok(None),
                Some(v) => v
                    .as_u64()
                    .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
                    .map(Some)
                    .ok_or_else(|| JwtError::Malformed(format!("{name} is not a number"))),
            }
        };
        match number("exp")? {
            Some(exp) if exp.saturating_add(self.leeway_secs) <= now => {
                return Err(JwtError::Expired);
            }
            None if self.require_exp => return Err(JwtError::MissingClaim("exp".into())),
            _ => {}
        }
        let latest = now.saturating_add(self.leeway_secs);
        if let Some(nbf) = number("nbf")?
            && nbf > latest
        {
            return Err(JwtError::NotYetValid);
        }
        if let Some(iat) = number("iat")?
            && iat > latest
        {
            return Err(JwtError::IssuedInFuture);
        }
        Ok(claims)
    }
}

/// The audiences an `aud` claim names: one string or an array of strings.
fn audience_values(aud: &Value) -> Result<Vec<&str>, JwtError> {
    match aud {
        Value::String(a) => Ok(vec![a.as_str()]),
        Value::Array(items) => items
            .iter()
            .map(|v| v.as_str().ok_or(JwtError::WrongAudience))
            .collect(),
        _ => Err(JwtError::WrongAudience),
    }
}

/// One JWK of a key set: `Ok(None)` for a key not meant for verifying
/// signatures.
fn jwk_key(index: usize, jwk: &Value) -> Result<Option<Key>, String> {
    let Some(member) = jwk.as_object() else {
        return Err(format!("jwks key {index}: not a JSON object"));
    };
    let kid = match member.get("kid") {
        None => None,
        Some(Value::String(kid)) => Some(kid.as_str()),
        Some(_) => return Err(format!("jwks key {index}: \"kid\" is not a string")),
    };
    let what = |m: &str| match kid {
        Some(kid) => format!("jwks key {index} (kid \"{kid}\"): {m}"),
        None => format!("jwks key {index}: {m}"),
    };
    let text = |name: &str| -> Result<Option<&str>, String> {
        match member.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(_) => Err(what(&format!("\"{name}\" is not a string"))),
        }
    };
    let bytes = |name: &str| -> Result<Vec<u8>, String> {
        let value = text(name)?.ok_or_else(|| what(&format!("missing \"{name}\"")))?;
        URL_SAFE_NO_PAD
            .decode(value)
            .map_err(|_| what(&format!("\"{name}\" is not unpadded base64url")))
    };
    // Encryption keys sit beside signing keys in some published sets
    // (Keycloak's RSA-OAEP key, for one); they are not ours to use.
    if text("use")?.is_some_and(|u| u != "sig") {
        return Ok(None);
    }
    if let Some(ops) = member.get("key_ops") {
        let ops = ops
            .as_array()
            .ok_or_else(|| what("\"key_ops\" is not an array"))?;
        if !ops.iter().any(|op| op == "verify") {
            return Ok(None);
        }
    }
    let kty = text("kty")?.ok_or_else(|| what("missing \"kty\""))?;
    if kty == "oct" {
        return Err(what(
            "symmetric (\"oct\") keys are refused in a jwks: a published key set must not \
             carry secrets; configure HMAC secrets under \"keys\"",
        ));
    }
    if let Some(private) = ["d", "p", "q", "dp", "dq", "qi", "oth"]
        .iter()
        .find(|m| member.contains_key(**m))
    {
        return Err(what(&format!(
            "holds private key material (\"{private}\"); a jwks lists public keys only"
        )));
    }
    let alg = text("alg")?;
    // The algorithm a key type and curve imply, checked against `alg`.
    let implied = |expected: Algorithm, of: &str| -> Result<Algorithm, String> {
        match alg {
            Some(a) if find_alg(a) != Some(expected) => {
                Err(what(&format!("alg \"{a}\" does not fit {of}")))
            }
            _ => Ok(expected),
        }
    };
    let (alg, decoding) = match kty {
        "RSA" => {
            let alg = match alg {
                None => {
                    return Err(what(
                        "RSA keys need \"alg\": RS256 and PS256 (and their 384/512 variants) \
                         share the key type, so the algorithm cannot be inferred",
                    ));
                }
                Some(a) => match find_alg(a) {
                    Some(alg) if is_rsa(alg) => alg,
                    _ => return Err(what(&format!("alg \"{a}\" does not fit an RSA key"))),
                },
            };
            let (n, e) = (bytes("n")?, bytes("e")?);
            check_rsa(&n, &e).map_err(|m| what(&m))?;
            (alg, DecodingKey::from_rsa_raw_components(&n, &e))
        }
        "EC" => {
            let crv = text("crv")?.ok_or_else(|| what("missing \"crv\""))?;
            let (alg, len) = match crv {
                "P-256" => (implied(Algorithm::ES256, "curve P-256")?, 32),
                "P-384" => (implied(Algorithm::ES384, "curve P-384")?, 48),
                other => {
                    return Err(what(&format!(
                        "EC curve \"{other}\" is not supported (P-256, P-384)"
                    )));
                }
            };
            let (x, y) = (bytes("x")?, bytes("y")?);
            if x.len() != len || y.len() != len {
                return Err(what(&format!("x and y must be {len} bytes each for {crv}")));
            }
            // An uncompressed SEC1 point: 0x04, x, y.
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(0x04);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            (alg, DecodingKey::from_ec_der(&point))
        }
        "OKP" => {
            let crv = text("crv")?.ok_or_else(|| what("missing \"crv\""))?;
            if crv != "Ed25519" {
                return Err(what(&format!(
                    "OKP curve \"{crv}\" is not supported (Ed25519)"
                )));
            }
            let alg = implied(Algorithm::EdDSA, "curve Ed25519")?;
            (alg, DecodingKey::from_ed_der(&bytes("x")?))
        }
        other => return Err(what(&format!("unsupported kty \"{other}\""))),
    };
    probe(alg, &decoding).map_err(|m| what(&m))?;
    Ok(Some(Key {
        kid: kid.map(str::to_owned),
        alg,
        decoding,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::EncodingKey;
    use jsonwebtoken::jwk::Jwk;

    // Test-only keys, made once with `openssl genpkey`.
    const RSA_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQDK/I+fpzzuI7qX
PQjFhP85AzxqM0/9preQ4nynf7DeQ+3+oWd0HPWG7kEM+Z7HD6ZpVQ8lprMJHYjH
SGvBpHpaWscxvWQcDNCU+vl6caiUc+E1VtlUPyLOY1S1jAgWghIM337c6XkeGQ9K
/mpfr9fCv5UhQzww1ZQHuc3cl3hSCM+5PR4HywZx/hs/i28KPACyUgeSyjoHIhoa
z7XbPhjKw2XuIx+sMZSIVgiALNmSFTxev2jGdxIyPexIvdJ+KBQB7GWIVtoNRUX1
yynuSpjGo0KK02JsjWliOYVlTgnCuNayRzrw1/kc9kWWUyuhyXEe8cZ2q4yL2dz3
yBAGGemBAgMBAAECggEAEixdgXo8GsgJHxxASkrXfNe803dHnJqOCcM1TNvCTov/
ZVI3DG7BTrTLDynUHNdaW0jZw9GyaskBo3Ho79vVdnx1JA9kRJyjGguERYGiibP8
QEXHzGKgr6C2B1EDslwv2IYz+fxPMzIkK98uT+XS5+U2KVW3MFoW2EA63ZqUE6f8
Va5oc7mzmkQJxvr5U7cOPTHVrH1h/tuAylfLxzikV0F1YUlUmwTMP5LKjZL7OlgC
EnLAyeNpaejDrJRO6DxzjPm15DdtRPMSSdvw5V2G9FCpcWdf1wB36V2FMiMgd7k8
77EUg/C12LO+2I1po5ZG3cKbmvJ+2ax4LVOf4I6YqQKBgQD4MTF890++A6Je+bU5
ukUmruUnGN7NqtgVKOjbi5skGhTrbT8cKUZzf/a0t3j7uc2dLam2MFag5/CxTY0l
fpcg8yoY/Tg2+6V0MG/GI8WiVoNIF5vRlTlElWPpmqzXmEIWt5fmshheVfGB817j
DENacuJXA4bMVV+h2s3peTEJjQKBgQDRX05bDdA9BfH5Wq5Ws/g/8cB6XhTDdSiM
bF4tDhBbEqPZQexUeUfJsNOjySjCq76xNoCliOt78Z2X8S2DX4l0ULHQBrAwFkGL
yon5xzqJlm1YXHM4KxA3Ic6gBEtvsOEiliNxFXFRz03oeB60nMUi3Xj7izkXYOTT
b1wMO8fQxQKBgA8+LjTnl30rCfjdSzUNbJvQmABLtbtZ58V86rg5HcEc3PYMkpiv
LEWBsWwt7H9BTRB/MnIfC+L7+7tX8PhBixSZ+pboTmCKGgJFy0eXANdUiuGNmaNI
j+jXZ/h76GuhTUXJ5sljXL3Gd3usr8IwCZ7veVkwvUGlaKcvIgBZ0hotAoGBAMxL
vt1CIUsqHe49+ZdIjJd4gWPloUUHcMV0iIBWFMeI7K/1j3Dt1oqLLDfI9SjfBHdO
w0DC1WRfYnL8NnjWI/2HL7nYjNqfHN4Wh4NeT1QpoBB0RUktW+kv57pj9mfJpCRn
c7XIQoadTVvkubFqt0FJ8d8g/lg9h4p4Qsz9GAAxAoGACcM4/JjjGV/SO/kz1BkB
H3ABW2WKSWntKJ2l4TcwXs5ux+e5LRSufckEdEmbrSgQBffyrAiWc4hygMzbeY/1
sDV5QV7UGkJlBk56+q+rbWQmdE+vZwWFZxmSP3wjkpe+K0R80KaeQUtwB0wu3TCo
jS5fQffzvEQlD2KZutDySmo=
-----END PRIVATE KEY-----
";
    const RSA_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAyvyPn6c87iO6lz0IxYT/
OQM8ajNP/aa3kOJ8p3+w3kPt/qFndBz1hu5BDPmexw+maVUPJaazCR2Ix0hrwaR6
WlrHMb1kHAzQlPr5enGolHPhNVbZVD8izmNUtYwIFoISDN9+3Ol5HhkPSv5qX6/X
wr+VIUM8MNWUB7nN3Jd4UgjPuT0eB8sGcf4bP4tvCjwAslIHkso6ByIaGs+12z4Y
ysNl7iMfrDGUiFYIgCzZkhU8Xr9oxncSMj3sSL3SfigUAexliFbaDUVF9csp7kqY
xqNCitNibI1pYjmFZU4JwrjWskc68Nf5HPZFllMroclxHvHGdquMi9nc98gQBhnp
gQIDAQAB
-----END PUBLIC KEY-----
";
    const RSA_1024_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC75N75vqj/lRAVLJluuS+g+u6l
RSrV40TIUCzsGsZK+bpt1Ontd7FV+Xii17m9JD9grZHYB0h+NP+FbWMBMcPYuzj+
k9ZVaMa88Q4EsOMab8gVvTTSbn4c2h1zFyej9qkOTXhsMQrSsu2Ds9oIvb3hc945
keB6et/J0kyw1zaGHQIDAQAB
-----END PUBLIC KEY-----
";
    const EC256_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgP+wPPvK3vVDKbD4d
GbU8Tnl0PYec0gWpK/CshMELDl2hRANCAASbm7fssLIa6zgEUWbBjL6K2CaU+Kxd
8BWm3aaO+AvcxctgC0gd25CvO3RyBQkeUSFvhDY/kMsCySe4FDjd2HEJ
-----END PRIVATE KEY-----
";
    const EC256_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEm5u37LCyGus4BFFmwYy+itgmlPis
XfAVpt2mjvgL3MXLYAtIHduQrzt0cgUJHlEhb4Q2P5DLAsknuBQ43dhxCQ==
-----END PUBLIC KEY-----
";
    const EC384_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIG2AgEAMBAGByqGSM49AgEGBSuBBAAiBIGeMIGbAgEBBDCp2h3M+eVdhK2DOmhS
PPKWXmmArHS3oRrr+GhdKqx6W1uIvBVr6jLANY1ztJa38JShZANiAARgubCUWwup
3ewO2j/BCDTUsbTB3eJtkvQcXLfHWRu+ISTk6ZDiss2kmfebG/2roCAtGA30UkDo
5BMklA0DcSbW7tQX78JBbpboEKMfLl4bFPMQfyiZCxhcC1urC4YqRNc=
-----END PRIVATE KEY-----
";
    const EC384_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEYLmwlFsLqd3sDto/wQg01LG0wd3ibZL0
HFy3x1kbviEk5OmQ4rLNpJn3mxv9q6AgLRgN9FJA6OQTJJQNA3Em1u7UF+/CQW6W
6BCjHy5eGxTzEH8omQsYXAtbqwuGKkTX
-----END PUBLIC KEY-----
";
    const ED25519_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEICtfz5D7WkWpuKY3v+LCVw9ikIEc2GfohVeRxjaePUMa
-----END PRIVATE KEY-----
";
    const ED25519_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MCowBQYDK2VwAyEAV/5/wpJHcY4QkFyM5twd3gGBhet/Qvftw5hafgtBVv8=
-----END PUBLIC KEY-----
";

    fn hs(secret: &str) -> Verifier {
        Verifier::new()
            .key(&secret_key(None, secret))
            .expect("valid key")
    }

    fn secret_key(kid: Option<&str>, secret: &str) -> KeyConfig {
        KeyConfig {
            alg: "HS256".into(),
            kid: kid.map(Into::into),
            secret: Some(secret.into()),
            secret_base64: None,
            public_key_pem: None,
        }
    }

    fn pem_key(alg: &str, kid: Option<&str>, pem: &str) -> KeyConfig {
        KeyConfig {
            alg: alg.into(),
            kid: kid.map(Into::into),
            secret: None,
            secret_base64: None,
            public_key_pem: Some(pem.into()),
        }
    }

    fn sign(header: &str, claims: &str, secret: &str) -> String {
        use jsonwebtoken::{Header, encode};
        let h: Header = serde_json::from_str(header).expect("header");
        let c: Value = serde_json::from_str(claims).expect("claims");
        encode(&h, &c, &EncodingKey::from_secret(secret.as_bytes())).expect("sign")
    }

    /// A token carrying exactly these header and claims texts, signed for `alg`.
    fn raw(header: &str, claims: &str, alg: Algorithm, key: &EncodingKey) -> String {
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims)
        );
        let signature = jsonwebtoken::crypto::sign(input.as_bytes(), key, alg).expect("sign");
        format!("{input}.{signature}")
    }

    fn hs_raw(header: &str, claims: &str, secret: &str) -> String {
        raw(
            header,
            claims,
            Algorithm::HS256,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
    }

    fn private(alg: Algorithm) -> EncodingKey {
        match alg {
            Algorithm::ES256 => EncodingKey::from_ec_pem(EC256_PRIVATE.as_bytes()),
            Algorithm::ES384 => EncodingKey::from_ec_pem(EC384_PRIVATE.as_bytes()),
            Algorithm::EdDSA => EncodingKey::from_ed_pem(ED25519_PRIVATE.as_bytes()),
            _ => EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()),
        }
        .expect("test private key")
    }

    fn signed(alg: Algorithm, kid: Option<&str>, claims: &str) -> String {
        let header = match kid {
            Some(kid) => format!(r#"{{"alg":"{}","kid":"{kid}"}}"#, alg_name(alg)),
            None => format!(r#"{{"alg":"{}"}}"#, alg_name(alg)),
        };
        raw(&header, claims, alg, &private(alg))
    }

    /// The public JWK of a test key, as JSON.
    fn jwk(alg: Algorithm) -> Value {
        let jwk = Jwk::from_encoding_key(&private(alg), alg).expect("jwk");
        serde_json::to_value(&jwk).expect("jwk json")
    }

    fn with(mut v: Value, changes: Value) -> Value {
        if let (Some(o), Some(c)) = (v.as_object_mut(), changes.as_object()) {
            for (k, x) in c {
                if x.is_null() {
                    o.remove(k);
                } else {
                    o.insert(k.clone(), x.clone());
                }
            }
        }
        v
    }

    #[test]
    fn hs256_round_trip_and_time_checks() {
        let v = hs("s3cret");
        let ok = sign(r#"{"alg":"HS256"}"#, r#"{"sub":"d1","exp":2000}"#, "s3cret");
        assert_eq!(
            v.verify(&ok, 1000).map(|c| c["sub"].clone()),
            Ok(Value::from("d1"))
        );
        assert_eq!(v.verify(&ok, 2030), Err(JwtError::Expired));
        assert!(v.verify(&ok, 2029).is_ok(), "inside leeway");
        let early = sign(r#"{"alg":"HS256"}"#, r#"{"exp":9000,"nbf":5000}"#, "s3cret");
        assert_eq!(v.verify(&early, 1000), Err(JwtError::NotYetValid));
        let no_exp = sign(r#"{"alg":"HS256"}"#, r#"{"sub":"x"}"#, "s3cret");
        assert_eq!(
            v.verify(&no_exp, 1000),
            Err(JwtError::MissingClaim("exp".into()))
        );
        let wrong = sign(r#"{"alg":"HS256"}"#, r#"{"exp":2000}"#, "other");
        assert_eq!(v.verify(&wrong, 1000), Err(JwtError::BadSignature));
    }

    #[test]
    fn remembered_tokens_still_meet_every_claim_rule() {
        let v = hs("s3cret").remember_verified(true);
        let hits = |v: &Verifier| {
            v.remembered
                .as_ref()
                .map_or(0, |r| r.hits.load(std::sync::atomic::Ordering::Relaxed))
        };
        let ok = sign(r#"{"alg":"HS256"}"#, r#"{"sub":"d1","exp":2000}"#, "s3cret");
        assert!(v.verify(&ok, 1000).is_ok());
        assert_eq!((v.remembered_tokens(), hits(&v)), (1, 0));
        // Remembered, yet expiry is checked on every verify.
        assert_eq!(
            v.verify(&ok, 1500).map(|c| c["sub"].clone()),
            Ok(Value::from("d1"))
        );
        assert_eq!(hits(&v), 1, "answered from memory");
        assert_eq!(v.verify(&ok, 2030), Err(JwtError::Expired));
        assert_eq!(hits(&v), 2);
        assert_eq!(v.remembered_tokens(), 0, "an expired token is forgotten");
        assert!(v.verify(&ok, 1000).is_ok());
        // Rules that change after verifying still apply to remembered tokens.
        let v = v.issuers(vec!["https://idp.example/".into()]);
        assert_eq!(
            v.verify(&ok, 1000),
            Err(JwtError::MissingClaim("iss".into()))
        );
        assert_eq!(hits(&v), 3);
        // New keys forget everything: a token naming a `kid` that now has a
        // key of its own is verified against that key.
        let v = hs("s3cret").remember_verified(true);
        let named = sign(r#"{"alg":"HS256","kid":"k2"}"#, r#"{"exp":2000}"#, "s3cret");
        assert!(v.verify(&named, 1000).is_ok());
        assert_eq!(v.remembered_tokens(), 1);
        let v = v.key(&secret_key(Some("k2"), "other")).expect("key");
        assert_eq!(v.remembered_tokens(), 0);
        assert_eq!(v.verify(&named, 1000), Err(JwtError::BadSignature));
        let v = hs("s3cret").remember_verified(true);
        assert!(v.verify(&ok, 1000).is_ok());
        // Only the exact bytes: the same token with its signature altered is
        // verified (and refused), not looked up.
        // (A character inside the signature: the last one carries padding bits.)
        let mut forged = ok.clone();
        let at = forged.len() - 10;
        let swap = if forged[at..].starts_with('A') {
            "B"
        } else {
            "A"
        };
        forged.replace_range(at..=at, swap);
        assert_eq!(v.verify(&forged, 1000), Err(JwtError::BadSignature));
        let wrong = sign(r#"{"alg":"HS256"}"#, r#"{"exp":2000}"#, "other");
        assert_eq!(v.verify(&wrong, 1000), Err(JwtError::BadSignature));
        // Refused tokens are not remembered.
        let early = sign(r#"{"alg":"HS256"}"#, r#"{"exp":9000,"nbf":5000}"#, "s3cret");
        assert_eq!(v.verify(&early, 1000), Err(JwtError::NotYetValid));
        assert_eq!(v.remembered_tokens(), 1);
        // Off by default.
        let off = hs("s3cret");
        assert!(off.verify(&ok, 1000).is_ok());
        assert_eq!(off.remembered_tokens(), 0);
    }

    #[test]
    fn remembered_tokens_are_bounded() {
        let v = hs("s3cret").remember_verified(true);
        // Small tokens: the count bound. Full, the memory starts over.
        for i in 0..(REMEMBER_MAX_TOKENS * 2) {
            let t = sign(
                r#"{"alg":"HS256"}"#,
                &format!(r#"{{"sub":"d{i}","exp":2000}}"#),
                "s3cret",
            );
            assert!(v.verify(&t, 1000).is_ok());
            assert_eq!(v.remembered_tokens(), i % REMEMBER_MAX_TOKENS + 1);
        }
        // ~3 KiB tokens: the byte bound comes first.
        let v = hs("s3cret").remember_verified(true);
        let pad = "p".repeat(2200);
        let mut sizes = 0;
        for i in 0..40 {
            let t = sign(
                r#"{"alg":"HS256"}"#,
                &format!(r#"{{"sub":"d{i}","pad":"{pad}","exp":2000}}"#),
                "s3cret",
            );
            assert!(t.len() > 2900 && t.len() <= REMEMBER_MAX_TOKEN_BYTES);
            assert!(v.verify(&t, 1000).is_ok());
            sizes = if sizes + t.len() > REMEMBER_MAX_BYTES {
                t.len()
            } else {
                sizes + t.len()
            };
            let kept = v.remembered.as_ref().map_or(0, |r| r.tokens().bytes);
            assert_eq!(kept, sizes, "token {i}");
            assert!(kept <= REMEMBER_MAX_BYTES);
        }
        assert!(v.remembered_tokens() < REMEMBER_MAX_TOKENS);
        // A token longer than the per-token bound verifies but is not kept.
        let pad = "x".repeat(REMEMBER_MAX_TOKEN_BYTES);
        let big = sign(
            r#"{"alg":"HS256"}"#,
            &format!(r#"{{"pad":"{pad}","exp":2000}}"#),
            "s3cret",
        );
        let before = v.remembered_tokens();
        assert!(v.verify(&big, 1000).is_ok());
        assert_eq!(v.remembered_tokens(), before);
    }

    #[test]
    fn alg_none_and_unknown_kid_are_rejected() {
        let v = hs("s3cret");
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(r#"{"sub":"x","exp":99999999999}"#);
        let none = format!("{header}.{body}.");
        assert!(matches!(
            v.verify(&none, 0),
            Err(JwtError::UnsupportedAlgorithm(_))
        ));
        // Only keys with a kid: a token naming another kid has no key.
        let named = Verifier::new()
            .key(&secret_key(Some("k1"), "s3cret"))
            .expect("key");
        let kid = sign(
            r#"{"alg":"HS256","kid":"nowhere"}"#,
            r#"{"exp":2000}"#,
            "s3cret",
        );
        assert!(matches!(
            named.verify(&kid, 0),
            Err(JwtError::UnknownKey(_))
        ));
        let hs384 = sign(r#"{"alg":"HS384"}"#, r#"{"exp":2000}"#, "s3cret");
        assert!(matches!(
            v.verify(&hs384, 0),
            Err(JwtError::UnsupportedAlgorithm(_))
        ));
        assert!(matches!(v.verify("a.b", 0), Err(JwtError::Malformed(_))));
        assert!(matches!(
            v.verify(&"x".repeat(MAX_TOKEN_BYTES + 1), 0),
            Err(JwtError::TooLarge(_))
        ));
    }

    #[test]
    fn issuer_and_audience() {
        let v = hs("k")
            .issuers(vec!["https://idp".into()])
            .audiences(vec!["mqtt".into()]);
        let good = sign(
            r#"{"alg":"HS256"}"#,
            r#"{"exp":2000,"iss":"https://idp","aud":"mqtt"}"#,
            "k",
        );
        assert!(v.verify(&good, 1000).is_ok());
        let iss = sign(
            r#"{"alg":"HS256"}"#,
            r#"{"exp":2000,"iss":"https://evil","aud":"mqtt"}"#,
            "k",
        );
        assert_eq!(v.verify(&iss, 1000), Err(JwtError::WrongIssuer));
        let aud = sign(
            r#"{"alg":"HS256"}"#,
            r#"{"exp":2000,"iss":"https://idp","aud":"web"}"#,
            "k",
        );
        assert_eq!(v.verify(&aud, 1000), Err(JwtError::WrongAudience));
    }

    #[test]
    fn configured_issuer_and_audience_are_required() {
        let v = hs("k")
            .issuers(vec!["https://idp".into()])
            .audiences(vec!["mqtt".into()]);
        let no_iss = sign(r#"{"alg":"HS256"}"#, r#"{"exp":2000,"aud":"mqtt"}"#, "k");
        assert_eq!(
            v.verify(&no_iss, 1000),
            Err(JwtError::MissingClaim("iss".into()))
        );
        let no_aud = sign(
            r#"{"alg":"HS256"}"#,
            r#"{"exp":2000,"iss":"https://idp"}"#,
            "k",
        );
        assert_eq!(
            v.verify(&no_aud, 1000),
            Err(JwtError::MissingClaim("aud".into()))
        );
        let wrong_type = sign(
            r#"{"alg":"HS256"}"#,
            r#"{"exp":2000,"iss":1,"aud":"mqtt"}"#,
            "k",
        );
        assert!(v.verify(&wrong_type, 1000).is_err());
        let aud_list = sign(
            r#"{"alg":"HS256"}"#,
            r#"{"exp":2000,"iss":"https://idp","aud":["web","mqtt"]}"#,
            "k",
        );
        assert!(
            v.verify(&aud_list, 1000).is_ok(),
            "aud may be a list containing ours"
        );
        let aud_mixed = hs_raw(
            r#"{"alg":"HS256"}"#,
            r#"{"exp":2000,"iss":"https://idp","aud":["mqtt",7]}"#,
            "k",
        );
        assert_eq!(v.verify(&aud_mixed, 1000), Err(JwtError::WrongAudience));
    }

    #[test]
    fn iss_must_be_one_string_not_an_array_containing_ours() {
        let v = hs("k").issuers(vec!["https://idp".into()]);
        for iss in [r#"["https://idp"]"#, r#"["https://evil","https://idp"]"#] {
            let t = hs_raw(
                r#"{"alg":"HS256"}"#,
                &format!(r#"{{"exp":2000,"iss":{iss}}}"#),
                "k",
            );
            assert_eq!(v.verify(&t, 1000), Err(JwtError::WrongIssuer), "{iss}");
        }
    }

    #[test]
    fn any_crit_header_is_refused() {
        let v = hs("k");
        let claims = r#"{"exp":2000}"#;
        for header in [
            // An extension we do not understand, present in the header.
            r#"{"alg":"HS256","crit":["x-ext"],"x-ext":true}"#,
            r#"{"alg":"HS256","crit":["exp"]}"#,
            // Malformed: empty, not an array, not strings.
            r#"{"alg":"HS256","crit":[]}"#,
            r#"{"alg":"HS256","crit":"x-ext"}"#,
            r#"{"alg":"HS256","crit":[1]}"#,
        ] {
            let t = hs_raw(header, claims, "k");
            assert!(
                matches!(v.verify(&t, 1000), Err(JwtError::CriticalHeader(_))),
                "{header}"
            );
        }
    }

    #[test]
    fn iat_in_the_future_is_refused() {
        let v = hs("k");
        let at = |iat: &str| {
            hs_raw(
                r#"{"alg":"HS256"}"#,
                &format!(r#"{{"exp":9000,"iat":{iat}}}"#),
                "k",
            )
        };
        assert_eq!(v.verify(&at("1031"), 1000), Err(JwtError::IssuedInFuture));
        assert!(v.verify(&at("1030"), 1000).is_ok(), "inside leeway");
        assert!(v.verify(&at("900"), 1000).is_ok());
        assert!(matches!(
            v.verify(&at(r#""soon""#), 1000),
            Err(JwtError::Malformed(_))
        ));
    }

    #[test]
    fn aud_without_a_configured_audience_needs_the_opt_out() {
        let claims = r#"{"exp":2000,"aud":"someone-else"}"#;
        let t = hs_raw(r#"{"alg":"HS256"}"#, claims, "k");
        assert_eq!(hs("k").verify(&t, 1000), Err(JwtError::WrongAudience));
        assert!(hs("k").accept_any_audience(true).verify(&t, 1000).is_ok());
        let list = hs_raw(r#"{"alg":"HS256"}"#, r#"{"exp":2000,"aud":["a","b"]}"#, "k");
        assert_eq!(hs("k").verify(&list, 1000), Err(JwtError::WrongAudience));
        let bad = hs_raw(r#"{"alg":"HS256"}"#, r#"{"exp":2000,"aud":5}"#, "k");
        assert_eq!(
            hs("k").accept_any_audience(true).verify(&bad, 1000),
            Err(JwtError::WrongAudience),
            "the opt-out still wants a well-formed aud"
        );
        let none = hs_raw(r#"{"alg":"HS256"}"#, r#"{"exp":2000}"#, "k");
        assert!(hs("k").verify(&none, 1000).is_ok());
        // Configured audiences win over the opt-out.
        let v = hs("k")
            .audiences(vec!["mqtt".into()])
            .accept_any_audience(true);
        assert_eq!(v.verify(&t, 1000), Err(JwtError::WrongAudience));
    }

    #[test]
    fn leeway_is_capped() {
        let v = hs("k").leeway_secs(100_000);
        let t = hs_raw(r#"{"alg":"HS256"}"#, r#"{"exp":1000}"#, "k");
        assert!(v.verify(&t, 1000 + MAX_LEEWAY_SECS - 1).is_ok());
        assert_eq!(v.verify(&t, 1000 + MAX_LEEWAY_SECS), Err(JwtError::Expired));
    }

    #[test]
    fn kidless_keys_serve_tokens_whose_kid_names_no_key() {
        // Auth0, Azure AD and Cognito always send a kid.
        let t = hs_raw(
            r#"{"alg":"HS256","kid":"idp-2024"}"#,
            r#"{"exp":2000}"#,
            "s3cret",
        );
        assert!(hs("s3cret").verify(&t, 1000).is_ok());

        let v = Verifier::new()
            .key(&secret_key(Some("a"), "secret-a"))
            .and_then(|v| v.key(&secret_key(None, "secret-b")))
            .expect("keys");
        let token = |kid: Option<&str>, secret: &str| {
            let header = match kid {
                Some(kid) => format!(r#"{{"alg":"HS256","kid":"{kid}"}}"#),
                None => r#"{"alg":"HS256"}"#.to_string(),
            };
            hs_raw(&header, r#"{"exp":2000}"#, secret)
        };
        assert!(v.verify(&token(Some("a"), "secret-a"), 1000).is_ok());
        assert_eq!(
            v.verify(&token(Some("a"), "secret-b"), 1000),
            Err(JwtError::BadSignature),
            "a kid naming a key uses only that key"
        );
        assert!(v.verify(&token(Some("zzz"), "secret-b"), 1000).is_ok());
        assert!(v.verify(&token(None, "secret-b"), 1000).is_ok());
        assert_eq!(
            v.verify(&token(None, "secret-a"), 1000),
            Err(JwtError::BadSignature),
            "a key with a kid serves only tokens naming it"
        );
        // The fallback stays within the algorithm: no kid-less ES256 key here.
        let es = signed(Algorithm::ES256, Some("zzz"), r#"{"exp":2000}"#);
        assert!(matches!(
            v.verify(&es, 1000),
            Err(JwtError::UnsupportedAlgorithm(_))
        ));
    }

    #[test]
    fn token_cap_is_configurable_up_to_the_mqtt_limit() {
        let big = hs_raw(
            r#"{"alg":"HS256"}"#,
            &format!(r#"{{"exp":2000,"pad":"{}"}}"#, "a".repeat(10_000)),
            "k",
        );
        assert!(big.len() > MAX_TOKEN_BYTES);
        assert_eq!(
            hs("k").verify(&big, 1000),
            Err(JwtError::TooLarge(big.len()))
        );
        let roomy = hs("k").max_token_bytes(16 * 1024).expect("in range");
        assert!(roomy.verify(&big, 1000).is_ok());
        assert!(hs("k").max_token_bytes(TOKEN_BYTES_LIMIT).is_ok());
        for bad in [0, TOKEN_BYTES_LIMIT + 1] {
            let err = hs("k").max_token_bytes(bad).err().unwrap_or_default();
            assert!(err.contains("max_token_bytes"), "{err}");
        }
    }

    #[test]
    fn eddsa_pss_and_es384_keys_from_pem() {
        let claims = r#"{"exp":2000}"#;
        for (alg, name, pem) in [
            (Algorithm::EdDSA, "EdDSA", ED25519_PUBLIC),
            (Algorithm::PS256, "PS256", RSA_PUBLIC),
            (Algorithm::PS384, "PS384", RSA_PUBLIC),
            (Algorithm::PS512, "PS512", RSA_PUBLIC),
            (Algorithm::ES384, "ES384", EC384_PUBLIC),
        ] {
            let v = Verifier::new().key(&pem_key(name, None, pem)).expect(name);
            assert!(v.verify(&signed(alg, None, claims), 1000).is_ok(), "{name}");
        }
        // Each key stays bound to its algorithm: the same RSA key configured
        // for PS256 does not verify RS256, and the other way round.
        let ps = Verifier::new()
            .key(&pem_key("PS256", None, RSA_PUBLIC))
            .expect("ps256");
        assert!(matches!(
            ps.verify(&signed(Algorithm::RS256, None, claims), 1000),
            Err(JwtError::UnsupportedAlgorithm(_))
        ));
        let rs = Verifier::new()
            .key(&pem_key("RS256", None, RSA_PUBLIC))
            .expect("rs256");
        assert!(
            rs.verify(&signed(Algorithm::RS256, None, claims), 1000)
                .is_ok()
        );
        assert!(matches!(
            rs.verify(&signed(Algorithm::PS256, None, claims), 1000),
            Err(JwtError::UnsupportedAlgorithm(_))
        ));
        // A PS256 signature presented as RS256 fails the signature check.
        let ps_sig = signed(Algorithm::PS256, None, claims);
        let parts: Vec<&str> = ps_sig.split('.').collect();
        let relabelled = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256"}"#),
            parts[1],
            parts[2]
        );
        assert_eq!(rs.verify(&relabelled, 1000), Err(JwtError::BadSignature));
    }

    #[test]
    fn bad_pem_keys_are_refused_at_load() {
        let cases = [
            (pem_key("RS256", Some("k1"), RSA_PRIVATE), "private key"),
            (pem_key("ES256", Some("k1"), EC256_PRIVATE), "private key"),
            (pem_key("RS256", Some("k1"), RSA_1024_PUBLIC), "1024 bits"),
            (pem_key("ES256", Some("k1"), EC384_PUBLIC), "ES256"),
            (
                pem_key("ES256", Some("k1"), ED25519_PUBLIC),
                "public_key_pem",
            ),
            (pem_key("EdDSA", Some("k1"), EC256_PUBLIC), "public_key_pem"),
            (pem_key("PS256", Some("k1"), EC256_PUBLIC), "public_key_pem"),
        ];
        for (config, expected) in cases {
            let err = Verifier::new().key(&config).err().unwrap_or_default();
            assert!(
                err.contains("k1") && err.contains(expected),
                "{config:?}: {err}"
            );
        }
    }

    #[test]
    fn jwks_keys_take_their_algorithm_from_alg_or_curve() {
        let set = serde_json::json!({"keys": [
            with(jwk(Algorithm::PS256), serde_json::json!({"kid": "rsa-pss", "use": "sig"})),
            with(jwk(Algorithm::ES256), serde_json::json!({"kid": "p256", "alg": null})),
            with(jwk(Algorithm::ES384), serde_json::json!({"kid": "p384", "alg": null})),
            with(jwk(Algorithm::EdDSA), serde_json::json!({"kid": "ed", "alg": null})),
            // Not a signing key: skipped, whatever its algorithm.
            with(jwk(Algorithm::RS256), serde_json::json!({"kid": "enc", "use": "enc", "alg": "RSA-OAEP"})),
        ]});
        let claims = r#"{"exp":2000}"#;
        for v in [
            Verifier::new().jwks_value(&set).expect("jwks"),
            Verifier::new().jwks(&set.to_string()).expect("jwks text"),
        ] {
            assert_eq!(v.keys.len(), 4);
            for (alg, kid) in [
                (Algorithm::PS256, "rsa-pss"),
                (Algorithm::ES256, "p256"),
                (Algorithm::ES384, "p384"),
                (Algorithm::EdDSA, "ed"),
            ] {
                let t = signed(alg, Some(kid), claims);
                assert!(v.verify(&t, 1000).is_ok(), "{kid}");
            }
            // RS256 is not PS256, even with the same RSA key.
            let rs = signed(Algorithm::RS256, Some("rsa-pss"), claims);
            assert!(v.verify(&rs, 1000).is_err());
        }
        // A JWKS key without a kid serves tokens of its algorithm.
        let kidless = serde_json::json!({"keys": [jwk(Algorithm::ES256)]});
        let v = Verifier::new().jwks_value(&kidless).expect("jwks");
        assert!(
            v.verify(&signed(Algorithm::ES256, Some("x"), claims), 1000)
                .is_ok()
        );
    }

    #[test]
    fn jwks_refusals_name_the_key() {
        let rsa = with(jwk(Algorithm::RS256), serde_json::json!({"kid": "k1"}));
        let ec = with(jwk(Algorithm::ES256), serde_json::json!({"kid": "k1"}));
        let cases = [
            (
                with(rsa.clone(), serde_json::json!({"alg": null})),
                "need \"alg\"",
            ),
            (
                with(rsa.clone(), serde_json::json!({"alg": "ES256"})),
                "does not fit",
            ),
            (
                with(rsa.clone(), serde_json::json!({"d": "AQAB"})),
                "private",
            ),
            (with(rsa.clone(), serde_json::json!({"n": "AQAB"})), "bits"),
            (
                serde_json::json!({"kty": "oct", "kid": "k1", "alg": "HS256", "k": "c2VjcmV0"}),
                "oct",
            ),
            (
                with(ec.clone(), serde_json::json!({"crv": "P-521"})),
                "P-521",
            ),
            (
                with(ec.clone(), serde_json::json!({"alg": "ES384"})),
                "does not fit",
            ),
            (
                with(ec.clone(), serde_json::json!({"x": "AQAB"})),
                "32 bytes",
            ),
            (
                with(ec.clone(), serde_json::json!({"y": "not base64!"})),
                "base64url",
            ),
            (with(ec.clone(), serde_json::json!({"kty": "XYZ"})), "kty"),
            (
                serde_json::json!({"kty": "OKP", "crv": "Ed25519", "kid": "k1", "x": "AQAB"}),
                "32 bytes",
            ),
            (
                serde_json::json!({"kty": "OKP", "crv": "X25519", "kid": "k1", "x": "AQAB"}),
                "X25519",
            ),
        ];
        for (key, expected) in cases {
            let set = serde_json::json!({"keys": [key]});
            let err = Verifier::new().jwks_value(&set).err().unwrap_or_default();
            assert!(err.contains("k1") && err.contains(expected), "{err}");
        }
        for (set, expected) in [
            (serde_json::json!({"keys": "x"}), "\"keys\" array"),
            (serde_json::json!([1]), "\"keys\" array"),
            (
                serde_json::json!({"keys": [with(ec, serde_json::json!({"use": "enc"}))]}),
                "no signature-verification key",
            ),
        ] {
            let err = Verifier::new().jwks_value(&set).err().unwrap_or_default();
            assert!(err.contains(expected), "{err}");
        }
        assert!(Verifier::new().jwks("{not json").is_err());
    }

    #[test]
    fn duplicate_member_names_are_refused() {
        let v = hs("k");
        let header = hs_raw(r#"{"alg":"HS256","alg":"HS256"}"#, r#"{"exp":2000}"#, "k");
        assert!(matches!(
            v.verify(&header, 1000),
            Err(JwtError::Malformed(_))
        ));
        let claims = hs_raw(r#"{"alg":"HS256"}"#, r#"{"exp":2000,"exp":99999}"#, "k");
        assert!(matches!(
            v.verify(&claims, 3000),
            Err(JwtError::Malformed(_))
        ));
    }

    #[test]
    fn only_the_exact_token_bytes_verify() {
        let v = hs("k");
        let t = hs_raw(r#"{"alg":"HS256"}"#, r#"{"exp":2000}"#, "k");
        assert!(v.verify(&t, 1000).is_ok());
        for bad in [
            format!(" {t}"),
            format!("{t}\n"),
            format!("{t}="),
            format!("{t}.x"),
        ] {
            assert!(
                matches!(v.verify(&bad, 1000), Err(JwtError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn empty_secrets_are_refused() {
        let empty = KeyConfig {
            alg: "HS256".into(),
            kid: None,
            secret: None,
            secret_base64: Some(String::new()),
            public_key_pem: None,
        };
        assert!(Verifier::new().key(&empty).is_err());
        let plain_empty = KeyConfig {
            secret: Some(String::new()),
            secret_base64: None,
            ..empty
        };
        assert!(Verifier::new().key(&plain_empty).is_err());
    }

    #[test]
    fn bad_key_configs_are_named() {
        let bad = KeyConfig {
            alg: "RS256".into(),
            kid: Some("k1".into()),
            secret: None,
            secret_base64: None,
            public_key_pem: Some("not a pem".into()),
        };
        let err = Verifier::new().key(&bad).err().unwrap_or_default();
        assert!(
            err.contains("k1") && err.contains("public_key_pem"),
            "{err}"
        );
        let none = KeyConfig {
            alg: "none".into(),
            ..bad
        };
        assert!(Verifier::new().key(&none).is_err());
    }

    #[test]
    fn key_material_stays_out_of_debug_output() {
        let key = secret_key(Some("k1"), "very-secret-value");
        let v = Verifier::new().key(&key).expect("key");
        let shown = format!("{key:?} {v:?}");
        assert!(!shown.contains("very-secret-value"), "{shown}");
    }
}

//! JWT verification with safe defaults, built on `jsonwebtoken`'s pure-Rust
//! crypto so it compiles to wasm.
//!
//! - Algorithms: HS256/384/512, RS256/384/512, ES256/384. `alg: none` and
//!   anything else are rejected.
//! - Each key is bound to one algorithm, and a token is only tried against keys
//!   of its header's algorithm: an RSA public key can never be used as an HMAC
//!   secret (algorithm confusion).
//! - A token naming a `kid` is only tried against the key with that id.
//! - `exp` is required by default; `exp` and `nbf` are checked against the
//!   host's clock with a leeway; `iss` and `aud` are checked when configured.

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use serde_json::{Map, Value};

/// Tokens longer than this are rejected before any parsing.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// The verified claims of a token.
pub type Claims = Map<String, Value>;

/// Why a token was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtError {
    TooLarge(usize),
    Malformed(String),
    UnsupportedAlgorithm(String),
    UnknownKey(String),
    BadSignature,
    Expired,
    NotYetValid,
    WrongIssuer,
    WrongAudience,
    MissingClaim(String),
}

impl std::fmt::Display for JwtError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwtError::TooLarge(n) => write!(f, "token is {n} bytes, over {MAX_TOKEN_BYTES}"),
            JwtError::Malformed(m) => write!(f, "malformed token: {m}"),
            JwtError::UnsupportedAlgorithm(a) => write!(f, "algorithm {a} is not accepted"),
            JwtError::UnknownKey(k) => write!(f, "no key for {k}"),
            JwtError::BadSignature => f.write_str("bad signature"),
            JwtError::Expired => f.write_str("token expired"),
            JwtError::NotYetValid => f.write_str("token not yet valid"),
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
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub secret_base64: Option<String>,
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
    leeway_secs: u64,
    require_exp: bool,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Verifier")
            .field("keys", &self.keys.len())
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("leeway_secs", &self.leeway_secs)
            .finish()
    }
}

fn parse_alg(name: &str) -> Result<Algorithm, String> {
    Ok(match name {
        "HS256" => Algorithm::HS256,
        "HS384" => Algorithm::HS384,
        "HS512" => Algorithm::HS512,
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        other => return Err(format!("unsupported key algorithm \"{other}\"")),
    })
}

impl Default for Verifier {
    fn default() -> Self {
        Self::new()
    }
}

impl Verifier {
    /// A verifier with no keys (add some), `exp` required, 30 s leeway.
    pub fn new() -> Self {
        Verifier {
            keys: Vec::new(),
            issuers: None,
            audiences: None,
            leeway_secs: 30,
            require_exp: true,
        }
    }

    /// Add a key from its configuration. Errors name what is wrong.
    pub fn key(mut self, config: &KeyConfig) -> Result<Self, String> {
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
                        use base64::Engine as _;
                        use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
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
                let key = match alg {
                    Algorithm::ES256 | Algorithm::ES384 => DecodingKey::from_ec_pem(pem.as_bytes()),
                    _ => DecodingKey::from_rsa_pem(pem.as_bytes()),
                };
                key.map_err(|e| what(&format!("bad public_key_pem: {e}")))?
            }
        };
        self.keys.push(Key {
            kid: config.kid.clone(),
            alg,
            decoding,
        });
        Ok(self)
    }

    /// Accept only tokens whose `iss` is one of these.
    pub fn issuers(mut self, issuers: Vec<String>) -> Self {
        self.issuers = Some(issuers);
        self
    }

    /// Accept only tokens whose `aud` contains one of these.
    pub fn audiences(mut self, audiences: Vec<String>) -> Self {
        self.audiences = Some(audiences);
        self
    }

    /// Clock skew tolerated on `exp` and `nbf`.
    pub fn leeway_secs(mut self, secs: u64) -> Self {
        self.leeway_secs = secs;
        self
    }

    /// Whether a token without `exp` is rejected (default true).
    pub fn require_exp(mut self, require: bool) -> Self {
        self.require_exp = require;
        self
    }

    pub fn has_keys(&self) -> bool {
        !self.keys.is_empty()
    }

    /// Verify `token` at time `now_secs` (Unix seconds) and return its claims.
    pub fn verify(&self, token: &str, now_secs: u64) -> Result<Claims, JwtError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtError::TooLarge(token.len()));
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
            ErrorKind::Json(_) => {
                JwtError::UnsupportedAlgorithm("in header (missing, none, or unknown)".into())
            }
            _ => JwtError::Malformed(e.to_string()),
        })?;
        let candidates: Vec<&Key> = match &header.kid {
            Some(kid) => self
                .keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid.as_str()))
                .collect(),
            None => self.keys.iter().collect(),
        };
        if candidates.is_empty() {
            return Err(JwtError::UnknownKey(match header.kid {
                Some(kid) => format!("kid \"{kid}\""),
                None => "this token".into(),
            }));
        }
        let mut tried = false;
        let mut last = JwtError::UnsupportedAlgorithm(format!("{:?}", header.alg));
        for key in candidates.into_iter().filter(|k| k.alg == header.alg) {
            tried = true;
            let mut validation = Validation::new(key.alg);
            validation.validate_exp = false;
            validation.validate_nbf = false;
            validation.required_spec_claims.clear();
            validation.validate_aud = self.audiences.is_some();
            // A configured issuer or audience is required, not just checked
            // when present: jsonwebtoken skips the check for a missing or
            // non-string claim otherwise.
            if let Some(aud) = &self.audiences {
                validation.set_audience(aud);
                validation.required_spec_claims.insert("aud".into());
            }
            if let Some(iss) = &self.issuers {
                validation.set_issuer(iss);
                validation.required_spec_claims.insert("iss".into());
            }
            match jsonwebtoken::decode::<Claims>(token, &key.decoding, &validation) {
                Ok(data) => return self.check_times(data.claims, now_secs),
                Err(e) => {
                    last = match e.kind() {
                        ErrorKind::InvalidSignature => JwtError::BadSignature,
                        ErrorKind::InvalidIssuer => return Err(JwtError::WrongIssuer),
                        ErrorKind::InvalidAudience => return Err(JwtError::WrongAudience),
                        ErrorKind::MissingRequiredClaim(c) => {
                            return Err(JwtError::MissingClaim(c.clone()));
                        }
                        // A present claim of the wrong type.
                        ErrorKind::InvalidClaimFormat(c) if c == "iss" => {
                            return Err(JwtError::WrongIssuer);
                        }
                        ErrorKind::InvalidClaimFormat(c) if c == "aud" => {
                            return Err(JwtError::WrongAudience);
                        }
                        _ => return Err(JwtError::Malformed(e.to_string())),
                    };
                }
            }
        }
        if !tried {
            return Err(JwtError::UnsupportedAlgorithm(format!("{:?}", header.alg)));
        }
        Err(last)
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
        if let Some(nbf) = number("nbf")?
            && nbf > now.saturating_add(self.leeway_secs)
        {
            return Err(JwtError::NotYetValid);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn hs(secret: &str) -> Verifier {
        let key = KeyConfig {
            alg: "HS256".into(),
            kid: None,
            secret: Some(secret.into()),
            secret_base64: None,
            public_key_pem: None,
        };
        Verifier::new().key(&key).expect("valid key")
    }

    fn sign(header: &str, claims: &str, secret: &str) -> String {
        use jsonwebtoken::{EncodingKey, Header, encode};
        let h: Header = serde_json::from_str(header).expect("header");
        let c: Value = serde_json::from_str(claims).expect("claims");
        encode(&h, &c, &EncodingKey::from_secret(secret.as_bytes())).expect("sign")
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
    fn alg_none_and_unknown_kid_are_rejected() {
        let v = hs("s3cret");
        let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
        let body = URL_SAFE_NO_PAD.encode(r#"{"sub":"x","exp":99999999999}"#);
        let none = format!("{header}.{body}.");
        assert!(matches!(
            v.verify(&none, 0),
            Err(JwtError::UnsupportedAlgorithm(_))
        ));
        let kid = sign(
            r#"{"alg":"HS256","kid":"nowhere"}"#,
            r#"{"exp":2000}"#,
            "s3cret",
        );
        assert!(matches!(v.verify(&kid, 0), Err(JwtError::UnknownKey(_))));
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
}

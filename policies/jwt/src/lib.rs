//! `jwt`: the Auth0 + mosca convention. A client connects with username `JWT`
//! (configurable) and a token as password; the token is verified with the
//! configured keys, and on success the session is granted the token's topic
//! list and subject. Other usernames are not this policy's business (defer).
//!
//! Config (`//` comments are explanations, not part of the JSON):
//! ```json
//! {
//!   "username": "JWT",
//!   "keys": [{"alg": "HS256", "secret": "..."}, {"alg": "RS256", "public_key_pem": "..."}],
//!   "jwks": {"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1", "x": "...", "y": "..."}]},
//!   "issuer": ["https://idp.example/"],      // optional
//!   "audience": ["mqtt"],                     // optional
//!   "accept_any_audience": false,
//!   "leeway_secs": 30,
//!   "require_exp": true,
//!   "max_token_bytes": 8192,
//!   "topics_claim": "topics",                 // claim copied to the `topics` attribute (and `exp` to `exp`)
//!   "roles_claim": "roles",                   // optional claim copied to roles
//!   "remember_verified": true                 // see below; false to verify the signature every connect
//! }
//! ```
//!
//! - `keys`: keys as [`KeyConfig`]s: `alg` is one of HS256/384/512 (with
//!   `secret` or `secret_base64`), RS256/384/512, PS256/384/512, ES256/384 or
//!   EdDSA (with `public_key_pem`); `kid` is optional. A key with a `kid`
//!   verifies only tokens naming that `kid`; a key without one verifies tokens
//!   of its algorithm that name no configured `kid` (so one key without a `kid`
//!   works with identity providers that always send one).
//! - `jwks`: a JWKS document, inline as a JSON object or as a string holding
//!   one (e.g. the provider's `/.well-known/jwks.json` pasted in). RSA keys
//!   need `alg`; EC P-256 means ES256, P-384 ES384, OKP Ed25519 EdDSA. `oct`
//!   (secret) keys and keys with private members are refused; keys whose `use`
//!   is not `sig` are skipped. `keys` and `jwks` may be combined; together they
//!   must give at least one key.
//! - `issuer`: when set (a non-empty list), `iss` is required and must be a
//!   single string equal to one of these.
//! - `audience`: when set (a non-empty list), `aud` is required and must name
//!   one of these. When not set, a token carrying any `aud` is refused, unless
//!   `accept_any_audience` is `true` (default `false`; setting it together with
//!   `audience` is an error).
//! - `leeway_secs`: clock skew allowed on `exp`, `nbf` and `iat`; default 30,
//!   at most 300.
//! - `require_exp`: default `true`.
//! - `max_token_bytes`: the longest token accepted; default 8192, at most
//!   65535 (MQTT's password limit).
//! - `topics_claim`: must be a JSON array of valid MQTT topic filters, or
//!   absent (no topics granted); anything else refuses the token.
//! - `roles_claim`: when set, that claim must be a JSON array of non-empty
//!   strings, or absent (no roles); anything else refuses the token.
//! - `remember_verified`: default `true`. Each instance remembers up to 64
//!   tokens the verifier accepted (by their exact bytes; tokens over 4 KiB
//!   are not kept), so a client reconnecting with the same token skips the
//!   signature and the parse. Every claim rule (expiry, issuer, audience) and
//!   the topics and roles checks still run on every connect. The trade-off:
//!   the instance's memory then holds recently used tokens (bearer
//!   credentials) besides the keys (SECURITY.md).
//!
//! The password is verified exactly as sent (no trimming). Expired,
//! not-yet-valid, issued in the future, wrong issuer or audience, bad
//! signature, unknown key, refused header, malformed topics or roles: deny with
//! `bad-username-or-password`.

use mqtt_policy_sdk::jwt::{Claims, KeyConfig, MAX_LEEWAY_SECS, MAX_TOKEN_BYTES, Verifier};
use mqtt_policy_sdk::log;
use mqtt_policy_sdk::prelude::*;
use mqtt_policy_sdk::topic::validate_filter;
use serde::Deserialize;
use serde_json::Value;

fn default_username() -> String {
    "JWT".into()
}
fn default_leeway() -> u64 {
    30
}
fn default_true() -> bool {
    true
}
fn default_topics_claim() -> String {
    "topics".into()
}
fn default_max_token_bytes() -> usize {
    MAX_TOKEN_BYTES
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_username")]
    username: String,
    #[serde(default)]
    keys: Vec<KeyConfig>,
    #[serde(default)]
    jwks: Option<Value>,
    #[serde(default)]
    issuer: Option<Vec<String>>,
    #[serde(default)]
    audience: Option<Vec<String>>,
    #[serde(default)]
    accept_any_audience: bool,
    #[serde(default = "default_leeway")]
    leeway_secs: u64,
    #[serde(default = "default_true")]
    require_exp: bool,
    #[serde(default = "default_max_token_bytes")]
    max_token_bytes: usize,
    #[serde(default = "default_topics_claim")]
    topics_claim: String,
    #[serde(default)]
    roles_claim: Option<String>,
    #[serde(default = "default_true")]
    remember_verified: bool,
}

pub struct Jwt {
    username: String,
    verifier: Verifier,
    topics_claim: String,
    roles_claim: Option<String>,
}

/// The attribute the token's topic list is granted under.
pub const TOPICS_ATTRIBUTE: &str = "topics";

/// The topic filters of the topics claim: absent grants none; otherwise it
/// must be an array of valid MQTT topic filters.
fn topic_filters<'a>(claims: &'a Claims, claim: &str) -> Result<Vec<&'a str>, String> {
    let Some(value) = claims.get(claim) else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = value else {
        return Err(format!("{claim} claim is not an array of topic filters"));
    };
    items
        .iter()
        .map(|item| {
            let filter = item
                .as_str()
                .ok_or_else(|| format!("{claim} claim holds a non-string"))?;
            validate_filter(filter)
                .map_err(|e| format!("{claim} claim holds an invalid topic filter: {e}"))?;
            Ok(filter)
        })
        .collect()
}

/// The roles of the roles claim: absent grants none; otherwise it must be an
/// array of non-empty strings.
fn roles<'a>(claims: &'a Claims, claim: &str) -> Result<Vec<&'a str>, String> {
    let Some(value) = claims.get(claim) else {
        return Ok(Vec::new());
    };
    let Value::Array(items) = value else {
        return Err(format!("{claim} claim is not an array of strings"));
    };
    items
        .iter()
        .map(|item| match item.as_str() {
            Some(role) if !role.is_empty() => Ok(role),
            _ => Err(format!("{claim} claim holds a non-string or empty role")),
        })
        .collect()
}

impl Jwt {
    /// Check a connect at time `now_secs` (the host clock in production).
    pub fn check_at(&self, request: &ConnectRequest, now_secs: u64) -> ConnectVerdict {
        if request.username.as_deref() != Some(self.username.as_str()) {
            return ConnectVerdict::Defer;
        }
        let Some(token) = request.password_text() else {
            return deny_connect(DenyReason::BadUsernameOrPassword, "no token in password");
        };
        // The exact bytes sent: a token with surrounding whitespace is not
        // the token that was issued.
        let granted = self
            .verifier
            .verify(token, now_secs)
            .map_err(|e| e.to_string())
            .and_then(|claims| self.grant(&claims));
        match granted {
            Ok(grant) => allow_connect(grant),
            Err(why) => {
                // The reason is safe to log; the token is not.
                log::info(
                    "token rejected",
                    &[("client_id", &request.client_id), ("why", &why)],
                );
                deny_connect(
                    DenyReason::BadUsernameOrPassword,
                    format!("token rejected: {why}"),
                )
            }
        }
    }

    fn grant(&self, claims: &Claims) -> Result<Grant, String> {
        let topics = topic_filters(claims, &self.topics_claim)?;
        let mut grant = Grant::default().list_attribute(TOPICS_ATTRIBUTE, &topics);
        if let Some(sub) = claims.get("sub").and_then(Value::as_str) {
            grant = grant.attribute("sub", sub);
        }
        // The token's expiry goes with the topics it grants: `topic-list`
        // stops honouring them after it (and the host's verdict cache keeps
        // their allows until then only).
        // A fractional `exp` (which the verifier accepts) is rounded down:
        // the topics end no later than the token.
        let exp = claims.get("exp").and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_f64().filter(|f| *f >= 0.0).map(|f| f as u64))
        });
        if let Some(exp) = exp {
            grant = grant.attribute("exp", exp.to_string());
        }
        if let Some(claim) = &self.roles_claim {
            for role in roles(claims, claim)? {
                grant = grant.role(role);
            }
        }
        Ok(grant)
    }
}

impl Policy for Jwt {
    fn new(config: &str) -> Result<Self, String> {
        // Errors name the offending field by path.
        let config: Config = mqtt_policy_sdk::config(config)?;
        if config.leeway_secs > MAX_LEEWAY_SECS {
            return Err(format!(
                "leeway_secs must be at most {MAX_LEEWAY_SECS}, got {}",
                config.leeway_secs
            ));
        }
        // Errors name `max_token_bytes` when it is out of range.
        let mut verifier = Verifier::new()
            .leeway_secs(config.leeway_secs)
            .require_exp(config.require_exp)
            .max_token_bytes(config.max_token_bytes)?
            .remember_verified(config.remember_verified);
        for key in &config.keys {
            verifier = verifier.key(key)?;
        }
        verifier = match &config.jwks {
            None => verifier,
            Some(Value::String(text)) => verifier.jwks(text)?,
            Some(set @ Value::Object(_)) => verifier.jwks_value(set)?,
            Some(_) => return Err("jwks must be a JSON object or a string holding one".into()),
        };
        if !verifier.has_keys() {
            return Err("keys or jwks must provide at least one key".into());
        }
        if let Some(iss) = config.issuer {
            if iss.is_empty() {
                return Err("issuer must list at least one issuer, or be left out".into());
            }
            verifier = verifier.issuers(iss);
        }
        if let Some(aud) = config.audience {
            if aud.is_empty() {
                return Err("audience must list at least one audience, or be left out".into());
            }
            if config.accept_any_audience {
                return Err(
                    "accept_any_audience = true contradicts a configured audience; set one".into(),
                );
            }
            verifier = verifier.audiences(aud);
        }
        verifier = verifier.accept_any_audience(config.accept_any_audience);
        Ok(Jwt {
            username: config.username,
            verifier,
            topics_claim: config.topics_claim,
            roles_claim: config.roles_claim,
        })
    }

    fn connect_check(&self, request: &ConnectRequest) -> ConnectVerdict {
        self.check_at(request, log::now_unix_secs())
    }
}

export_policy!(Jwt);

#[cfg(test)]
mod tests {
    use super::*;

    fn request(username: Option<&str>, password: Option<&str>) -> ConnectRequest {
        ConnectRequest {
            client_id: "thermostat-1a".into(),
            username: username.map(Into::into),
            password: password.map(|p| p.as_bytes().to_vec()),
            protocol_version: 4,
            clean_start: true,
            keep_alive: 60,
            peer_address: None,
            listener: None,
            user_properties: vec![],
            certificates: vec![],
        }
    }

    fn token(claims: &str) -> String {
        use mqtt_policy_sdk::jwt::Claims;
        let claims: Claims = serde_json::from_str(claims).unwrap_or_default();
        jsonwebtoken_for_tests::sign(&claims)
    }

    mod jsonwebtoken_for_tests {
        // The SDK re-exports no signing; tests sign with a tiny HS256 encoder.
        use base64::Engine as _;
        use base64::engine::general_purpose::URL_SAFE_NO_PAD;
        use hmac::{Hmac, Mac};
        use sha2::Sha256;

        pub fn sign(claims: &mqtt_policy_sdk::jwt::Claims) -> String {
            sign_with_header(r#"{"alg":"HS256","typ":"JWT"}"#, claims)
        }

        pub fn sign_with_header(header: &str, claims: &mqtt_policy_sdk::jwt::Claims) -> String {
            let header = URL_SAFE_NO_PAD.encode(header);
            let body = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
            let input = format!("{header}.{body}");
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(b"s3cret") else {
                return String::new();
            };
            mac.update(input.as_bytes());
            let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
            format!("{input}.{sig}")
        }
    }

    fn policy() -> Result<Jwt, String> {
        Jwt::new(r#"{"keys": [{"alg": "HS256", "secret": "s3cret"}], "roles_claim": "roles"}"#)
    }

    #[test]
    fn valid_token_grants_topics_and_subject() -> Result<(), String> {
        let t = token(
            r#"{"sub":"thermostat-1a","exp":2000,"topics":["temperature","devices/1a/#"],"roles":["device"]}"#,
        );
        match policy()?.check_at(&request(Some("JWT"), Some(&t)), 1000) {
            ConnectVerdict::Allow(grant) => {
                assert!(
                    grant.attributes.iter().any(
                        |a| a.key == "topics" && a.value == r#"["temperature","devices/1a/#"]"#
                    )
                );
                assert!(
                    grant
                        .attributes
                        .iter()
                        .any(|a| a.key == "sub" && a.value == "thermostat-1a")
                );
                assert_eq!(grant.roles, vec!["device".to_string()]);
            }
            other => panic!("expected allow, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn bad_tokens_are_bad_username_or_password() -> Result<(), String> {
        let p = policy()?;
        let expired = token(r#"{"exp":100}"#);
        for req in [
            request(Some("JWT"), Some(&expired)),
            request(Some("JWT"), None),
            request(Some("JWT"), Some("x.y.z")),
        ] {
            match p.check_at(&req, 1000) {
                ConnectVerdict::Deny(d) => assert_eq!(d.reason, DenyReason::BadUsernameOrPassword),
                other => panic!("expected deny, got {other:?}"),
            }
        }
        Ok(())
    }

    #[test]
    fn other_usernames_defer() -> Result<(), String> {
        assert_eq!(
            policy()?.check_at(&request(Some("alice"), Some("pw")), 0),
            ConnectVerdict::Defer
        );
        assert_eq!(
            policy()?.check_at(&request(None, None), 0),
            ConnectVerdict::Defer
        );
        Ok(())
    }

    #[test]
    fn bad_configs_fail() {
        assert!(Jwt::new(r#"{"keys": []}"#).is_err());
        assert!(Jwt::new(r#"{"keys": [{"alg": "none"}]}"#).is_err());
        assert!(Jwt::new(r#"{"keys": [{"alg": "HS256"}]}"#).is_err());
    }

    fn verdict(p: &Jwt, token: &str) -> ConnectVerdict {
        p.check_at(&request(Some("JWT"), Some(token)), 1000)
    }

    fn assert_denied(v: ConnectVerdict, what: &str) {
        match v {
            ConnectVerdict::Deny(d) => {
                assert_eq!(d.reason, DenyReason::BadUsernameOrPassword, "{what}");
            }
            other => panic!("{what}: expected deny, got {other:?}"),
        }
    }

    fn topics_of(v: ConnectVerdict) -> String {
        match v {
            ConnectVerdict::Allow(grant) => grant
                .attributes
                .iter()
                .find(|a| a.key == TOPICS_ATTRIBUTE)
                .map(|a| a.value.clone())
                .unwrap_or_default(),
            other => panic!("expected allow, got {other:?}"),
        }
    }

    #[test]
    fn topics_claim_must_be_an_array_of_valid_filters() -> Result<(), String> {
        let p = policy()?;
        for topics in [
            r#""temperature devices/1a/#""#,
            r#"["a/#/b"]"#,
            r##"["#+"]"##,
            r#"["temperature", 5]"#,
            r#"["temperature", ""]"#,
            r#"{"temperature": true}"#,
            "null",
        ] {
            let t = token(&format!(r#"{{"exp":2000,"topics":{topics}}}"#));
            assert_denied(verdict(&p, &t), topics);
        }
        let absent = token(r#"{"exp":2000}"#);
        assert_eq!(topics_of(verdict(&p, &absent)), "[]", "absent grants none");
        let valid = token(r##"{"exp":2000,"topics":["a/+/c","d/#","#"]}"##);
        assert_eq!(topics_of(verdict(&p, &valid)), r##"["a/+/c","d/#","#"]"##);
        Ok(())
    }

    #[test]
    fn the_tokens_expiry_goes_with_its_topics() -> Result<(), String> {
        let p = policy()?;
        for (exp, granted) in [("2000", "2000"), ("2000.5", "2000")] {
            let t = token(&format!(r#"{{"exp":{exp},"topics":["t/#"]}}"#));
            match verdict(&p, &t) {
                ConnectVerdict::Allow(grant) => {
                    let got = grant.attributes.iter().find(|a| a.key == "exp");
                    assert_eq!(got.map(|a| a.value.as_str()), Some(granted), "{exp}");
                }
                other => panic!("expected allow, got {other:?}"),
            }
        }
        Ok(())
    }

    #[test]
    fn roles_claim_must_be_an_array_of_strings() -> Result<(), String> {
        let p = policy()?;
        for roles in [r#""admin operator""#, r#"["device", 1]"#, r#"[""]"#, "{}"] {
            let t = token(&format!(r#"{{"exp":2000,"roles":{roles}}}"#));
            assert_denied(verdict(&p, &t), roles);
        }
        match verdict(&p, &token(r#"{"exp":2000}"#)) {
            ConnectVerdict::Allow(grant) => assert!(grant.roles.is_empty()),
            other => panic!("expected allow, got {other:?}"),
        }
        Ok(())
    }

    #[test]
    fn the_token_is_verified_exactly_as_sent() -> Result<(), String> {
        let p = policy()?;
        let t = token(r#"{"exp":2000}"#);
        assert!(matches!(verdict(&p, &t), ConnectVerdict::Allow(_)));
        for padded in [format!(" {t}"), format!("{t}\n"), format!("\t{t} ")] {
            assert_denied(verdict(&p, &padded), "surrounding whitespace");
        }
        Ok(())
    }

    #[test]
    fn a_token_with_aud_needs_a_configured_audience_or_the_opt_out() -> Result<(), String> {
        let t = token(r#"{"exp":2000,"aud":"some-other-api"}"#);
        assert_denied(verdict(&policy()?, &t), "aud without configured audience");
        let open = Jwt::new(
            r#"{"keys": [{"alg": "HS256", "secret": "s3cret"}], "accept_any_audience": true}"#,
        )?;
        assert!(matches!(verdict(&open, &t), ConnectVerdict::Allow(_)));
        let both = Jwt::new(
            r#"{"keys": [{"alg": "HS256", "secret": "s3cret"}], "audience": ["mqtt"], "accept_any_audience": true}"#,
        );
        assert!(
            both.err()
                .unwrap_or_default()
                .contains("accept_any_audience")
        );
        Ok(())
    }

    #[test]
    fn config_bounds_name_the_field() {
        let key = r#""keys": [{"alg": "HS256", "secret": "s3cret"}]"#;
        for (extra, field) in [
            (r#""leeway_secs": 301"#, "leeway_secs"),
            (r#""max_token_bytes": 65536"#, "max_token_bytes"),
            (r#""max_token_bytes": 0"#, "max_token_bytes"),
            (r#""issuer": []"#, "issuer"),
            (r#""audience": []"#, "audience"),
            (r#""jwks": 5"#, "jwks"),
        ] {
            let err = Jwt::new(&format!("{{{key}, {extra}}}"))
                .err()
                .unwrap_or_default();
            assert!(err.contains(field), "{extra}: {err}");
        }
        assert!(
            Jwt::new(&format!(
                r#"{{{key}, "leeway_secs": 300, "max_token_bytes": 65535}}"#
            ))
            .is_ok()
        );
    }

    #[test]
    fn a_remembered_token_grants_the_same_and_still_expires() -> Result<(), String> {
        let p = policy()?;
        let t = token(r#"{"sub":"d1","exp":2000,"topics":["devices/d1/#"],"roles":["device"]}"#);
        let first = p.check_at(&request(Some("JWT"), Some(&t)), 1000);
        assert_eq!(p.verifier.remembered_tokens(), 1, "remembered by default");
        assert_eq!(p.check_at(&request(Some("JWT"), Some(&t)), 1500), first);
        assert_denied(
            p.check_at(&request(Some("JWT"), Some(&t)), 2031),
            "expired while remembered",
        );
        let off = Jwt::new(
            r#"{"keys": [{"alg": "HS256", "secret": "s3cret"}], "roles_claim": "roles", "remember_verified": false}"#,
        )?;
        assert_eq!(off.check_at(&request(Some("JWT"), Some(&t)), 1000), first);
        assert_eq!(off.verifier.remembered_tokens(), 0);
        Ok(())
    }

    #[test]
    fn max_token_bytes_is_configurable() -> Result<(), String> {
        let big = token(&format!(r#"{{"exp":2000,"pad":"{}"}}"#, "a".repeat(12_000)));
        assert_denied(verdict(&policy()?, &big), "over the default 8 KiB");
        let roomy = Jwt::new(
            r#"{"keys": [{"alg": "HS256", "secret": "s3cret"}], "max_token_bytes": 65535}"#,
        )?;
        assert!(matches!(verdict(&roomy, &big), ConnectVerdict::Allow(_)));
        Ok(())
    }

    #[test]
    fn a_key_without_kid_accepts_tokens_that_carry_one() -> Result<(), String> {
        use mqtt_policy_sdk::jwt::Claims;
        let claims: Claims = serde_json::from_str(r#"{"exp":2000}"#).unwrap_or_default();
        let t = jsonwebtoken_for_tests::sign_with_header(
            r#"{"alg":"HS256","typ":"JWT","kid":"auth0-signing-key"}"#,
            &claims,
        );
        assert!(matches!(verdict(&policy()?, &t), ConnectVerdict::Allow(_)));
        Ok(())
    }

    #[test]
    fn crit_headers_are_refused() -> Result<(), String> {
        use mqtt_policy_sdk::jwt::Claims;
        let claims: Claims = serde_json::from_str(r#"{"exp":2000}"#).unwrap_or_default();
        let t = jsonwebtoken_for_tests::sign_with_header(
            r#"{"alg":"HS256","crit":["x-unknown"],"x-unknown":1}"#,
            &claims,
        );
        assert_denied(verdict(&policy()?, &t), "crit");
        Ok(())
    }

    // A test-only EC P-256 key, made once with `openssl genpkey`.
    const EC_PRIVATE: &str = "-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgP+wPPvK3vVDKbD4d
GbU8Tnl0PYec0gWpK/CshMELDl2hRANCAASbm7fssLIa6zgEUWbBjL6K2CaU+Kxd
8BWm3aaO+AvcxctgC0gd25CvO3RyBQkeUSFvhDY/kMsCySe4FDjd2HEJ
-----END PRIVATE KEY-----
";

    #[test]
    fn jwks_is_accepted_inline_or_as_a_string() -> Result<(), String> {
        use jsonwebtoken::{Algorithm, EncodingKey, Header, jwk::Jwk};
        let private = EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).map_err(|e| e.to_string())?;
        let mut jwk = serde_json::to_value(
            Jwk::from_encoding_key(&private, Algorithm::ES256).map_err(|e| e.to_string())?,
        )
        .map_err(|e| e.to_string())?;
        if let Some(o) = jwk.as_object_mut() {
            o.insert("kid".into(), "ec-1".into());
            // The algorithm follows from the curve.
            o.remove("alg");
        }
        let set = serde_json::json!({"keys": [jwk]});
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("ec-1".into());
        let t = jsonwebtoken::encode(
            &header,
            &serde_json::json!({"exp": 2000, "topics": ["t/#"]}),
            &private,
        )
        .map_err(|e| e.to_string())?;
        for jwks in [set.clone(), Value::String(set.to_string())] {
            let config = serde_json::json!({"jwks": jwks}).to_string();
            let p = Jwt::new(&config)?;
            assert_eq!(topics_of(verdict(&p, &t)), r#"["t/#"]"#);
        }
        let oct = serde_json::json!({"jwks": {"keys": [{"kty": "oct", "alg": "HS256", "k": "czNjcmV0"}]}});
        let err = Jwt::new(&oct.to_string()).err().unwrap_or_default();
        assert!(err.contains("oct"), "{err}");
        assert!(Jwt::new(r#"{"jwks": "not json"}"#).is_err());
        Ok(())
    }
}

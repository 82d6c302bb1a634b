//! `jwt`: the Auth0 + mosca convention. A client connects with username `JWT`
//! (configurable) and a token as password; the token is verified with the
//! configured keys, and on success the session is granted the token's topic
//! list and subject. Other usernames are not this policy's business (defer).
//!
//! Config:
//! ```json
//! {
//!   "username": "JWT",
//!   "keys": [{"alg": "HS256", "secret": "..."}, {"alg": "RS256", "public_key_pem": "..."}],
//!   "issuer": ["https://idp.example/"],      // optional
//!   "audience": ["mqtt"],                     // optional
//!   "leeway_secs": 30,
//!   "require_exp": true,
//!   "topics_claim": "topics",                 // claim copied to the `topics` attribute
//!   "roles_claim": "roles"                    // optional claim copied to roles
//! }
//! ```
//! Expired, not-yet-valid, wrong issuer or audience, bad signature, unknown
//! key: deny with `bad-username-or-password`.

use mqtt_policy_sdk::jwt::{KeyConfig, Verifier};
use mqtt_policy_sdk::log;
use mqtt_policy_sdk::prelude::*;
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

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default = "default_username")]
    username: String,
    keys: Vec<KeyConfig>,
    #[serde(default)]
    issuer: Option<Vec<String>>,
    #[serde(default)]
    audience: Option<Vec<String>>,
    #[serde(default = "default_leeway")]
    leeway_secs: u64,
    #[serde(default = "default_true")]
    require_exp: bool,
    #[serde(default = "default_topics_claim")]
    topics_claim: String,
    #[serde(default)]
    roles_claim: Option<String>,
}

pub struct Jwt {
    username: String,
    verifier: Verifier,
    topics_claim: String,
    roles_claim: Option<String>,
}

/// The attribute the token's topic list is granted under.
pub const TOPICS_ATTRIBUTE: &str = "topics";

fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::Array(items)) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
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
        match self.verifier.verify(token.trim(), now_secs) {
            Ok(claims) => {
                let topics = strings(claims.get(&self.topics_claim));
                let mut grant = Grant::default().list_attribute(TOPICS_ATTRIBUTE, &topics);
                if let Some(sub) = claims.get("sub").and_then(Value::as_str) {
                    grant = grant.attribute("sub", sub);
                }
                if let Some(claim) = &self.roles_claim {
                    for role in strings(claims.get(claim)) {
                        grant = grant.role(role);
                    }
                }
                allow_connect(grant)
            }
            Err(e) => {
                // The reason is safe to log; the token is not.
                log::info(
                    "token rejected",
                    &[("client_id", &request.client_id), ("why", &e.to_string())],
                );
                deny_connect(
                    DenyReason::BadUsernameOrPassword,
                    format!("token rejected: {e}"),
                )
            }
        }
    }
}

impl Policy for Jwt {
    fn new(config: &str) -> Result<Self, String> {
        let config: Config =
            serde_json::from_str(config).map_err(|e| format!("invalid config: {e}"))?;
        if config.keys.is_empty() {
            return Err("keys must list at least one key".into());
        }
        let mut verifier = Verifier::new()
            .leeway_secs(config.leeway_secs)
            .require_exp(config.require_exp);
        for key in &config.keys {
            verifier = verifier.key(key)?;
        }
        if let Some(iss) = config.issuer {
            verifier = verifier.issuers(iss);
        }
        if let Some(aud) = config.audience {
            verifier = verifier.audiences(aud);
        }
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
            let header = URL_SAFE_NO_PAD.encode(r#"{"alg":"HS256","typ":"JWT"}"#);
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
}

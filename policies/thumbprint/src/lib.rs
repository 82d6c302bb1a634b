//! `thumbprint`: allow a client whose TLS leaf certificate's SHA-1 or SHA-256
//! thumbprint is on the configured list (several entries allow rotation).
//!
//! Config:
//! ```json
//! {
//!   "thumbprints": ["3A:7F:...", "9c0e..."],   // SHA-1 (40 hex) or SHA-256 (64 hex); case and ':' ignored
//!   "missing_certificate": "deny",             // or "defer": no client certificate
//!   "not_listed": "deny",                      // or "defer": certificate not on the list
//!   "roles": ["device"]                        // granted on allow
//! }
//! ```
//! Only the leaf (first) certificate counts. Its thumbprints are the SHA-1 and
//! SHA-256 of its DER encoding in uppercase hex without separators (the
//! host's `sha1`/`sha256` fields, what `openssl x509 -fingerprint` prints
//! without the colons); configured entries are normalised to that form.
//!
//! On allow the session gets attributes `cert_sha256` (64 uppercase hex
//! digits) and, if the leaf has one, `cert_cn`: the host's `common-name`
//! field, i.e. the decoded, unescaped value of the subject's most specific CN
//! (the last CN in DER order, the first one in the RFC 4514 `subject` string).
//! It is the CN as written in the certificate, not RFC 4514-escaped, so it may
//! contain `,`, `+`, `/`, `#`, spaces or control characters; `cert_cn` is
//! absent when the leaf has no CN or its most specific CN is not a character
//! string.

use mqtt_policy_sdk::prelude::*;
use mqtt_policy_sdk::request::{normalize_thumbprint, thumbprint_eq};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum Otherwise {
    #[default]
    Deny,
    Defer,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    thumbprints: Vec<String>,
    #[serde(default)]
    missing_certificate: Otherwise,
    #[serde(default)]
    not_listed: Otherwise,
    #[serde(default)]
    roles: Vec<String>,
}

pub struct Thumbprint {
    allowed: Vec<String>,
    missing_certificate: Otherwise,
    not_listed: Otherwise,
    roles: Vec<String>,
}

fn refuse(otherwise: Otherwise, message: &str) -> ConnectVerdict {
    match otherwise {
        Otherwise::Deny => deny_connect(DenyReason::NotAuthorized, message),
        Otherwise::Defer => ConnectVerdict::Defer,
    }
}

impl Policy for Thumbprint {
    fn new(config: &str) -> Result<Self, String> {
        // Errors name the offending field by path.
        let config: Config = mqtt_policy_sdk::config(config)?;
        if config.thumbprints.is_empty() {
            return Err("thumbprints must list at least one thumbprint".into());
        }
        let mut allowed = Vec::with_capacity(config.thumbprints.len());
        for t in &config.thumbprints {
            match normalize_thumbprint(t) {
                Some(hex) if hex.len() == 40 || hex.len() == 64 => allowed.push(hex),
                _ => {
                    return Err(format!(
                        "thumbprint \"{t}\" is not a SHA-1 (40 hex digits) or SHA-256 (64 hex digits) thumbprint"
                    ));
                }
            }
        }
        Ok(Thumbprint {
            allowed,
            missing_certificate: config.missing_certificate,
            not_listed: config.not_listed,
            roles: config.roles,
        })
    }

    fn connect_check(&self, request: &ConnectRequest) -> ConnectVerdict {
        let Some(leaf) = request.leaf_certificate() else {
            return refuse(self.missing_certificate, "no client certificate");
        };
        // Check every entry without stopping early, so timing does not say
        // which entry (if any) matched.
        let listed = self.allowed.iter().fold(false, |hit, t| {
            hit | thumbprint_eq(t, &leaf.sha1) | thumbprint_eq(t, &leaf.sha256)
        });
        if !listed {
            return refuse(
                self.not_listed,
                "client certificate is not on the allow-list",
            );
        }
        let mut grant = Grant::default().attribute("cert_sha256", leaf.sha256.clone());
        if let Some(cn) = &leaf.common_name {
            grant = grant.attribute("cert_cn", cn.clone());
        }
        for role in &self.roles {
            grant = grant.role(role.clone());
        }
        allow_connect(grant)
    }
}

export_policy!(Thumbprint);

#[cfg(test)]
mod tests {
    use super::*;

    const SHA1: &str = "0123456789ABCDEF0123456789ABCDEF01234567";

    fn request(certs: Vec<Certificate>) -> ConnectRequest {
        ConnectRequest {
            client_id: "c".into(),
            username: None,
            password: None,
            protocol_version: 4,
            clean_start: true,
            keep_alive: 60,
            peer_address: None,
            listener: None,
            user_properties: vec![],
            certificates: certs,
        }
    }

    fn cert(sha1: &str) -> Certificate {
        Certificate {
            der: vec![],
            sha1: sha1.into(),
            sha256: "00".repeat(32),
            subject: "CN=dev".into(),
            issuer: "CN=dev".into(),
            common_name: Some("dev".into()),
            sans: vec![],
            serial: "01".into(),
            not_before: 0,
            not_after: 0,
        }
    }

    #[test]
    fn listed_leaf_is_allowed_with_separators_and_case_ignored() -> Result<(), String> {
        let p = Thumbprint::new(
            r#"{"thumbprints": ["01:23:45:67:89:ab:cd:ef:01:23:45:67:89:ab:cd:ef:01:23:45:67"]}"#,
        )?;
        assert!(matches!(
            p.connect_check(&request(vec![cert(SHA1)])),
            ConnectVerdict::Allow(_)
        ));
        Ok(())
    }

    #[test]
    fn unlisted_or_missing_is_denied_or_deferred_as_configured() -> Result<(), String> {
        let p = Thumbprint::new(&format!(r#"{{"thumbprints": ["{SHA1}"]}}"#))?;
        assert!(matches!(
            p.connect_check(&request(vec![])),
            ConnectVerdict::Deny(_)
        ));
        let other = "F".repeat(40);
        assert!(matches!(
            p.connect_check(&request(vec![cert(&other)])),
            ConnectVerdict::Deny(_)
        ));
        let p = Thumbprint::new(&format!(
            r#"{{"thumbprints": ["{SHA1}"], "missing_certificate": "defer", "not_listed": "defer"}}"#
        ))?;
        assert_eq!(p.connect_check(&request(vec![])), ConnectVerdict::Defer);
        assert_eq!(
            p.connect_check(&request(vec![cert(&other)])),
            ConnectVerdict::Defer
        );
        Ok(())
    }

    #[test]
    fn bad_configs_fail_with_a_message() {
        for (config, needle) in [
            ("{}", "missing field"),
            (r#"{"thumbprints": []}"#, "at least one"),
            (r#"{"thumbprints": ["abc"]}"#, "\"abc\""),
            (r#"{"thumbprints": ["zz"]}"#, "\"zz\""),
            (r#"{"thumbprints": ["00"], "oops": 1}"#, "unknown field"),
        ] {
            let err = Thumbprint::new(config).err().unwrap_or_default();
            assert!(err.contains(needle), "{config}: {err}");
        }
    }
}

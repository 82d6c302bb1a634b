//! Bounds on what a client sends, enforced before any policy sees it.
//!
//! A request is copied ("lowered") into a policy's memory at the start of
//! each check, inside the policy's deadline, and that costs time in
//! proportion to its size and to its number of strings: 100,000 one-byte
//! MQTT 5 user properties (about 700 KB, legal on the wire) take some 45 ms
//! to lower, nine times the default deadline. A client could therefore make
//! any policy fail at will, and a failed policy is handled by its failure
//! mode: under `skip` the chain moves past it, under `allow` the client is
//! in. A failure mode is the operator's choice for a broken policy; bounds
//! keep it from being a lever a client can pull. Every request is checked
//! against [`RequestBounds`] first, and one over any bound is refused by the
//! host (not-authorized, decided by `(host)`, empty trace) whatever the
//! failure modes say.
//!
//! The defaults are set so the largest request they admit lowers in well
//! under a millisecond (a tenth of the default 5 ms deadline), while staying
//! far above anything a real client sends. Configure them in the chain
//! file's `[requests]` table.

use serde::{Deserialize, Serialize};

use crate::cert::Certificate;
use crate::request::{ConnectRequest, TopicRequest};

/// MQTT's limit on a length-prefixed string or binary field (client id,
/// username, password, topic): two length bytes.
pub const MQTT_MAX_FIELD_BYTES: usize = 65_535;

/// Limits on the size of every request the chain is asked about.
///
/// ```toml
/// [requests]
/// max_client_id_bytes = 1024
/// max_username_bytes = 1024
/// max_password_bytes = 65535
/// max_user_properties = 64
/// max_user_properties_bytes = 16384
/// max_topic_bytes = 65535
/// max_certificates = 16
/// max_certificate_bytes = 262144
/// max_certificate_sans = 1024
/// max_grant_entries = 256
/// max_grant_bytes = 65536
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct RequestBounds {
    /// Client id, in bytes. Default 1024: MQTT allows 65,535, but a client id
    /// is a name (3.1 capped it at 23 characters); 1024 leaves room for
    /// UUIDs, device paths and cloud-style ids with margin.
    pub max_client_id_bytes: usize,
    /// Username, in bytes. Default 1024: names and the usual `JWT`-style
    /// markers; tokens belong in the password.
    pub max_username_bytes: usize,
    /// Password, in bytes. Default 65,535, MQTT's own limit: it carries JWTs
    /// and other tokens, and one large binary field is cheap to lower.
    pub max_password_bytes: usize,
    /// MQTT 5 user properties of a CONNECT. Default 64: each costs two
    /// strings; brokers and clients use a handful.
    pub max_user_properties: usize,
    /// Names and values of all user properties together, in bytes.
    /// Default 16 KiB.
    pub max_user_properties_bytes: usize,
    /// Topic name or filter (and a CONNECT's will topic), in bytes. Default
    /// 65,535, MQTT's limit; a longer one cannot come from a real packet.
    pub max_topic_bytes: usize,
    /// Certificates in the client's chain. Default 16, as
    /// [`crate::cert::MAX_CHAIN_LEN`].
    pub max_certificates: usize,
    /// The chain's DER plus every text field parsed from it, in bytes.
    /// Default 256 KiB, as [`crate::cert::MAX_INPUT_BYTES`] for PEM input
    /// (a DER chain is parsed certificate by certificate, so the parser's
    /// own limit is per certificate there).
    pub max_certificate_bytes: usize,
    /// Subject alternative names across the chain. Default 1024: each is a
    /// string to lower, and a 256 KiB chain of minimal names would hold
    /// some 100,000 of them.
    pub max_certificate_sans: usize,
    /// Attributes plus roles handed to a topic check. Default 256, the cap
    /// on what a connect verdict may grant
    /// ([`crate::wasm_policy::MAX_GRANT_ENTRIES`]).
    pub max_grant_entries: usize,
    /// Bytes of those attributes (keys and values) and roles. Default
    /// 64 KiB, the grant cap ([`crate::wasm_policy::MAX_GRANT_BYTES`]).
    pub max_grant_bytes: usize,
}

impl Default for RequestBounds {
    fn default() -> Self {
        Self {
            max_client_id_bytes: 1024,
            max_username_bytes: 1024,
            max_password_bytes: MQTT_MAX_FIELD_BYTES,
            max_user_properties: 64,
            max_user_properties_bytes: 16 * 1024,
            max_topic_bytes: MQTT_MAX_FIELD_BYTES,
            max_certificates: crate::cert::MAX_CHAIN_LEN,
            max_certificate_bytes: crate::cert::MAX_INPUT_BYTES,
            max_certificate_sans: 1024,
            max_grant_entries: crate::wasm_policy::MAX_GRANT_ENTRIES,
            max_grant_bytes: crate::wasm_policy::MAX_GRANT_BYTES,
        }
    }
}

/// Which bound a request went over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BoundedField {
    ClientId,
    Username,
    Password,
    UserProperties,
    UserPropertiesBytes,
    Topic,
    WillTopic,
    Certificates,
    CertificateBytes,
    CertificateSans,
    GrantEntries,
    GrantBytes,
}

/// A request over one of the host's bounds: which field, how big it was and
/// the bound. Its `Display` is the deny message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request over host bound: {}", self.describe())]
pub struct OverBound {
    pub field: BoundedField,
    /// The field's size: a count or a number of bytes, as the field says.
    pub size: usize,
    pub max: usize,
}

impl OverBound {
    fn describe(&self) -> String {
        let (size, max) = (self.size, self.max);
        let bytes = |what: &str| format!("{what} of {size} bytes (max {max})");
        let count = |what: &str| format!("{size} {what} (max {max})");
        match self.field {
            BoundedField::ClientId => bytes("client id"),
            BoundedField::Username => bytes("username"),
            BoundedField::Password => bytes("password"),
            BoundedField::UserProperties => count("user properties"),
            BoundedField::UserPropertiesBytes => bytes("user properties"),
            BoundedField::Topic => bytes("topic"),
            BoundedField::WillTopic => bytes("will topic"),
            BoundedField::Certificates => count("certificates"),
            BoundedField::CertificateBytes => bytes("certificate chain"),
            BoundedField::CertificateSans => count("subject alternative names"),
            BoundedField::GrantEntries => count("session attributes and roles"),
            BoundedField::GrantBytes => bytes("session attributes and roles"),
        }
    }
}

fn at_most(field: BoundedField, size: usize, max: usize) -> Result<(), OverBound> {
    if size > max {
        return Err(OverBound { field, size, max });
    }
    Ok(())
}

/// The bytes of a certificate as it is lowered: its DER and every string
/// parsed from it.
fn certificate_bytes(c: &Certificate) -> usize {
    let text = [&c.sha1, &c.sha256, &c.subject, &c.issuer, &c.serial]
        .iter()
        .map(|s| s.len())
        .sum::<usize>();
    let sans = c.sans.iter().map(String::len).sum::<usize>();
    c.der.len() + text + c.common_name.as_ref().map_or(0, String::len) + sans
}

impl RequestBounds {
    /// Check a CONNECT. Counts are checked before sizes, so the cost of
    /// checking does not grow with the request: a sum runs over at most a
    /// bounded number of entries.
    pub fn check_connect(&self, r: &ConnectRequest) -> Result<(), OverBound> {
        use BoundedField as F;
        at_most(F::ClientId, r.client_id.len(), self.max_client_id_bytes)?;
        if let Some(username) = &r.username {
            at_most(F::Username, username.len(), self.max_username_bytes)?;
        }
        if let Some(password) = &r.password {
            at_most(F::Password, password.len(), self.max_password_bytes)?;
        }
        let properties = &r.user_properties;
        at_most(
            F::UserProperties,
            properties.len(),
            self.max_user_properties,
        )?;
        let bytes = properties
            .iter()
            .map(|p| p.name.len() + p.value.len())
            .sum();
        at_most(
            F::UserPropertiesBytes,
            bytes,
            self.max_user_properties_bytes,
        )?;
        let chain = &r.certificates;
        at_most(F::Certificates, chain.len(), self.max_certificates)?;
        let sans = chain.iter().map(|c| c.sans.len()).sum();
        at_most(F::CertificateSans, sans, self.max_certificate_sans)?;
        let bytes = chain.iter().map(certificate_bytes).sum();
        at_most(F::CertificateBytes, bytes, self.max_certificate_bytes)?;
        if let Some(will) = &r.will {
            at_most(F::WillTopic, will.topic.len(), self.max_topic_bytes)?;
        }
        Ok(())
    }

    /// Check a topic request. Its attributes and roles come from a grant,
    /// which the host already caps; they are checked anyway (cheaply: count
    /// first) because an embedder may build a request by hand.
    pub fn check_topic(&self, r: &TopicRequest) -> Result<(), OverBound> {
        use BoundedField as F;
        at_most(F::Topic, r.topic.len(), self.max_topic_bytes)?;
        at_most(F::ClientId, r.client_id.len(), self.max_client_id_bytes)?;
        if let Some(username) = &r.username {
            at_most(F::Username, username.len(), self.max_username_bytes)?;
        }
        let entries = r.attributes.len() + r.roles.len();
        at_most(F::GrantEntries, entries, self.max_grant_entries)?;
        let bytes = r
            .attributes
            .iter()
            .map(|a| a.key.len() + a.value.len())
            .chain(r.roles.iter().map(String::len))
            .sum();
        at_most(F::GrantBytes, bytes, self.max_grant_bytes)
    }

    /// Reject settings that make no sense: bounds above MQTT's own limit on
    /// a field, and a topic bound of zero (nothing could ever be checked).
    pub fn validate(&self) -> Result<(), String> {
        for (name, value) in [
            ("max_client_id_bytes", self.max_client_id_bytes),
            ("max_username_bytes", self.max_username_bytes),
            ("max_password_bytes", self.max_password_bytes),
            ("max_topic_bytes", self.max_topic_bytes),
        ] {
            if value > MQTT_MAX_FIELD_BYTES {
                return Err(format!(
                    "requests: {name} is {value}, over MQTT's limit of {MQTT_MAX_FIELD_BYTES}"
                ));
            }
        }
        if self.max_topic_bytes == 0 {
            return Err("requests: max_topic_bytes must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::{Access, Password};

    fn cert(sans: usize, der: usize) -> Certificate {
        Certificate {
            der: vec![0; der],
            sha1: "0".repeat(40),
            sha256: "0".repeat(64),
            subject: "CN=a".into(),
            issuer: "CN=a".into(),
            common_name: Some("a".into()),
            sans: vec!["DNS:a".into(); sans],
            serial: "01".into(),
            not_before: 0,
            not_after: 0,
        }
    }

    fn over(r: Result<(), OverBound>) -> String {
        r.err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn each_connect_bound_names_the_field_its_size_and_the_bound() {
        let b = RequestBounds::default();
        let base = ConnectRequest::new("c");
        assert_eq!(b.check_connect(&base), Ok(()));
        let cases: Vec<(ConnectRequest, &str)> = vec![
            (
                ConnectRequest::new("x".repeat(1025)),
                "client id of 1025 bytes (max 1024)",
            ),
            (
                base.clone().username("u".repeat(1025)),
                "username of 1025 bytes (max 1024)",
            ),
            (
                base.clone().password(Password::new(vec![0; 65_536])),
                "password of 65536 bytes (max 65535)",
            ),
            (
                (0..65).fold(base.clone(), |r, _| r.user_property("a", "b")),
                "65 user properties (max 64)",
            ),
            (
                base.clone().user_property("a", "b".repeat(16 * 1024)),
                "user properties of 16385 bytes (max 16384)",
            ),
            (
                base.clone().certificates(vec![cert(0, 10); 17]),
                "17 certificates (max 16)",
            ),
            (
                base.clone()
                    .certificates(vec![cert(600, 10), cert(425, 10)]),
                "1025 subject alternative names (max 1024)",
            ),
            (
                base.clone().certificates(vec![cert(1, 256 * 1024)]),
                "certificate chain of 262264 bytes (max 262144)",
            ),
            (
                base.clone().will("w".repeat(65_536), 0, false),
                "will topic of 65536 bytes (max 65535)",
            ),
        ];
        for (request, message) in cases {
            assert_eq!(
                over(b.check_connect(&request)),
                format!("request over host bound: {message}")
            );
        }
    }

    #[test]
    fn each_topic_bound_names_the_field() {
        let b = RequestBounds::default();
        let base = TopicRequest::new("c", Access::Publish, "t");
        assert_eq!(b.check_topic(&base), Ok(()));
        let mut long = base.clone();
        long.topic = "t".repeat(65_536);
        assert!(over(b.check_topic(&long)).ends_with("topic of 65536 bytes (max 65535)"));
        let many = (0..200).fold(base.clone(), |r, i| r.attribute(format!("k{i}"), "v"));
        let many = (0..57).fold(many, |r, _| r.role("r"));
        assert!(over(b.check_topic(&many)).ends_with("257 session attributes and roles (max 256)"));
        let big = base.clone().attribute("k", "v".repeat(64 * 1024));
        assert!(over(b.check_topic(&big)).ends_with("of 65537 bytes (max 65536)"));
    }

    #[test]
    fn counts_are_checked_before_sizes() {
        // A million properties are refused on their count, without summing them.
        let b = RequestBounds::default();
        let mut r = ConnectRequest::new("c");
        r.user_properties = vec![
            crate::request::UserProperty {
                name: "a".into(),
                value: "b".into(),
            };
            1_000_000
        ];
        let started = std::time::Instant::now();
        let err = b.check_connect(&r).err();
        assert_eq!(err.map(|e| e.field), Some(BoundedField::UserProperties));
        assert!(started.elapsed() < std::time::Duration::from_millis(5));
    }

    #[test]
    fn settings_are_validated() {
        assert_eq!(RequestBounds::default().validate(), Ok(()));
        let b = RequestBounds {
            max_topic_bytes: 70_000,
            ..RequestBounds::default()
        };
        assert!(b.validate().is_err_and(|e| e.contains("max_topic_bytes")));
        let b = RequestBounds {
            max_topic_bytes: 0,
            ..RequestBounds::default()
        };
        assert!(b.validate().is_err());
    }
}

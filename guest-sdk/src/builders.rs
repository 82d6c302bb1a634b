//! Constructors and builders for the request, certificate and verdict types.
//!
//! The types are generated from the WIT contract, so these are inherent impls
//! here rather than derives there. They exist for native unit tests: build a
//! request the way the host would hand it over, call the policy's check,
//! look at the verdict.

use crate::{
    Access, Attribute, Certificate, ConnectRequest, ConnectVerdict, Deny, DenyReason, Grant,
    Lifetime, TopicAnswer, TopicRequest, TopicVerdict, UserProperty,
};

impl ConnectRequest {
    /// A CONNECT from `client_id` as the host hands it over by default:
    /// MQTT 3.1.1 (level 4), clean start, keep alive 60 s, no username,
    /// password, certificates or user properties.
    ///
    /// ```
    /// use mqtt_policy_sdk::prelude::*;
    ///
    /// let request = ConnectRequest::new("sensor-1")
    ///     .username("alice")
    ///     .password("secret")
    ///     .protocol_version(5)
    ///     .user_property("region", "eu")
    ///     .certificate(Certificate::default().common_name("sensor-1"));
    /// assert_eq!(request.password_text(), Some("secret"));
    /// assert_eq!(request.leaf_certificate().and_then(|c| c.common_name.as_deref()), Some("sensor-1"));
    /// ```
    pub fn new(client_id: impl Into<String>) -> Self {
        ConnectRequest {
            client_id: client_id.into(),
            username: None,
            password: None,
            protocol_version: 4,
            clean_start: true,
            keep_alive: 60,
            peer_address: None,
            listener: None,
            user_properties: Vec::new(),
            certificates: Vec::new(),
        }
    }

    /// Set the username.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Set the password: text (`"secret"`) or bytes (`vec![0xff, 0]`), as
    /// sent on the wire.
    pub fn password(mut self, password: impl Into<Vec<u8>>) -> Self {
        self.password = Some(password.into());
        self
    }

    /// Set the MQTT protocol level: 3 (3.1), 4 (3.1.1) or 5 (5.0). The host
    /// only ever hands over these three.
    pub fn protocol_version(mut self, level: u8) -> Self {
        self.protocol_version = level;
        self
    }

    /// Set the clean start (MQTT 5) / clean session (3.1.1) flag.
    pub fn clean_start(mut self, clean_start: bool) -> Self {
        self.clean_start = clean_start;
        self
    }

    /// Set the keep alive, in seconds.
    pub fn keep_alive(mut self, seconds: u16) -> Self {
        self.keep_alive = seconds;
        self
    }

    /// Set the peer address (`ip:port`).
    pub fn peer_address(mut self, address: impl Into<String>) -> Self {
        self.peer_address = Some(address.into());
        self
    }

    /// Set the broker's name for the listener the client came in on.
    pub fn listener(mut self, listener: impl Into<String>) -> Self {
        self.listener = Some(listener.into());
        self
    }

    /// Add an MQTT 5 user property (names may repeat; order is kept).
    ///
    /// On an owned request this builder shadows
    /// [`ConnectRequestExt::user_property`](crate::request::ConnectRequestExt::user_property);
    /// read properties through a reference, as a check does: `(&request).user_property("region")`.
    pub fn user_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.user_properties.push(UserProperty {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// Append a certificate to the client's chain: the first one added is
    /// the leaf, the client's own certificate.
    pub fn certificate(mut self, certificate: Certificate) -> Self {
        self.certificates.push(certificate);
        self
    }
}

// `Certificate` is generated from the WIT, so a derive cannot be attached to it here.
impl Default for Certificate {
    /// An empty certificate (no DER, empty thumbprints and names): a starting
    /// point for the builders below, as the host would never send one.
    fn default() -> Self {
        Certificate {
            der: Vec::new(),
            sha1: String::new(),
            sha256: String::new(),
            subject: String::new(),
            issuer: String::new(),
            common_name: None,
            sans: Vec::new(),
            serial: String::new(),
            not_before: 0,
            not_after: 0,
        }
    }
}

impl Certificate {
    /// Set the subject's common name, and the subject to `CN=<cn>` if it is
    /// still empty.
    ///
    /// ```
    /// use mqtt_policy_sdk::Certificate;
    ///
    /// let cert = Certificate::default()
    ///     .common_name("device-1")
    ///     .sha1("47:29:8b:52:5a:46:bd:21:2b:c5:58:cd:02:6d:d4:8e:32:d3:fd:95")
    ///     .san("device-1.example");
    /// assert_eq!(cert.subject, "CN=device-1");
    /// assert_eq!(cert.sha1, "47298B525A46BD212BC558CD026DD48E32D3FD95");
    /// ```
    pub fn common_name(mut self, cn: impl Into<String>) -> Self {
        let cn = cn.into();
        if self.subject.is_empty() {
            self.subject = format!("CN={cn}");
        }
        self.common_name = Some(cn);
        self
    }

    /// Set the SHA-1 thumbprint. Written as operators do (any case, `:`
    /// separators); stored as the host sends it: uppercase hex, no separators.
    pub fn sha1(mut self, thumbprint: &str) -> Self {
        self.sha1 = host_hex(thumbprint);
        self
    }

    /// Set the SHA-256 thumbprint, normalized like [`Certificate::sha1`].
    pub fn sha256(mut self, thumbprint: &str) -> Self {
        self.sha256 = host_hex(thumbprint);
        self
    }

    /// Set the subject (RFC 4514 text, e.g. `CN=device-1,O=Example`).
    pub fn subject(mut self, subject: impl Into<String>) -> Self {
        self.subject = subject.into();
        self
    }

    /// Set the issuer (RFC 4514 text).
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = issuer.into();
        self
    }

    /// Add a subject alternative name.
    pub fn san(mut self, name: impl Into<String>) -> Self {
        self.sans.push(name.into());
        self
    }

    /// Set the serial number (uppercase hex).
    pub fn serial(mut self, serial: impl Into<String>) -> Self {
        self.serial = serial.into();
        self
    }

    /// Set the validity period, in seconds since the Unix epoch.
    pub fn validity(mut self, not_before: i64, not_after: i64) -> Self {
        self.not_before = not_before;
        self.not_after = not_after;
        self
    }

    /// Set the DER encoding.
    pub fn der(mut self, der: impl Into<Vec<u8>>) -> Self {
        self.der = der.into();
        self
    }
}

/// Uppercase hex without separators, as the host formats thumbprints.
fn host_hex(text: &str) -> String {
    text.chars()
        .filter(|c| !matches!(c, ':' | ' ' | '-'))
        .map(|c| c.to_ascii_uppercase())
        .collect()
}

impl TopicRequest {
    /// A request by `client_id` to do `access` on `topic` (a topic name for
    /// publish and receive, a filter for subscribe and unsubscribe): QoS 0,
    /// not retained, no username, no session attributes or roles.
    ///
    /// In a real session the host copies the attributes and roles granted at
    /// connect into every topic request; [`TopicRequest::grant`] does the
    /// same in a test.
    ///
    /// ```
    /// use mqtt_policy_sdk::prelude::*;
    ///
    /// let request = TopicRequest::new("sensor-1", Access::Subscribe, "sensors/sensor-1/#")
    ///     .qos(1)
    ///     .attribute("cert_cn", "sensor-1")
    ///     .role("device");
    /// let request = &request; // a check sees a reference
    /// assert_eq!(request.attribute("cert_cn"), Some("sensor-1"));
    /// assert!(request.has_role("device"));
    /// ```
    pub fn new(client_id: impl Into<String>, access: Access, topic: impl Into<String>) -> Self {
        TopicRequest {
            client_id: client_id.into(),
            username: None,
            topic: topic.into(),
            access,
            qos: 0,
            retain: false,
            attributes: Vec::new(),
            roles: Vec::new(),
        }
    }

    /// Set the username the session connected with.
    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    /// Set the QoS (0, 1 or 2): of the publish, the subscription, or the
    /// delivery.
    pub fn qos(mut self, qos: u8) -> Self {
        self.qos = qos;
        self
    }

    /// Set the retain flag (publish and receive).
    pub fn retain(mut self, retain: bool) -> Self {
        self.retain = retain;
        self
    }

    /// Add a session attribute.
    ///
    /// On an owned request this builder shadows
    /// [`TopicRequestExt::attribute`](crate::request::TopicRequestExt::attribute);
    /// read attributes through a reference, as a check does.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push(Attribute {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Add a list-valued session attribute (JSON array text, as
    /// [`Grant::list_attribute`] stores it).
    pub fn list_attribute<S: AsRef<str>>(self, key: impl Into<String>, values: &[S]) -> Self {
        let values: Vec<&str> = values.iter().map(AsRef::as_ref).collect();
        let json = serde_json::to_string(&values).unwrap_or_else(|_| "[]".into());
        self.attribute(key, json)
    }

    /// Add a role.
    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.roles.push(role.into());
        self
    }

    /// Add the attributes and roles of a connect grant, as the host does for
    /// every topic request of the session.
    ///
    /// ```
    /// use mqtt_policy_sdk::prelude::*;
    ///
    /// let grant = Grant::default().attribute("sub", "t-1").role("device");
    /// let request = TopicRequest::new("t-1", Access::Publish, "telemetry").grant(&grant);
    /// assert!((&request).has_role("device"));
    /// ```
    pub fn grant(mut self, grant: &Grant) -> Self {
        self.attributes.extend(grant.attributes.iter().cloned());
        self.roles.extend(grant.roles.iter().cloned());
        self
    }
}

impl ConnectVerdict {
    /// The grant, if this is an allow.
    ///
    /// ```
    /// use mqtt_policy_sdk::prelude::*;
    ///
    /// let verdict = allow_connect(Grant::default().role("device"));
    /// assert_eq!(verdict.grant().map(|g| g.roles.clone()), Some(vec!["device".to_string()]));
    /// assert!(verdict.is_allow());
    /// ```
    pub fn grant(&self) -> Option<&Grant> {
        match self {
            ConnectVerdict::Allow(grant) => Some(grant),
            ConnectVerdict::Deny(_) | ConnectVerdict::Defer => None,
        }
    }

    /// The deny, if this is one.
    pub fn deny(&self) -> Option<&Deny> {
        match self {
            ConnectVerdict::Deny(deny) => Some(deny),
            ConnectVerdict::Allow(_) | ConnectVerdict::Defer => None,
        }
    }

    /// The deny reason, if this is a deny.
    pub fn deny_reason(&self) -> Option<DenyReason> {
        self.deny().map(|d| d.reason)
    }

    /// Is this an allow?
    pub fn is_allow(&self) -> bool {
        matches!(self, ConnectVerdict::Allow(_))
    }

    /// Is this a defer (no opinion)?
    pub fn is_defer(&self) -> bool {
        matches!(self, ConnectVerdict::Defer)
    }
}

impl TopicVerdict {
    /// The deny, if this is one.
    pub fn deny(&self) -> Option<&Deny> {
        match self {
            TopicVerdict::Deny(deny) => Some(deny),
            TopicVerdict::Allow | TopicVerdict::Defer => None,
        }
    }

    /// The deny reason, if this is a deny.
    ///
    /// ```
    /// use mqtt_policy_sdk::prelude::*;
    ///
    /// let verdict = deny_topic(DenyReason::NotAuthorized, "not yours");
    /// assert_eq!(verdict.deny_reason(), Some(DenyReason::NotAuthorized));
    /// assert!(!verdict.is_allow());
    /// ```
    pub fn deny_reason(&self) -> Option<DenyReason> {
        self.deny().map(|d| d.reason)
    }

    /// Is this an allow?
    pub fn is_allow(&self) -> bool {
        matches!(self, TopicVerdict::Allow)
    }

    /// Is this a defer (no opinion)?
    pub fn is_defer(&self) -> bool {
        matches!(self, TopicVerdict::Defer)
    }
}

/// An explicit verdict holds for this request only ([`Lifetime::None`]):
/// say [`TopicAnswer::for_session`] or [`TopicAnswer::until_unix_ms`] when
/// it may be cached.
impl From<TopicVerdict> for TopicAnswer {
    fn from(verdict: TopicVerdict) -> Self {
        TopicAnswer {
            verdict,
            lifetime: Lifetime::None,
        }
    }
}

impl TopicAnswer {
    /// The verdict holds until the session ends (or the chain is reloaded):
    /// the host asks again only for a different access, topic, QoS or
    /// retain flag. Only for a verdict that depends on nothing but the
    /// request, the session's grant and the policy's configuration.
    ///
    /// ```
    /// use mqtt_policy_sdk::prelude::*;
    ///
    /// let answer = allow_topic().for_session();
    /// assert!(answer.is_allow());
    /// assert_eq!(answer.lifetime, Lifetime::Session);
    /// ```
    pub fn for_session(mut self) -> Self {
        self.lifetime = Lifetime::Session;
        self
    }

    /// The verdict holds until this wall-clock instant (milliseconds since
    /// the Unix epoch, e.g. a token's `exp` × 1000), and at most until the
    /// session ends.
    pub fn until_unix_ms(mut self, instant: u64) -> Self {
        self.lifetime = Lifetime::Until(instant);
        self
    }

    /// The deny, if this is one.
    pub fn deny(&self) -> Option<&Deny> {
        self.verdict.deny()
    }

    /// The deny reason, if this is a deny.
    pub fn deny_reason(&self) -> Option<DenyReason> {
        self.verdict.deny_reason()
    }

    /// Is this an allow?
    pub fn is_allow(&self) -> bool {
        self.verdict.is_allow()
    }

    /// Is this a defer (no opinion)?
    pub fn is_defer(&self) -> bool {
        self.verdict.is_defer()
    }
}

#[cfg(test)]
mod tests {
    use crate::prelude::*;

    #[test]
    fn builders_fill_what_the_host_would() {
        let r = ConnectRequest::new("c")
            .password(vec![0xff, 0])
            .keep_alive(5)
            .clean_start(false)
            .peer_address("192.0.2.1:1883")
            .listener("tls");
        assert_eq!(r.password.as_deref(), Some(&[0xff, 0][..]));
        assert_eq!(r.password_text(), None);
        assert_eq!(
            (r.protocol_version, r.keep_alive, r.clean_start),
            (4, 5, false)
        );
        let cert = Certificate::default()
            .subject("CN=a,O=b")
            .common_name("a")
            .sha256("ab cd")
            .validity(1, 2);
        assert_eq!(
            (cert.subject.as_str(), cert.sha256.as_str()),
            ("CN=a,O=b", "ABCD")
        );
        let t = TopicRequest::new("c", Access::Receive, "a/b")
            .username("u")
            .retain(true)
            .list_attribute("topics", &["a/#"]);
        assert_eq!(t.attribute_list("topics"), Some(vec!["a/#".to_string()]));
        assert_eq!(t.username.as_deref(), Some("u"));
    }
}

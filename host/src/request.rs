//! What a broker asks about: the host-owned request types.
//!
//! These are the types adapters and embedders build. They mirror the records
//! of the WIT contract but belong to the host: the host converts them to the
//! WIT version each policy was built against (`wit/`), so a new contract
//! version changes no adapter. A password never shows in `Debug` output.

use std::fmt;

use crate::cert::{self, Certificate};
use crate::error::{CertError, ProtocolError};

/// The MQTT protocol level of a connection (the CONNECT packet's level byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ProtocolVersion {
    /// MQTT 3.1 (level 3).
    V3_1,
    /// MQTT 3.1.1 (level 4).
    V3_1_1,
    /// MQTT 5.0 (level 5).
    V5,
}

impl ProtocolVersion {
    /// The protocol level byte: 3, 4 or 5.
    pub fn level(self) -> u8 {
        match self {
            ProtocolVersion::V3_1 => 3,
            ProtocolVersion::V3_1_1 => 4,
            ProtocolVersion::V5 => 5,
        }
    }
}

impl TryFrom<u8> for ProtocolVersion {
    type Error = ProtocolError;

    fn try_from(level: u8) -> Result<Self, ProtocolError> {
        match level {
            3 => Ok(ProtocolVersion::V3_1),
            4 => Ok(ProtocolVersion::V3_1_1),
            5 => Ok(ProtocolVersion::V5),
            other => Err(ProtocolError(other)),
        }
    }
}

impl fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ProtocolVersion::V3_1 => "3.1",
            ProtocolVersion::V3_1_1 => "3.1.1",
            ProtocolVersion::V5 => "5.0",
        })
    }
}

/// The password field of a CONNECT: binary in MQTT, passed to policies as
/// sent. Its `Debug` output shows only its length.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Password(Vec<u8>);

impl Password {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Password(bytes.into())
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0.len())
    }
}

impl From<Vec<u8>> for Password {
    fn from(bytes: Vec<u8>) -> Self {
        Password(bytes)
    }
}

impl From<&[u8]> for Password {
    fn from(bytes: &[u8]) -> Self {
        Password(bytes.to_vec())
    }
}

impl From<&str> for Password {
    fn from(text: &str) -> Self {
        Password(text.as_bytes().to_vec())
    }
}

/// An MQTT 5 user property (order preserved, names may repeat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserProperty {
    pub name: String,
    pub value: String,
}

/// A session attribute granted by a connect verdict and handed to every
/// topic check of the session. Lists are JSON array text by convention.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attribute {
    pub key: String,
    pub value: String,
}

/// A CONNECT's will message: published on the client's behalf when it
/// disconnects uncleanly, so its publish right is checked at CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    pub topic: String,
    pub qos: u8,
    pub retain: bool,
}

/// Everything known about a client when it sends CONNECT.
///
/// ```
/// use mqtt_policy_host::{ConnectRequest, ProtocolVersion};
/// let request = ConnectRequest::new("device-1")
///     .username("JWT")
///     .password("eyJhbGciOi...")
///     .protocol_version(ProtocolVersion::V5);
/// assert!(!format!("{request:?}").contains("eyJ"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<Password>,
    pub protocol_version: ProtocolVersion,
    pub clean_start: bool,
    /// Keep alive in seconds.
    pub keep_alive: u16,
    /// Peer address as `ip:port`, when the broker knows it.
    pub peer_address: Option<String>,
    /// The broker's name for the listener the client came in on.
    pub listener: Option<String>,
    /// MQTT 5 user properties of the CONNECT packet.
    pub user_properties: Vec<UserProperty>,
    /// The parsed TLS client certificate chain, leaf first: set it from
    /// what the TLS handshake verified with
    /// [`ConnectRequest::certificate_chain_der`].
    pub certificates: Vec<Certificate>,
    /// The will message, if the CONNECT carries one.
    pub will: Option<Will>,
    /// Why the chain handed over did not parse: the host denies such a
    /// CONNECT before any policy runs.
    certificate_error: Option<CertError>,
}

impl ConnectRequest {
    /// A CONNECT from `client_id` with MQTT 3.1.1 defaults: clean start,
    /// keep alive 60 s, no credentials.
    pub fn new(client_id: impl Into<String>) -> Self {
        ConnectRequest {
            client_id: client_id.into(),
            username: None,
            password: None,
            protocol_version: ProtocolVersion::V3_1_1,
            clean_start: true,
            keep_alive: 60,
            peer_address: None,
            listener: None,
            user_properties: Vec::new(),
            certificates: Vec::new(),
            will: None,
            certificate_error: None,
        }
    }

    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    pub fn password(mut self, password: impl Into<Password>) -> Self {
        self.password = Some(password.into());
        self
    }

    pub fn protocol_version(mut self, version: ProtocolVersion) -> Self {
        self.protocol_version = version;
        self
    }

    pub fn clean_start(mut self, clean_start: bool) -> Self {
        self.clean_start = clean_start;
        self
    }

    pub fn keep_alive(mut self, seconds: u16) -> Self {
        self.keep_alive = seconds;
        self
    }

    pub fn peer_address(mut self, address: impl Into<String>) -> Self {
        self.peer_address = Some(address.into());
        self
    }

    pub fn listener(mut self, listener: impl Into<String>) -> Self {
        self.listener = Some(listener.into());
        self
    }

    pub fn user_property(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.user_properties.push(UserProperty {
            name: name.into(),
            value: value.into(),
        });
        self
    }

    /// Already parsed certificates (see [`crate::cert`]).
    pub fn certificates(mut self, chain: Vec<Certificate>) -> Self {
        self.certificates = chain;
        self.certificate_error = None;
        self
    }

    /// The client's certificate chain as raw DER, leaf first, exactly as the
    /// TLS handshake verified it. The host parses it here; a chain that does
    /// not parse makes every check of this request a host deny naming the
    /// problem (never an allow, never an error to handle).
    pub fn certificate_chain_der<I, B>(mut self, ders: I) -> Self
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let ders: Vec<B> = ders.into_iter().collect();
        self.set_chain(cert::parse_der_chain(ders.iter().map(AsRef::as_ref)));
        self
    }

    /// The client's certificate chain as PEM text (one or more `CERTIFICATE`
    /// blocks, leaf first), as webhooks receive it. Parsed like
    /// [`ConnectRequest::certificate_chain_der`].
    pub fn certificate_chain_pem(mut self, pem: &[u8]) -> Self {
        self.set_chain(cert::parse_chain(pem));
        self
    }

    fn set_chain(&mut self, parsed: Result<Vec<Certificate>, CertError>) {
        match parsed {
            Ok(chain) => {
                self.certificates = chain;
                self.certificate_error = None;
            }
            Err(e) => {
                self.certificates = Vec::new();
                self.certificate_error = Some(e);
            }
        }
    }

    /// Why the certificate chain handed over could not be parsed, if it
    /// could not.
    pub fn certificate_error(&self) -> Option<&CertError> {
        self.certificate_error.as_ref()
    }

    pub fn will(mut self, topic: impl Into<String>, qos: u8, retain: bool) -> Self {
        self.will = Some(Will {
            topic: topic.into(),
            qos,
            retain,
        });
        self
    }
}

/// What a client wants to do with a topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    /// PUBLISH to a topic name.
    Publish,
    /// SUBSCRIBE with a topic filter.
    Subscribe,
    /// Delivery of a message on a topic name to this client (retained and
    /// will messages included).
    Receive,
    /// UNSUBSCRIBE from a topic filter.
    Unsubscribe,
}

impl Access {
    /// The access kind as the contract names it.
    pub fn as_str(self) -> &'static str {
        match self {
            Access::Publish => "publish",
            Access::Subscribe => "subscribe",
            Access::Receive => "receive",
            Access::Unsubscribe => "unsubscribe",
        }
    }
}

/// A topic-level check within an accepted session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicRequest {
    pub client_id: String,
    pub username: Option<String>,
    /// A topic name (publish, receive) or filter (subscribe, unsubscribe).
    pub topic: String,
    pub access: Access,
    /// QoS of the publish or delivery, or the QoS a subscription asks for.
    pub qos: u8,
    /// The retain flag of a publish or of a delivered message.
    pub retain: bool,
    /// Session attributes granted by the connect verdict.
    pub attributes: Vec<Attribute>,
    /// Roles granted by the connect verdict.
    pub roles: Vec<String>,
}

impl TopicRequest {
    /// A request by `client_id` to do `access` on `topic`, QoS 0, no grant.
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

    pub fn username(mut self, username: impl Into<String>) -> Self {
        self.username = Some(username.into());
        self
    }

    pub fn qos(mut self, qos: u8) -> Self {
        self.qos = qos;
        self
    }

    pub fn retain(mut self, retain: bool) -> Self {
        self.retain = retain;
        self
    }

    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push(Attribute {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    pub fn role(mut self, role: impl Into<String>) -> Self {
        self.roles.push(role.into());
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_shows_the_password() {
        let request = ConnectRequest::new("c").password("hunter2-secret");
        let shown = format!("{request:?} {request:#?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted 14 bytes"), "{shown}");
    }

    #[test]
    fn protocol_levels() {
        assert_eq!(ProtocolVersion::try_from(5), Ok(ProtocolVersion::V5));
        assert_eq!(ProtocolVersion::try_from(6), Err(ProtocolError(6)));
        assert_eq!(ProtocolVersion::V3_1.level(), 3);
    }
}

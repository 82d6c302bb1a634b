//! What a policy answers: the host-owned verdict types.
//!
//! Each contract version's verdicts are converted to these at the boundary
//! (`wit/`), so the chain, the session and every adapter see one set of types.

use crate::request::Attribute;

/// Why a request is refused. The host maps it to the code of the client's
/// protocol version and packet (see [`crate::codes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DenyReason {
    NotAuthorized,
    BadUsernameOrPassword,
    Banned,
    BadAuthenticationMethod,
    ClientIdentifierNotValid,
    ServerUnavailable,
}

impl DenyReason {
    /// The reason as the contract names it (`not-authorized`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            DenyReason::NotAuthorized => "not-authorized",
            DenyReason::BadUsernameOrPassword => "bad-username-or-password",
            DenyReason::Banned => "banned",
            DenyReason::BadAuthenticationMethod => "bad-authentication-method",
            DenyReason::ClientIdentifierNotValid => "client-identifier-not-valid",
            DenyReason::ServerUnavailable => "server-unavailable",
        }
    }
}

impl std::fmt::Display for DenyReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: the reason plus a message for logs (never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deny {
    pub reason: DenyReason,
    pub message: String,
}

impl Deny {
    pub fn new(reason: DenyReason, message: impl Into<String>) -> Self {
        Deny {
            reason,
            message: message.into(),
        }
    }
}

/// What an accepted connection is granted for the rest of its session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    pub attributes: Vec<Attribute>,
    pub roles: Vec<String>,
}

impl Grant {
    /// The attribute granted under `key`, if any.
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|a| a.key == key)
            .map(|a| a.value.as_str())
    }
}

/// A policy's answer to a connect check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectVerdict {
    Allow(Grant),
    Deny(Deny),
    Defer,
}

/// A policy's answer to a topic check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicVerdict {
    Allow,
    Deny(Deny),
    Defer,
}

/// How long a topic verdict holds for the session that asked, for the same
/// access, topic, QoS and retain flag (contract `0.2.0`'s `lifetime`). The
/// session caches a decision for the shortest lifetime among the policies
/// the chain asked, and never past a reload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum VerdictLifetime {
    /// Ask again next time. What `0.1.0` policies and failures get.
    #[default]
    None,
    /// Until this wall-clock instant, in milliseconds since the Unix epoch.
    Until(u64),
    /// Until the session ends.
    Session,
}

impl VerdictLifetime {
    /// The shorter of two lifetimes: a decision holds only as long as every
    /// verdict it rests on.
    pub fn min(self, other: VerdictLifetime) -> VerdictLifetime {
        use VerdictLifetime::*;
        match (self, other) {
            (None, _) | (_, None) => None,
            (Until(a), Until(b)) => Until(a.min(b)),
            (Until(t), Session) | (Session, Until(t)) => Until(t),
            (Session, Session) => Session,
        }
    }

    /// May a decision with this lifetime be kept at all?
    pub fn is_cacheable(self) -> bool {
        self != VerdictLifetime::None
    }
}

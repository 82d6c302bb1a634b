//! The WIT contract as the host speaks it: one module per released version of
//! `mqtt:policy`, each generated from its frozen folder under `wit/`, with
//! conversions between that version's records and the host's own types
//! ([`crate::request`], [`crate::verdict`]).
//!
//! Adding a version is one file here plus the match arms the compiler points
//! to: [`PolicyPre`] and [`PolicyInstance`] are enums over versions, and a
//! component is matched against the newest version first.

use wasmtime::component::{Component, Linker};
use wasmtime::{AsContextMut, Result};

use crate::request::{ConnectRequest, TopicRequest};
use crate::state::StoreState;
use crate::verdict::{ConnectVerdict, TopicVerdict, VerdictLifetime};

pub(crate) mod v0_1_0;
pub(crate) mod v0_2_0;

/// Every contract version the host loads, newest first.
pub const VERSIONS: &[&str] = &[v0_2_0::VERSION, v0_1_0::VERSION];

/// Link the host imports of every version.
pub(crate) fn add_to_linker(linker: &mut Linker<StoreState>) -> Result<()> {
    v0_2_0::add_to_linker(linker)?;
    v0_1_0::add_to_linker(linker)
}

/// A component checked against one contract version and pre-linked.
pub(crate) enum PolicyPre {
    V0_2_0(v0_2_0::PolicyPre<StoreState>),
    V0_1_0(v0_1_0::PolicyPre<StoreState>),
}

/// One instance of a policy, of whichever version it was built against.
pub(crate) enum PolicyInstance {
    V0_2_0(v0_2_0::Policy),
    V0_1_0(v0_1_0::Policy),
}

impl PolicyPre {
    /// Match `component` against each version, newest first. The error is
    /// the newest version's, which is what a policy author should target.
    pub(crate) fn new(linker: &Linker<StoreState>, component: &Component) -> Result<Self> {
        let instance_pre = linker.instantiate_pre(component)?;
        match v0_2_0::PolicyPre::new(instance_pre.clone()) {
            Ok(pre) => Ok(PolicyPre::V0_2_0(pre)),
            Err(newest) => v0_1_0::PolicyPre::new(instance_pre)
                .map(PolicyPre::V0_1_0)
                .map_err(|_| newest),
        }
    }

    /// The contract version the policy was built against.
    pub(crate) fn version(&self) -> &'static str {
        match self {
            PolicyPre::V0_2_0(_) => v0_2_0::VERSION,
            PolicyPre::V0_1_0(_) => v0_1_0::VERSION,
        }
    }

    pub(crate) fn instantiate(
        &self,
        store: impl AsContextMut<Data = StoreState>,
    ) -> Result<PolicyInstance> {
        Ok(match self {
            PolicyPre::V0_2_0(pre) => PolicyInstance::V0_2_0(pre.instantiate(store)?),
            PolicyPre::V0_1_0(pre) => PolicyInstance::V0_1_0(pre.instantiate(store)?),
        })
    }
}

impl PolicyInstance {
    pub(crate) fn init(
        &self,
        store: impl AsContextMut<Data = StoreState>,
        config: &str,
    ) -> Result<std::result::Result<(), String>> {
        match self {
            PolicyInstance::V0_2_0(p) => p.call_init(store, config),
            PolicyInstance::V0_1_0(p) => p.call_init(store, config),
        }
    }

    pub(crate) fn connect_check(
        &self,
        store: impl AsContextMut<Data = StoreState>,
        request: &ConnectRequest,
    ) -> Result<ConnectVerdict> {
        match self {
            PolicyInstance::V0_2_0(p) => v0_2_0::connect_check(p, store, request),
            PolicyInstance::V0_1_0(p) => v0_1_0::connect_check(p, store, request),
        }
    }

    pub(crate) fn topic_check(
        &self,
        store: impl AsContextMut<Data = StoreState>,
        request: &TopicRequest,
    ) -> Result<(TopicVerdict, VerdictLifetime)> {
        match self {
            PolicyInstance::V0_2_0(p) => v0_2_0::topic_check(p, store, request),
            // 0.1.0 cannot say how long a verdict holds: never cached.
            PolicyInstance::V0_1_0(p) => Ok((
                v0_1_0::topic_check(p, store, request)?,
                VerdictLifetime::None,
            )),
        }
    }
}

/// The conversions every version shares (results, log levels, the access
/// kind), written once: expanded inside each version's module, where `wit`
/// names that version's generated types (the same shape in every version so
/// far). Requests are converted per version: `0.2.0` lowers them borrowed.
macro_rules! shared_conversions {
    () => {
        fn access(a: host::Access) -> wit::Access {
            match a {
                host::Access::Publish => wit::Access::Publish,
                host::Access::Subscribe => wit::Access::Subscribe,
                host::Access::Receive => wit::Access::Receive,
                host::Access::Unsubscribe => wit::Access::Unsubscribe,
            }
        }

        fn deny(d: wit::Deny) -> verdict::Deny {
            let reason = match d.reason {
                wit::DenyReason::NotAuthorized => verdict::DenyReason::NotAuthorized,
                wit::DenyReason::BadUsernameOrPassword => {
                    verdict::DenyReason::BadUsernameOrPassword
                }
                wit::DenyReason::Banned => verdict::DenyReason::Banned,
                wit::DenyReason::BadAuthenticationMethod => {
                    verdict::DenyReason::BadAuthenticationMethod
                }
                wit::DenyReason::ClientIdentifierNotValid => {
                    verdict::DenyReason::ClientIdentifierNotValid
                }
                wit::DenyReason::ServerUnavailable => verdict::DenyReason::ServerUnavailable,
            };
            verdict::Deny {
                reason,
                message: d.message,
            }
        }

        /// This version's connect verdict as the host's.
        fn connect_verdict(v: wit::ConnectVerdict) -> verdict::ConnectVerdict {
            match v {
                wit::ConnectVerdict::Allow(g) => verdict::ConnectVerdict::Allow(verdict::Grant {
                    attributes: g
                        .attributes
                        .into_iter()
                        .map(|a| host::Attribute {
                            key: a.key,
                            value: a.value,
                        })
                        .collect(),
                    roles: g.roles,
                }),
                wit::ConnectVerdict::Deny(d) => verdict::ConnectVerdict::Deny(deny(d)),
                wit::ConnectVerdict::Defer => verdict::ConnectVerdict::Defer,
            }
        }

        /// This version's topic verdict as the host's.
        fn topic_verdict(v: wit::TopicVerdict) -> verdict::TopicVerdict {
            match v {
                wit::TopicVerdict::Allow => verdict::TopicVerdict::Allow,
                wit::TopicVerdict::Deny(d) => verdict::TopicVerdict::Deny(deny(d)),
                wit::TopicVerdict::Defer => verdict::TopicVerdict::Defer,
            }
        }

        /// The guest's log level as the host's.
        fn level(level: mqtt::policy::host::Level) -> GuestLevel {
            use mqtt::policy::host::Level;
            match level {
                Level::Trace => GuestLevel::Trace,
                Level::Debug => GuestLevel::Debug,
                Level::Info => GuestLevel::Info,
                Level::Warn => GuestLevel::Warn,
                Level::Error => GuestLevel::Error,
            }
        }
    };
}
pub(crate) use shared_conversions;

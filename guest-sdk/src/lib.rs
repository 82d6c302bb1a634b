//! Write an MQTT authentication/authorization policy in Rust, compile it to a
//! `wasm32-wasip2` component, and load it into any broker that embeds
//! `mqtt-policy-host`.
//!
//! A policy is a type implementing [`Policy`]; every check defaults to
//! [`ConnectVerdict::Defer`] / [`TopicVerdict::Defer`], so a policy only writes
//! what it decides. [`export_policy!`] turns it into the component's exports.
//!
//! ```
//! use mqtt_policy_sdk::prelude::*;
//!
//! struct OnlyDevices;
//!
//! impl Policy for OnlyDevices {
//!     fn new(_config: &str) -> Result<Self, String> {
//!         Ok(OnlyDevices)
//!     }
//!     fn connect_check(&self, req: &ConnectRequest) -> ConnectVerdict {
//!         if req.client_id.starts_with("device-") {
//!             allow_connect(Grant::default())
//!         } else {
//!             deny_connect(DenyReason::ClientIdentifierNotValid, "not a device")
//!         }
//!     }
//! }
//!
//! export_policy!(OnlyDevices);
//! ```
//!
//! Policies are plain Rust: unit-test them natively with `cargo test` by
//! calling `Policy::new` and the check methods; no wasm needed.
//!
//! Helpers: [`topic`] (MQTT filter matching and coverage), [`jwt`] (token
//! verification with safe defaults), [`request`] (typed access to passwords,
//! certificates and session attributes), [`log`] (host logging and clock).

#[doc(hidden)]
#[allow(clippy::too_many_arguments)] // generated code
pub mod bindings {
    wit_bindgen::generate!({
        world: "policy",
        path: "../wit/v0.1.0",
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
        default_bindings_module: "mqtt_policy_sdk::bindings",
        additional_derives: [PartialEq, Eq],
    });
}

pub mod jwt;
pub mod log;
pub mod request;
pub mod topic;

pub use bindings::mqtt::policy::host::Level;
pub use bindings::mqtt::policy::types::{
    Access, Attribute, Certificate, ConnectRequest, ConnectVerdict, Deny, DenyReason, Grant,
    TopicRequest, TopicVerdict, UserProperty,
};

/// Everything a policy usually needs, in one `use`.
pub mod prelude {
    pub use crate::request::{ConnectRequestExt as _, TopicRequestExt as _};
    pub use crate::{
        Access, Attribute, Certificate, ConnectRequest, ConnectVerdict, Deny, DenyReason, Grant,
        Policy, TopicRequest, TopicVerdict, UserProperty, allow_connect, deny_connect, deny_topic,
        export_policy,
    };
}

/// A policy. `new` runs once per instance with the configuration JSON; an
/// error fails the policy's load with that message.
///
/// # Instances are shared by clients
///
/// The host keeps a few warm instances of each policy and runs every check on
/// one of them. One instance — the same `self`, the same statics, the same
/// heap — serves checks for many different clients, one after another, and
/// two checks of the same client may run on different instances. Anything a
/// check keeps (in `self` through interior mutability, in a `static`, in a
/// cache, or in memory it reads back later) can be seen by a later check of a
/// *different* client. Never keep one client's password, token or verdict
/// where another client's check could read it or be influenced by it; treat
/// all state as shared by everyone who connects, and expect it to vanish at
/// any time (instances are created and dropped as the host sees fit).
///
/// What the host guarantees:
/// - isolation between policies: each policy runs in its own instances with
///   its own memory; no policy can read or change another's state;
/// - a fresh instance after any failure: an instance that trapped, ran past
///   its deadline or memory cap, called an import it may not use, exited, or
///   returned a malformed or oversized result is dropped, never reused;
/// - a CPU deadline per check and a memory cap per instance (32 MiB by
///   default).
///
/// What it does not guarantee: isolation between clients within one policy
/// instance.
///
/// A policy has no filesystem, network, environment, stdio or way to wait.
/// It may log through the host, read the clocks, and get a little randomness
/// (at most 4 KiB per call). `println!`, a panic message, `std::thread::sleep`
/// or a socket stops the check with an error naming the import;
/// `std::process::exit` is reported as the policy exiting.
pub trait Policy: Sized + Send + Sync + 'static {
    /// Build the policy from its configuration (JSON text; `{}` if none).
    fn new(config: &str) -> Result<Self, String>;

    /// May this client connect? Defaults to no opinion.
    fn connect_check(&self, request: &ConnectRequest) -> ConnectVerdict {
        let _ = request;
        ConnectVerdict::Defer
    }

    /// May this session do `request.access` on `request.topic`? Defaults to no opinion.
    fn topic_check(&self, request: &TopicRequest) -> TopicVerdict {
        let _ = request;
        TopicVerdict::Defer
    }
}

// `Grant` is generated from the WIT, so a derive cannot be attached to it here.
#[allow(clippy::derivable_impls)]
impl Default for Grant {
    fn default() -> Self {
        Grant {
            attributes: Vec::new(),
            roles: Vec::new(),
        }
    }
}

impl Grant {
    /// Add a session attribute.
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push(Attribute {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Add a list-valued session attribute (stored as JSON array text).
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
}

/// Accept the connection with these grants.
pub fn allow_connect(grant: Grant) -> ConnectVerdict {
    ConnectVerdict::Allow(grant)
}

/// Refuse the connection.
pub fn deny_connect(reason: DenyReason, message: impl Into<String>) -> ConnectVerdict {
    ConnectVerdict::Deny(Deny {
        reason,
        message: message.into(),
    })
}

/// Refuse the topic request.
pub fn deny_topic(reason: DenyReason, message: impl Into<String>) -> TopicVerdict {
    TopicVerdict::Deny(Deny {
        reason,
        message: message.into(),
    })
}

#[doc(hidden)]
pub mod __private {
    use super::*;
    use std::sync::OnceLock;

    pub fn init<P: Policy>(cell: &OnceLock<P>, config: &str) -> Result<(), String> {
        let policy = P::new(config)?;
        cell.set(policy)
            .map_err(|_| "init was called twice".to_string())
    }

    fn not_ready() -> Deny {
        Deny {
            reason: DenyReason::ServerUnavailable,
            message: "policy is not initialised".into(),
        }
    }

    pub fn connect<P: Policy>(cell: &OnceLock<P>, request: &ConnectRequest) -> ConnectVerdict {
        match cell.get() {
            Some(p) => p.connect_check(request),
            None => ConnectVerdict::Deny(not_ready()),
        }
    }

    pub fn topic<P: Policy>(cell: &OnceLock<P>, request: &TopicRequest) -> TopicVerdict {
        match cell.get() {
            Some(p) => p.topic_check(request),
            None => TopicVerdict::Deny(not_ready()),
        }
    }
}

/// Export a [`Policy`] type as the component's `policy` world.
#[macro_export]
macro_rules! export_policy {
    ($policy:ty) => {
        const _: () = {
            static POLICY: ::std::sync::OnceLock<$policy> = ::std::sync::OnceLock::new();

            // Only referenced by the wasm export glue below.
            #[allow(dead_code)]
            struct Export;

            impl $crate::bindings::Guest for Export {
                fn init(
                    config: ::std::string::String,
                ) -> ::std::result::Result<(), ::std::string::String> {
                    $crate::__private::init::<$policy>(&POLICY, &config)
                }
                fn connect_check(request: $crate::ConnectRequest) -> $crate::ConnectVerdict {
                    $crate::__private::connect::<$policy>(&POLICY, &request)
                }
                fn topic_check(request: $crate::TopicRequest) -> $crate::TopicVerdict {
                    $crate::__private::topic::<$policy>(&POLICY, &request)
                }
            }

            // The exported symbols exist only in the wasm build, so native
            // builds (unit tests, benchmarks) can link several policies together.
            #[cfg(target_arch = "wasm32")]
    $crate::bindings::__export_policy_world!(Export with_types_in $crate::bindings);
        };
    };
}

//! Write an MQTT authentication/authorization policy in Rust, compile it to a
//! `wasm32-wasip2` component, and load it into any broker that embeds
//! `mqtt-policy-host`.
//!
//! # A policy
//!
//! A policy is a type implementing [`Policy`]; every check defaults to
//! [`ConnectVerdict::Defer`] / [`TopicVerdict::Defer`], so a policy only writes
//! what it decides. A topic answer also says how long it holds
//! ([`Lifetime`]): explicit verdicts hold for one request unless the policy
//! says `for_session()` or `until_unix_ms(…)`, and the host caches the
//! chain's decision for exactly that long (never past a reload). [`export_policy!`] turns it into the component's exports.
//!
//! ```
//! use mqtt_policy_sdk::prelude::*;
//! use mqtt_policy_sdk::serde::Deserialize;
//!
//! /// The `[policy.config]` table of the chain file.
//! #[derive(Deserialize)]
//! #[serde(crate = "mqtt_policy_sdk::serde", deny_unknown_fields)]
//! struct Config {
//!     /// Client ids starting with this may connect.
//!     prefix: String,
//! }
//!
//! struct OnlyDevices {
//!     prefix: String,
//! }
//!
//! impl Policy for OnlyDevices {
//!     fn new(config: &str) -> Result<Self, String> {
//!         let config: Config = mqtt_policy_sdk::config(config)?;
//!         Ok(OnlyDevices { prefix: config.prefix })
//!     }
//!
//!     fn connect_check(&self, req: &ConnectRequest) -> ConnectVerdict {
//!         if req.client_id.starts_with(&self.prefix) {
//!             allow_connect(Grant::default().role("device"))
//!         } else {
//!             deny_connect(DenyReason::ClientIdentifierNotValid, "not a device")
//!         }
//!     }
//!
//!     fn topic_check(&self, req: &TopicRequest) -> TopicAnswer {
//!         // One topic level per device, whatever the client id holds. The
//!         // answer depends only on the request and the session's grant, so
//!         // the host may keep it for the session.
//!         match mqtt_policy_sdk::topic::level(&req.client_id) {
//!             Some(id) if req.has_role("device") && req.topic == format!("devices/{id}/telemetry") => {
//!                 allow_topic().for_session()
//!             }
//!             _ => deny_topic(DenyReason::NotAuthorized, "devices publish their own telemetry")
//!                 .for_session(),
//!         }
//!     }
//! }
//!
//! export_policy!(OnlyDevices);
//!
//! // A native unit test: no wasm, no host.
//! let policy = OnlyDevices::new(r#"{"prefix": "device-"}"#).unwrap();
//! let verdict = policy.connect_check(&ConnectRequest::new("device-7"));
//! let grant = verdict.grant().expect("allowed");
//! let publish = TopicRequest::new("device-7", Access::Publish, "devices/device-7/telemetry").grant(grant);
//! assert!(policy.topic_check(&publish).is_allow());
//! assert_eq!(
//!     policy.connect_check(&ConnectRequest::new("laptop")).deny_reason(),
//!     Some(DenyReason::ClientIdentifierNotValid)
//! );
//! ```
//!
//! # From nothing to a tested policy
//!
//! ```text
//! mqtt-policy new my-policy        # a crate with a policy, unit tests, a chain file and test cases
//! cd my-policy
//! cargo test                       # native unit tests
//! cargo build --release --target wasm32-wasip2
//! mqtt-policy check --config policies.toml requests/allowed.json
//! mqtt-policy test --config policies.toml tests.toml
//! ```
//!
//! The crate needs `crate-type = ["cdylib", "rlib"]` (the `cdylib` is the
//! component, the `rlib` is for native tests) and builds with
//! `cargo build --release --target wasm32-wasip2` (`rustup target add
//! wasm32-wasip2` once); the component is
//! `target/wasm32-wasip2/release/<crate name>.wasm`.
//!
//! # Configuration
//!
//! [`Policy::new`] receives the chain file's `[policy.config]` table as JSON
//! (`{}` if there is none), with each `[policy.files]` entry added as a
//! string holding that file's text. Parse it with [`config()`] into a type
//! deriving `Deserialize` with `#[serde(deny_unknown_fields)]`, so that a
//! misspelt key fails the load instead of being ignored; an error from `new`
//! fails the load of the chain with that message, so a bad config never
//! reaches a client. Derive through the SDK's re-export with
//! `#[serde(crate = "mqtt_policy_sdk::serde")]`, or depend on `serde` 1
//! yourself.
//!
//! # Testing
//!
//! Policies are plain Rust: unit-test them natively with `cargo test` by
//! calling [`Policy::new`] and the check methods. Requests are built with
//! [`ConnectRequest::new`] and [`TopicRequest::new`] and their builder methods,
//! certificates with [`Certificate::default`] and its builders; verdicts have
//! [`ConnectVerdict::grant`], [`ConnectVerdict::deny_reason`],
//! [`TopicVerdict::is_allow`] and friends. Natively, [`log`] prints to stderr
//! and reads the system clock. For the whole chain as a broker runs it, use
//! `mqtt-policy test` with a case file (see the project README).
//!
//! # What a policy cannot do
//!
//! A policy has no filesystem, network, environment, stdio or sleep: the
//! host traps `println!`, reads and waits (a failed check, a deny unless the
//! chain's `on_error` says otherwise). Log with [`log`]. Every check runs
//! under a deadline (5 ms by default) and a memory cap.
//!
//! # Panics
//!
//! A panic in a check or in `new` traps the instance: the check fails and
//! the host replaces the instance. So that the operator sees why,
//! [`export_policy!`] installs a panic hook (once per instance, in the wasm
//! build only; native tests keep Rust's default hook) that sends the panic
//! message and location through the host's `log` import just before the
//! trap, and prints nothing. The contract with the host:
//!
//! - level [`Level::Error`];
//! - `message`: the panic message (at most [`PANIC_MESSAGE_MAX_BYTES`]
//!   bytes, cut at a character boundary);
//! - `fields[0]`: `("mqtt-policy.panic", "<file>:<line>")`
//!   ([`PANIC_LOG_FIELD`]), e.g. `("mqtt-policy.panic", "src/lib.rs:42")`,
//!   the file as the compiler names it (relative to the crate's workspace
//!   root).
//!
//! The host recognises the marker and reports the failure as
//! `policy "NAME" panicked: <message> at src/lib.rs:42`. Panic messages reach
//! the operator's log: keep secrets (passwords, tokens) out of them, as out
//! of any log line.
//!
//! # Features
//!
//! - `jwt` (off by default): the `jwt` module, JWT verification with strict
//!   defaults. It pulls in RSA, ECDSA and EdDSA code, several times the build
//!   time of a policy without it, so enable it only in policies that verify
//!   tokens: `mqtt-policy-sdk = { ..., features = ["jwt"] }`.
//! - `small-alloc` (on by default): in the wasm build, a global allocator
//!   that keeps freed blocks of up to 128 bytes on per-size free lists and
//!   hands them out again first. Every check allocates a few small blocks
//!   (the request's strings, copied in by the host) and frees them on
//!   return; dlmalloc's general bins made that a tenth of a topic check.
//!   Freed small blocks are not returned to dlmalloc, so an instance keeps,
//!   per size class, the most small blocks it once had live at the same
//!   time. Turn it
//!   off (`default-features = false`) to install your own
//!   `#[global_allocator]`.
//!
//! # Helpers
//!
//! - [`topic`]: MQTT topic filter validation, matching ([`topic::matches`]),
//!   coverage of subscriptions ([`topic::covers`]) and [`topic::level`] for
//!   client-chosen values put into topics.
//! - [`request`]: password text, leaf certificate, user properties, session
//!   attributes and roles, constant-time thumbprint comparison.
//! - [`log`]: host logging and the host's clock.
//! - [`config()`]: configuration parsing with errors that name the field.
//! - `jwt` (feature `jwt`): token verification.
//! - [`serde`] and [`serde_json`], re-exported so a policy needs no other
//!   dependency.

#![warn(missing_docs)]

#[doc(hidden)]
#[allow(clippy::too_many_arguments, missing_docs)] // generated code
pub mod bindings {
    wit_bindgen::generate!({
        world: "policy",
        path: "../wit/v0.2.0",
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
        default_bindings_module: "mqtt_policy_sdk::bindings",
        additional_derives: [PartialEq, Eq],
    });
}

mod builders;
mod config;
#[cfg(feature = "jwt")]
pub mod jwt;
#[cfg(all(feature = "jwt", target_arch = "wasm32", not(feature = "guest-crypto")))]
mod jwt_crypto;
pub mod log;
pub mod request;
#[cfg(any(test, all(feature = "small-alloc", target_arch = "wasm32")))]
mod small_alloc;
pub mod topic;

/// See `small_alloc.rs`: freed small blocks are reused before asking the
/// system allocator, which makes a check's own allocations cheap.
#[cfg(all(
    feature = "small-alloc",
    target_arch = "wasm32",
    not(target_feature = "atomics")
))]
#[global_allocator]
static ALLOC: small_alloc::SmallAlloc<std::alloc::System> =
    small_alloc::SmallAlloc::new(std::alloc::System);

pub use bindings::mqtt::policy::host::Level;
pub use bindings::mqtt::policy::types::{
    Access, Attribute, Certificate, ConnectRequest, ConnectVerdict, Deny, DenyReason, Grant,
    Lifetime, TopicAnswer, TopicRequest, TopicVerdict, UserProperty,
};
/// serde, re-exported: derive with `#[serde(crate = "mqtt_policy_sdk::serde")]`.
pub use serde;
/// serde_json, re-exported (the same version the SDK parses configs with).
pub use serde_json;

/// The field name marking a panic report in the host log: see
/// [Panics](crate#panics).
pub const PANIC_LOG_FIELD: &str = "mqtt-policy.panic";

/// The longest panic message sent to the host, in bytes.
pub const PANIC_MESSAGE_MAX_BYTES: usize = 1024;

/// Parse a policy's configuration JSON into `T`.
///
/// Errors say what is wrong and where, by path (the host builds this JSON
/// from TOML, so line and column numbers would point nowhere):
///
/// ```
/// use mqtt_policy_sdk::serde::Deserialize;
///
/// #[derive(Debug, Deserialize)]
/// #[serde(crate = "mqtt_policy_sdk::serde", deny_unknown_fields)]
/// struct Rule {
///     client_id: String,
///     #[serde(default)]
///     publish: Vec<String>,
/// }
///
/// #[derive(Debug, Deserialize)]
/// #[serde(crate = "mqtt_policy_sdk::serde", deny_unknown_fields)]
/// struct Config {
///     rules: Vec<Rule>,
/// }
///
/// let ok: Config = mqtt_policy_sdk::config(r#"{"rules": [{"client_id": "a"}]}"#).unwrap();
/// assert_eq!(ok.rules[0].client_id, "a");
///
/// let bad = mqtt_policy_sdk::config::<Config>(r#"{"rules": [{"client_id": "a", "publish": [7]}]}"#);
/// assert_eq!(
///     bad.unwrap_err(),
///     "invalid config: rules[0].publish[0]: invalid type: integer `7`, expected a string"
/// );
///
/// let typo = mqtt_policy_sdk::config::<Config>(r#"{"rules": [], "rule": []}"#);
/// assert!(typo.unwrap_err().starts_with("invalid config: unknown field `rule`, expected `rules`"));
/// ```
///
/// Put `#[serde(deny_unknown_fields)]` on every config struct: without it a
/// misspelt optional key is silently ignored and its default applies.
pub fn config<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, String> {
    config::parse(json)
}

/// Everything a policy usually needs, in one `use`: the request and verdict
/// types, [`Policy`], the verdict helpers, [`export_policy!`], and the
/// request helper traits.
pub mod prelude {
    pub use crate::request::{ConnectRequestExt as _, TopicRequestExt as _};
    pub use crate::{
        Access, Attribute, Certificate, ConnectRequest, ConnectVerdict, Deny, DenyReason, Grant,
        Lifetime, Policy, TopicAnswer, TopicRequest, TopicVerdict, UserProperty, allow_connect,
        allow_topic, deny_connect, deny_topic, export_policy,
    };
}

/// A policy: built once per instance from its configuration, then asked
/// about connections and topics.
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
/// (at most 4 KiB per call). A panic is reported with its message and
/// location (the export macro's panic hook sends them through the host log);
/// `println!`, `std::thread::sleep` or a socket stops the check with an error
/// naming the import; `std::process::exit` is reported as the policy exiting.
pub trait Policy: Sized + Send + Sync + 'static {
    /// Build the policy from its configuration: JSON text, `{}` if none (see
    /// [`config()`]). An error fails the chain's load with this message.
    fn new(config: &str) -> Result<Self, String>;

    /// May this client connect? Allow (with session attributes and roles, see
    /// [`Grant`]), deny (see [`deny_connect`]) or defer to the next policy.
    /// Defaults to defer.
    fn connect_check(&self, request: &ConnectRequest) -> ConnectVerdict {
        let _ = request;
        ConnectVerdict::Defer
    }

    /// May this session do `request.access` on `request.topic`, and for how
    /// long does the answer hold? Allow ([`allow_topic`]), deny
    /// ([`deny_topic`]) or defer, for this request only unless you say
    /// [`TopicAnswer::for_session`] or [`TopicAnswer::until_unix_ms`] (the
    /// host then caches the chain's decision; see [`Lifetime`]). The
    /// request carries the attributes and roles granted at connect.
    ///
    /// Defaults to a defer that holds for the session: a policy without
    /// topic rules never has an opinion, so the host need not ask it again.
    fn topic_check(&self, request: &TopicRequest) -> TopicAnswer {
        let _ = request;
        TopicAnswer {
            verdict: TopicVerdict::Defer,
            lifetime: Lifetime::Session,
        }
    }
}

// `Grant` is generated from the WIT, so a derive cannot be attached to it here.
#[allow(clippy::derivable_impls)]
impl Default for Grant {
    /// Nothing granted beyond the connection itself.
    fn default() -> Self {
        Grant {
            attributes: Vec::new(),
            roles: Vec::new(),
        }
    }
}

impl Grant {
    /// Add a session attribute: handed to every topic check of the session
    /// (read it with [`TopicRequestExt::attribute`](request::TopicRequestExt::attribute)).
    ///
    /// ```
    /// use mqtt_policy_sdk::prelude::*;
    ///
    /// let grant = Grant::default()
    ///     .attribute("tenant", "acme")
    ///     .list_attribute("topics", &["acme/#"])
    ///     .role("device");
    /// assert_eq!(grant.attributes[1].value, r#"["acme/#"]"#);
    /// ```
    pub fn attribute(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.push(Attribute {
            key: key.into(),
            value: value.into(),
        });
        self
    }

    /// Add a list-valued session attribute (stored as JSON array text; read
    /// it with [`TopicRequestExt::attribute_list`](request::TopicRequestExt::attribute_list)).
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

/// Refuse the connection. The host sends the CONNACK code for `reason` and
/// the client's protocol version (see the README's table); `message` goes to
/// the host's log and decision trace, never to the client.
///
/// ```
/// use mqtt_policy_sdk::prelude::*;
///
/// let verdict = deny_connect(DenyReason::BadUsernameOrPassword, "unknown user");
/// assert_eq!(verdict.deny().map(|d| d.message.as_str()), Some("unknown user"));
/// ```
pub fn deny_connect(reason: DenyReason, message: impl Into<String>) -> ConnectVerdict {
    ConnectVerdict::Deny(Deny {
        reason,
        message: message.into(),
    })
}

/// Allow the topic request, for this request only (add
/// [`TopicAnswer::for_session`] or [`TopicAnswer::until_unix_ms`] to let the
/// host cache it).
pub fn allow_topic() -> TopicAnswer {
    TopicVerdict::Allow.into()
}

/// Refuse the topic request. The host answers with the code for `reason`,
/// the access and the client's protocol version (SUBACK 0x80/0x87, MQTT 5
/// PUBACK/UNSUBACK 0x87, ...); `message` stays in the log and trace. Holds
/// for this request only unless you add a lifetime.
pub fn deny_topic(reason: DenyReason, message: impl Into<String>) -> TopicAnswer {
    TopicVerdict::Deny(Deny {
        reason,
        message: message.into(),
    })
    .into()
}

#[doc(hidden)]
pub mod __private {
    use super::*;
    use std::sync::OnceLock;

    pub fn init<P: Policy>(cell: &OnceLock<P>, config: &str) -> Result<(), String> {
        install_panic_hook();
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
        install_panic_hook();
        match cell.get() {
            Some(p) => p.connect_check(request),
            None => ConnectVerdict::Deny(not_ready()),
        }
    }

    pub fn topic<P: Policy>(cell: &OnceLock<P>, request: &TopicRequest) -> TopicAnswer {
        install_panic_hook();
        match cell.get() {
            Some(p) => p.topic_check(request),
            None => TopicVerdict::Deny(not_ready()).into(),
        }
    }

    /// Route panics to the host log (see the crate docs, "Panics"). Only in
    /// the wasm build: natively, tests keep Rust's default hook and its
    /// output. Checked on every export because the host decides which export
    /// an instance sees first.
    pub fn install_panic_hook() {
        #[cfg(target_arch = "wasm32")]
        {
            static HOOK: std::sync::Once = std::sync::Once::new();
            HOOK.call_once(|| std::panic::set_hook(Box::new(report_panic)));
        }
    }

    /// The panic hook: one host log line, no stderr (stdio traps in the
    /// host, which would hide the message behind a "may not call" error).
    #[cfg(target_arch = "wasm32")]
    fn report_panic(info: &std::panic::PanicHookInfo<'_>) {
        let message = panic_message(info.payload_as_str());
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        crate::bindings::mqtt::policy::host::log(
            Level::Error,
            message,
            &[(PANIC_LOG_FIELD.to_owned(), location)],
        );
    }

    /// The message to report: the payload text, cut to
    /// [`PANIC_MESSAGE_MAX_BYTES`] at a character boundary.
    pub fn panic_message(payload: Option<&str>) -> &str {
        // `panic_any` with a non-string payload has no text.
        let text = payload.unwrap_or("Box<dyn Any>");
        let mut end = text.len().min(PANIC_MESSAGE_MAX_BYTES);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        &text[..end]
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn panic_messages_are_cut_at_a_character_boundary() {
            assert_eq!(panic_message(Some("boom")), "boom");
            assert_eq!(panic_message(None), "Box<dyn Any>");
            let long = "é".repeat(PANIC_MESSAGE_MAX_BYTES);
            let cut = panic_message(Some(&long));
            assert_eq!(cut.len(), PANIC_MESSAGE_MAX_BYTES);
            let odd = format!("a{long}");
            assert_eq!(panic_message(Some(&odd)).len(), PANIC_MESSAGE_MAX_BYTES - 1);
        }
    }
}

/// Export a [`Policy`] type as the component's `policy` world: `init` builds
/// it with [`Policy::new`], `connect-check` and `topic-check` call its checks.
/// It also installs the panic hook described under [Panics](crate#panics).
/// Use it once per crate; in native builds (unit tests) it exports nothing,
/// so several policies can be linked into one test binary.
///
/// ```
/// use mqtt_policy_sdk::prelude::*;
///
/// struct Open;
///
/// impl Policy for Open {
///     fn new(_config: &str) -> Result<Self, String> {
///         Ok(Open)
///     }
/// }
///
/// export_policy!(Open);
/// ```
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
                fn topic_check(request: $crate::TopicRequest) -> $crate::TopicAnswer {
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

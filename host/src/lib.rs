//! The policy host a broker embeds: it loads MQTT authentication and
//! authorization policies compiled to WebAssembly components and runs them as
//! an ordered chain, under a deadline and a memory cap per call, failing closed.
//!
//! Key items:
//! - [`PolicyHost`]: the live chain, loaded from a TOML file and hot-reloaded
//!   (explicitly, or on file changes with [`PolicyHost::watch`]); a failed
//!   reload keeps the running chain.
//! - [`PolicyHost::connect`] → [`Session`]: what a broker adapter holds per
//!   connection. It parses the client's certificate chain, asks the chain,
//!   keeps the grant, and answers publish / subscribe / receive / unsubscribe
//!   with the decision and the exact wire [`Reply`] for the client's
//!   protocol version.
//! - [`Chain`]: the ordered policies ("first allow or deny wins"), for
//!   embedders that want the bare decision.
//! - [`Policy`]: the host-side policy trait; [`WasmPolicy`] is the wasm
//!   implementation, native ones serve tests.
//! - [`PolicyEngine`]: the shared wasmtime engine (pooling allocator, epoch
//!   deadlines). One per process.
//!
//! Requests and verdicts are the host's own types ([`ConnectRequest`],
//! [`TopicRequest`], [`ConnectVerdict`], ...): each policy's contract version
//! (`wit/v*/policy.wit`) is converted at the boundary, so adapters never see
//! generated bindings.
//!
//! ```no_run
//! use mqtt_policy_host::{ConnectRequest, PolicyHost, ProtocolVersion, Reply};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let host = PolicyHost::builder("policies.toml").build()?;
//! # let tls_chain: Vec<Vec<u8>> = Vec::new();
//! let connect = ConnectRequest::new("device-1")
//!     .username("JWT")
//!     .password("eyJhbGciOi...")
//!     .protocol_version(ProtocolVersion::V5)
//!     .certificate_chain_der(&tls_chain);
//! let session = match host.connect(connect) {
//!     Ok(session) => session,                        // send CONNACK 0
//!     Err(refused) => {
//!         println!("CONNACK {:#04x}", refused.connack); // send it, then close
//!         return Ok(());
//!     }
//! };
//! let publish = session.publish("devices/device-1/telemetry", 1, false);
//! if let Reply::Code(code) = publish.reply {
//!     println!("PUBACK {code:#04x}, forward: {}", publish.allowed());
//! }
//! for answer in session.subscribe([("devices/device-1/#", 1), ("#", 0)]) {
//!     println!("SUBACK entry {:?}", answer.reply);
//! }
//! let deliver = session.receive("devices/device-1/config", 1, true).allowed();
//! # let _ = deliver;
//! session.disconnect();
//! # Ok(()) }
//! ```

mod bounds;
mod cache;
pub mod cert;
mod chain;
pub mod codes;
mod compile;
mod config;
mod decision;
mod engine;
mod epoch;
mod error;
mod files;
pub mod limits;
mod loader;
mod policy;
mod reload;
mod request;
mod sandbox;
mod session;
mod signature;
mod state;
mod stats;
mod striped;
mod verdict;
mod verdict_cache;
mod wasm_policy;
mod wit;

pub use bounds::{BoundedField, OverBound, RequestBounds};
pub use cache::{CacheSource, ComponentCache, ModuleHash};
pub use cert::Certificate;
pub use chain::{Chain, ChainBuilder};
pub use codes::Reply;
pub use compile::{MAX_MODULE_BYTES, read_module};
pub use config::{
    AskConnect, BreakerConfig, ChainConfig, DefaultVerdict, FailureMode, PolicyConfig,
};
pub use decision::{
    ConnectDecision, DecidedBy, Decision, Outcome, Step, StepResult, TopicDecision, policy_name,
};
pub use engine::{EngineBuilder, PolicyEngine};
pub use error::{CertError, LoadError, PolicyError, ProtocolError};
pub use files::{MAX_CHAIN_FILE_BYTES, MAX_DATA_FILE_BYTES, read_regular, read_regular_text};
pub use limits::Limits;
pub use policy::Policy;
pub use reload::{
    ModuleSources, PolicyHost, PolicyHostBuilder, ReloadOutcome, ReloadStatus, Watcher,
};
pub use request::{
    Access, Attribute, ConnectRequest, Password, ProtocolVersion, TopicRequest, UserProperty, Will,
};
pub use session::{Refused, Session, TopicAnswer};
pub use stats::{StatsSnapshot, TOPIC_TIMING_EVERY};
pub use verdict::{ConnectVerdict, Deny, DenyReason, Grant, TopicVerdict, VerdictLifetime};
pub use verdict_cache::{VerdictCacheConfig, VerdictCacheStats};
pub use wasm_policy::WasmPolicy;
pub use wit::VERSIONS as API_VERSIONS;

/// The README's Rust examples, compiled as doc tests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeExamples;

//! The policy host a broker embeds: it loads MQTT authentication and
//! authorization policies compiled to WebAssembly components and runs them as
//! an ordered chain, under a deadline and a memory cap per call, failing closed.
//!
//! Key items:
//! - [`PolicyEngine`]: the shared wasmtime engine (pooling allocator, epoch
//!   deadlines). Build one per process.
//! - [`Chain`]: the ordered policies, from a TOML file ([`ChainConfig`]) or a
//!   [`ChainBuilder`]. Its [`Chain::connect_check`] and [`Chain::topic_check`]
//!   are synchronous, thread-safe and never fail: every failure is a deny unless
//!   configured. `_async` variants serve tokio brokers.
//! - [`PolicyHost`]: a chain loaded from a file and hot-reloaded (explicitly,
//!   or on file changes with [`PolicyHost::watch`]); a failed reload keeps the
//!   running chain. Compiled modules are cached by content, also on disk.
//! - [`cert`]: turns PEM/DER client certificates into request fields.
//! - [`codes`]: maps deny reasons to MQTT 3.1.1 and 5 codes.
//!
//! The request and verdict types are generated from `wit/policy.wit`, the
//! contract shared with the guest SDK.
//!
//! ```no_run
//! use mqtt_policy_host::{Chain, ConnectRequest, PolicyEngine};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let engine = PolicyEngine::new()?;
//! let chain = Chain::from_config_file(&engine, "policies.toml".as_ref())?;
//! let request = ConnectRequest {
//!     client_id: "device-1".into(),
//!     username: Some("JWT".into()),
//!     password: Some(b"eyJhbGciOi...".to_vec()),
//!     protocol_version: 5,
//!     clean_start: true,
//!     keep_alive: 60,
//!     peer_address: None,
//!     listener: None,
//!     user_properties: vec![],
//!     certificates: vec![],
//! };
//! let decision = chain.connect_check(&request);
//! println!("{:?} by {:?}, CONNACK {:#04x}", decision.outcome, decision.decider(),
//!     decision.connack_code(request.protocol_version)?);
//! # Ok(()) }
//! ```

mod bindings;
mod cache;
pub mod cert;
mod chain;
pub mod codes;
mod config;
mod engine;
mod error;
pub mod limits;
mod loader;
mod reload;
mod state;
mod stats;
mod wasm_policy;

pub use bindings::{
    Access, Attribute, Certificate, ConnectRequest, ConnectVerdict, Deny, DenyReason, Grant, Level,
    TopicRequest, TopicVerdict, UserProperty,
};
pub use cache::{CacheSource, ComponentCache, ModuleHash};
pub use chain::{
    Chain, ChainBuilder, ConnectDecision, DecidedBy, Decision, Outcome, PolicyCheck, Step,
    StepResult, TopicDecision,
};
pub use config::{ChainConfig, DefaultVerdict, FailureMode, PolicyConfig};
pub use engine::{EngineBuilder, PolicyEngine};
pub use error::{CertError, LoadError, PolicyError, ProtocolError};
pub use limits::Limits;
pub use loader::{MAX_MODULE_BYTES, read_module};
pub use reload::{
    ModuleSources, PolicyHost, PolicyHostBuilder, ReloadOutcome, ReloadStatus, Watcher,
};
pub use stats::StatsSnapshot;
pub use wasm_policy::WasmPolicy;

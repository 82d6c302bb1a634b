//! Integration tests: real policy components, built from source, driven
//! through the host with real certificates and real tokens.

mod amplification; // failing policies stay cheap: background replacement, circuit breaker
mod bounds; // client input over the host bounds
mod certs; // certificate parsing against openssl's own answers
mod chain; // the sample chain: certificates, JWTs, topic lists, codes
mod hostile; // hostile policies and input: containment, log flooding, secrets, soak
mod limits; // deadlines, traps, memory caps, instance replacement
mod loading; // modules and configs that must fail to load, with clear errors
mod panics; // panics are reported with their message and location
mod password; // mosquitto_passwd files and Mosquitto acl_files, read by the host
mod reload; // hot reload: swaps under load, broken files, the disk cache
mod session; // whole connections through the session API, codes of every version
mod topics; // MQTT topic semantics through the topic-list component
mod verdict_cache; // sessions keep topic decisions exactly as long as they hold

use std::sync::{Arc, OnceLock};

use mqtt_policy_host::{FailureMode, Limits, PolicyEngine, WasmPolicy};
use mqtt_policy_tests::guests;

/// One engine for the whole test binary, as a broker would have.
pub fn engine() -> &'static PolicyEngine {
    static ENGINE: OnceLock<PolicyEngine> = OnceLock::new();
    ENGINE.get_or_init(|| PolicyEngine::new().expect("engine starts"))
}

/// Load the misbehave guest with `config`.
pub fn misbehave(name: &str, config: &str, limits: Limits) -> anyhow::Result<Arc<WasmPolicy>> {
    Ok(Arc::new(WasmPolicy::from_file(
        engine(),
        name,
        guests::MISBEHAVE.as_ref(),
        config,
        limits,
    )?))
}

/// The failure modes, for tests that iterate over them.
pub const FAILURE_MODES: [FailureMode; 3] =
    [FailureMode::Deny, FailureMode::Allow, FailureMode::Skip];

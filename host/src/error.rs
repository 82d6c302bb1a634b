//! Typed errors of the host library.

use std::path::PathBuf;
use std::time::Duration;

/// Why loading a chain or a policy failed. Loading is where bad input is
/// caught: a chain that loads has policies that compiled, matched the world and
/// accepted their configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    // The I/O error is in the message and deliberately not a `source`:
    // reporters that print the chain (`{:#}`) would say it twice.
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("invalid chain config {path}: {message}")]
    Config { path: PathBuf, message: String },
    #[error("policy \"{policy}\": {module} is not a WebAssembly component: {message}")]
    NotAComponent {
        policy: String,
        module: String,
        message: String,
    },
    #[error(
        "policy \"{policy}\": {module} does not implement the mqtt:policy world (0.2.0 or 0.1.0): {message}"
    )]
    WrongWorld {
        policy: String,
        module: String,
        message: String,
    },
    #[error("policy \"{policy}\": init rejected its configuration: {message}")]
    Init { policy: String, message: String },
    // The policy error is in the message and deliberately not a `source`:
    // reporters that print the chain (`{:#}`) would say it twice.
    #[error("policy \"{policy}\": init failed: {error}")]
    InitFailed { policy: String, error: PolicyError },
    #[error("duplicate policy name \"{0}\" in the chain")]
    DuplicateName(String),
    #[error("engine: {0}")]
    Engine(String),
}

/// Why one call into a policy failed. Every variant is turned into a deny by
/// the chain unless the policy's failure mode says otherwise.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum PolicyError {
    #[error("deadline of {0:?} exceeded")]
    Timeout(Duration),
    #[error("memory limit of {0} bytes exceeded")]
    OutOfMemory(usize),
    #[error("trapped: {0}")]
    Trap(String),
    /// Panicked; the SDK's panic hook reported the message and location
    /// (`file:line`) before the trap.
    #[error("panicked: {message} at {location}")]
    Panicked { message: String, location: String },
    #[error("returned a malformed result: {0}")]
    InvalidResult(String),
    /// A check found no warm instance and could not start one within its
    /// own deadline (the message says why: init's error, trap or timeout).
    #[error("could not start an instance: {0}")]
    Instantiate(String),
    #[error("is not initialised")]
    NotInitialised,
    /// Called an import the sandbox does not offer (stdio, files, network, waiting, …).
    #[error("called {import}, which policies may not use: {reason}")]
    Forbidden { import: String, reason: String },
    /// Called `wasi:cli/exit` instead of returning a verdict.
    #[error("exited with status {0} instead of returning a verdict")]
    Exited(i32),
    /// Passed more data to the host in one call, or returned more, than the sandbox lifts.
    #[error("moved more than {0} bytes to the host in one call or result")]
    TooMuchData(usize),
    /// Called `verify-signature` more often in one check than the host allows.
    #[error("verified more than {0} signatures in one check")]
    TooManySignatures(u32),
    /// Asked for more random bytes in one call than the sandbox gives.
    #[error("asked for {requested} random bytes in one call, over the limit of {limit}")]
    RandomTooLarge { requested: u64, limit: usize },
    /// A check found no warm instance, the policy's `init` is too slow to
    /// run within a check's deadline, and the background replacement did
    /// not finish within this wait.
    #[error("no instance ready within {0:?} (instances are replaced in the background)")]
    NoInstance(Duration),
    /// The policy's circuit breaker is open after this many consecutive
    /// failures: the policy was not asked.
    #[error("circuit open after {0} consecutive failures: not asked")]
    CircuitOpen(u32),
}

/// A certificate given to the host could not be parsed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertError {
    #[error("no certificate found in input")]
    Empty,
    #[error("certificate input is {0} bytes, over the {1} byte limit")]
    TooLarge(usize, usize),
    #[error("certificate chain has {0} certificates, over the limit of {1}")]
    TooMany(usize, usize),
    #[error("malformed PEM: {0}")]
    Pem(String),
    #[error("PEM block {index} is a \"{label}\", not a CERTIFICATE")]
    NotACertificate { index: usize, label: String },
    #[error("certificate {index}: malformed DER: {message}")]
    Der { index: usize, message: String },
}

/// A code was asked for a protocol level the host does not know.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
#[error("unsupported MQTT protocol level {0} (expected 3, 4 or 5)")]
pub struct ProtocolError(pub u8);

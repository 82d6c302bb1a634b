//! An ordered chain of policies and the decision it reaches.
//!
//! Policies are asked in order; the first `allow` or `deny` decides and the
//! decision names that policy. `defer` moves on. A policy that fails is handled
//! by its [`FailureMode`]: by default its failure is a deny (fail closed). When
//! every policy defers, the chain's [`DefaultVerdict`] decides (deny unless
//! configured).

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::bindings::{
    Access, ConnectRequest, ConnectVerdict, Deny, DenyReason, Grant, TopicRequest, TopicVerdict,
};
use crate::cache::{CacheSource, ComponentCache, ModuleHash};
use crate::codes;
use crate::config::{ChainConfig, DefaultVerdict, FailureMode};
use crate::engine::PolicyEngine;
use crate::error::{LoadError, PolicyError, ProtocolError};
use crate::loader::read_module;
use crate::stats::{LogGate, PolicyStats, StatsSnapshot, Tally};

/// Failure warnings per policy per second; the rest are counted.
const FAILURE_WARNINGS_PER_SECOND: u64 = 2;
use crate::wasm_policy::{WasmPolicy, check_memory};

/// A chain just loaded, with where each of its modules came from.
pub(crate) struct LoadedChain {
    pub(crate) chain: Chain,
    pub(crate) modules: Vec<LoadedModule>,
}

pub(crate) struct LoadedModule {
    pub(crate) path: std::path::PathBuf,
    pub(crate) hash: ModuleHash,
    pub(crate) source: CacheSource,
}

/// The host-side face of a policy. [`WasmPolicy`] is the real one; native
/// implementations serve tests and built-in rules.
pub trait PolicyCheck: Send + Sync {
    fn connect_check(&self, request: &ConnectRequest) -> Result<ConnectVerdict, PolicyError>;
    fn topic_check(&self, request: &TopicRequest) -> Result<TopicVerdict, PolicyError>;
}

/// What the chain decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<A> {
    Allow(A),
    Deny(Deny),
}

/// Who decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecidedBy {
    /// The named policy answered allow or deny (or failed, under its failure mode).
    Policy(String),
    /// Every policy deferred; the chain's default applied.
    Default,
    /// The host refused before asking any policy (e.g. a malformed certificate).
    Host,
}

impl DecidedBy {
    /// The policy's name, `(default)` or `(host)`: for logs and reports.
    pub fn label(&self) -> &str {
        match self {
            DecidedBy::Policy(name) => name,
            DecidedBy::Default => "(default)",
            DecidedBy::Host => "(host)",
        }
    }
}

/// What one policy did during a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StepResult {
    Allow,
    Deny(DenyReason),
    Defer,
    Failed(PolicyError),
}

/// One entry of a decision's trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub policy: String,
    pub result: StepResult,
}

/// A chain's answer to one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<A> {
    pub outcome: Outcome<A>,
    pub decided_by: DecidedBy,
    /// The generation of the chain that decided (see reloads).
    pub generation: u64,
    /// Each policy asked, in order, and what it did.
    pub trace: Vec<Step>,
}

/// The decision on a CONNECT; an allow carries the session's grant.
pub type ConnectDecision = Decision<Grant>;
/// The decision on a topic request.
pub type TopicDecision = Decision<()>;

impl<A> Decision<A> {
    pub fn is_allowed(&self) -> bool {
        matches!(self.outcome, Outcome::Allow(_))
    }

    /// The deny, if the decision is one.
    pub fn deny(&self) -> Option<&Deny> {
        match &self.outcome {
            Outcome::Deny(d) => Some(d),
            Outcome::Allow(_) => None,
        }
    }

    /// The deciding policy's name, or `None` when the default or the host decided.
    pub fn decider(&self) -> Option<&str> {
        match &self.decided_by {
            DecidedBy::Policy(name) => Some(name),
            DecidedBy::Default | DecidedBy::Host => None,
        }
    }

    /// A deny made by the host itself, before any policy ran: for adapters
    /// that cannot even build a request (a malformed certificate, say).
    pub fn host_deny(reason: DenyReason, message: impl Into<String>, generation: u64) -> Self {
        Decision {
            outcome: Outcome::Deny(Deny {
                reason,
                message: message.into(),
            }),
            decided_by: DecidedBy::Host,
            generation,
            trace: Vec::new(),
        }
    }
}

impl ConnectDecision {
    /// The CONNACK code for the client's protocol level (0 when accepted).
    pub fn connack_code(&self, protocol_version: u8) -> Result<u8, ProtocolError> {
        match &self.outcome {
            Outcome::Allow(_) => codes::connack_accepted(protocol_version),
            Outcome::Deny(d) => codes::connack(d.reason, protocol_version),
        }
    }
}

impl TopicDecision {
    /// The SUBACK code for a subscription: the granted QoS, or the refusal.
    pub fn suback_code(&self, protocol_version: u8, granted_qos: u8) -> Result<u8, ProtocolError> {
        match &self.outcome {
            Outcome::Allow(()) => {
                codes::connack_accepted(protocol_version).map(|_| granted_qos.min(2))
            }
            Outcome::Deny(d) => codes::suback(d.reason, protocol_version),
        }
    }

    /// The PUBACK/PUBREC code for a QoS>0 publish; `None` where the protocol
    /// has no refusal code (before MQTT 5).
    pub fn puback_code(&self, protocol_version: u8) -> Result<Option<u8>, ProtocolError> {
        match &self.outcome {
            Outcome::Allow(()) => codes::connack_accepted(protocol_version).map(Some),
            Outcome::Deny(d) => codes::puback(d.reason, protocol_version),
        }
    }
}

struct Entry {
    name: String,
    policy: Arc<dyn PolicyCheck>,
    on_error: FailureMode,
    stats: PolicyStats,
    warnings: LogGate,
}

/// An ordered set of policies that answers connect and topic checks.
/// `Send + Sync`: share it (in an `Arc`) between all the broker's threads.
pub struct Chain {
    entries: Vec<Entry>,
    default: DefaultVerdict,
    generation: u64,
    decision_log_every: u64,
    decisions: AtomicU64,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("policies", &self.policy_names())
            .field("default", &self.default)
            .field("generation", &self.generation)
            .finish()
    }
}

/// Builds a [`Chain`] from policies in order.
pub struct ChainBuilder {
    entries: Vec<Entry>,
    default: DefaultVerdict,
    generation: u64,
    decision_log_every: u64,
}

impl Default for ChainBuilder {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            default: DefaultVerdict::Deny,
            generation: 0,
            decision_log_every: 100,
        }
    }
}

impl ChainBuilder {
    /// Append a policy that fails closed.
    pub fn policy(self, name: impl Into<String>, policy: Arc<dyn PolicyCheck>) -> Self {
        self.policy_with(name, policy, FailureMode::Deny)
    }

    /// Append a policy with an explicit failure mode.
    pub fn policy_with(
        mut self,
        name: impl Into<String>,
        policy: Arc<dyn PolicyCheck>,
        on_error: FailureMode,
    ) -> Self {
        self.entries.push(Entry {
            name: name.into(),
            policy,
            on_error,
            stats: PolicyStats::default(),
            warnings: LogGate::new(FAILURE_WARNINGS_PER_SECOND),
        });
        self
    }

    /// The verdict when every policy defers (deny by default).
    pub fn default_verdict(mut self, default: DefaultVerdict) -> Self {
        self.default = default;
        self
    }

    /// The generation number decisions will carry.
    pub fn generation(mut self, generation: u64) -> Self {
        self.generation = generation;
        self
    }

    /// Log one decision in `n` at info level (0: never; every decision is
    /// always logged at debug level).
    pub fn decision_log_every(mut self, n: u64) -> Self {
        self.decision_log_every = n;
        self
    }

    pub fn build(self) -> Result<Chain, LoadError> {
        for (i, e) in self.entries.iter().enumerate() {
            if self.entries[..i].iter().any(|o| o.name == e.name) {
                return Err(LoadError::DuplicateName(e.name.clone()));
            }
        }
        Ok(Chain {
            entries: self.entries,
            default: self.default,
            generation: self.generation,
            decision_log_every: self.decision_log_every,
            decisions: AtomicU64::new(0),
        })
    }
}

/// What a policy's answer means for the chain walk.
enum Step2<A> {
    Decide(Outcome<A>),
    Next,
}

impl Chain {
    pub fn builder() -> ChainBuilder {
        ChainBuilder::default()
    }

    /// Load every policy named in a chain file. Fails, naming the policy and
    /// the file, if any module does not load or any `init` rejects its config.
    pub fn from_config_file(engine: &PolicyEngine, path: &Path) -> Result<Self, LoadError> {
        let config = ChainConfig::from_file(path)?;
        Self::from_config(engine, &config, path)
    }

    /// Load a parsed chain file; `config_path` anchors relative module paths.
    pub fn from_config(
        engine: &PolicyEngine,
        config: &ChainConfig,
        config_path: &Path,
    ) -> Result<Self, LoadError> {
        Self::from_config_cached(engine, config, config_path, &ComponentCache::new(), 0)
            .map(|loaded| loaded.chain)
    }

    /// Load a chain, taking compiled components from `cache` where the module
    /// bytes are unchanged.
    pub(crate) fn from_config_cached(
        engine: &PolicyEngine,
        config: &ChainConfig,
        config_path: &Path,
        cache: &ComponentCache,
        generation: u64,
    ) -> Result<LoadedChain, LoadError> {
        let bad = |message: String| LoadError::Config {
            path: config_path.to_owned(),
            message,
        };
        let mut builder = Chain::builder()
            .default_verdict(config.default)
            .decision_log_every(config.decision_log_every.unwrap_or(100))
            .generation(generation);
        let mut modules = Vec::with_capacity(config.policies.len());
        for p in &config.policies {
            let limits = config.policy_limits(p).map_err(bad)?;
            check_memory(engine, &p.name, limits)?;
            let path = ChainConfig::module_path(config_path, &p.module);
            let origin = path.display().to_string();
            let bytes = read_module(&path)?;
            let (component, hash, source) =
                cache.get_or_compile(engine, &p.name, &origin, &bytes)?;
            let policy = WasmPolicy::from_component(
                engine,
                &p.name,
                &origin,
                &component,
                &p.config_json(),
                limits,
            )?;
            builder = builder.policy_with(&p.name, Arc::new(policy), p.on_error);
            modules.push(LoadedModule { path, hash, source });
        }
        Ok(LoadedChain {
            chain: builder.build()?,
            modules,
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn policy_names(&self) -> Vec<&str> {
        self.entries.iter().map(|e| e.name.as_str()).collect()
    }

    /// Counters of each policy, in chain order.
    pub fn stats(&self) -> Vec<(String, StatsSnapshot)> {
        self.entries
            .iter()
            .map(|e| (e.name.clone(), e.stats.snapshot()))
            .collect()
    }

    /// May this client connect? Never fails: every failure is a deny unless a
    /// policy's failure mode says otherwise.
    pub fn connect_check(&self, request: &ConnectRequest) -> ConnectDecision {
        let decision = self.walk(
            |p| p.connect_check(request),
            |verdict| match verdict {
                ConnectVerdict::Allow(grant) => {
                    (StepResult::Allow, Step2::Decide(Outcome::Allow(grant)))
                }
                ConnectVerdict::Deny(d) => {
                    (StepResult::Deny(d.reason), Step2::Decide(Outcome::Deny(d)))
                }
                ConnectVerdict::Defer => (StepResult::Defer, Step2::Next),
            },
            Grant {
                attributes: Vec::new(),
                roles: Vec::new(),
            },
        );
        self.log_decision(
            "connect",
            &request.client_id,
            request.username.as_deref(),
            "",
            &decision,
        );
        decision
    }

    /// May this session do `request.access` on `request.topic`?
    pub fn topic_check(&self, request: &TopicRequest) -> TopicDecision {
        let decision = self.walk(
            |p| p.topic_check(request),
            |verdict| match verdict {
                TopicVerdict::Allow => (StepResult::Allow, Step2::Decide(Outcome::Allow(()))),
                TopicVerdict::Deny(d) => {
                    (StepResult::Deny(d.reason), Step2::Decide(Outcome::Deny(d)))
                }
                TopicVerdict::Defer => (StepResult::Defer, Step2::Next),
            },
            (),
        );
        let what = match request.access {
            Access::Publish => "publish",
            Access::Subscribe => "subscribe",
            Access::Receive => "receive",
            Access::Unsubscribe => "unsubscribe",
        };
        self.log_decision(
            what,
            &request.client_id,
            request.username.as_deref(),
            &request.topic,
            &decision,
        );
        decision
    }

    /// The async face for tokio brokers. A check is a bounded CPU computation
    /// (microseconds, never longer than the deadline), cheaper than handing it
    /// to another thread, so it runs inline on the calling task.
    pub async fn connect_check_async(&self, request: &ConnectRequest) -> ConnectDecision {
        self.connect_check(request)
    }

    /// The async face of [`Chain::topic_check`]; runs inline, as above.
    pub async fn topic_check_async(&self, request: &TopicRequest) -> TopicDecision {
        self.topic_check(request)
    }

    fn walk<V, A>(
        &self,
        ask: impl Fn(&dyn PolicyCheck) -> Result<V, PolicyError>,
        interpret: impl Fn(V) -> (StepResult, Step2<A>),
        allow_on_failure: A,
    ) -> Decision<A> {
        let mut trace = Vec::with_capacity(self.entries.len());
        let mut allow_on_failure = Some(allow_on_failure);
        for entry in &self.entries {
            let started = Instant::now();
            let answer = ask(entry.policy.as_ref());
            let spent = started.elapsed();
            let step = match answer {
                Ok(verdict) => {
                    let (result, step) = interpret(verdict);
                    let tally = match result {
                        StepResult::Allow => Tally::Allow,
                        StepResult::Deny(_) => Tally::Deny,
                        _ => Tally::Defer,
                    };
                    entry.stats.record(tally, spent);
                    trace.push(Step {
                        policy: entry.name.clone(),
                        result,
                    });
                    step
                }
                Err(error) => {
                    entry.stats.record(Tally::Error, spent);
                    if let Some(suppressed) = entry.warnings.admit() {
                        tracing::warn!(
                            target: "mqtt_policy::chain",
                            policy = %entry.name,
                            generation = self.generation,
                            on_error = ?entry.on_error,
                            suppressed,
                            "policy failed: {error}"
                        );
                    }
                    trace.push(Step {
                        policy: entry.name.clone(),
                        result: StepResult::Failed(error),
                    });
                    match entry.on_error {
                        FailureMode::Deny => Step2::Decide(Outcome::Deny(Deny {
                            reason: DenyReason::ServerUnavailable,
                            message: format!("policy \"{}\" failed", entry.name),
                        })),
                        FailureMode::Allow => match allow_on_failure.take() {
                            Some(a) => Step2::Decide(Outcome::Allow(a)),
                            None => Step2::Next,
                        },
                        FailureMode::Skip => Step2::Next,
                    }
                }
            };
            if let Step2::Decide(outcome) = step {
                return Decision {
                    outcome,
                    decided_by: DecidedBy::Policy(entry.name.clone()),
                    generation: self.generation,
                    trace,
                };
            }
        }
        let outcome = match (self.default, allow_on_failure) {
            (DefaultVerdict::Allow, Some(a)) => Outcome::Allow(a),
            _ => Outcome::Deny(Deny {
                reason: DenyReason::NotAuthorized,
                message: "no policy allowed the request".into(),
            }),
        };
        Decision {
            outcome,
            decided_by: DecidedBy::Default,
            generation: self.generation,
            trace,
        }
    }

    /// The decision log: who, what, verdict, decider, generation. Never the
    /// password or any other secret.
    fn log_decision<A>(
        &self,
        what: &str,
        client_id: &str,
        username: Option<&str>,
        topic: &str,
        decision: &Decision<A>,
    ) {
        let n = self.decisions.fetch_add(1, Ordering::Relaxed);
        let sampled = self.decision_log_every != 0 && n.is_multiple_of(self.decision_log_every);
        let verdict = if decision.is_allowed() {
            "allow"
        } else {
            "deny"
        };
        let decider = decision.decided_by.label();
        let reason = decision.deny().map(|d| d.reason);
        if sampled {
            tracing::info!(target: "mqtt_policy::decision", what, client_id, username, topic, verdict, ?reason, decider, generation = self.generation);
        } else {
            tracing::debug!(target: "mqtt_policy::decision", what, client_id, username, topic, verdict, ?reason, decider, generation = self.generation);
        }
    }
}

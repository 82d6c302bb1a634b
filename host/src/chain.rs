//! An ordered chain of policies and the decision it reaches.
//!
//! Policies are asked in order; the first `allow` or `deny` decides and the
//! decision names that policy. `defer` moves on. A policy that fails is handled
//! by its [`FailureMode`]: by default its failure is a deny (fail closed). When
//! every policy defers, the chain's [`DefaultVerdict`] decides (deny unless
//! configured).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use crate::config::{DefaultVerdict, FailureMode};
use crate::decision::{
    ConnectDecision, DecidedBy, Decision, Outcome, Step, StepResult, TopicDecision,
};
use crate::error::{LoadError, PolicyError};
use crate::policy::Policy;
use crate::request::{ConnectRequest, TopicRequest};
use crate::stats::{LogGate, PolicyStats, StatsSnapshot, Tally};
use crate::verdict::{ConnectVerdict, Deny, DenyReason, Grant, TopicVerdict};

/// Failure warnings per policy per second; the rest are counted.
const FAILURE_WARNINGS_PER_SECOND: u64 = 2;

struct Entry {
    name: String,
    policy: Arc<dyn Policy>,
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
    pub fn policy(self, name: impl Into<String>, policy: Arc<dyn Policy>) -> Self {
        self.policy_with(name, policy, FailureMode::Deny)
    }

    /// Append a policy with an explicit failure mode.
    pub fn policy_with(
        mut self,
        name: impl Into<String>,
        policy: Arc<dyn Policy>,
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
        let decision = match request.certificate_error() {
            // A chain the host cannot parse is refused before any policy runs.
            Some(e) => ConnectDecision::host_deny(
                DenyReason::NotAuthorized,
                format!("bad client certificate: {e}"),
                self.generation,
            ),
            None => self.walk(
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
                Grant::default(),
            ),
        };
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
        self.log_decision(
            request.access.as_str(),
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
        ask: impl Fn(&dyn Policy) -> Result<V, PolicyError>,
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
                        FailureMode::Deny => Step2::Decide(Outcome::Deny(Deny::new(
                            DenyReason::ServerUnavailable,
                            format!("policy \"{}\" failed", entry.name),
                        ))),
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
            _ => Outcome::Deny(Deny::new(
                DenyReason::NotAuthorized,
                "no policy allowed the request",
            )),
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

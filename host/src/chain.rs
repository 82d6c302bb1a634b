//! An ordered chain of policies and the decision it reaches.
//!
//! Before any policy is asked, the request is checked against the chain's
//! [`RequestBounds`]: one over a bound is a host deny, whatever the failure
//! modes say (see `bounds.rs` for why). Then policies are asked in order; the
//! first `allow` or `deny` decides and the decision names that policy.
//! `defer` moves on. A policy that fails is handled by its [`FailureMode`]: by
//! default its failure is a deny (fail closed); `allow` counts as that
//! policy's allow with an empty grant, so it ends the chain like any allow.
//! When every policy defers, the chain's [`DefaultVerdict`] decides (deny
//! unless configured).
//!
//! A policy scoped by [`AskConnect`] (`[policy.ask_connect]`) is not asked
//! about a connect outside its scope: the trace shows it as not asked and
//! the walk moves on, as after a defer.
//!
//! A policy that keeps failing is not asked at all for a while: after
//! [`BreakerConfig::failures`] consecutive failures its circuit opens and
//! checks get its failure mode at once, until a probe after the backoff
//! succeeds.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::bounds::RequestBounds;
use crate::config::{AskConnect, BreakerConfig, DefaultVerdict, FailureMode};
use crate::decision::{
    ConnectDecision, DecidedBy, Decision, Outcome, Step, StepResult, TopicDecision, policy_name,
};
use crate::error::{LoadError, PolicyError};
use crate::policy::Policy;
use crate::request::{ConnectRequest, TopicRequest};
use crate::stats::{LogGate, PolicyStats, StatsSnapshot, Tally};
use crate::striped::Striped;
use crate::verdict::{ConnectVerdict, Deny, DenyReason, Grant, TopicVerdict, VerdictLifetime};
use crate::verdict_cache::VerdictCacheConfig;

/// Failure warnings per policy per second; the rest are counted.
const FAILURE_WARNINGS_PER_SECOND: u64 = 2;

struct Entry {
    /// Kept for the life of the process (see `decision::policy_name`): every
    /// trace step and decision carries it.
    name: &'static str,
    policy: Arc<dyn Policy>,
    on_error: FailureMode,
    ask_connect: AskConnect,
    stats: PolicyStats,
    warnings: LogGate,
    breaker: Breaker,
}

/// Whether a check may ask a policy, by its circuit breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    /// Closed: ask.
    Closed,
    /// Half-open: ask; this check is the probe that decides.
    Probe,
    /// Open: do not ask; this many consecutive failures so far.
    Open(u32),
}

/// What recording a result did to the circuit, for the log.
enum Transition {
    Unchanged,
    Opened(u32, Duration),
    ProbeFailed(Duration),
    Closed,
}

/// One policy's circuit breaker. While closed a check costs two atomic
/// loads; the mutex is taken only once the circuit has tripped.
struct Breaker {
    config: BreakerConfig,
    failures: AtomicU32,
    /// Open or half-open: admission goes through `state`.
    tripped: AtomicBool,
    state: Mutex<Tripped>,
}

struct Tripped {
    /// No probe before this.
    until: Instant,
    backoff: Duration,
    /// When the probe in flight started, if one is.
    probe_since: Option<Instant>,
}

impl Breaker {
    fn new(config: BreakerConfig) -> Self {
        Self {
            config,
            failures: AtomicU32::new(0),
            tripped: AtomicBool::new(false),
            state: Mutex::new(Tripped {
                until: Instant::now(),
                backoff: Duration::from_millis(config.backoff_ms),
                probe_since: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tripped> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn admit(&self) -> Admission {
        if !self.tripped.load(Ordering::Acquire) {
            return Admission::Closed;
        }
        let mut state = self.lock();
        if !self.tripped.load(Ordering::Acquire) {
            return Admission::Closed;
        }
        let now = Instant::now();
        // A probe that never reported (a native policy that panicked) must
        // not hold the circuit open for ever.
        let max = Duration::from_millis(self.config.max_backoff_ms);
        let probing = state
            .probe_since
            .is_some_and(|since| now.duration_since(since) < max);
        if now < state.until || probing {
            return Admission::Open(self.failures.load(Ordering::Relaxed));
        }
        state.probe_since = Some(now);
        Admission::Probe
    }

    fn record(&self, admission: Admission, ok: bool) -> Transition {
        match (admission, ok) {
            (Admission::Open(_), _) => Transition::Unchanged,
            (Admission::Closed, true) => {
                // Only a probe closes a tripped circuit; no write while the
                // count is already zero, so the hot path shares the line.
                if !self.tripped.load(Ordering::Relaxed)
                    && self.failures.load(Ordering::Relaxed) != 0
                {
                    self.failures.store(0, Ordering::Relaxed);
                }
                Transition::Unchanged
            }
            (Admission::Closed, false) => {
                let n = self
                    .failures
                    .fetch_add(1, Ordering::Relaxed)
                    .saturating_add(1);
                if self.config.failures == 0 || n < self.config.failures {
                    return Transition::Unchanged;
                }
                let mut state = self.lock();
                if self.tripped.load(Ordering::Relaxed) {
                    return Transition::Unchanged;
                }
                let backoff = Duration::from_millis(self.config.backoff_ms);
                *state = Tripped {
                    until: Instant::now() + backoff,
                    backoff,
                    probe_since: None,
                };
                self.tripped.store(true, Ordering::Release);
                Transition::Opened(n, backoff)
            }
            (Admission::Probe, true) => {
                let mut state = self.lock();
                state.probe_since = None;
                self.failures.store(0, Ordering::Relaxed);
                self.tripped.store(false, Ordering::Release);
                Transition::Closed
            }
            (Admission::Probe, false) => {
                let mut state = self.lock();
                self.failures.fetch_add(1, Ordering::Relaxed);
                let max = Duration::from_millis(self.config.max_backoff_ms);
                let backoff = state.backoff.saturating_mul(2).min(max);
                *state = Tripped {
                    until: Instant::now() + backoff,
                    backoff,
                    probe_since: None,
                };
                Transition::ProbeFailed(backoff)
            }
        }
    }
}

/// An ordered set of policies that answers connect and topic checks.
/// `Send + Sync`: share it (in an `Arc`) between all the broker's threads.
pub struct Chain {
    entries: Vec<Entry>,
    default: DefaultVerdict,
    bounds: RequestBounds,
    generation: u64,
    decision_log_every: u64,
    decisions: Striped<AtomicU64>,
    verdict_cache: VerdictCacheConfig,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field("policies", &self.policy_names())
            .field("default", &self.default)
            .field("bounds", &self.bounds)
            .field("generation", &self.generation)
            .finish()
    }
}

/// Builds a [`Chain`] from policies in order.
pub struct ChainBuilder {
    entries: Vec<Entry>,
    default: DefaultVerdict,
    bounds: RequestBounds,
    breaker: BreakerConfig,
    generation: u64,
    decision_log_every: u64,
    verdict_cache: VerdictCacheConfig,
}

impl Default for ChainBuilder {
    fn default() -> Self {
        Self {
            entries: Vec::new(),
            default: DefaultVerdict::Deny,
            bounds: RequestBounds::default(),
            breaker: BreakerConfig::default(),
            generation: 0,
            decision_log_every: 100,
            verdict_cache: VerdictCacheConfig::default(),
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
        self,
        name: impl Into<String>,
        policy: Arc<dyn Policy>,
        on_error: FailureMode,
    ) -> Self {
        self.policy_scoped(name, policy, on_error, AskConnect::default())
    }

    /// Append a policy with a failure mode and the connects it is asked
    /// about (`[policy.ask_connect]`).
    pub fn policy_scoped(
        mut self,
        name: impl Into<String>,
        policy: Arc<dyn Policy>,
        on_error: FailureMode,
        ask_connect: AskConnect,
    ) -> Self {
        let name = policy_name(&name.into());
        self.entries.push(Entry {
            name,
            policy,
            on_error,
            ask_connect,
            stats: PolicyStats::default(),
            warnings: LogGate::new(FAILURE_WARNINGS_PER_SECOND),
            breaker: Breaker::new(self.breaker),
        });
        self
    }

    /// Bounds on client input, checked before any policy runs (default:
    /// [`RequestBounds::default`]).
    pub fn request_bounds(mut self, bounds: RequestBounds) -> Self {
        self.bounds = bounds;
        self
    }

    /// The circuit breaker of every policy (default:
    /// [`BreakerConfig::default`]; `failures: 0` turns it off).
    pub fn breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = breaker;
        for e in &mut self.entries {
            e.breaker = Breaker::new(breaker);
        }
        self
    }

    /// The verdict when every policy defers (deny by default).
    pub fn default_verdict(mut self, default: DefaultVerdict) -> Self {
        self.default = default;
        self
    }

    /// How sessions keep this chain's topic decisions (default:
    /// [`VerdictCacheConfig::default`]).
    pub fn verdict_cache(mut self, config: VerdictCacheConfig) -> Self {
        self.verdict_cache = config;
        self
    }

    /// The generation number decisions will carry.
    pub fn generation(mut self, generation: u64) -> Self {
        self.generation = generation;
        self
    }

    /// Log one decision in `n` at info level (0: never; every decision is
    /// always logged at debug level). Counted per thread stripe, so each
    /// thread logs its first decision and every `n`-th after it.
    pub fn decision_log_every(mut self, n: u64) -> Self {
        self.decision_log_every = n;
        self
    }

    pub fn build(self) -> Result<Chain, LoadError> {
        for (i, e) in self.entries.iter().enumerate() {
            if self.entries[..i].iter().any(|o| o.name == e.name) {
                return Err(LoadError::DuplicateName(e.name.to_string()));
            }
        }
        Ok(Chain {
            entries: self.entries,
            default: self.default,
            bounds: self.bounds,
            generation: self.generation,
            decision_log_every: self.decision_log_every,
            decisions: Striped::default(),
            verdict_cache: self.verdict_cache,
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
        self.entries.iter().map(|e| e.name).collect()
    }

    /// How sessions keep this chain's topic decisions.
    pub fn verdict_cache(&self) -> &VerdictCacheConfig {
        &self.verdict_cache
    }

    /// The bounds every request is checked against before any policy runs.
    pub fn request_bounds(&self) -> &RequestBounds {
        &self.bounds
    }

    /// Counters of each policy, in chain order.
    pub fn stats(&self) -> Vec<(String, StatsSnapshot)> {
        self.entries
            .iter()
            .map(|e| (e.name.to_string(), e.stats.snapshot()))
            .collect()
    }

    /// May this client connect? Never fails: every failure is a deny unless a
    /// policy's failure mode says otherwise. A request over the chain's
    /// [`RequestBounds`] is a host deny before any policy runs.
    pub fn connect_check(&self, request: &ConnectRequest) -> ConnectDecision {
        let refused = match request.certificate_error() {
            // A chain the host cannot parse is refused before any policy runs.
            Some(e) => Some(format!("bad client certificate: {e}")),
            None => self
                .bounds
                .check_connect(request)
                .err()
                .map(|e| e.to_string()),
        };
        let decision = match refused {
            Some(message) => {
                ConnectDecision::host_deny(DenyReason::NotAuthorized, message, self.generation)
            }
            None => {
                self.walk(
                    Some(1),
                    |entry| entry.ask_connect.asks(request),
                    |p| p.connect_check(request).map(|v| (v, VerdictLifetime::None)),
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
                )
                .0
            }
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

    /// May this session do `request.access` on `request.topic`? A request
    /// over the chain's [`RequestBounds`] is a host deny before any policy
    /// runs.
    pub fn topic_check(&self, request: &TopicRequest) -> TopicDecision {
        self.topic_check_lasting(request).0
    }

    /// [`Chain::topic_check`], and how long the decision holds: the
    /// shortest lifetime among the verdicts of the policies asked
    /// ([`VerdictLifetime::None`] if any failed, or the host refused). What
    /// a [`crate::Session`] caches.
    pub fn topic_check_lasting(&self, request: &TopicRequest) -> (TopicDecision, VerdictLifetime) {
        let (decision, lifetime) = match self.bounds.check_topic(request) {
            Err(over) => (
                TopicDecision::host_deny(
                    DenyReason::NotAuthorized,
                    over.to_string(),
                    self.generation,
                ),
                VerdictLifetime::None,
            ),
            Ok(()) => self.walk(
                // Topic checks are the hot path: time one in
                // `TOPIC_TIMING_EVERY` (two clock reads cost ~5 % of a check).
                crate::stats::sample_topic_timing(),
                |_| true,
                |p| p.topic_check_lasting(request),
                |verdict| match verdict {
                    TopicVerdict::Allow => (StepResult::Allow, Step2::Decide(Outcome::Allow(()))),
                    TopicVerdict::Deny(d) => {
                        (StepResult::Deny(d.reason), Step2::Decide(Outcome::Deny(d)))
                    }
                    TopicVerdict::Defer => (StepResult::Defer, Step2::Next),
                },
                (),
            ),
        };
        self.log_decision(
            request.access.as_str(),
            &request.client_id,
            request.username.as_deref(),
            &request.topic,
            &decision,
        );
        (decision, lifetime)
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

    /// Ask the policies in order; the decision and how long it holds (the
    /// shortest lifetime of the verdicts it rests on).
    /// `timing`: time this check, counting its time this many times;
    /// `in_scope`: whether this request is one the policy is asked about.
    fn walk<V, A>(
        &self,
        timing: Option<u32>,
        in_scope: impl Fn(&Entry) -> bool,
        ask: impl Fn(&dyn Policy) -> Result<(V, VerdictLifetime), PolicyError>,
        interpret: impl Fn(V) -> (StepResult, Step2<A>),
        allow_on_failure: A,
    ) -> (Decision<A>, VerdictLifetime) {
        let mut trace = Vec::with_capacity(self.entries.len());
        let mut allow_on_failure = Some(allow_on_failure);
        let mut lifetime = VerdictLifetime::Session;
        // One clock read per policy: each policy's time ends where the
        // next one's starts.
        let mut started = timing.map(|_| Instant::now());
        for entry in &self.entries {
            if !in_scope(entry) {
                // Not asked, so not timed, counted or a reason for the
                // breaker (the nanoseconds of this test fall to the next
                // policy's time).
                trace.push(Step {
                    policy: entry.name,
                    result: StepResult::NotAsked,
                });
                continue;
            }
            let admission = entry.breaker.admit();
            let answer = match admission {
                Admission::Open(failures) => {
                    entry.stats.short_circuited();
                    Err(PolicyError::CircuitOpen(failures))
                }
                Admission::Closed | Admission::Probe => {
                    let answer = ask(entry.policy.as_ref());
                    let transition = entry.breaker.record(admission, answer.is_ok());
                    self.log_transition(entry, transition);
                    answer
                }
            };
            let spent = started.zip(timing).map(|(since, weight)| {
                let now = Instant::now();
                started = Some(now);
                (now.saturating_duration_since(since), weight)
            });
            let step = match answer {
                Ok((verdict, lasts)) => {
                    lifetime = lifetime.min(lasts);
                    let (result, step) = interpret(verdict);
                    let tally = match result {
                        StepResult::Allow => Tally::Allow,
                        StepResult::Deny(_) => Tally::Deny,
                        _ => Tally::Defer,
                    };
                    entry.stats.record(tally, spent);
                    trace.push(Step {
                        policy: entry.name,
                        result,
                    });
                    step
                }
                Err(error) => {
                    // A failure is never cached: the next check asks again.
                    lifetime = VerdictLifetime::None;
                    entry.stats.record(Tally::Error, spent);
                    // An open circuit was logged when it opened; its
                    // short-circuited checks are only counted.
                    let short_circuited = matches!(error, PolicyError::CircuitOpen(_));
                    if !short_circuited && let Some(suppressed) = entry.warnings.admit() {
                        tracing::warn!(
                            target: "mqtt_policy::chain",
                            policy = %entry.name,
                            generation = self.generation,
                            on_error = ?entry.on_error,
                            suppressed,
                            "{}",
                            failure_line(entry.name, &error)
                        );
                    }
                    trace.push(Step {
                        policy: entry.name,
                        result: StepResult::Failed(error),
                    });
                    match entry.on_error {
                        FailureMode::Deny => Step2::Decide(Outcome::Deny(Deny::new(
                            DenyReason::ServerUnavailable,
                            format!("policy \"{}\" failed", entry.name),
                        ))),
                        // The failure is this policy's allow with an empty
                        // grant: the first allow wins, so the chain ends.
                        FailureMode::Allow => match allow_on_failure.take() {
                            Some(a) => Step2::Decide(Outcome::Allow(a)),
                            None => Step2::Next,
                        },
                        FailureMode::Skip => Step2::Next,
                    }
                }
            };
            if let Step2::Decide(outcome) = step {
                let decision = Decision {
                    outcome,
                    decided_by: DecidedBy::Policy(entry.name),
                    generation: self.generation,
                    trace,
                };
                return (decision, lifetime);
            }
        }
        let outcome = match (self.default, allow_on_failure) {
            (DefaultVerdict::Allow, Some(a)) => Outcome::Allow(a),
            _ => Outcome::Deny(Deny::new(
                DenyReason::NotAuthorized,
                "no policy allowed the request",
            )),
        };
        let decision = Decision {
            outcome,
            decided_by: DecidedBy::Default,
            generation: self.generation,
            trace,
        };
        (decision, lifetime)
    }

    /// Circuit changes are rare (at most one per backoff) and always logged.
    fn log_transition(&self, entry: &Entry, transition: Transition) {
        let (policy, generation, on_error) = (&entry.name, self.generation, entry.on_error);
        match transition {
            Transition::Unchanged => {}
            Transition::Opened(failures, backoff) => {
                entry.stats.circuit_opened();
                tracing::warn!(
                    target: "mqtt_policy::chain", policy = %policy, generation, ?on_error,
                    "circuit opened after {failures} consecutive failures: not asked for {backoff:?}, checks get its failure mode"
                );
            }
            Transition::ProbeFailed(backoff) => {
                entry.stats.circuit_opened();
                tracing::warn!(
                    target: "mqtt_policy::chain", policy = %policy, generation, ?on_error,
                    "circuit probe failed: not asked for {backoff:?}"
                );
            }
            Transition::Closed => {
                tracing::info!(
                    target: "mqtt_policy::chain", policy = %policy, generation,
                    "circuit closed: the probe succeeded"
                );
            }
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
        // Counted per thread: one shared counter written by every check
        // would be passed between cores on each one.
        let n = {
            let stripe = self.decisions.local();
            stripe.fetch_add(1, Ordering::Relaxed)
        };
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

/// `policy "NAME" panicked: MESSAGE at FILE:LINE`, or `policy "NAME" failed: ERROR`.
pub(crate) fn failure_line(policy: &str, error: &PolicyError) -> String {
    match error {
        PolicyError::Panicked { .. } => format!("policy \"{policy}\" {error}"),
        _ => format!("policy \"{policy}\" failed: {error}"),
    }
}

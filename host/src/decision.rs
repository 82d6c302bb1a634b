//! What a chain decided, who decided it, and how it got there.

use crate::verdict::{Deny, DenyReason, Grant};

/// What the chain decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome<A> {
    Allow(A),
    Deny(Deny),
}

/// A policy name as every decision carries it: `&'static str`, so naming the
/// policy costs a check nothing (a reference-counted name cost two atomic
/// updates per step). Each distinct name is kept once for the life of the
/// process. Names come from chain files and the builder, never from clients,
/// so there are few; a reload with the same names reuses them.
pub fn policy_name(name: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static NAMES: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(kept) = names.get(name) {
        return kept;
    }
    let kept: &'static str = Box::leak(name.into());
    names.insert(kept);
    kept
}

/// Who decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecidedBy {
    /// The named policy answered allow or deny (or failed, under its failure mode).
    Policy(&'static str),
    /// Every policy deferred; the chain's default applied.
    Default,
    /// The host refused before asking any policy (a malformed certificate,
    /// a request over a bound).
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
    /// Not asked: the connect is outside the policy's `[policy.ask_connect]`
    /// scope. The chain moves on, as after a defer.
    NotAsked,
    Failed(crate::error::PolicyError),
}

/// One entry of a decision's trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The policy's name (see [`policy_name`]).
    pub policy: &'static str,
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

    /// A deny made by the host itself, before any policy ran.
    pub fn host_deny(reason: DenyReason, message: impl Into<String>, generation: u64) -> Self {
        Decision {
            outcome: Outcome::Deny(Deny::new(reason, message)),
            decided_by: DecidedBy::Host,
            generation,
            trace: Vec::new(),
        }
    }
}

//! Per-policy counters, readable through the API while checks run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Live counters of one policy in a chain.
#[derive(Debug, Default)]
pub(crate) struct PolicyStats {
    allow: AtomicU64,
    deny: AtomicU64,
    defer: AtomicU64,
    error: AtomicU64,
    nanos: AtomicU64,
}

/// What one policy decided so far, and the time it spent deciding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    pub allow: u64,
    pub deny: u64,
    pub defer: u64,
    pub error: u64,
    /// Total time spent in this policy's checks.
    pub time_spent: Duration,
}

impl StatsSnapshot {
    /// Checks this policy has run.
    pub fn checks(&self) -> u64 {
        self.allow + self.deny + self.defer + self.error
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Tally {
    Allow,
    Deny,
    Defer,
    Error,
}

impl PolicyStats {
    pub(crate) fn record(&self, tally: Tally, spent: Duration) {
        let counter = match tally {
            Tally::Allow => &self.allow,
            Tally::Deny => &self.deny,
            Tally::Defer => &self.defer,
            Tally::Error => &self.error,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(spent.as_nanos()).unwrap_or(u64::MAX);
        self.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            allow: self.allow.load(Ordering::Relaxed),
            deny: self.deny.load(Ordering::Relaxed),
            defer: self.defer.load(Ordering::Relaxed),
            error: self.error.load(Ordering::Relaxed),
            time_spent: Duration::from_nanos(self.nanos.load(Ordering::Relaxed)),
        }
    }
}

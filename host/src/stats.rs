//! Per-policy counters, readable through the API while checks run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::striped::Striped;

/// Live counters of one policy in a chain, striped per thread (every check
/// writes them; see `striped.rs`).
#[derive(Debug, Default)]
pub(crate) struct PolicyStats {
    stripes: Striped<Counters>,
}

#[derive(Debug, Default)]
struct Counters {
    allow: AtomicU64,
    deny: AtomicU64,
    defer: AtomicU64,
    error: AtomicU64,
    /// Time measured, each sample weighted by the checks it stands for.
    nanos: AtomicU64,
    circuit_opens: AtomicU64,
    short_circuits: AtomicU64,
}

/// What one policy decided so far, and the time it spent deciding.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    pub allow: u64,
    pub deny: u64,
    pub defer: u64,
    pub error: u64,
    /// Total time spent in this policy's checks: exact for connect checks;
    /// topic checks are timed one in [`TOPIC_TIMING_EVERY`] per thread and
    /// each timed one counts that many times. Only ever grows.
    pub time_spent: Duration,
    /// Times the policy's circuit breaker opened (see `[breaker]`).
    pub circuit_opens: u64,
    /// Checks answered by the failure mode without asking the policy,
    /// because its circuit was open (counted in `error` too).
    pub short_circuits: u64,
}

impl StatsSnapshot {
    /// Checks this policy has run.
    pub fn checks(&self) -> u64 {
        self.allow + self.deny + self.defer + self.error
    }
}

/// Topic checks timed per policy: one in this many (per thread).
pub const TOPIC_TIMING_EVERY: u32 = 8;

/// Should this topic check be timed, and for how many checks does its time
/// count? A per-thread count, so no shared write on the hot path.
pub(crate) fn sample_topic_timing() -> Option<u32> {
    thread_local! {
        static COUNT: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }
    COUNT.with(|c| {
        let n = c.get().wrapping_add(1);
        c.set(n);
        (n % TOPIC_TIMING_EVERY == 1).then_some(TOPIC_TIMING_EVERY)
    })
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Tally {
    Allow,
    Deny,
    Defer,
    Error,
}

impl PolicyStats {
    /// Count a check, and its time if it was measured, times the number of
    /// checks that sample stands for.
    pub(crate) fn record(&self, tally: Tally, spent: Option<(Duration, u32)>) {
        let c = self.stripes.local();
        let counter = match tally {
            Tally::Allow => &c.allow,
            Tally::Deny => &c.deny,
            Tally::Defer => &c.defer,
            Tally::Error => &c.error,
        };
        counter.fetch_add(1, Ordering::Relaxed);
        if let Some((spent, weight)) = spent {
            let nanos = u64::try_from(spent.as_nanos())
                .unwrap_or(u64::MAX)
                .saturating_mul(u64::from(weight));
            c.nanos.fetch_add(nanos, Ordering::Relaxed);
        }
    }

    pub(crate) fn circuit_opened(&self) {
        self.stripes
            .local()
            .circuit_opens
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn short_circuited(&self) {
        self.stripes
            .local()
            .short_circuits
            .fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> StatsSnapshot {
        let sum = |f: fn(&Counters) -> &AtomicU64| -> u64 {
            self.stripes
                .iter()
                .map(|c| f(c).load(Ordering::Relaxed))
                .fold(0, u64::wrapping_add)
        };
        StatsSnapshot {
            allow: sum(|c| &c.allow),
            deny: sum(|c| &c.deny),
            defer: sum(|c| &c.defer),
            error: sum(|c| &c.error),
            time_spent: Duration::from_nanos(sum(|c| &c.nanos)),
            circuit_opens: sum(|c| &c.circuit_opens),
            short_circuits: sum(|c| &c.short_circuits),
        }
    }
}

/// Lets at most `per_second` log lines through per one-second window and
/// counts the rest, so a hostile or broken policy cannot flood the logs. The
/// next line let through reports how many were suppressed. Approximate under
/// races, which is fine for logging.
#[derive(Debug)]
pub(crate) struct LogGate {
    per_second: u64,
    window: AtomicU64,
    count: AtomicU64,
    suppressed: AtomicU64,
}

fn seconds_since_start() -> u64 {
    static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    START
        .get_or_init(std::time::Instant::now)
        .elapsed()
        .as_secs()
}

impl LogGate {
    pub(crate) fn new(per_second: u64) -> Self {
        Self {
            per_second,
            window: AtomicU64::new(seconds_since_start()),
            count: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(lines suppressed since the last admitted one)` if this line may
    /// be logged, `None` if it must be dropped.
    pub(crate) fn admit(&self) -> Option<u64> {
        let now = seconds_since_start();
        let window = self.window.load(Ordering::Relaxed);
        if window != now
            && self
                .window
                .compare_exchange(window, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            self.count.store(0, Ordering::Relaxed);
        }
        if self.count.fetch_add(1, Ordering::Relaxed) < self.per_second {
            Some(self.suppressed.swap(0, Ordering::Relaxed))
        } else {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_gate_admits_a_burst_then_counts_what_it_drops() {
        let gate = LogGate::new(3);
        let admitted: Vec<Option<u64>> = (0..10).map(|_| gate.admit()).collect();
        assert_eq!(&admitted[..3], &[Some(0), Some(0), Some(0)]);
        assert!(admitted[3..].iter().all(Option::is_none));
        assert_eq!(gate.suppressed.load(Ordering::Relaxed), 7);
    }

    #[test]
    fn sampled_time_counts_for_the_checks_it_stands_for() {
        let s = PolicyStats::default();
        s.record(Tally::Allow, Some((Duration::from_millis(35), 1)));
        s.record(
            Tally::Defer,
            Some((Duration::from_micros(1), TOPIC_TIMING_EVERY)),
        );
        let mut last = s.snapshot().time_spent;
        for _ in 1..TOPIC_TIMING_EVERY {
            s.record(Tally::Defer, None);
            // A counter: never goes down.
            assert!(s.snapshot().time_spent >= last);
            last = s.snapshot().time_spent;
        }
        let snap = s.snapshot();
        assert_eq!(snap.checks(), 1 + u64::from(TOPIC_TIMING_EVERY));
        assert_eq!(
            snap.time_spent,
            Duration::from_millis(35) + Duration::from_micros(u64::from(TOPIC_TIMING_EVERY)),
            "the connect check exactly, the topic checks by their sample"
        );
    }
}

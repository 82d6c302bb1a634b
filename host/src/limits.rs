//! Limits on every call into a policy: a deadline enforced with epoch
//! interruption, and a memory cap (and a table-size cap) enforced by the
//! store's resource limiter. Exceeding either is a failed check (a deny,
//! unless configured). The bounds on host work these do not see — data lifted
//! from the policy, random bytes, resource handles — are in `sandbox.rs`.
//!
//! The deadline is a budget of CPU time, not wall time: on a loaded machine a
//! thread can be descheduled for longer than a few milliseconds in the middle
//! of a one-microsecond check, and a wall-clock deadline would then deny a
//! well-behaved client. The fast path costs nothing extra: only when the
//! epoch deadline fires does the deadline callback read the thread's CPU clock, and
//! it extends the deadline while the thread was not actually running
//! (the callback itself lives with the store state, `state.rs`). A policy
//! that really spins is stopped within two deadlines; a call is cut off
//! regardless after [`MAX_EXTENSIONS`] extensions.

use std::time::Duration;

/// Default deadline for one `connect-check` or `topic-check`.
pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(5);
/// Default deadline for `init`, which may parse keys and build tables.
pub const DEFAULT_INIT_DEADLINE: Duration = Duration::from_secs(2);
/// Default cap on one instance's linear memory.
pub const DEFAULT_MEMORY_BYTES: usize = 32 << 20;

/// The limits one policy runs under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Deadline of each check.
    pub deadline: Duration,
    /// Deadline of `init` (instantiation plus configuration).
    pub init_deadline: Duration,
    /// Cap on the linear memory of one instance, in bytes.
    pub memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            deadline: DEFAULT_DEADLINE,
            init_deadline: DEFAULT_INIT_DEADLINE,
            memory_bytes: DEFAULT_MEMORY_BYTES,
        }
    }
}

/// Epoch ticks to allow for `deadline` when the epoch advances every `tick`.
/// One extra tick because the current tick may be nearly over when the call
/// starts: the deadline is a lower bound, late by at most one tick.
pub(crate) fn deadline_ticks(deadline: Duration, tick: Duration) -> u64 {
    let tick = tick.as_nanos().max(1);
    let ticks = deadline.as_nanos().div_ceil(tick);
    u64::try_from(ticks).unwrap_or(u64::MAX - 1).max(1) + 1
}

/// Extensions granted to a descheduled call before it is cut off anyway.
pub const MAX_EXTENSIONS: u32 = 20;

/// Per-call deadline state, reset before every call.
#[derive(Debug, Default)]
pub(crate) struct DeadlineState {
    /// The call's budget, and the same in epoch ticks.
    pub(crate) budget: Duration,
    pub(crate) ticks: u64,
    extensions: u32,
    /// The thread's CPU clock when the deadline last fired.
    last_cpu: Option<Duration>,
}

impl DeadlineState {
    pub(crate) fn arm(&mut self, budget: Duration, ticks: u64) {
        *self = DeadlineState {
            budget,
            ticks,
            extensions: 0,
            last_cpu: None,
        };
    }

    /// The epoch deadline fired: trap if the thread has been burning CPU for
    /// the last interval (or too long overall), otherwise grant another
    /// interval. `cpu_now` is the calling thread's CPU time.
    pub(crate) fn on_deadline(&mut self, cpu_now: Option<Duration>) -> Option<u64> {
        self.extensions += 1;
        let ran = match (self.last_cpu, cpu_now) {
            // The first firing carries no CPU reading to compare with.
            (None, Some(_)) => false,
            (Some(before), Some(now)) => now.saturating_sub(before) >= self.budget / 2,
            // No CPU clock: fall back to wall time.
            (_, None) => true,
        };
        self.last_cpu = cpu_now;
        (!ran && self.extensions <= MAX_EXTENSIONS).then_some(self.ticks)
    }
}

/// Tracks one store's memory and table growth against the cap, and remembers
/// whether the cap was hit so a trap can be reported as out-of-memory. The
/// cap is on the sum of all the instance's memories (a component may have
/// several), not on each.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    pub(crate) memory_bytes: usize,
    pub(crate) hit: bool,
    pub(crate) used: usize,
}

/// Most elements in one wasm table: the pooling allocator's default slot, so
/// an engine without pooling bounds tables the same (a Rust policy's function
/// table holds a few hundred). Tables live outside linear memory, so the
/// memory cap does not see them.
pub const MAX_TABLE_ELEMENTS: usize = 20_000;

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let total = self.used.saturating_sub(current).saturating_add(desired);
        if total > self.memory_bytes || maximum.is_some_and(|m| desired > m) {
            self.hit = true;
            // Trap right away rather than hand the guest a null allocation:
            // the outcome is the same (the check fails) and cheaper to reach.
            wasmtime::bail!("memory limit of {} bytes exceeded", self.memory_bytes);
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|m| desired <= m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadline_ticks_round_up_and_add_one() {
        let ms = Duration::from_millis(1);
        assert_eq!(deadline_ticks(Duration::from_millis(5), ms), 6);
        assert_eq!(deadline_ticks(Duration::from_micros(1500), ms), 3);
        assert_eq!(deadline_ticks(Duration::ZERO, ms), 2);
        assert!(deadline_ticks(Duration::MAX, Duration::from_nanos(1)) > 1_000_000);
    }

    #[test]
    fn deadlines_extend_only_while_the_thread_is_not_running() {
        let ms = Duration::from_millis;
        let mut d = DeadlineState::default();
        d.arm(ms(10), 11);
        // First firing: no comparison yet, one more interval.
        assert_eq!(d.on_deadline(Some(ms(100))), Some(11));
        // Descheduled: 1 ms of CPU in the interval, extend.
        assert_eq!(d.on_deadline(Some(ms(101))), Some(11));
        // Spinning: 10 ms of CPU in the interval, stop.
        assert_eq!(d.on_deadline(Some(ms(111))), None);
        // Without a CPU clock the deadline is wall time.
        d.arm(ms(10), 11);
        assert_eq!(d.on_deadline(None), None);
        // Never more than MAX_EXTENSIONS, however idle.
        d.arm(ms(10), 11);
        let granted = (0..100)
            .take_while(|_| d.on_deadline(Some(ms(5))).is_some())
            .count();
        assert_eq!(granted, MAX_EXTENSIONS as usize);
    }

    #[test]
    fn memory_limiter_refuses_growth_past_the_cap() {
        use wasmtime::ResourceLimiter as _;
        let mut limiter = MemoryLimiter {
            memory_bytes: 1 << 20,
            hit: false,
            used: 0,
        };
        assert!(matches!(limiter.memory_growing(0, 1 << 19, None), Ok(true)));
        assert!(matches!(
            limiter.memory_growing(1 << 19, 1 << 20, None),
            Ok(true)
        ));
        assert!(!limiter.hit);
        assert!(
            limiter
                .memory_growing(1 << 20, (1 << 20) + 1, None)
                .is_err()
        );
        assert!(limiter.hit);
        // A second memory counts against the same cap.
        let mut limiter = MemoryLimiter {
            memory_bytes: 1 << 20,
            hit: false,
            used: 0,
        };
        assert!(matches!(
            limiter.memory_growing(0, 600 << 10, None),
            Ok(true)
        ));
        assert!(limiter.memory_growing(0, 600 << 10, None).is_err());
    }
}

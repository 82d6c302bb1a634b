//! Limits on every call into a policy: a wall-clock deadline enforced with
//! epoch interruption, and a memory cap enforced by the store's resource
//! limiter. Exceeding either is a failed check (a deny, unless configured).

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

/// Tracks one store's memory and table growth against the cap, and remembers
/// whether the cap was hit so a trap can be reported as out-of-memory.
#[derive(Debug)]
pub(crate) struct MemoryLimiter {
    pub(crate) memory_bytes: usize,
    pub(crate) hit: bool,
}

/// Far above what any real policy needs; stops table-growth abuse.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl wasmtime::ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.memory_bytes || maximum.is_some_and(|m| desired > m) {
            self.hit = true;
            // Trap right away rather than hand the guest a null allocation:
            // the outcome is the same (the check fails) and cheaper to reach.
            wasmtime::bail!("memory limit of {} bytes exceeded", self.memory_bytes);
        }
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
    fn memory_limiter_refuses_growth_past_the_cap() {
        use wasmtime::ResourceLimiter as _;
        let mut limiter = MemoryLimiter {
            memory_bytes: 1 << 20,
            hit: false,
        };
        assert!(matches!(limiter.memory_growing(0, 1 << 20, None), Ok(true)));
        assert!(!limiter.hit);
        assert!(limiter.memory_growing(0, (1 << 20) + 1, None).is_err());
        assert!(limiter.hit);
    }
}

//! Where a connect check runs under `connect_checks = "auto"`: on the async
//! worker that read the CONNECT while checks are cheap, on tokio's blocking
//! pool for a window once they are not.
//!
//! "Not cheap" is a sustained cost, not one expensive check: a check over
//! [`SLOW_CONNECT_CHECK`] of CPU time that brings the mean of recent checks
//! (each weighs 1/8) over it too, or one check that waited longer than
//! [`SLOW_CONNECT_WAIT`]. One argon2id hash (~35 ms) still moves the broker
//! at once, and so does any check over 8 ms; the one-off costs of a healthy
//! chain (a new instance's `init`, its first hash of a user it has not
//! seen, 1–4 ms) do not, unless they keep coming. With a one-check rule each
//! of those opened a window, and on the pool more checks run at once, so
//! more instances were made, whose first checks opened the next window.
//! Cheap checks never open or extend a window, so a broker whose slow
//! checks stopped is back inline one window after the last of them. The
//! mean is of recent checks: after a window with no checks at all it starts
//! again from zero, so the start-up checks of an idle broker (instances
//! made, hashes first seen) do not weigh on its next connect.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::config::{SLOW_CONNECT_CHECK, SLOW_CONNECT_WAIT, SLOW_CONNECT_WINDOW};

/// Each check's share of the mean is 1 / 2^WEIGHT_SHIFT.
const WEIGHT_SHIFT: u32 = 3;

/// What one connect check took.
#[derive(Debug, Clone, Copy)]
pub struct Spent {
    /// CPU time of the thread that ran it.
    pub cpu: Duration,
    /// From the check's start to its verdict.
    pub wall: Duration,
}

/// The `auto` decision, shared by every connection's task.
#[derive(Debug)]
pub struct SlowChecks {
    /// Checks go to the blocking pool until this instant (milliseconds
    /// since `epoch`).
    pool_until_ms: AtomicU64,
    /// Recent checks' mean CPU time in nanoseconds.
    mean_cpu_nanos: AtomicU64,
    /// When the last check was recorded (milliseconds since `epoch`).
    last_ms: AtomicU64,
    epoch: Instant,
    window: Duration,
}

impl Default for SlowChecks {
    fn default() -> Self {
        SlowChecks::with_window(SLOW_CONNECT_WINDOW)
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The mean after one more check of `cpu` nanoseconds.
fn next_mean(mean: u64, cpu: u64) -> u64 {
    mean - (mean >> WEIGHT_SHIFT) + (cpu >> WEIGHT_SHIFT)
}

impl SlowChecks {
    fn with_window(window: Duration) -> Self {
        SlowChecks {
            // It starts on the pool: the first checks create instances and
            // meet the slow hashes, and inline is earned by a quiet window.
            pool_until_ms: AtomicU64::new(millis(window)),
            mean_cpu_nanos: AtomicU64::new(0),
            last_ms: AtomicU64::new(0),
            epoch: Instant::now(),
            window,
        }
    }

    /// Should the next check run on the worker?
    pub fn inline(&self) -> bool {
        millis(self.epoch.elapsed()) >= self.pool_until_ms.load(Ordering::Relaxed)
    }

    /// A check spent `took`; opens (or extends) a pool window when checks
    /// have become slow.
    pub fn record(&self, took: Spent) {
        // A thread's CPU clock can read ahead of the wall clock under a
        // hypervisor (seen: 3.9 ms of CPU in a 10 µs check); a check on one
        // thread cannot spend more CPU than the time it took.
        let cpu = nanos(took.cpu.min(took.wall));
        let now = millis(self.epoch.elapsed());
        let last = self.last_ms.swap(now, Ordering::Relaxed);
        // No check for a whole window: the old mean is not recent. (Two
        // checks ending together then may still judge one against the old
        // mean: at worst one window on the pool that was not needed.)
        let stale = now.saturating_sub(last) >= millis(self.window);
        let (Ok(before) | Err(before)) =
            self.mean_cpu_nanos
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |mean| {
                    Some(next_mean(if stale { 0 } else { mean }, cpu))
                });
        let before = if stale { 0 } else { before };
        let slow = nanos(SLOW_CONNECT_CHECK);
        if (cpu > slow && next_mean(before, cpu) > slow) || took.wall > SLOW_CONNECT_WAIT {
            let until = now.saturating_add(millis(self.window));
            self.pool_until_ms.fetch_max(until, Ordering::Relaxed);
        }
    }

    /// Leave the start-up window now (tests).
    #[cfg(test)]
    fn quiet(&self) {
        self.pool_until_ms.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spent(cpu_us: u64, wall_us: u64) -> Spent {
        Spent {
            cpu: Duration::from_micros(cpu_us),
            wall: Duration::from_micros(wall_us),
        }
    }

    fn quiet() -> SlowChecks {
        let s = SlowChecks::default();
        assert!(!s.inline(), "auto starts on the pool");
        s.quiet();
        assert!(s.inline());
        s
    }

    #[test]
    fn one_password_hash_moves_checks_to_the_pool() {
        let s = quiet();
        s.record(spent(35_000, 35_500));
        assert!(!s.inline());
    }

    #[test]
    fn one_off_costs_of_a_healthy_chain_stay_inline() {
        let s = quiet();
        // A new instance's init and first hash, among microsecond checks.
        for _ in 0..3 {
            s.record(spent(4_000, 4_200));
            for _ in 0..50 {
                s.record(spent(10, 12));
            }
        }
        assert!(s.inline());
    }

    #[test]
    fn expensive_checks_that_keep_coming_move_checks_to_the_pool() {
        let s = quiet();
        let mut moved = None;
        for i in 0..32 {
            s.record(spent(1_500, 1_600));
            if !s.inline() {
                moved = Some(i);
                break;
            }
        }
        assert!(moved.is_some_and(|i| i > 0), "moved after {moved:?} checks");
    }

    #[test]
    fn cpu_time_past_the_wall_time_is_not_believed() {
        let s = quiet();
        for _ in 0..32 {
            s.record(spent(3_900, 10));
        }
        assert!(s.inline());
    }

    #[test]
    fn a_long_wait_moves_checks_to_the_pool() {
        let s = quiet();
        s.record(spent(5, 12_000));
        assert!(!s.inline());
    }

    #[test]
    fn cheap_checks_after_a_window_stay_inline() {
        let s = SlowChecks::with_window(Duration::from_millis(50));
        s.quiet();
        s.record(spent(35_000, 35_500));
        assert!(!s.inline());
        std::thread::sleep(Duration::from_millis(60));
        assert!(s.inline(), "one window after the slow check");
        // The mean is still high, but a cheap check is no sign of slowness.
        s.record(spent(10, 12));
        assert!(s.inline());
    }

    #[test]
    fn after_a_window_without_checks_the_mean_starts_again() {
        // Start-up: three expensive checks leave a mean over 1 ms.
        let started = || {
            let s = SlowChecks::with_window(Duration::from_millis(50));
            for _ in 0..3 {
                s.record(spent(5_000, 5_200));
            }
            s.quiet();
            s
        };
        let (busy, idle) = (started(), started());
        // Right after them, one more check of 2 ms counts as sustained.
        busy.record(spent(2_000, 2_100));
        assert!(!busy.inline(), "the mean of recent checks is over 1 ms");
        // A window later the same check is a one-off.
        std::thread::sleep(Duration::from_millis(60));
        idle.record(spent(2_000, 2_100));
        assert!(
            idle.inline(),
            "an idle window later the mean starts from zero"
        );
    }

    #[test]
    fn durations_past_u64_nanoseconds_do_not_overflow() {
        let s = quiet();
        s.record(spent(u64::MAX, u64::MAX));
        s.record(spent(u64::MAX, u64::MAX));
        assert!(!s.inline());
    }
}

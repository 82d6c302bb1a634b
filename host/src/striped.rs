//! Per-thread stripes for what every check touches: counters and idle
//! instances. Two threads writing the same cache line on every check spend
//! more time passing it between cores than checking, so each thread gets a
//! stripe of its own (assigned round-robin on first use) and readers sum
//! the stripes.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Stripes per striped value: more than the cores of most brokers' hosts,
/// so threads rarely share one.
pub(crate) const STRIPES: usize = 16;

/// This thread's stripe, in `0..STRIPES`.
pub(crate) fn stripe() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static STRIPE: usize = NEXT.fetch_add(1, Ordering::Relaxed) % STRIPES;
    }
    STRIPE.with(|s| *s)
}

/// A value on a cache line (two, for the adjacent-line prefetcher) of its own.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

/// One `T` per stripe.
#[derive(Debug)]
pub(crate) struct Striped<T> {
    stripes: Box<[Padded<T>]>,
}

impl<T: Default> Default for Striped<T> {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| Padded(T::default())).collect(),
        }
    }
}

impl<T> Striped<T> {
    /// The calling thread's stripe.
    pub(crate) fn local(&self) -> &T {
        &self.stripes[stripe() % self.stripes.len()].0
    }

    /// Every stripe, to sum.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> {
        self.stripes.iter().map(|p| &p.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn stripes_sum_to_what_every_thread_added() {
        let counter: Striped<AtomicU64> = Striped::default();
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    for _ in 0..1000 {
                        counter.local().fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
        });
        let total: u64 = counter.iter().map(|c| c.load(Ordering::Relaxed)).sum();
        assert_eq!(total, 8000);
        assert!(stripe() < STRIPES);
    }
}

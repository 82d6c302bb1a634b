//! The session's verdict cache: exact, not timed.
//!
//! A session keeps the chain's topic decisions for as long as the policies
//! said they hold ([`VerdictLifetime`]): for the session, or until an
//! instant, keyed by everything a policy can read that varies within a
//! session (access, topic, QoS, retain; the client id, username and grant
//! are the session's own). A decision resting on a `none` verdict or on a
//! failure is never kept. The whole cache is dropped when the live chain's
//! generation differs from the one that filled it, so after any reload the
//! very next check asks the new chain; an entry past its instant is never
//! served (it is dropped at the first lookup after it, or to make room).
//!
//! Memory is bounded per session (entries and bytes) and across all
//! sessions of a host (bytes): a client publishing to a million distinct
//! topics replaces its own entries rather than growing, and when the host's
//! total is reached a session only replaces its own.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use serde::Deserialize;

use crate::decision::TopicDecision;
use crate::request::Access;
use crate::striped::Striped;
use crate::verdict::VerdictLifetime;

/// Bytes an entry is charged besides its topic and what its decision holds:
/// the map slot, the key's and the list's allocations, the decision's own
/// allocation.
const ENTRY_OVERHEAD_BYTES: usize = 256;
/// Bytes charged per step of a kept decision's trace.
const STEP_BYTES: usize = 48;

/// The `[verdict_cache]` table of the chain file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VerdictCacheConfig {
    /// Keep decisions at all (default true).
    pub enabled: bool,
    /// Most decisions one session keeps (default 256).
    pub max_session_entries: usize,
    /// Most bytes one session's decisions take, topics included (default
    /// 64 KiB).
    pub max_session_bytes: usize,
    /// Most bytes all sessions' decisions take together (default 256 MiB).
    pub max_total_bytes: usize,
}

impl Default for VerdictCacheConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_session_entries: 256,
            max_session_bytes: 64 * 1024,
            max_total_bytes: 256 * 1024 * 1024,
        }
    }
}

impl VerdictCacheConfig {
    /// No caching: every check asks the chain.
    pub fn disabled() -> Self {
        Self {
            enabled: false,
            ..Self::default()
        }
    }
}

/// The verdict cache's counters across a host's sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VerdictCacheStats {
    /// Checks answered from a session's cache.
    pub hits: u64,
    /// Checks that asked the chain (cacheable or not).
    pub misses: u64,
    /// Entries dropped to make room, at their instant, or by a reload.
    pub evictions: u64,
    /// Entries kept right now, in all sessions.
    pub entries: u64,
    /// Bytes charged for them right now.
    pub bytes: u64,
}

/// What all sessions of one host share: the counters and the global bound.
#[derive(Debug, Default)]
pub(crate) struct CacheTotals {
    /// Written by every check: striped per thread.
    lookups: Striped<Lookups>,
    evictions: AtomicU64,
    entries: AtomicUsize,
    bytes: AtomicUsize,
}

#[derive(Debug, Default)]
struct Lookups {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl CacheTotals {
    pub(crate) fn snapshot(&self) -> VerdictCacheStats {
        let sum = |f: fn(&Lookups) -> &AtomicU64| -> u64 {
            self.lookups
                .iter()
                .map(|l| f(l).load(Ordering::Relaxed))
                .fold(0, u64::wrapping_add)
        };
        VerdictCacheStats {
            hits: sum(|l| &l.hits),
            misses: sum(|l| &l.misses),
            evictions: self.evictions.load(Ordering::Relaxed),
            entries: self.entries.load(Ordering::Relaxed) as u64,
            bytes: self.bytes.load(Ordering::Relaxed) as u64,
        }
    }

    pub(crate) fn miss(&self) {
        self.lookups.local().misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Charge `bytes` if the host's total stays within `max`.
    fn reserve(&self, bytes: usize, max: usize) -> bool {
        self.bytes
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |used| {
                used.checked_add(bytes).filter(|total| *total <= max)
            })
            .is_ok()
    }

    fn release(&self, entries: usize, bytes: usize) {
        self.entries.fetch_sub(entries, Ordering::Relaxed);
        self.bytes.fetch_sub(bytes, Ordering::Relaxed);
    }
}

/// What a decision varies with inside one session, besides its topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Variant {
    access: Access,
    qos: u8,
    retain: bool,
}

struct Kept {
    variant: Variant,
    decision: Arc<TopicDecision>,
    /// Milliseconds since the Unix epoch; `None` for the session.
    until: Option<u64>,
    /// What this entry is charged (see [`cost`]).
    bytes: usize,
}

/// One session's cache. Keyed by topic (looked up without allocating), with
/// the few access/QoS/retain variants of a topic beside each other. Hashed
/// with foldhash, seeded per map: topics are short, and a client crafting
/// collisions could only slow its own map of at most a few hundred entries.
pub(crate) struct SessionCache {
    totals: Arc<CacheTotals>,
    generation: u64,
    topics: HashMap<Box<str>, Vec<Kept>, foldhash::fast::RandomState>,
    entries: usize,
    bytes: usize,
}

impl Drop for SessionCache {
    fn drop(&mut self) {
        self.totals.release(self.entries, self.bytes);
    }
}

/// What keeping `decision` for `topic` costs: the topic twice over (the key,
/// and a long topic's share of the map), the deny message and the trace.
fn cost(topic: &str, decision: &TopicDecision) -> usize {
    let message = decision.deny().map_or(0, |d| d.message.len());
    ENTRY_OVERHEAD_BYTES + topic.len() + message + decision.trace.len() * STEP_BYTES
}

impl SessionCache {
    pub(crate) fn new(totals: Arc<CacheTotals>) -> Self {
        Self {
            totals,
            generation: 0,
            topics: HashMap::default(),
            entries: 0,
            bytes: 0,
        }
    }

    /// A reload happened since the cache was filled: drop everything.
    /// Called only with a generation at least the cache's own (a check that
    /// started on an older chain neither reads nor writes the cache).
    fn follow(&mut self, generation: u64) {
        if self.generation != generation {
            if self.entries > 0 {
                self.totals
                    .evictions
                    .fetch_add(self.entries as u64, Ordering::Relaxed);
                self.totals.release(self.entries, self.bytes);
                self.topics = HashMap::default();
                self.entries = 0;
                self.bytes = 0;
            }
            self.generation = generation;
        }
    }

    /// The kept decision for this request under chain `generation`, if it
    /// still holds at `now_ms` (read only for entries with an instant).
    pub(crate) fn get(
        &mut self,
        generation: u64,
        access: Access,
        topic: &str,
        qos: u8,
        retain: bool,
        now_ms: impl FnOnce() -> u64,
    ) -> Option<Arc<TopicDecision>> {
        if generation < self.generation {
            return None;
        }
        self.follow(generation);
        let variant = Variant {
            access,
            qos,
            retain,
        };
        let kept = self.topics.get_mut(topic)?;
        let i = kept.iter().position(|k| k.variant == variant)?;
        if let Some(until) = kept[i].until
            && now_ms() >= until
        {
            let gone = kept.swap_remove(i);
            if kept.is_empty() {
                self.topics.remove(topic);
            }
            self.forget(1, gone.bytes);
            self.totals.evictions.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.totals
            .lookups
            .local()
            .hits
            .fetch_add(1, Ordering::Relaxed);
        Some(kept[i].decision.clone())
    }

    fn forget(&mut self, entries: usize, bytes: usize) {
        self.entries -= entries;
        self.bytes -= bytes;
        self.totals.release(entries, bytes);
    }

    /// Drop one entry (any) to make room; false if there is none.
    fn evict_one(&mut self) -> bool {
        let Some(topic) = self.topics.keys().next().cloned() else {
            return false;
        };
        let (bytes, now_empty) = match self.topics.get_mut(&topic) {
            Some(kept) => match kept.pop() {
                Some(gone) => (gone.bytes, kept.is_empty()),
                None => (0, true),
            },
            None => return false,
        };
        if now_empty {
            self.topics.remove(&topic);
        }
        if bytes > 0 {
            self.forget(1, bytes);
            self.totals.evictions.fetch_add(1, Ordering::Relaxed);
        }
        true
    }

    /// Drop everything (the cache was turned off by a reload).
    pub(crate) fn clear(&mut self) {
        if self.entries > 0 {
            self.totals
                .evictions
                .fetch_add(self.entries as u64, Ordering::Relaxed);
            self.totals.release(self.entries, self.bytes);
            self.topics = HashMap::default();
            self.entries = 0;
            self.bytes = 0;
        }
    }

    /// Keep `decision` for as long as `lifetime` says, within the bounds.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn put(
        &mut self,
        config: &VerdictCacheConfig,
        generation: u64,
        access: Access,
        topic: &str,
        qos: u8,
        retain: bool,
        decision: &Arc<TopicDecision>,
        lifetime: VerdictLifetime,
    ) {
        let until = match lifetime {
            VerdictLifetime::None => return,
            VerdictLifetime::Session => None,
            VerdictLifetime::Until(t) => Some(t),
        };
        // A check that started on a chain older than what the cache holds
        // (a reload raced it) keeps nothing and clears nothing.
        if generation < self.generation {
            return;
        }
        self.follow(generation);
        let bytes = cost(topic, decision);
        if bytes > config.max_session_bytes || config.max_session_entries == 0 {
            return;
        }
        while self.entries >= config.max_session_entries
            || self.bytes + bytes > config.max_session_bytes
        {
            if !self.evict_one() {
                return;
            }
        }
        // The host's total: make room from this session's own entries, or
        // keep nothing.
        while !self.totals.reserve(bytes, config.max_total_bytes) {
            if !self.evict_one() {
                return;
            }
        }
        self.totals.entries.fetch_add(1, Ordering::Relaxed);
        self.entries += 1;
        self.bytes += bytes;
        let kept = Kept {
            variant: Variant {
                access,
                qos,
                retain,
            },
            decision: decision.clone(),
            until,
            bytes,
        };
        match self.topics.get_mut(topic) {
            Some(list) => {
                // A racing check of the same request may have kept it first.
                if let Some(old) = list.iter_mut().find(|k| k.variant == kept.variant) {
                    let replaced = std::mem::replace(old, kept);
                    self.forget(1, replaced.bytes);
                } else {
                    list.push(kept);
                }
            }
            None => {
                self.topics.insert(topic.into(), vec![kept]);
            }
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::{Decision, Outcome};

    fn decision(generation: u64) -> Arc<TopicDecision> {
        Arc::new(Decision {
            outcome: Outcome::Allow(()),
            decided_by: crate::decision::DecidedBy::Default,
            generation,
            trace: Vec::new(),
        })
    }

    #[test]
    fn lifetimes_reloads_and_bounds() {
        let totals = Arc::new(CacheTotals::default());
        let config = VerdictCacheConfig {
            max_session_entries: 3,
            ..VerdictCacheConfig::default()
        };
        let mut cache = SessionCache::new(totals.clone());
        let d = decision(1);
        let now = || 1_000;
        cache.put(
            &config,
            1,
            Access::Publish,
            "a",
            0,
            false,
            &d,
            VerdictLifetime::None,
        );
        assert!(cache.get(1, Access::Publish, "a", 0, false, now).is_none());
        cache.put(
            &config,
            1,
            Access::Publish,
            "a",
            0,
            false,
            &d,
            VerdictLifetime::Session,
        );
        assert!(cache.get(1, Access::Publish, "a", 0, false, now).is_some());
        // QoS, retain and access are part of the key.
        assert!(cache.get(1, Access::Publish, "a", 1, false, now).is_none());
        assert!(cache.get(1, Access::Publish, "a", 0, true, now).is_none());
        assert!(cache.get(1, Access::Receive, "a", 0, false, now).is_none());
        // An instant: kept before it, gone at it.
        cache.put(
            &config,
            1,
            Access::Publish,
            "b",
            0,
            false,
            &d,
            VerdictLifetime::Until(2_000),
        );
        assert!(
            cache
                .get(1, Access::Publish, "b", 0, false, || 1_999)
                .is_some()
        );
        assert!(
            cache
                .get(1, Access::Publish, "b", 0, false, || 2_000)
                .is_none()
        );
        // The bound: never more than 3, whatever is put.
        for i in 0..100 {
            let topic = format!("t/{i}");
            cache.put(
                &config,
                1,
                Access::Publish,
                &topic,
                0,
                false,
                &d,
                VerdictLifetime::Session,
            );
            assert!(cache.len() <= 3);
        }
        assert_eq!(totals.snapshot().entries, 3);
        // A reload drops everything.
        assert!(
            cache
                .get(2, Access::Publish, "t/99", 0, false, now)
                .is_none()
        );
        assert_eq!(cache.len(), 0);
        assert_eq!(totals.snapshot().entries, 0);
        // A check that started on an older chain keeps nothing and leaves
        // the newer generation's entries alone.
        let session = VerdictLifetime::Session;
        cache.put(
            &config,
            2,
            Access::Publish,
            "a",
            0,
            false,
            &decision(2),
            session,
        );
        assert_eq!(cache.len(), 1);
        cache.put(&config, 1, Access::Publish, "b", 0, false, &d, session);
        assert!(cache.get(1, Access::Publish, "a", 0, false, now).is_none());
        assert_eq!(cache.len(), 1);
        assert!(cache.get(2, Access::Publish, "a", 0, false, now).is_some());
        drop(cache);
        let stats = totals.snapshot();
        assert_eq!((stats.entries, stats.bytes), (0, 0));
        assert!(stats.hits >= 2 && stats.evictions >= 97, "{stats:?}");
    }

    #[test]
    fn the_hosts_total_is_shared_by_its_sessions() {
        let totals = Arc::new(CacheTotals::default());
        let config = VerdictCacheConfig {
            max_total_bytes: 4 * (ENTRY_OVERHEAD_BYTES + 3),
            ..VerdictCacheConfig::default()
        };
        let d = decision(1);
        let mut one = SessionCache::new(totals.clone());
        let mut two = SessionCache::new(totals.clone());
        for i in 0..10 {
            let topic = format!("a/{i}");
            one.put(
                &config,
                1,
                Access::Publish,
                &topic,
                0,
                false,
                &d,
                VerdictLifetime::Session,
            );
        }
        assert_eq!(one.len(), 4);
        // The other session finds the total used up and keeps nothing.
        two.put(
            &config,
            1,
            Access::Publish,
            "b/0",
            0,
            false,
            &d,
            VerdictLifetime::Session,
        );
        assert_eq!(two.len(), 0);
        drop(one);
        two.put(
            &config,
            1,
            Access::Publish,
            "b/0",
            0,
            false,
            &d,
            VerdictLifetime::Session,
        );
        assert_eq!(two.len(), 1);
    }
}

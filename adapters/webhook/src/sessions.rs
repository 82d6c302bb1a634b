//! Accepted connections, for protocols whose topic checks arrive without
//! the connect's grant (amqtt, EMQX, RabbitMQ): the broker asks about the
//! CONNECT first, then about each topic with only the client id and
//! username. The host's [`Session`] from the last allowed connect of that
//! (client id, username) answers those checks, so they see the attributes
//! and roles the connect granted, exactly as an embedded broker's would.
//!
//! Bounded and expiring: at most `max` sessions (the oldest connect is
//! forgotten first) and each forgotten after `ttl` unused. None of these
//! brokers reports disconnects, so forgetting is the only way out. A topic
//! check for a session not (or no longer) here is denied: fail closed.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mqtt_policy_host::Session;

/// (client id, username).
pub(crate) type Key = (String, Option<String>);

struct Entry {
    session: Arc<Session>,
    /// When it was last used, in ms since the map's epoch.
    last_used: AtomicU64,
    /// Insertion stamp, to tell this entry from a later one of the same key
    /// in the eviction queue.
    stamp: u64,
}

struct Inner {
    map: HashMap<Key, Entry>,
    /// Keys in connect order, with their stamps; stale pairs are skipped.
    order: VecDeque<(Key, u64)>,
    next_stamp: u64,
}

pub(crate) struct SessionMap {
    inner: Mutex<Inner>,
    max: usize,
    ttl: Duration,
    epoch: Instant,
}

impl SessionMap {
    pub(crate) fn new(max: usize, ttl: Duration) -> Self {
        SessionMap {
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                order: VecDeque::new(),
                next_stamp: 0,
            }),
            max: max.max(1),
            ttl,
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Keep `session` for its (client id, username), replacing any older one.
    pub(crate) fn insert(&self, session: Session) {
        let key: Key = (
            session.client_id().to_owned(),
            session.username().map(str::to_owned),
        );
        let now = self.now_ms();
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let mut inner = self.lock();
        let stamp = inner.next_stamp;
        inner.next_stamp += 1;
        inner.map.insert(
            key.clone(),
            Entry {
                session: Arc::new(session),
                last_used: AtomicU64::new(now),
                stamp,
            },
        );
        inner.order.push_back((key, stamp));
        // Drop stale queue heads, expired sessions at the head, and the
        // oldest while over the bound. Amortised: each pair is popped once.
        while let Some((front, front_stamp)) = inner.order.front() {
            let live = inner.map.get(front).filter(|e| e.stamp == *front_stamp);
            let drop = match live {
                None => true,
                Some(e) => {
                    inner.map.len() > self.max
                        || now.saturating_sub(e.last_used.load(Ordering::Relaxed)) > ttl_ms
                }
            };
            if !drop {
                break;
            }
            if let Some((k, s)) = inner.order.pop_front()
                && inner.map.get(&k).is_some_and(|e| e.stamp == s)
            {
                inner.map.remove(&k);
            }
        }
        // Keys reconnecting often leave stale pairs behind the head; keep
        // the queue within a constant factor of the map.
        if inner.order.len() > 2 * self.max + 1024 {
            let Inner { map, order, .. } = &mut *inner;
            order.retain(|(k, s)| map.get(k).is_some_and(|e| e.stamp == *s));
        }
    }

    /// The live session of (client id, username), refreshing its expiry.
    pub(crate) fn get(&self, client_id: &str, username: Option<&str>) -> Option<Arc<Session>> {
        let now = self.now_ms();
        let ttl_ms = u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX);
        let key: Key = (client_id.to_owned(), username.map(str::to_owned));
        let mut inner = self.lock();
        let entry = inner.map.get(&key)?;
        if now.saturating_sub(entry.last_used.load(Ordering::Relaxed)) > ttl_ms {
            inner.map.remove(&key);
            return None;
        }
        entry.last_used.store(now, Ordering::Relaxed);
        Some(entry.session.clone())
    }

    /// Forget (client id, username): its connect was just refused.
    pub(crate) fn remove(&self, client_id: &str, username: Option<&str>) {
        let key: Key = (client_id.to_owned(), username.map(str::to_owned));
        self.lock().map.remove(&key);
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().map.len()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use mqtt_policy_host::{
        Chain, ConnectRequest, ConnectVerdict, Grant, Policy, PolicyError, PolicyHost,
        TopicRequest, TopicVerdict,
    };

    use super::*;

    struct AllowAll;

    impl Policy for AllowAll {
        fn connect_check(&self, _: &ConnectRequest) -> Result<ConnectVerdict, PolicyError> {
            Ok(ConnectVerdict::Allow(Grant::default()))
        }
        fn topic_check(&self, _: &TopicRequest) -> Result<TopicVerdict, PolicyError> {
            Ok(TopicVerdict::Allow)
        }
    }

    fn host() -> PolicyHost {
        let chain = Chain::builder()
            .policy("all", Arc::new(AllowAll))
            .build()
            .expect("chain builds");
        PolicyHost::from_chain(chain)
    }

    fn session(host: &PolicyHost, client_id: &str, username: Option<&str>) -> Session {
        let mut request = ConnectRequest::new(client_id);
        if let Some(u) = username {
            request = request.username(u);
        }
        host.connect(request).expect("allowed")
    }

    #[test]
    fn bounded_oldest_connect_goes_first() {
        let host = host();
        let map = SessionMap::new(3, Duration::from_secs(60));
        for i in 0..10 {
            map.insert(session(&host, &format!("c{i}"), Some("u")));
            // Reconnects of one key must not grow the queue without bound.
            map.insert(session(&host, "steady", None));
        }
        assert!(map.len() <= 3);
        assert!(map.get("c9", Some("u")).is_some());
        assert!(map.get("c0", Some("u")).is_none());
        assert!(map.lock().order.len() <= 2 * 3 + 1024);
    }

    #[test]
    fn keyed_by_client_id_and_username() {
        let host = host();
        let map = SessionMap::new(10, Duration::from_secs(60));
        map.insert(session(&host, "c", Some("alice")));
        assert!(map.get("c", Some("alice")).is_some());
        assert!(map.get("c", Some("bob")).is_none());
        assert!(map.get("c", None).is_none());
        map.remove("c", Some("alice"));
        assert!(map.get("c", Some("alice")).is_none());
    }

    #[test]
    fn unused_sessions_expire_and_use_refreshes() {
        let host = host();
        let map = SessionMap::new(10, Duration::from_millis(300));
        map.insert(session(&host, "used", None));
        map.insert(session(&host, "idle", None));
        for _ in 0..4 {
            std::thread::sleep(Duration::from_millis(100));
            assert!(map.get("used", None).is_some());
        }
        assert!(map.get("idle", None).is_none());
        // Expired entries at the head are dropped on the next insert.
        std::thread::sleep(Duration::from_millis(400));
        map.insert(session(&host, "new", None));
        assert_eq!(map.len(), 1);
    }
}

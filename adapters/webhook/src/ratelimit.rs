//! Token buckets for failed connect checks.
//!
//! The webhook answers "is this password right?": without a limit it is a
//! fast oracle for guessing. Each failed connect costs a token from the
//! bucket of its username and of its client address (when the protocol
//! says it); while either bucket is empty, connects with that key are
//! refused without asking the chain. Successful connects cost nothing.
//!
//! Memory is bounded: at most `max_keys` buckets. A full bucket is the same
//! as no bucket, so full ones are dropped first; if the table is still full
//! the new key goes untracked (its failures are not limited) rather than
//! evicting a bucket an attacker is being held back by.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::config::RateLimitConfig;

struct Bucket {
    tokens: f64,
    updated: Instant,
}

pub(crate) struct RateLimiter {
    buckets: Mutex<HashMap<String, Bucket>>,
    burst: f64,
    per_second: f64,
    max_keys: usize,
}

impl RateLimiter {
    pub(crate) fn new(config: &RateLimitConfig) -> Self {
        RateLimiter {
            buckets: Mutex::new(HashMap::new()),
            burst: f64::from(config.burst),
            per_second: f64::from(config.per_minute) / 60.0,
            max_keys: config.max_keys,
        }
    }

    fn enabled(&self) -> bool {
        self.burst > 0.0
    }

    fn refill(&self, bucket: &mut Bucket, now: Instant) {
        let earned = now.duration_since(bucket.updated).as_secs_f64() * self.per_second;
        bucket.tokens = (bucket.tokens + earned).min(self.burst);
        bucket.updated = now;
    }

    /// Is any of `keys` out of tokens?
    pub(crate) fn blocked(&self, keys: &[String]) -> bool {
        if !self.enabled() {
            return false;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        keys.iter().any(|k| match buckets.get_mut(k) {
            Some(b) => {
                self.refill(b, now);
                b.tokens < 1.0
            }
            None => false,
        })
    }

    /// A connect with `keys` failed: take a token from each.
    pub(crate) fn charge(&self, keys: &[String]) {
        if !self.enabled() {
            return;
        }
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        for key in keys {
            if let Some(b) = buckets.get_mut(key) {
                self.refill(b, now);
                b.tokens = (b.tokens - 1.0).max(0.0);
                continue;
            }
            if buckets.len() >= self.max_keys {
                let full = self.burst;
                let per_second = self.per_second;
                buckets.retain(|_, b| {
                    let earned = now.duration_since(b.updated).as_secs_f64() * per_second;
                    b.tokens + earned < full
                });
                if buckets.len() >= self.max_keys {
                    tracing::warn!(
                        target: "mqtt_policy::webhook",
                        "rate limiter full ({} keys): a new key is not limited",
                        self.max_keys
                    );
                    continue;
                }
            }
            buckets.insert(
                key.clone(),
                Bucket {
                    tokens: self.burst - 1.0,
                    updated: now,
                },
            );
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

/// The bucket keys of a connect: its username and its client address.
pub(crate) fn keys(username: Option<&str>, address: Option<&str>) -> Vec<String> {
    let mut keys = Vec::with_capacity(2);
    if let Some(u) = username {
        keys.push(format!("user:{u}"));
    }
    if let Some(a) = address {
        // The host part only: a client's source port changes per connection.
        let host = match a.parse::<std::net::SocketAddr>() {
            Ok(sa) => sa.ip().to_string(),
            Err(_) => a.to_owned(),
        };
        keys.push(format!("addr:{host}"));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_empty_the_bucket_and_success_does_not_count() {
        let limiter = RateLimiter::new(&RateLimitConfig {
            burst: 3,
            per_minute: 0,
            max_keys: 10,
        });
        let k = keys(Some("alice"), Some("10.0.0.1:5000"));
        for _ in 0..3 {
            assert!(!limiter.blocked(&k));
            limiter.charge(&k);
        }
        assert!(limiter.blocked(&k));
        // Same address, other port: same bucket.
        assert!(limiter.blocked(&keys(None, Some("10.0.0.1:6000"))));
        assert!(!limiter.blocked(&keys(Some("bob"), None)));
    }

    #[test]
    fn memory_is_bounded() {
        let limiter = RateLimiter::new(&RateLimitConfig {
            burst: 1,
            per_minute: 0,
            max_keys: 100,
        });
        for i in 0..10_000 {
            limiter.charge(&keys(Some(&format!("u{i}")), None));
        }
        assert!(limiter.len() <= 100);
        // The first 100 stay held back; later ones go untracked.
        assert!(limiter.blocked(&keys(Some("u0"), None)));
    }

    #[test]
    fn buckets_refill() {
        let limiter = RateLimiter::new(&RateLimitConfig {
            burst: 1,
            per_minute: 60_000,
            max_keys: 10,
        });
        let k = keys(Some("a"), None);
        limiter.charge(&k);
        std::thread::sleep(std::time::Duration::from_millis(5));
        assert!(!limiter.blocked(&k));
    }
}

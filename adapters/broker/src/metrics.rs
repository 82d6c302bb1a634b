//! `/metrics` in the Prometheus text format, served on a loopback address
//! by a minimal HTTP responder (one GET per connection; no HTTP crate).

use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use mqtt_policy_host::PolicyHost;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

/// The checks the broker asks the chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Check {
    Connect,
    Publish,
    Subscribe,
    Receive,
    Unsubscribe,
}

impl Check {
    const ALL: [Check; 5] = [
        Check::Connect,
        Check::Publish,
        Check::Subscribe,
        Check::Receive,
        Check::Unsubscribe,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Check::Connect => "connect",
            Check::Publish => "publish",
            Check::Subscribe => "subscribe",
            Check::Receive => "receive",
            Check::Unsubscribe => "unsubscribe",
        }
    }
}

/// Upper bounds (seconds) of the check latency histogram.
const BUCKETS: [f64; 10] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5,
];

#[derive(Debug, Default)]
struct CheckStats {
    allow: AtomicU64,
    deny: AtomicU64,
    /// Cumulative per bucket, plus +Inf at the end.
    buckets: [AtomicU64; BUCKETS.len() + 1],
    nanos: AtomicU64,
}

/// Broker counters, updated lock-free on the hot path.
#[derive(Debug, Default)]
pub struct Metrics {
    checks: [CheckStats; 5],
    open: AtomicI64,
    accepted: AtomicU64,
    refused_limit: AtomicU64,
    refused_timeout: AtomicU64,
    refused_tls: AtomicU64,
    refused_other: AtomicU64,
    reload_ok: AtomicU64,
    reload_failed: AtomicU64,
    /// Connect checks run on an async worker, and on the blocking pool.
    connect_inline: AtomicU64,
    connect_pooled: AtomicU64,
}

impl Metrics {
    pub fn record(&self, check: Check, allowed: bool, took: Duration) {
        let idx = Check::ALL.iter().position(|c| *c == check).unwrap_or(0);
        let s = &self.checks[idx];
        if allowed {
            s.allow.fetch_add(1, Ordering::Relaxed);
        } else {
            s.deny.fetch_add(1, Ordering::Relaxed);
        }
        let secs = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        s.buckets[bucket].fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        s.nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// A connect check ran on an async worker (`inline`) or the blocking pool.
    pub fn connect_ran(&self, inline: bool) {
        let counter = if inline {
            &self.connect_inline
        } else {
            &self.connect_pooled
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Connect checks so far as (on a worker, on the blocking pool).
    pub fn connect_threads(&self) -> (u64, u64) {
        (
            self.connect_inline.load(Ordering::Relaxed),
            self.connect_pooled.load(Ordering::Relaxed),
        )
    }

    pub fn open_connection(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub fn close_connection(&self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// Open client connections (TCP level, all listeners).
    pub fn open_connections(&self) -> i64 {
        self.open.load(Ordering::Relaxed)
    }

    pub fn refused_connection(&self, reason: &str) {
        let counter = match reason {
            "limit" => &self.refused_limit,
            "connect-timeout" | "tls-timeout" => &self.refused_timeout,
            "tls-handshake" => &self.refused_tls,
            _ => &self.refused_other,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub fn reloaded(&self, ok: bool) {
        if ok {
            self.reload_ok.fetch_add(1, Ordering::Relaxed);
        } else {
            self.reload_failed.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Decisions so far of `check` as (allowed, denied).
    pub fn decisions(&self, check: Check) -> (u64, u64) {
        let idx = Check::ALL.iter().position(|c| *c == check).unwrap_or(0);
        let s = &self.checks[idx];
        (
            s.allow.load(Ordering::Relaxed),
            s.deny.load(Ordering::Relaxed),
        )
    }

    /// The exposition text.
    pub fn render(&self, host: &PolicyHost, sessions: i64, rmqtt_connections: i64) -> String {
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let _ = writeln!(
            out,
            "# HELP mqtt_policy_broker_connections Open client connections.\n\
             # TYPE mqtt_policy_broker_connections gauge\n\
             mqtt_policy_broker_connections {}",
            self.open.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "# HELP mqtt_policy_broker_mqtt_connections Connections past CONNACK.\n\
             # TYPE mqtt_policy_broker_mqtt_connections gauge\n\
             mqtt_policy_broker_mqtt_connections {rmqtt_connections}\n\
             # HELP mqtt_policy_broker_sessions Sessions held (online and persistent).\n\
             # TYPE mqtt_policy_broker_sessions gauge\n\
             mqtt_policy_broker_sessions {sessions}"
        );
        let _ = writeln!(
            out,
            "# HELP mqtt_policy_broker_accepted_total TCP connections accepted.\n\
             # TYPE mqtt_policy_broker_accepted_total counter\n\
             mqtt_policy_broker_accepted_total {}",
            load(&self.accepted)
        );
        let _ = writeln!(
            out,
            "# HELP mqtt_policy_broker_refused_connections_total Connections closed before CONNACK, by cause.\n\
             # TYPE mqtt_policy_broker_refused_connections_total counter"
        );
        for (cause, counter) in [
            ("limit", &self.refused_limit),
            ("timeout", &self.refused_timeout),
            ("tls", &self.refused_tls),
            ("other", &self.refused_other),
        ] {
            let _ = writeln!(
                out,
                "mqtt_policy_broker_refused_connections_total{{cause=\"{cause}\"}} {}",
                load(counter)
            );
        }
        let _ = writeln!(
            out,
            "# HELP mqtt_policy_broker_decisions_total Chain decisions by check and verdict.\n\
             # TYPE mqtt_policy_broker_decisions_total counter"
        );
        for (check, s) in Check::ALL.iter().zip(&self.checks) {
            for (verdict, counter) in [("allow", &s.allow), ("deny", &s.deny)] {
                let _ = writeln!(
                    out,
                    "mqtt_policy_broker_decisions_total{{check=\"{}\",verdict=\"{verdict}\"}} {}",
                    check.as_str(),
                    load(counter)
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP mqtt_policy_broker_connect_checks_total Connect checks by the thread that ran them (see connect_checks).\n\
             # TYPE mqtt_policy_broker_connect_checks_total counter\n\
             mqtt_policy_broker_connect_checks_total{{thread=\"worker\"}} {}\n\
             mqtt_policy_broker_connect_checks_total{{thread=\"pool\"}} {}",
            load(&self.connect_inline),
            load(&self.connect_pooled)
        );
        let _ = writeln!(
            out,
            "# HELP mqtt_policy_broker_check_seconds Latency of chain checks as the broker sees them.\n\
             # TYPE mqtt_policy_broker_check_seconds histogram"
        );
        for (check, s) in Check::ALL.iter().zip(&self.checks) {
            let name = check.as_str();
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += load(&s.buckets[i]);
                let _ = writeln!(
                    out,
                    "mqtt_policy_broker_check_seconds_bucket{{check=\"{name}\",le=\"{bound}\"}} {cumulative}"
                );
            }
            cumulative += load(&s.buckets[BUCKETS.len()]);
            let _ = writeln!(
                out,
                "mqtt_policy_broker_check_seconds_bucket{{check=\"{name}\",le=\"+Inf\"}} {cumulative}\n\
                 mqtt_policy_broker_check_seconds_sum{{check=\"{name}\"}} {}\n\
                 mqtt_policy_broker_check_seconds_count{{check=\"{name}\"}} {cumulative}",
                load(&s.nanos) as f64 / 1e9
            );
        }
        let _ = writeln!(
            out,
            "# HELP mqtt_policy_policy_checks_total Checks per policy of the live chain, by verdict.\n\
             # TYPE mqtt_policy_policy_checks_total counter"
        );
        let stats = host.chain().stats();
        for (policy, s) in &stats {
            let policy = escape(policy);
            for (verdict, n) in [
                ("allow", s.allow),
                ("deny", s.deny),
                ("defer", s.defer),
                ("error", s.error),
            ] {
                let _ = writeln!(
                    out,
                    "mqtt_policy_policy_checks_total{{policy=\"{policy}\",verdict=\"{verdict}\"}} {n}"
                );
            }
        }
        let _ = writeln!(
            out,
            "# HELP mqtt_policy_policy_seconds_total Time spent per policy of the live chain (topic checks timed one in 8, scaled).\n\
             # TYPE mqtt_policy_policy_seconds_total counter"
        );
        for (policy, s) in &stats {
            let _ = writeln!(
                out,
                "mqtt_policy_policy_seconds_total{{policy=\"{}\"}} {}",
                escape(policy),
                s.time_spent.as_secs_f64()
            );
        }
        let _ = writeln!(
            out,
            "# HELP mqtt_policy_chain_generation Generation of the live chain.\n\
             # TYPE mqtt_policy_chain_generation gauge\n\
             mqtt_policy_chain_generation {}\n\
             # HELP mqtt_policy_reloads_total Chain reloads by outcome.\n\
             # TYPE mqtt_policy_reloads_total counter\n\
             mqtt_policy_reloads_total{{outcome=\"loaded\"}} {}\n\
             mqtt_policy_reloads_total{{outcome=\"failed\"}} {}",
            host.generation(),
            load(&self.reload_ok),
            load(&self.reload_failed)
        );
        let cache = host.verdict_cache_stats();
        let _ = writeln!(
            out,
            "# HELP mqtt_policy_verdict_cache_lookups_total Topic checks answered from a session's verdict cache (hit) or by the chain (miss).\n\
             # TYPE mqtt_policy_verdict_cache_lookups_total counter\n\
             mqtt_policy_verdict_cache_lookups_total{{result=\"hit\"}} {}\n\
             mqtt_policy_verdict_cache_lookups_total{{result=\"miss\"}} {}\n\
             # HELP mqtt_policy_verdict_cache_evictions_total Cached decisions dropped for room, at their instant or by a reload.\n\
             # TYPE mqtt_policy_verdict_cache_evictions_total counter\n\
             mqtt_policy_verdict_cache_evictions_total {}\n\
             # HELP mqtt_policy_verdict_cache_entries Decisions kept by all sessions.\n\
             # TYPE mqtt_policy_verdict_cache_entries gauge\n\
             mqtt_policy_verdict_cache_entries {}\n\
             # HELP mqtt_policy_verdict_cache_bytes Bytes charged for them (see [verdict_cache] max_total_bytes).\n\
             # TYPE mqtt_policy_verdict_cache_bytes gauge\n\
             mqtt_policy_verdict_cache_bytes {}",
            cache.hits, cache.misses, cache.evictions, cache.entries, cache.bytes
        );
        out
    }
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Serve `GET /metrics` on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, render: Arc<dyn Fn() -> String + Send + Sync>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let render = render.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            // Only the request line matters; a slow or silent client is
            // dropped after a second.
            let n = match tokio::time::timeout(Duration::from_secs(1), socket.read(&mut buf)).await
            {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let request = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if request.starts_with("GET /metrics ") {
                ("200 OK", render())
            } else {
                ("404 Not Found", "not found\n".to_owned())
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                socket.write_all(response.as_bytes()),
            )
            .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(escape("a\"b\\c"), "a\\\"b\\\\c");
    }
}

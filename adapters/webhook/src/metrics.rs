//! `/metrics` in the Prometheus text format: decisions per endpoint,
//! deciding policy and verdict, and a latency histogram per endpoint.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Each endpoint the server answers on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    AmqttUser,
    AmqttAcl,
    AmqttSuperuser,
    AzureConnect,
    AzureEvent,
    EmqxAuthn,
    EmqxAuthz,
    RabbitUser,
    RabbitVhost,
    RabbitResource,
    RabbitTopic,
}

impl Endpoint {
    const ALL: [Endpoint; 11] = [
        Endpoint::AmqttUser,
        Endpoint::AmqttAcl,
        Endpoint::AmqttSuperuser,
        Endpoint::AzureConnect,
        Endpoint::AzureEvent,
        Endpoint::EmqxAuthn,
        Endpoint::EmqxAuthz,
        Endpoint::RabbitUser,
        Endpoint::RabbitVhost,
        Endpoint::RabbitResource,
        Endpoint::RabbitTopic,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Endpoint::AmqttUser => "amqtt_user",
            Endpoint::AmqttAcl => "amqtt_acl",
            Endpoint::AmqttSuperuser => "amqtt_superuser",
            Endpoint::AzureConnect => "azure_connect",
            Endpoint::AzureEvent => "azure_event",
            Endpoint::EmqxAuthn => "emqx_authn",
            Endpoint::EmqxAuthz => "emqx_authz",
            Endpoint::RabbitUser => "rabbitmq_user",
            Endpoint::RabbitVhost => "rabbitmq_vhost",
            Endpoint::RabbitResource => "rabbitmq_resource",
            Endpoint::RabbitTopic => "rabbitmq_topic",
        }
    }

    fn index(self) -> usize {
        Endpoint::ALL.iter().position(|e| *e == self).unwrap_or(0)
    }
}

/// What an answer said.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Allow,
    Deny,
    /// A 4xx for a request that could not be evaluated (counted as a deny).
    BadRequest,
}

impl Verdict {
    fn label(self) -> &'static str {
        match self {
            Verdict::Allow => "allow",
            Verdict::Deny => "deny",
            Verdict::BadRequest => "bad_request",
        }
    }
}

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.1, 1.0,
];

#[derive(Default)]
struct Histogram {
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_nanos: AtomicU64,
}

pub(crate) struct Metrics {
    decisions: Mutex<HashMap<(Endpoint, Verdict), HashMap<String, u64>>>,
    latency: Vec<Histogram>,
    rejected_callers: AtomicU64,
}

impl Metrics {
    pub(crate) fn new() -> Self {
        Metrics {
            decisions: Mutex::new(HashMap::new()),
            latency: Endpoint::ALL.iter().map(|_| Histogram::default()).collect(),
            rejected_callers: AtomicU64::new(0),
        }
    }

    /// Count one answer: `policy` is the decider's label (a policy name,
    /// `(default)`, `(host)`, or the webhook's own reason in parentheses).
    pub(crate) fn record(
        &self,
        endpoint: Endpoint,
        verdict: Verdict,
        policy: &str,
        took: Duration,
    ) {
        {
            let mut d = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
            let per_policy = d.entry((endpoint, verdict)).or_default();
            match per_policy.get_mut(policy) {
                Some(n) => *n += 1,
                None => {
                    per_policy.insert(policy.to_owned(), 1);
                }
            }
        }
        if let Some(h) = self.latency.get(endpoint.index()) {
            let secs = took.as_secs_f64();
            // Cumulative buckets are summed when rendering; count the first
            // bucket that holds the value.
            if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
                h.counts[i].fetch_add(1, Ordering::Relaxed);
            }
            h.count.fetch_add(1, Ordering::Relaxed);
            let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
            h.sum_nanos.fetch_add(nanos, Ordering::Relaxed);
        }
    }

    /// A caller failed authentication (secret or client certificate).
    pub(crate) fn caller_rejected(&self) {
        self.rejected_callers.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn render(&self, gauges: &[(&str, &str, f64)]) -> String {
        let mut out = String::new();
        out.push_str("# HELP mqtt_policy_webhook_decisions_total Answers by endpoint, deciding policy and verdict.\n");
        out.push_str("# TYPE mqtt_policy_webhook_decisions_total counter\n");
        {
            let d = self.decisions.lock().unwrap_or_else(|p| p.into_inner());
            let mut rows: Vec<(&str, &str, &str, u64)> = d
                .iter()
                .flat_map(|((e, v), per)| {
                    per.iter()
                        .map(move |(p, n)| (e.label(), p.as_str(), v.label(), *n))
                })
                .collect();
            rows.sort();
            for (endpoint, policy, verdict, n) in rows {
                let _ = writeln!(
                    out,
                    "mqtt_policy_webhook_decisions_total{{endpoint=\"{endpoint}\",policy=\"{}\",verdict=\"{verdict}\"}} {n}",
                    escape(policy)
                );
            }
        }
        out.push_str("# HELP mqtt_policy_webhook_request_duration_seconds Time from a complete request to its answer.\n");
        out.push_str("# TYPE mqtt_policy_webhook_request_duration_seconds histogram\n");
        for e in Endpoint::ALL {
            let Some(h) = self.latency.get(e.index()) else {
                continue;
            };
            let count = h.count.load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let mut cumulative = 0;
            for (i, bound) in BUCKETS.iter().enumerate() {
                cumulative += h.counts[i].load(Ordering::Relaxed);
                let _ = writeln!(
                    out,
                    "mqtt_policy_webhook_request_duration_seconds_bucket{{endpoint=\"{}\",le=\"{bound}\"}} {cumulative}",
                    e.label()
                );
            }
            let _ = writeln!(
                out,
                "mqtt_policy_webhook_request_duration_seconds_bucket{{endpoint=\"{}\",le=\"+Inf\"}} {count}",
                e.label()
            );
            let sum = h.sum_nanos.load(Ordering::Relaxed) as f64 / 1e9;
            let _ = writeln!(
                out,
                "mqtt_policy_webhook_request_duration_seconds_sum{{endpoint=\"{}\"}} {sum}",
                e.label()
            );
            let _ = writeln!(
                out,
                "mqtt_policy_webhook_request_duration_seconds_count{{endpoint=\"{}\"}} {count}",
                e.label()
            );
        }
        out.push_str("# HELP mqtt_policy_webhook_rejected_callers_total Requests refused for a missing or wrong shared secret.\n");
        out.push_str("# TYPE mqtt_policy_webhook_rejected_callers_total counter\n");
        let _ = writeln!(
            out,
            "mqtt_policy_webhook_rejected_callers_total {}",
            self.rejected_callers.load(Ordering::Relaxed)
        );
        for (name, help, value) in gauges {
            let _ = writeln!(
                out,
                "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
            );
        }
        out
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::new();
        m.record(
            Endpoint::EmqxAuthn,
            Verdict::Allow,
            "jwt",
            Duration::from_micros(30),
        );
        m.record(
            Endpoint::EmqxAuthn,
            Verdict::Deny,
            "we\"ird",
            Duration::from_millis(3),
        );
        let text = m.render(&[("g", "a gauge", 2.0)]);
        assert!(text.contains(
            "mqtt_policy_webhook_decisions_total{endpoint=\"emqx_authn\",policy=\"jwt\",verdict=\"allow\"} 1"
        ));
        assert!(text.contains("policy=\"we\\\"ird\""));
        assert!(text.contains(
            "mqtt_policy_webhook_request_duration_seconds_bucket{endpoint=\"emqx_authn\",le=\"0.00005\"} 1"
        ));
        assert!(text.contains(
            "mqtt_policy_webhook_request_duration_seconds_bucket{endpoint=\"emqx_authn\",le=\"+Inf\"} 2"
        ));
        assert!(text.contains("g 2"));
    }
}

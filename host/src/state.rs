//! What a policy's store holds, and the host side of the contract's imports
//! (`log`, the clock). What else a policy may import, and the bounds on it,
//! is `sandbox.rs`.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::limits::{DeadlineState, MemoryLimiter};
use crate::stats::LogGate;

/// Log lines a policy may emit per call before the rest are dropped.
pub(crate) const LOG_LINES_PER_CALL: u32 = 16;
/// Longest log message or field kept; the rest is cut.
pub(crate) const LOG_MAX_CHARS: usize = 512;
/// Most fields kept on one log line.
pub(crate) const LOG_MAX_FIELDS: usize = 16;
/// Guest log lines per policy per second, across all its instances.
pub(crate) const LOG_LINES_PER_SECOND: u64 = 50;

pub(crate) struct StoreState {
    pub(crate) limiter: MemoryLimiter,
    pub(crate) deadline: DeadlineState,
    /// The policy's name, for attributing logs.
    policy: Arc<str>,
    /// Shared by all instances of the policy.
    log_gate: Arc<LogGate>,
    log_budget: u32,
    pub(crate) logs_dropped: u64,
    /// The SDK's panic report of the current call (message, location), kept
    /// outside the log budget so the failure can say what happened.
    pub(crate) panic: Option<(String, String)>,
    /// `verify-signature` calls in the current call, and the time they took.
    pub(crate) signatures: u32,
    pub(crate) signature_time: std::time::Duration,
}

impl StoreState {
    pub(crate) fn new(policy: Arc<str>, log_gate: Arc<LogGate>, memory_bytes: usize) -> Self {
        Self {
            limiter: MemoryLimiter {
                memory_bytes,
                hit: false,
                used: 0,
            },
            deadline: DeadlineState::default(),
            policy,
            log_gate,
            log_budget: LOG_LINES_PER_CALL,
            logs_dropped: 0,
            panic: None,
            signatures: 0,
            signature_time: std::time::Duration::ZERO,
        }
    }

    /// Reset per-call state before a call with this deadline.
    pub(crate) fn begin_call(&mut self, deadline: std::time::Duration, ticks: u64) {
        self.log_budget = LOG_LINES_PER_CALL;
        self.limiter.hit = false;
        self.panic = None;
        self.signatures = 0;
        self.signature_time = std::time::Duration::ZERO;
        self.deadline.arm(deadline, ticks);
    }
}

/// The field that marks the SDK's panic report (`mqtt_policy_sdk::PANIC_LOG_FIELD`).
const PANIC_LOG_FIELD: &str = "mqtt-policy.panic";

fn cut(s: &str) -> &str {
    match s.char_indices().nth(LOG_MAX_CHARS) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// The first [`LOG_MAX_CHARS`] characters of `s`, with every character that
/// could end or rewrite a log line escaped: C0 and C1 controls (newline,
/// carriage return, ESC, …), DEL, the Unicode line and paragraph separators
/// and bidirectional overrides. A policy's text then stays on its own line
/// and cannot forge host log lines or terminal output.
fn clean(s: &str) -> Cow<'_, str> {
    let s = cut(s);
    if !s.chars().any(needs_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if needs_escape(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// A guest log line's level, whatever contract version it came through.
#[derive(Debug, Clone, Copy)]
pub(crate) enum GuestLevel {
    Trace,
    Debug,
    Info,
    Warn,
    Error,
}

/// The wall clock in milliseconds since the Unix epoch.
pub(crate) fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl StoreState {
    /// A log line from the policy: attributed, capped per call and per
    /// second, truncated, control characters escaped.
    pub(crate) fn guest_log(
        &mut self,
        level: GuestLevel,
        message: &str,
        fields: &[(String, String)],
    ) {
        // The SDK's panic hook: kept (first report of the call only) for the
        // failure this call is about to become, not logged twice.
        if let (GuestLevel::Error, Some((key, location))) = (level, fields.first())
            && key == PANIC_LOG_FIELD
        {
            if self.panic.is_none() {
                self.panic = Some((clean(message).into_owned(), clean(location).into_owned()));
            }
            return;
        }
        if self.log_budget == 0 {
            self.logs_dropped += 1;
            return;
        }
        self.log_budget -= 1;
        let Some(suppressed) = self.log_gate.admit() else {
            self.logs_dropped += 1;
            return;
        };
        let fields: Vec<String> = fields
            .iter()
            .take(LOG_MAX_FIELDS)
            // Values are quoted with Rust's escaping, which covers controls too.
            .map(|(k, v)| format!("{}={:?}", clean(k), cut(v)))
            .collect();
        let fields = fields.join(" ");
        let message = clean(message);
        let policy = &*self.policy;
        match level {
            GuestLevel::Trace => {
                tracing::trace!(target: "mqtt_policy::guest", policy, suppressed, fields, "{message}")
            }
            GuestLevel::Debug => {
                tracing::debug!(target: "mqtt_policy::guest", policy, suppressed, fields, "{message}")
            }
            GuestLevel::Info => {
                tracing::info!(target: "mqtt_policy::guest", policy, suppressed, fields, "{message}")
            }
            GuestLevel::Warn => {
                tracing::warn!(target: "mqtt_policy::guest", policy, suppressed, fields, "{message}")
            }
            GuestLevel::Error => {
                tracing::error!(target: "mqtt_policy::guest", policy, suppressed, fields, "{message}")
            }
        }
    }
}

/// The store's epoch-deadline callback: extend while the thread was not
/// running, trap once it has burnt its budget (see `limits.rs`).
pub(crate) fn on_deadline(
    mut store: wasmtime::StoreContextMut<'_, StoreState>,
) -> wasmtime::Result<wasmtime::UpdateDeadline> {
    let cpu = cpu_time::ThreadTime::try_now()
        .ok()
        .map(|t| t.as_duration());
    match store.data_mut().deadline.on_deadline(cpu) {
        Some(ticks) => Ok(wasmtime::UpdateDeadline::Continue(ticks)),
        None => Err(wasmtime::Trap::Interrupt.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_text_cannot_break_or_recolour_a_log_line() {
        let forged = "ok\n2026-01-01T00:00:00Z  INFO forged\r\u{1b}[31m\u{85}\u{7f}\u{202e}\t";
        let cleaned = clean(forged);
        assert_eq!(
            cleaned,
            "ok\\n2026-01-01T00:00:00Z  INFO forged\\r\\u{1b}[31m\\u{85}\\u{7f}\\u{202e}\\t"
        );
        assert!(!cleaned.chars().any(needs_escape));
        assert!(matches!(clean("plain text, ünïcode"), Cow::Borrowed(_)));
        // Values are Debug-quoted: the same characters come out escaped.
        let value = format!("{:?}", cut(forged));
        assert!(!value.chars().any(needs_escape), "{value}");
        // Cutting happens before escaping, on characters.
        assert_eq!(
            clean(&"é".repeat(LOG_MAX_CHARS + 10)).chars().count(),
            LOG_MAX_CHARS
        );
    }
}

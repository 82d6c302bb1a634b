//! What a policy's store holds, and the host imports it is offered.
//!
//! WASI is linked because Rust's `wasm32-wasip2` standard library imports it,
//! but with an empty, locked-down context: no preopened directories, no
//! environment, no arguments, no sockets or name lookup, and stdio and
//! waiting replaced by traps (see `engine.rs`). The only things a policy can
//! reach are `log`, the clocks and randomness.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

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
    wasi: WasiCtx,
    pub(crate) table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    pub(crate) deadline: DeadlineState,
    /// The policy's name, for attributing logs.
    policy: Arc<str>,
    /// Shared by all instances of the policy.
    log_gate: Arc<LogGate>,
    log_budget: u32,
    pub(crate) logs_dropped: u64,
}

impl StoreState {
    pub(crate) fn new(policy: Arc<str>, log_gate: Arc<LogGate>, memory_bytes: usize) -> Self {
        let wasi = WasiCtx::builder()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            table: ResourceTable::new(),
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
        }
    }

    /// Reset per-call state before a call with this deadline.
    pub(crate) fn begin_call(&mut self, deadline: std::time::Duration, ticks: u64) {
        self.log_budget = LOG_LINES_PER_CALL;
        self.limiter.hit = false;
        self.deadline.arm(deadline, ticks);
    }
}

impl WasiView for StoreState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

fn cut(s: &str) -> &str {
    match s.char_indices().nth(LOG_MAX_CHARS) {
        Some((i, _)) => &s[..i],
        None => s,
    }
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
    /// second, truncated.
    pub(crate) fn guest_log(
        &mut self,
        level: GuestLevel,
        message: &str,
        fields: &[(String, String)],
    ) {
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
            .map(|(k, v)| format!("{}={:?}", cut(k), cut(v)))
            .collect();
        let fields = fields.join(" ");
        let message = cut(message);
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

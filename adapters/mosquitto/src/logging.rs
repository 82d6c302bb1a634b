//! The host's `tracing` events (reload failures, decision samples, policy
//! logs, circuit breaker changes) written to Mosquitto's log, one line each,
//! through `mosquitto_log_printf` at the matching level.
//!
//! Mosquitto is single-threaded and its logger is not thread-safe (with
//! `log_dest topic` a log line is published as a message). The host logs
//! from its own threads too (instance replacement, circuit breakers): lines
//! from any thread but Mosquitto's are queued (at most [`MAX_PENDING`]) and
//! written by Mosquitto's thread at its next plugin event.

use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread::ThreadId;

use tracing::{Level as TLevel, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::ffi::{self, Level};

/// Collects one formatted event and logs it when dropped.
struct Line {
    level: Level,
    buf: Vec<u8>,
}

impl io::Write for Line {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Lines queued by other threads; most kept.
const MAX_PENDING: usize = 1000;

/// Mosquitto's thread: the one that initialised the plugin.
static MOSQUITTO_THREAD: OnceLock<ThreadId> = OnceLock::new();
static PENDING: Mutex<Vec<(Level, String)>> = Mutex::new(Vec::new());
static DROPPED: AtomicU64 = AtomicU64::new(0);

fn on_mosquitto_thread() -> bool {
    MOSQUITTO_THREAD.get() == Some(&std::thread::current().id())
}

fn pending() -> std::sync::MutexGuard<'static, Vec<(Level, String)>> {
    PENDING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Write the lines other threads queued. Called by Mosquitto's thread at
/// every plugin event.
pub(crate) fn flush() {
    if !on_mosquitto_thread() {
        return;
    }
    let lines = std::mem::take(&mut *pending());
    for (level, text) in lines {
        ffi::log(level, &text);
    }
    let dropped = DROPPED.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        ffi::log(
            Level::Warning,
            &format!("mqtt-policy: {dropped} log lines from background threads dropped"),
        );
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let text = text.trim_end();
        if text.is_empty() {
            return;
        }
        let line = format!("mqtt-policy: {text}");
        if on_mosquitto_thread() {
            ffi::log(self.level, &line);
            return;
        }
        let mut queue = pending();
        if queue.len() < MAX_PENDING {
            queue.push((self.level, line));
        } else {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct ToMosquitto;

impl<'a> MakeWriter<'a> for ToMosquitto {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            level: Level::Info,
            buf: Vec::new(),
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line {
        let level = match *meta.level() {
            TLevel::ERROR => Level::Error,
            TLevel::WARN => Level::Warning,
            TLevel::INFO => Level::Info,
            _ => Level::Debug,
        };
        Line {
            level,
            buf: Vec::new(),
        }
    }
}

/// Install the forwarding subscriber with `filter` (`EnvFilter` syntax, e.g.
/// `info` or `mqtt_policy=debug`). A second plugin instance in the same
/// process finds one installed and keeps it.
pub(crate) fn install(filter: &str) -> Result<(), String> {
    let _ = MOSQUITTO_THREAD.set(std::thread::current().id());
    let filter = EnvFilter::try_new(filter).map_err(|e| format!("invalid log filter: {e}"))?;
    let subscriber = tracing_subscriber::fmt()
        .with_writer(ToMosquitto)
        .with_ansi(false)
        .without_time()
        .with_level(false)
        .with_env_filter(filter)
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
    Ok(())
}

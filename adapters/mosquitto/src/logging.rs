//! The host's `tracing` events (reload failures, decision samples, policy
//! logs, circuit breaker changes) written to Mosquitto's log, one line each,
//! through `mosquitto_log_printf` at the matching level.
//!
//! Mosquitto is single-threaded and its logger is not thread-safe (with
//! `log_dest topic` a log line is published as a message). The host logs
//! from its own threads too (instance replacement, circuit breakers): lines
//! from any thread but Mosquitto's are queued (at most [`MAX_PENDING`]) and
//! written by Mosquitto's thread at its next plugin event.
//!
//! Lines made on Mosquitto's thread while a plugin callback runs are queued
//! too and written when the callback returns: with `log_dest topic`, writing
//! a line publishes it, which runs ACL checks, which would re-enter this
//! plugin (and a policy) from inside its own callback. A line written by the
//! flush itself can re-enter the plugin as well; what that nested callback
//! logs waits for the next flush (no flush runs inside a flush).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
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
/// Lines (or a drop count) wait in `PENDING`: `flush` runs at every plugin
/// event, and this keeps it to one load when there is nothing to write.
static WAITING: AtomicBool = AtomicBool::new(false);

fn on_mosquitto_thread() -> bool {
    MOSQUITTO_THREAD.get() == Some(&std::thread::current().id())
}

thread_local! {
    /// Plugin callbacks running on this thread (nested through the logger).
    static DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// A flush is writing lines on this thread.
    static FLUSHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks a plugin callback as running until dropped.
pub(crate) struct Depth(());

impl Drop for Depth {
    fn drop(&mut self) {
        DEPTH.with(|d| d.set(d.get().saturating_sub(1)));
    }
}

/// A plugin callback starts: lines it logs are queued until it returns.
pub(crate) fn enter() -> Depth {
    DEPTH.with(|d| d.set(d.get().saturating_add(1)));
    Depth(())
}

/// Write `message` to the broker's log: now where that is safe, else at the
/// next flush.
pub(crate) fn log(level: Level, message: &str) {
    if may_write() {
        ffi::write_log(level, message);
    } else {
        queue(level, message.to_owned());
    }
}

/// Queue a line for the next flush (bounded).
fn queue(level: Level, line: String) {
    let mut queue = pending();
    if queue.len() < MAX_PENDING {
        queue.push((level, line));
    } else {
        DROPPED.fetch_add(1, Ordering::Relaxed);
    }
    WAITING.store(true, Ordering::Release);
}

/// May a line be written to Mosquitto's log right now?
fn may_write() -> bool {
    on_mosquitto_thread()
        && DEPTH.with(std::cell::Cell::get) == 0
        && !FLUSHING.with(std::cell::Cell::get)
}

fn pending() -> std::sync::MutexGuard<'static, Vec<(Level, String)>> {
    PENDING.lock().unwrap_or_else(|p| p.into_inner())
}

/// Write the lines other threads queued. Called by Mosquitto's thread at
/// every plugin event.
pub(crate) fn flush() {
    if !WAITING.load(Ordering::Acquire) || !may_write() {
        return;
    }
    // Cleared before taking: a line queued after this is taken now or
    // sets it again for the next flush.
    WAITING.store(false, Ordering::Release);
    // Cleared on the way out even if writing a line panics (the caller
    // catches it): a flag left set would silence the log for good.
    struct Flushing;
    impl Drop for Flushing {
        fn drop(&mut self) {
            FLUSHING.with(|f| f.set(false));
        }
    }
    FLUSHING.with(|f| f.set(true));
    let _flushing = Flushing;
    let lines = std::mem::take(&mut *pending());
    for (level, text) in lines {
        ffi::write_log(level, &text);
    }
    let dropped = DROPPED.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        ffi::write_log(
            Level::Warning,
            &format!("mqtt-policy: {dropped} queued log lines dropped"),
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
        log(self.level, &format!("mqtt-policy: {text}"));
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

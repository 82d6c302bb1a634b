//! Logging through the host, and the host's wall clock.
//!
//! In a wasm build these call the host imports; in a native build (unit
//! tests) they print to stderr and read the system clock, so policies run the
//! same way in both. The host attributes each line to the policy, keeps at
//! most 16 lines per check and 50 per second per policy, and cuts long
//! messages and values.
//!
//! ```
//! use mqtt_policy_sdk::log;
//!
//! log::info("token accepted", &[("sub", "thermostat-1a"), ("kid", "2024-1")]);
//! let expires_in = 3600u64.saturating_sub(log::now_unix_secs() % 3600);
//! # let _ = expires_in;
//! ```

use crate::Level;

/// Log `message` with key/value `fields` at `level`. The host attributes the
/// line to the policy, rate-limits and truncates. Never log secrets.
pub fn log(level: Level, message: &str, fields: &[(&str, &str)]) {
    #[cfg(target_arch = "wasm32")]
    {
        let fields: Vec<(String, String)> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        crate::bindings::mqtt::policy::host::log(level, message, &fields);
    }
    #[cfg(not(target_arch = "wasm32"))]
    eprintln!("[{level:?}] {message} {fields:?}");
}

/// Log at [`Level::Debug`].
pub fn debug(message: &str, fields: &[(&str, &str)]) {
    log(Level::Debug, message, fields);
}

/// Log at [`Level::Info`].
pub fn info(message: &str, fields: &[(&str, &str)]) {
    log(Level::Info, message, fields);
}

/// Log at [`Level::Warn`].
pub fn warn(message: &str, fields: &[(&str, &str)]) {
    log(Level::Warn, message, fields);
}

/// Log at [`Level::Error`]. A field named [`crate::PANIC_LOG_FIELD`] first
/// is reserved for panic reports.
pub fn error(message: &str, fields: &[(&str, &str)]) {
    log(Level::Error, message, fields);
}

/// Milliseconds since the Unix epoch, from the host.
pub fn now_unix_ms() -> u64 {
    #[cfg(target_arch = "wasm32")]
    {
        crate::bindings::mqtt::policy::host::now_unix_ms()
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// Seconds since the Unix epoch, from the host.
pub fn now_unix_secs() -> u64 {
    now_unix_ms() / 1000
}

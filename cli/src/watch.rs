//! `mqtt-policy watch`: keep a chain loaded and report every reload.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use mqtt_policy_host::{PolicyHost, ReloadOutcome, ReloadStatus};
use serde_json::json;

fn report(status: &ReloadStatus, host: &PolicyHost) {
    let line = match &status.last_outcome {
        Some(ReloadOutcome::Loaded(generation)) => json!({
            "event": "loaded",
            "generation": generation,
            "policies": host.chain().policy_names(),
            "took_ms": status.last_duration.as_secs_f64() * 1000.0,
            "compiled": status.modules.compiled,
            "from_memory": status.modules.memory,
            "from_disk": status.modules.disk,
        }),
        Some(ReloadOutcome::Failed) => json!({
            "event": "reload-failed",
            "generation": status.generation,
            "error": status.last_error,
        }),
        None => return,
    };
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub fn run(config: &Path, cache_dir: Option<PathBuf>, debounce: Duration) -> anyhow::Result<()> {
    let hup = Arc::new(AtomicBool::new(false));
    let quit = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, hup.clone())
        .context("cannot handle SIGHUP")?;
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, quit.clone())
            .context("cannot handle SIGINT/SIGTERM")?;
    }
    let mut builder = PolicyHost::builder(config);
    if let Some(dir) = cache_dir {
        builder = builder.disk_cache(dir);
    }
    let host = builder.build().context("cannot load the chain")?;
    let _watcher = host
        .watch(debounce)
        .context("cannot watch the chain's files")?;
    let mut seen = host.status();
    report(&seen, &host);
    while !quit.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
        if hup.swap(false, Ordering::Relaxed) {
            // The outcome is reported below like any other reload.
            let _ = host.reload();
        }
        let now = host.status();
        if (now.reloads, now.failures) != (seen.reloads, seen.failures) {
            report(&now, &host);
            seen = now;
        }
    }
    Ok(())
}

//! `mqtt-policy serve`: load the serve file and the chain, serve until
//! SIGINT/SIGTERM, reload the chain on file changes and SIGHUP.

use std::io::Write as _;
use std::path::Path;
use std::time::Duration;

use mqtt_policy_host::PolicyHost;
use tokio::signal::unix::{SignalKind, signal};

use crate::config::ServeConfig;
use crate::error::ServeError;
use crate::server::Server;

/// Serve `config_path` until SIGINT or SIGTERM. Prints one JSON line on
/// stdout once listening (`{"event":"listening","address":...}`), and one
/// per SIGHUP reload.
pub fn run(config_path: &Path) -> Result<(), ServeError> {
    let config = ServeConfig::from_file(config_path)?;
    let mut builder = PolicyHost::builder(&config.chain);
    if let Some(dir) = &config.cache_dir {
        builder = builder.disk_cache(dir);
    }
    let host = builder.build()?;
    let _watcher = host.watch(Duration::from_millis(config.debounce_ms))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("mqtt-policy-serve")
        .build()
        .map_err(|e| ServeError::Runtime(format!("cannot start the runtime: {e}")))?;
    runtime.block_on(serve(config, host))
}

fn say(line: serde_json::Value) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

async fn serve(config: ServeConfig, host: PolicyHost) -> Result<(), ServeError> {
    let signals = |kind| signal(kind).map_err(|e| ServeError::Runtime(format!("signals: {e}")));
    let mut hup = signals(SignalKind::hangup())?;
    let mut int = signals(SignalKind::interrupt())?;
    let mut term = signals(SignalKind::terminate())?;
    let server = Server::start(config, host.clone()).await?;
    say(serde_json::json!({
        "event": "listening",
        "address": server.local_addr().to_string(),
        "generation": host.generation(),
        "policies": host.chain().policy_names(),
    }));
    loop {
        tokio::select! {
            _ = hup.recv() => {
                let h = host.clone();
                let result = tokio::task::spawn_blocking(move || h.reload()).await;
                let line = match result {
                    Ok(Ok(generation)) => serde_json::json!({ "event": "loaded", "generation": generation }),
                    Ok(Err(e)) => serde_json::json!({
                        "event": "reload-failed",
                        "generation": host.generation(),
                        "error": e.to_string(),
                    }),
                    Err(e) => serde_json::json!({ "event": "reload-failed", "error": e.to_string() }),
                };
                say(line);
            }
            _ = int.recv() => break,
            _ = term.recv() => break,
        }
    }
    server.shutdown().await;
    Ok(())
}

//! A Mosquitto 2.0 plugin (interface version 5) whose one job is to make
//! Mosquitto's authentication and authorization decisions with the policy
//! chain: it holds a [`PolicyHost`] loaded from `plugin_opt_config`, one
//! [`mqtt_policy_host::Session`] per client context, and answers
//! `MOSQ_EVT_BASIC_AUTH`, `MOSQ_EVT_ACL_CHECK`, `MOSQ_EVT_RELOAD`,
//! `MOSQ_EVT_DISCONNECT` and `MOSQ_EVT_TICK` through the host's public
//! session API.
//!
//! ```text
//! plugin /usr/lib/mqtt-policy/libmqtt_policy_mosquitto.so
//! plugin_opt_config /etc/mosquitto/policies.toml
//! ```
//!
//! Modules: `ffi` (the only `unsafe`: generated bindings, safe wrappers, and
//! in `ffi/entry.rs` the entry points and callbacks), `events` (events →
//! session API), `logging` (the host's log lines into Mosquitto's log),
//! `sessions` (the per-context session map). See README.md for what policies
//! see under Mosquitto and how it differs from the embedded broker.

use std::ffi::OsString;
use std::path::PathBuf;

use mqtt_policy_host::{LoadError, PolicyHost};

mod events;
#[allow(unsafe_code)]
mod ffi;
mod logging;
mod sessions;

use ffi::Level;
use sessions::Sessions;

/// What a chain's "every policy deferred" verdict becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DeferMode {
    /// `plugin_opt_defer mosquitto`: `MOSQ_ERR_PLUGIN_DEFER` when every
    /// policy deferred and the chain's default is deny: the next plugin, or
    /// Mosquitto's own `password_file` / `acl_file`, decides. Never for
    /// SUBSCRIBE/UNSUBSCRIBE of a client the chain let in (Mosquitto's own
    /// check grants every SUBSCRIBE).
    Mosquitto,
    /// The chain's `default` is final, as in the embedded broker (the default).
    Chain,
}

/// The plugin's state, shared by the callbacks.
#[derive(Debug)]
pub(crate) struct Plugin {
    pub(crate) host: PolicyHost,
    pub(crate) sessions: Sessions,
    pub(crate) defer: DeferMode,
}

/// Why the plugin could not start (Mosquitto then refuses to start).
#[derive(Debug, thiserror::Error)]
pub(crate) enum InitError {
    #[error("plugin_opt_config is required: the path of the policy chain file")]
    MissingConfig,
    #[error(
        "unknown option plugin_opt_{0} (known: config, cache_dir, defer, log); a misspelt option would be ignored otherwise"
    )]
    UnknownOption(String),
    #[error("plugin_opt_{key}: {message}")]
    BadValue { key: String, message: String },
    #[error("cannot load the policy chain: {0}")]
    Load(#[from] LoadError),
}

#[derive(Debug)]
struct Options {
    config: PathBuf,
    cache_dir: Option<PathBuf>,
    defer: DeferMode,
    log: String,
}

fn parse_options(options: Vec<(String, OsString)>) -> Result<Options, InitError> {
    let mut config = None;
    let mut cache_dir = None;
    // The chain's default is final unless the operator hands it to Mosquitto:
    // deferring by default would let Mosquitto's `allow_anonymous true` or an
    // `acl_file` admit what the chain's default denies.
    let mut defer = DeferMode::Chain;
    let mut log = "info".to_owned();
    for (key, value) in options {
        let text = || {
            value
                .to_str()
                .map(str::to_owned)
                .ok_or_else(|| InitError::BadValue {
                    key: key.clone(),
                    message: "not UTF-8".into(),
                })
        };
        match key.as_str() {
            "config" => config = Some(PathBuf::from(&value)),
            "cache_dir" => cache_dir = Some(PathBuf::from(&value)),
            "defer" => {
                defer = match text()?.as_str() {
                    "mosquitto" => DeferMode::Mosquitto,
                    "chain" => DeferMode::Chain,
                    other => {
                        return Err(InitError::BadValue {
                            key,
                            message: format!("{other:?}: expected \"mosquitto\" or \"chain\""),
                        });
                    }
                }
            }
            "log" => log = text()?,
            _ => return Err(InitError::UnknownOption(key)),
        }
    }
    Ok(Options {
        config: config.ok_or(InitError::MissingConfig)?,
        cache_dir,
        defer,
        log,
    })
}

/// `mosquitto_plugin_init`: read the options, route the host's logs to
/// Mosquitto's log, load the chain (the first load must succeed).
pub(crate) fn init(options: Vec<(String, OsString)>) -> Result<Plugin, InitError> {
    let options = parse_options(options)?;
    if let Err(e) = logging::install(&options.log) {
        return Err(InitError::BadValue {
            key: "log".into(),
            message: e,
        });
    }
    let mut builder = PolicyHost::builder(&options.config);
    if let Some(dir) = &options.cache_dir {
        builder = builder.disk_cache(dir);
    }
    let host = builder.build()?;
    let chain = host.chain();
    logging::log(
        Level::Notice,
        &format!(
            "mqtt-policy: loaded {} (generation {}, policies: {}, defer: {})",
            options.config.display(),
            host.generation(),
            chain.policy_names().join(", "),
            match options.defer {
                DeferMode::Mosquitto => "mosquitto",
                DeferMode::Chain => "chain",
            }
        ),
    );
    drop(chain);
    Ok(Plugin {
        host,
        sessions: Sessions::default(),
        defer: options.defer,
    })
}

/// `mosquitto_plugin_cleanup`: the callbacks are unregistered; end every
/// session and drop the host.
pub(crate) fn cleanup(plugin: Box<Plugin>) {
    let sessions = plugin.sessions.len();
    drop(plugin);
    logging::log(
        Level::Notice,
        &format!("mqtt-policy: stopped ({sessions} sessions ended)"),
    );
}

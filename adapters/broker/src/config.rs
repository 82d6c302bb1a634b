//! The broker's one configuration file (TOML): listeners, limits, the chain
//! file, the compiled-module cache and the metrics address. Relative paths
//! are resolved against the file's directory, so a config can be started
//! from anywhere.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::BrokerError;

/// The broker configuration, as read from `broker.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The policy chain file (`policies.toml`).
    pub chain: PathBuf,
    /// Where compiled policy modules are kept between runs (optional).
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Loopback HTTP address serving `/metrics` (optional).
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// Reload the chain when its files change (SIGHUP always reloads).
    #[serde(default = "yes")]
    pub watch: bool,
    #[serde(default)]
    pub limits: Limits,
    /// Which thread runs a connect check (see [`ConnectChecks`]).
    #[serde(default)]
    pub connect_checks: ConnectChecks,
    #[serde(rename = "listener", default)]
    pub listeners: Vec<ListenerConfig>,
}

fn yes() -> bool {
    true
}

/// Which thread runs a connect check. Most checks take microseconds, but a
/// password hash takes milliseconds (argon2id: tens), and an async worker
/// busy with one serves none of its other clients meanwhile.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ConnectChecks {
    /// On the async worker while connect checks are fast; on the blocking
    /// pool for the first [`SLOW_CONNECT_WINDOW`] after start, and for a
    /// window after recent checks averaged more CPU time than
    /// [`SLOW_CONNECT_CHECK`] or one waited longer than
    /// [`SLOW_CONNECT_WAIT`] (see `slow_checks.rs`).
    #[default]
    Auto,
    /// Always on tokio's blocking pool: a thread hand-off per connect.
    Pool,
    /// Always on the async worker that read the CONNECT: for chains with no
    /// slow policy.
    Inline,
}

/// A connect check over this much CPU time (on the thread that ran it) that
/// brings the mean of recent checks over it too (each weighs 1/8, so one
/// check over 8 ms does it alone) moves `auto` to the blocking pool.
pub const SLOW_CONNECT_CHECK: Duration = Duration::from_millis(1);
/// A connect check that takes longer than this in wall time (waiting for an
/// instance, say) moves `auto` to the blocking pool too.
pub const SLOW_CONNECT_WAIT: Duration = Duration::from_millis(10);
/// For this long after the last check that found checks slow.
pub const SLOW_CONNECT_WINDOW: Duration = Duration::from_secs(10);

/// Bounds on what clients may do; every one is enforced before a policy
/// sees the client.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Open client connections, all listeners together; more are closed
    /// at accept.
    pub max_connections: usize,
    /// Largest MQTT packet accepted (bytes); a larger one closes the
    /// connection.
    pub max_packet_size: u32,
    /// A client must complete TLS and CONNECT/CONNACK within this time.
    pub connect_timeout_ms: u64,
    /// QoS 1/2 messages in flight per client.
    pub max_inflight: u16,
    /// Messages queued per client.
    pub max_queued: usize,
    /// Longest client id accepted.
    pub max_client_id_len: usize,
    /// Session expiry for clients that ask for persistent sessions (s).
    pub session_expiry_s: u64,
    /// Subscriptions per client (0: unlimited).
    pub max_subscriptions: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_packet_size: 256 * 1024,
            connect_timeout_ms: 10_000,
            max_inflight: 32,
            max_queued: 1000,
            max_client_id_len: 128,
            session_expiry_s: 3600,
            max_subscriptions: 100,
        }
    }
}

impl Limits {
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms.max(1))
    }
}

/// How a listener carries MQTT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Tcp,
    Tls,
    Ws,
    Wss,
}

impl Transport {
    pub fn is_tls(self) -> bool {
        matches!(self, Transport::Tls | Transport::Wss)
    }

    pub fn is_ws(self) -> bool {
        matches!(self, Transport::Ws | Transport::Wss)
    }
}

/// Whether a TLS listener asks for a client certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClientCerts {
    /// Not requested.
    None,
    /// Requested; a client without one still reaches the chain (which
    /// sees no certificate). One that does not verify is refused.
    #[default]
    Optional,
    /// A verified certificate is required to finish the handshake.
    Required,
}

/// TLS settings of a `tls` or `wss` listener (PEM files).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Server certificate chain.
    pub cert: PathBuf,
    /// Server private key.
    pub key: PathBuf,
    /// CA certificates client certificates must chain to.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
    #[serde(default)]
    pub client_certs: ClientCerts,
}

/// One listener.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    /// The name the chain sees as the request's listener.
    pub name: String,
    pub transport: Transport,
    pub address: SocketAddr,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

impl Config {
    /// Read and check a configuration file.
    pub fn load(path: &Path) -> Result<Config, BrokerError> {
        let text = std::fs::read_to_string(path).map_err(|e| BrokerError::Config {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let mut config = Config::parse(&text).map_err(|message| BrokerError::Config {
            path: path.to_owned(),
            message,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.resolve(base);
        Ok(config)
    }

    /// Parse and check configuration text (paths left as written).
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| e.to_string())?;
        config.check()?;
        Ok(config)
    }

    /// Resolve relative paths against `base`.
    pub fn resolve(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.chain);
        if let Some(dir) = &mut self.cache_dir {
            fix(dir);
        }
        for l in &mut self.listeners {
            if let Some(tls) = &mut l.tls {
                fix(&mut tls.cert);
                fix(&mut tls.key);
                if let Some(ca) = &mut tls.client_ca {
                    fix(ca);
                }
            }
        }
    }

    fn check(&self) -> Result<(), String> {
        if self.listeners.is_empty() {
            return Err("no [[listener]]".into());
        }
        let mut names = std::collections::HashSet::new();
        for l in &self.listeners {
            if !names.insert(l.name.as_str()) {
                return Err(format!("listener name {:?} used twice", l.name));
            }
            match (&l.tls, l.transport.is_tls()) {
                (None, true) => return Err(format!("listener {:?} needs [listener.tls]", l.name)),
                (Some(_), false) => {
                    return Err(format!(
                        "listener {:?}: tls settings on a plain listener",
                        l.name
                    ));
                }
                (Some(tls), true)
                    if tls.client_certs != ClientCerts::None && tls.client_ca.is_none() =>
                {
                    return Err(format!(
                        "listener {:?}: client_certs = optional/required needs client_ca",
                        l.name
                    ));
                }
                _ => {}
            }
        }
        if self.limits.max_packet_size < 64 {
            return Err("limits.max_packet_size must be at least 64".into());
        }
        if self.limits.max_inflight == 0 {
            return Err("limits.max_inflight must be at least 1".into());
        }
        if let Some(m) = self.metrics
            && !m.ip().is_loopback()
        {
            return Err(format!("metrics address {m} is not loopback"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_parses() {
        let text = include_str!("../../../examples/broker.toml");
        let config = Config::parse(text).expect("examples/broker.toml parses");
        assert!(
            config
                .listeners
                .iter()
                .any(|l| l.transport == Transport::Tls)
        );
    }

    #[test]
    fn tls_without_settings_is_refused() {
        let text = r#"
chain = "p.toml"
[[listener]]
name = "x"
transport = "tls"
address = "127.0.0.1:0"
"#;
        assert!(Config::parse(text).is_err());
    }
}

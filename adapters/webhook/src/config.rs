//! `serve.toml`: where to listen, which chain, TLS, caller authentication,
//! limits, and which broker protocols to answer on which paths.
//!
//! A protocol is answered only when its table is present (`[amqtt]`,
//! `[azure]`, `[emqx]`, `[rabbitmq]`); an empty table enables it with the
//! default paths. Relative file paths are relative to the serve file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::error::ConfigError;

/// Largest serve file read.
const MAX_CONFIG_BYTES: u64 = 1024 * 1024;

/// The whole serve file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeConfig {
    /// Address to listen on (default `127.0.0.1:8088`: the server is an
    /// oracle for passwords and tokens, so it is not exposed by default).
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The chain file (TOML), as `mqtt-policy check` and `watch` take it.
    pub chain: PathBuf,
    /// Keep compiled modules here so restarts skip compilation.
    #[serde(default)]
    pub cache_dir: Option<PathBuf>,
    /// Quiet time after a file change before the chain is reloaded.
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub tls: Option<TlsConfig>,
    #[serde(default)]
    pub auth: CallerAuth,
    #[serde(default)]
    pub sessions: SessionsConfig,
    #[serde(default)]
    pub rate_limit: RateLimitConfig,
    /// A role in the connect grant that makes a client a superuser for the
    /// protocols that ask (amqtt's superuser URI, EMQX's `is_superuser`).
    /// Unset: nobody is a superuser.
    #[serde(default)]
    pub superuser_role: Option<String>,
    #[serde(default = "default_metrics_path")]
    pub metrics_path: String,
    #[serde(default = "default_health_path")]
    pub health_path: String,
    /// Listen on a non-loopback address without a shared secret or client
    /// certificates. Off by default; see SECURITY.md.
    #[serde(default)]
    pub insecure_allow_remote: bool,
    #[serde(default)]
    pub amqtt: Option<AmqttConfig>,
    #[serde(default)]
    pub azure: Option<AzureConfig>,
    #[serde(default)]
    pub emqx: Option<EmqxConfig>,
    #[serde(default)]
    pub rabbitmq: Option<RabbitConfig>,
}

/// Request size and time limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest request body accepted.
    pub max_body_bytes: usize,
    /// Time allowed for a request's headers to arrive (also the idle time
    /// of a kept-alive connection between requests).
    pub header_timeout_ms: u64,
    /// Time allowed for a request's body to arrive.
    pub body_timeout_ms: u64,
    /// Time allowed for a TLS handshake.
    pub handshake_timeout_ms: u64,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// Run connect checks off the async workers (`block_in_place`): for
    /// chains whose connects cost milliseconds (password hashes), so topic
    /// checks are not held up behind them. Costs a thread hand-off per
    /// connect; off by default.
    pub offload_connects: bool,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 64 * 1024,
            header_timeout_ms: 10_000,
            body_timeout_ms: 10_000,
            handshake_timeout_ms: 10_000,
            max_connections: 1024,
            offload_connects: false,
        }
    }
}

impl Limits {
    pub fn header_timeout(&self) -> Duration {
        Duration::from_millis(self.header_timeout_ms)
    }
    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.body_timeout_ms)
    }
    pub fn handshake_timeout(&self) -> Duration {
        Duration::from_millis(self.handshake_timeout_ms)
    }
}

/// HTTPS: the server's certificate and key, and optionally the CA whose
/// client certificates callers must present.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM: the server certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM: the server's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// PEM: CA certificates; when set, every caller must present a client
    /// certificate signed by one of them.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

/// Caller authentication by a shared secret in a header.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallerAuth {
    /// The secret (prefer `shared_secret_file`, which keeps it out of the
    /// serve file).
    pub shared_secret: Option<String>,
    /// A file holding the secret (surrounding whitespace is ignored).
    pub shared_secret_file: Option<PathBuf>,
    /// The header that carries it.
    pub header: String,
    /// Which endpoint groups require it: `amqtt`, `azure`, `emqx`,
    /// `rabbitmq`, `metrics`. amqtt's plugins, RabbitMQ's backend and Azure
    /// cannot add headers; protect those with client certificates (RabbitMQ),
    /// Azure's signature (`[azure] access_keys`) or a loopback listener.
    pub protect: Vec<String>,
}

impl Default for CallerAuth {
    fn default() -> Self {
        CallerAuth {
            shared_secret: None,
            shared_secret_file: None,
            header: "x-mqtt-policy-secret".into(),
            protect: ["amqtt", "azure", "emqx", "rabbitmq", "metrics"]
                .map(String::from)
                .to_vec(),
        }
    }
}

/// The map of accepted connections that topic checks find their grant in.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionsConfig {
    /// Most sessions kept; the oldest connect is forgotten first.
    pub max: usize,
    /// A session unused for this long is forgotten (its topic checks are
    /// then denied until the client connects again).
    pub ttl_secs: u64,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            max: 100_000,
            ttl_secs: 24 * 3600,
        }
    }
}

/// Token buckets for failed connect checks, per username and per client
/// address.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// Failed connects allowed in a burst per key (0 turns limiting off).
    pub burst: u32,
    /// Failed connects per minute a key earns back.
    pub per_minute: u32,
    /// Most keys tracked; past it, new keys are not limited.
    pub max_keys: usize,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            burst: 10,
            per_minute: 30,
            max_keys: 100_000,
        }
    }
}

/// amqtt's `UserAuthHttpPlugin` / `TopicAuthHttpPlugin`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqttConfig {
    /// The plugin's `user_uri`.
    pub user_path: String,
    /// The plugin's `topic_uri`.
    pub acl_path: String,
    /// The plugin's `superuser_uri` (amqtt 0.12.1 never calls it).
    pub superuser_path: String,
    /// Must match the plugins' `response_mode`.
    pub response_mode: AmqttResponseMode,
}

impl Default for AmqttConfig {
    fn default() -> Self {
        AmqttConfig {
            user_path: "/amqtt/user".into(),
            acl_path: "/amqtt/acl".into(),
            superuser_path: "/amqtt/superuser".into(),
            response_mode: AmqttResponseMode::Json,
        }
    }
}

/// amqtt's `ResponseMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AmqttResponseMode {
    Status,
    Json,
    Text,
}

/// Azure Web PubSub's MQTT `connect` event.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AzureConfig {
    /// The event handler URL's path.
    pub path: String,
    /// The service's access keys; when set, `ce-signature` must match one.
    pub access_keys: Vec<String>,
    /// Files holding access keys, one per file.
    pub access_key_files: Vec<PathBuf>,
    /// Origins accepted in the abuse-protection handshake (`*` for any).
    pub allowed_origins: Vec<String>,
    /// The grant attribute sent as `userId` (default: the username).
    pub user_id_attribute: Option<String>,
    /// A grant attribute holding the groups (topic filters) to join: a JSON
    /// array of strings or one filter.
    pub groups_attribute: Option<String>,
    /// Grant attributes sent back as MQTT 5 CONNACK user properties.
    pub user_property_attributes: Vec<String>,
}

impl Default for AzureConfig {
    fn default() -> Self {
        AzureConfig {
            path: "/azure/mqtt".into(),
            access_keys: Vec::new(),
            access_key_files: Vec::new(),
            allowed_origins: vec!["*".into()],
            user_id_attribute: None,
            groups_attribute: None,
            user_property_attributes: Vec::new(),
        }
    }
}

/// EMQX 5's HTTP authenticator and authorizer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EmqxConfig {
    pub authn_path: String,
    pub authz_path: String,
}

impl Default for EmqxConfig {
    fn default() -> Self {
        EmqxConfig {
            authn_path: "/emqx/authn".into(),
            authz_path: "/emqx/authz".into(),
        }
    }
}

/// RabbitMQ's `rabbitmq_auth_backend_http`, as its MQTT plugin uses it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RabbitConfig {
    pub user_path: String,
    pub vhost_path: String,
    pub resource_path: String,
    pub topic_path: String,
    /// Virtual hosts an accepted MQTT client may use.
    pub vhosts: Vec<String>,
    /// The exchange the MQTT plugin publishes to (`mqtt.exchange`).
    pub exchange: String,
    /// Grant roles passed back as user tags (`allow administrator`).
    pub tag_roles: Vec<String>,
}

impl Default for RabbitConfig {
    fn default() -> Self {
        RabbitConfig {
            user_path: "/rabbitmq/user".into(),
            vhost_path: "/rabbitmq/vhost".into(),
            resource_path: "/rabbitmq/resource".into(),
            topic_path: "/rabbitmq/topic".into(),
            vhosts: vec!["/".into()],
            exchange: "amq.topic".into(),
            tag_roles: Vec::new(),
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8088))
}
fn default_debounce_ms() -> u64 {
    200
}
fn default_metrics_path() -> String {
    "/metrics".into()
}
fn default_health_path() -> String {
    "/healthz".into()
}

impl ServeConfig {
    /// Read and check a serve file; relative paths in it become relative
    /// to its directory.
    pub fn from_file(path: &Path) -> Result<ServeConfig, ConfigError> {
        let read_error = |source| ConfigError::Read {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read_error)?;
        if meta.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: format!("over {MAX_CONFIG_BYTES} bytes"),
            });
        }
        let text = std::fs::read_to_string(path).map_err(read_error)?;
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        ServeConfig::from_toml(&text, base).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })
    }

    /// Parse serve-file text; relative paths are resolved against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<ServeConfig, String> {
        let mut config: ServeConfig = toml::from_str(text).map_err(|e| {
            // The message and position only: the offending line may hold a
            // secret.
            let position = e
                .span()
                .map(|s| {
                    let line = text[..s.start.min(text.len())].lines().count().max(1);
                    format!(" (line {line})")
                })
                .unwrap_or_default();
            format!("{}{position}", e.message())
        })?;
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut config.chain);
        if let Some(dir) = &mut config.cache_dir {
            resolve(dir);
        }
        if let Some(tls) = &mut config.tls {
            resolve(&mut tls.cert);
            resolve(&mut tls.key);
            if let Some(ca) = &mut tls.client_ca {
                resolve(ca);
            }
        }
        if let Some(f) = &mut config.auth.shared_secret_file {
            resolve(f);
        }
        if let Some(azure) = &mut config.azure {
            azure.access_key_files.iter_mut().for_each(resolve);
        }
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        let mut paths: Vec<&str> = vec![&self.metrics_path, &self.health_path];
        if let Some(a) = &self.amqtt {
            paths.extend([
                a.user_path.as_str(),
                a.acl_path.as_str(),
                a.superuser_path.as_str(),
            ]);
        }
        if let Some(a) = &self.azure {
            paths.push(&a.path);
            if a.allowed_origins.is_empty() {
                return Err(
                    "[azure] allowed_origins is empty: the service's handshake would always fail"
                        .into(),
                );
            }
        }
        if let Some(e) = &self.emqx {
            paths.extend([e.authn_path.as_str(), e.authz_path.as_str()]);
        }
        if let Some(r) = &self.rabbitmq {
            paths.extend([
                r.user_path.as_str(),
                r.vhost_path.as_str(),
                r.resource_path.as_str(),
                r.topic_path.as_str(),
            ]);
        }
        for (i, p) in paths.iter().enumerate() {
            if !p.starts_with('/') {
                return Err(format!("path \"{p}\" must start with '/'"));
            }
            if paths[..i].contains(p) {
                return Err(format!("path \"{p}\" is used twice"));
            }
        }
        if self.amqtt.is_none()
            && self.azure.is_none()
            && self.emqx.is_none()
            && self.rabbitmq.is_none()
        {
            return Err(
                "no protocol enabled: add at least one of [amqtt], [azure], [emqx], [rabbitmq]"
                    .into(),
            );
        }
        let known = ["amqtt", "azure", "emqx", "rabbitmq", "metrics"];
        if let Some(bad) = self
            .auth
            .protect
            .iter()
            .find(|g| !known.contains(&g.as_str()))
        {
            return Err(format!(
                "[auth] protect: unknown group \"{bad}\" (expected one of {known:?})"
            ));
        }
        if self.auth.shared_secret.is_some() && self.auth.shared_secret_file.is_some() {
            return Err("[auth] set shared_secret or shared_secret_file, not both".into());
        }
        if self.auth.header.is_empty()
            || hyper::header::HeaderName::from_bytes(self.auth.header.as_bytes()).is_err()
        {
            return Err(format!(
                "[auth] header \"{}\" is not a valid header name",
                self.auth.header
            ));
        }
        if self.limits.max_body_bytes == 0 || self.limits.max_connections == 0 {
            return Err("[limits] max_body_bytes and max_connections must be positive".into());
        }
        if self.sessions.max == 0 {
            return Err("[sessions] max must be positive".into());
        }
        Ok(())
    }
}

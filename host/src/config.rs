//! The chain configuration file (TOML).
//!
//! ```toml
//! default = "deny"          # verdict when every policy defers: "deny" (default) or "allow"
//! deadline_ms = 5           # per-check deadline for every policy (default 5)
//! memory_limit_mb = 32      # per-instance memory cap (default 32)
//! decision_log_every = 100  # log one decision in N at info level (0 = never)
//!
//! [requests]                # bounds on client input (see RequestBounds)
//! max_user_properties = 64
//!
//! [breaker]                 # stop asking a policy that keeps failing
//! failures = 10             # consecutive failures that open it (0 = never)
//! backoff_ms = 1000         # first open period; doubles while probes fail
//! max_backoff_ms = 30000
//!
//! [[policy]]
//! name = "devices"
//! module = "policies/thumbprint.wasm"   # relative to this file
//! on_error = "deny"                     # deny (default) | allow | skip
//! [policy.ask_connect]                  # optional: when it is asked at CONNECT
//! certificate = true                    # only clients with a TLS client certificate
//! [policy.config]                       # handed to init() as JSON
//! thumbprints = ["3A:7F:..."]
//!
//! [[policy]]
//! name = "passwords"
//! module = "policies/password.wasm"
//! [policy.files]                        # config key = file whose text is its value
//! password_file = "/etc/mosquitto/passwd"
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::verdict_cache::VerdictCacheConfig;

use crate::bounds::RequestBounds;
use crate::error::LoadError;
use crate::limits::Limits;
use crate::request::ConnectRequest;

/// The verdict when every policy in the chain defers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DefaultVerdict {
    #[default]
    Deny,
    Allow,
}

/// What a policy's failure (trap, timeout, out of memory, malformed result,
/// no instance ready, open circuit) means for the request.
///
/// A failure mode is the operator's answer for a *broken* policy. A client
/// cannot choose it by sending a request too big to check in time: requests
/// over the host's [`RequestBounds`] are refused before any policy runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Deny the request (fail closed): `server-unavailable`. The default.
    #[default]
    Deny,
    /// Fail open: the failure counts as an allow from this policy with an
    /// empty grant (no attributes, no roles). Like any allow it ends the
    /// chain, so **no later policy is asked** — a ban list or an
    /// authenticator after this policy is skipped. That is the meaning
    /// chosen on purpose: a failure that went on to ask later policies
    /// would be `Skip`, which exists; `Allow` is for a policy whose outage
    /// must not lock clients out, where letting the request in is the
    /// operator's explicit choice.
    Allow,
    /// Treat the failure as a defer: the next policy decides (and if every
    /// policy defers, the chain's default).
    Skip,
}

/// The circuit breaker of every policy in a chain: after `failures`
/// consecutive failed checks, the policy is not asked for `backoff_ms`;
/// checks get its failure mode at once. When the backoff is over, the next
/// check is let through as a probe: success closes the circuit, failure
/// opens it again for twice as long, up to `max_backoff_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failures that open the circuit; 0 turns the breaker off.
    /// Default 10.
    pub failures: u32,
    /// The first open period, in milliseconds. Default 1000.
    pub backoff_ms: u64,
    /// The longest open period, in milliseconds. Default 30,000.
    pub max_backoff_ms: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failures: 10,
            backoff_ms: 1000,
            max_backoff_ms: 30_000,
        }
    }
}

impl BreakerConfig {
    /// Backoffs must be positive, ordered, and at most an hour.
    pub fn validate(&self) -> Result<(), String> {
        const HOUR_MS: u64 = 3_600_000;
        if self.backoff_ms == 0 || self.backoff_ms > self.max_backoff_ms {
            return Err(format!(
                "breaker: backoff_ms must be in 1..=max_backoff_ms, got {} (max_backoff_ms {})",
                self.backoff_ms, self.max_backoff_ms
            ));
        }
        if self.max_backoff_ms > HOUR_MS {
            return Err(format!(
                "breaker: max_backoff_ms must be at most {HOUR_MS}, got {}",
                self.max_backoff_ms
            ));
        }
        Ok(())
    }
}

/// When a policy is asked at CONNECT (`[policy.ask_connect]`). A policy
/// that is not asked counts as a defer and runs no code: it saves a guest
/// call on every connect it has no business with. Every key is optional;
/// with none, the policy is asked on every connect. Topic checks are not
/// affected.
///
/// Both facts are the client's own choice, so only scope a policy by them
/// where the policy would defer anyway for the clients left out (see
/// SECURITY.md): a deny list scoped to certificate clients does not see a
/// client that sends no certificate.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(default, deny_unknown_fields)]
pub struct AskConnect {
    /// `true`: only clients that presented a TLS client certificate;
    /// `false`: only clients that did not.
    pub certificate: Option<bool>,
    /// Only clients whose CONNECT username is one of these (exactly).
    pub usernames: Option<Vec<String>>,
}

impl AskConnect {
    /// Is a policy with this scope asked about `request`?
    pub fn asks(&self, request: &ConnectRequest) -> bool {
        let has_certificate = !request.certificates.is_empty();
        let certificate = self
            .certificate
            .is_none_or(|wanted| wanted == has_certificate);
        let username = self.usernames.as_ref().is_none_or(|names| {
            request
                .username
                .as_deref()
                .is_some_and(|u| names.iter().any(|n| n == u))
        });
        certificate && username
    }

    /// An empty username list would never ask the policy: that is a
    /// mistake, not a way to switch a policy off.
    pub fn validate(&self, policy: &str) -> Result<(), String> {
        if self.usernames.as_ref().is_some_and(Vec::is_empty) {
            return Err(format!(
                "policy \"{policy}\": ask_connect.usernames is empty, so the policy would never be asked at CONNECT; remove the key to ask it on every connect"
            ));
        }
        Ok(())
    }
}

/// A parsed chain file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChainConfig {
    #[serde(default)]
    pub default: DefaultVerdict,
    pub deadline_ms: Option<f64>,
    pub init_deadline_ms: Option<f64>,
    pub memory_limit_mb: Option<u64>,
    pub decision_log_every: Option<u64>,
    /// Bounds on client input, checked before any policy runs.
    #[serde(default)]
    pub requests: RequestBounds,
    /// When to stop asking a policy that keeps failing.
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// How sessions keep topic decisions (see [`VerdictCacheConfig`]).
    #[serde(default)]
    pub verdict_cache: VerdictCacheConfig,
    #[serde(rename = "policy", default)]
    pub policies: Vec<PolicyConfig>,
}

/// One `[[policy]]` entry.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    pub name: String,
    pub module: PathBuf,
    #[serde(default)]
    pub config: toml::Table,
    /// Config keys whose values the host reads from files (paths relative to
    /// the chain file): a policy's large or secret data (a password file, an
    /// ACL file, a JWKS) kept out of the chain file. Policies have no
    /// filesystem; the host hands each file's text to `init` under its key,
    /// and a reload follows changes to these files like to modules.
    #[serde(default)]
    pub files: std::collections::BTreeMap<String, PathBuf>,
    #[serde(default)]
    pub on_error: FailureMode,
    /// When the policy is asked at CONNECT (default: always).
    #[serde(default)]
    pub ask_connect: AskConnect,
    pub deadline_ms: Option<f64>,
    pub memory_limit_mb: Option<u64>,
}

impl ChainConfig {
    /// Read and validate a chain file. Module paths stay as written; resolve
    /// them with [`ChainConfig::module_path`].
    pub fn from_file(path: &Path) -> Result<Self, LoadError> {
        let text = crate::files::read_regular_text(path, crate::files::MAX_CHAIN_FILE_BYTES)?;
        Self::from_toml(&text, path)
    }

    /// Parse and validate chain TOML; `origin` names it in errors.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Self, LoadError> {
        let bad = |message: String| LoadError::Config {
            path: origin.to_owned(),
            message,
        };
        let config: Self = toml::from_str(text).map_err(|e| bad(toml_error(&e, text)))?;
        config.limits().map_err(&bad)?;
        config.requests.validate().map_err(&bad)?;
        config.breaker.validate().map_err(&bad)?;
        for p in &config.policies {
            if p.name.trim().is_empty() {
                return Err(bad("a [[policy]] has an empty name".into()));
            }
            if let Some(key) = p.files.keys().find(|k| p.config.contains_key(*k)) {
                return Err(bad(format!(
                    "policy \"{}\": \"{key}\" is given both in [policy.config] and in [policy.files]",
                    p.name
                )));
            }
            config.policy_limits(p).map_err(&bad)?;
            p.ask_connect.validate(&p.name).map_err(&bad)?;
        }
        Ok(config)
    }

    /// The chain-wide limits.
    pub fn limits(&self) -> Result<Limits, String> {
        limits_from(
            Limits::default(),
            self.deadline_ms,
            self.init_deadline_ms,
            self.memory_limit_mb,
            "top level",
        )
    }

    /// The limits of one policy: its own settings over the chain's.
    pub fn policy_limits(&self, p: &PolicyConfig) -> Result<Limits, String> {
        limits_from(
            self.limits()?,
            p.deadline_ms,
            None,
            p.memory_limit_mb,
            &format!("policy \"{}\"", p.name),
        )
    }

    /// The data files each policy names, resolved like module paths.
    pub fn data_files(&self, config_file: &Path) -> Vec<PathBuf> {
        self.policies
            .iter()
            .flat_map(|p| p.files.values())
            .map(|f| Self::module_path(config_file, f))
            .collect()
    }

    /// Where a policy's module (or data file) is: relative paths are taken
    /// from the directory of the config file.
    pub fn module_path(config_file: &Path, module: &Path) -> PathBuf {
        if module.is_absolute() {
            module.to_owned()
        } else {
            config_file
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join(module)
        }
    }
}

impl std::fmt::Debug for PolicyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config table may hold secrets (HMAC keys): show its keys only.
        let keys: Vec<&String> = self.config.keys().collect();
        f.debug_struct("PolicyConfig")
            .field("name", &self.name)
            .field("module", &self.module)
            .field("config_keys", &keys)
            .field("files", &self.files)
            .field("on_error", &self.on_error)
            .field("ask_connect", &self.ask_connect)
            .field("deadline_ms", &self.deadline_ms)
            .field("memory_limit_mb", &self.memory_limit_mb)
            .finish()
    }
}

impl PolicyConfig {
    /// The `[policy.config]` table as the JSON text `init` receives.
    pub fn config_json(&self) -> String {
        // A toml::Table always serialises to a JSON object.
        serde_json::to_string(&self.config).unwrap_or_else(|_| "{}".into())
    }
}

/// A TOML error as "line L, column C: message", without the source excerpt
/// toml's own Display adds: the offending line may hold a secret (a key in a
/// half-written file), and these errors are logged and reported.
fn toml_error(e: &toml::de::Error, text: &str) -> String {
    match e.span() {
        Some(span) => {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("line {line}, column {column}: {}", e.message())
        }
        None => e.message().to_owned(),
    }
}

fn millis(value: f64, what: &str, max_ms: f64) -> Result<Duration, String> {
    if !value.is_finite() || value <= 0.0 || value > max_ms {
        return Err(format!(
            "{what} must be a number of milliseconds in (0, {max_ms}], got {value}"
        ));
    }
    Ok(Duration::from_secs_f64(value / 1000.0))
}

fn limits_from(
    mut limits: Limits,
    deadline_ms: Option<f64>,
    init_deadline_ms: Option<f64>,
    memory_mb: Option<u64>,
    scope: &str,
) -> Result<Limits, String> {
    if let Some(ms) = deadline_ms {
        limits.deadline = millis(ms, &format!("{scope}: deadline_ms"), 60_000.0)?;
    }
    if let Some(ms) = init_deadline_ms {
        limits.init_deadline = millis(ms, &format!("{scope}: init_deadline_ms"), 600_000.0)?;
    }
    if let Some(mb) = memory_mb {
        if !(1..=4096).contains(&mb) {
            return Err(format!(
                "{scope}: memory_limit_mb must be between 1 and 4096, got {mb}"
            ));
        }
        limits.memory_bytes = usize::try_from(mb << 20).map_err(|e| e.to_string())?;
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ChainConfig, LoadError> {
        ChainConfig::from_toml(text, Path::new("chain.toml"))
    }

    #[test]
    fn parses_a_chain() -> Result<(), LoadError> {
        let c = parse(
            r#"
            default = "allow"
            deadline_ms = 2.5
            [[policy]]
            name = "a"
            module = "a.wasm"
            on_error = "skip"
            memory_limit_mb = 8
            [policy.config]
            topics = ["x/#"]
            "#,
        )?;
        assert_eq!(c.default, DefaultVerdict::Allow);
        let p = &c.policies[0];
        assert_eq!(p.on_error, FailureMode::Skip);
        assert_eq!(p.config_json(), r#"{"topics":["x/#"]}"#);
        let limits = c.policy_limits(p).map_err(LoadError::Engine)?;
        assert_eq!(limits.deadline, Duration::from_micros(2500));
        assert_eq!(limits.memory_bytes, 8 << 20);
        Ok(())
    }

    #[test]
    fn ask_connect_scopes_a_policy_by_certificate_and_username() -> Result<(), LoadError> {
        let c = parse(
            r#"
            [[policy]]
            name = "certs"
            module = "a.wasm"
            [policy.ask_connect]
            certificate = true
            [[policy]]
            name = "jwt"
            module = "b.wasm"
            [policy.ask_connect]
            usernames = ["JWT"]
            certificate = false
            [[policy]]
            name = "all"
            module = "c.wasm"
            "#,
        )?;
        let [certs, jwt, all] = [0, 1, 2].map(|i| &c.policies[i].ask_connect);
        let plain = ConnectRequest::new("c");
        let jwt_user = ConnectRequest::new("c").username("JWT");
        let other_user = ConnectRequest::new("c").username("jwt");
        let with_cert =
            ConnectRequest::new("c")
                .username("JWT")
                .certificates(vec![crate::Certificate {
                    der: vec![1, 2, 3],
                    sha1: String::new(),
                    sha256: String::new(),
                    subject: "CN=device".into(),
                    issuer: "CN=ca".into(),
                    common_name: Some("device".into()),
                    sans: Vec::new(),
                    serial: "01".into(),
                    not_before: 0,
                    not_after: 0,
                }]);
        assert!(!certs.asks(&plain) && !certs.asks(&jwt_user) && certs.asks(&with_cert));
        assert!(jwt.asks(&jwt_user));
        // Exact match; no username at all is not a match; nor is a
        // certificate client when the policy asks for none.
        assert!(!jwt.asks(&other_user) && !jwt.asks(&plain) && !jwt.asks(&with_cert));
        assert!(
            [&plain, &jwt_user, &other_user, &with_cert]
                .iter()
                .all(|r| all.asks(r))
        );
        Ok(())
    }

    #[test]
    fn rejects_bad_input_with_a_clear_message() {
        for (text, needle) in [
            ("default = \"maybe\"", "unknown variant"),
            ("deadline_ms = -1", "deadline_ms"),
            ("[[policy]]\nname = \"\"\nmodule = \"x\"", "empty name"),
            ("[[policy]]\nname = \"a\"", "missing field `module`"),
            (
                "[[policy]]\nname=\"a\"\nmodule=\"a\"\nmemory_limit_mb = 0",
                "memory_limit_mb",
            ),
            ("bogus = 1", "unknown field"),
            ("[requests]\nmax_topic_bytes = 70000", "max_topic_bytes"),
            ("[requests]\nmax_topics = 1", "unknown field"),
            ("[breaker]\nbackoff_ms = 0", "backoff_ms"),
            (
                "[[policy]]\nname=\"a\"\nmodule=\"a\"\n[policy.ask_connect]\nusernames = []",
                "ask_connect.usernames is empty",
            ),
            (
                "[[policy]]\nname=\"a\"\nmodule=\"a\"\n[policy.ask_connect]\nusername = \"JWT\"",
                "unknown field",
            ),
            (
                "[[policy]]\nname=\"a\"\nmodule=\"a\"\n[policy.ask_connect]\ncertificate = \"yes\"",
                "invalid type",
            ),
            (
                "[breaker]\nbackoff_ms = 10\nmax_backoff_ms = 5",
                "backoff_ms",
            ),
        ] {
            let err = parse(text).map(|_| ()).err().map(|e| e.to_string());
            assert!(
                err.as_deref().is_some_and(|e| e.contains(needle)),
                "{text:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn request_bounds_and_breaker_have_defaults_and_can_be_set() -> Result<(), LoadError> {
        let c = parse("")?;
        assert_eq!(c.requests, RequestBounds::default());
        assert_eq!(c.breaker, BreakerConfig::default());
        let c =
            parse("[requests]\nmax_user_properties = 2\n[breaker]\nfailures = 0\nbackoff_ms = 5")?;
        assert_eq!(c.requests.max_user_properties, 2);
        assert_eq!(
            c.requests.max_topic_bytes,
            RequestBounds::default().max_topic_bytes
        );
        assert_eq!(c.breaker.failures, 0);
        assert_eq!(c.breaker.backoff_ms, 5);
        Ok(())
    }

    #[test]
    fn parse_errors_do_not_echo_the_source_line() {
        let text = "[[policy]]\nname = \"jwt\"\nmodule = \"j.wasm\"\n[policy.config]\nsecret = \"s3cr3t-value";
        let err = parse(text).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err.contains("line 5"), "{err}");
        assert!(!err.contains("s3cr3t"), "{err}");
    }

    #[test]
    fn module_paths_are_relative_to_the_config() {
        assert_eq!(
            ChainConfig::module_path(Path::new("/etc/mqtt/chain.toml"), Path::new("p.wasm")),
            PathBuf::from("/etc/mqtt/p.wasm")
        );
        assert_eq!(
            ChainConfig::module_path(Path::new("/etc/chain.toml"), Path::new("/opt/p.wasm")),
            PathBuf::from("/opt/p.wasm")
        );
    }
}

//! Fixtures for the webhook tests: a real chain (thumbprint, jwt,
//! topic-list guests built from source), a server on 127.0.0.1 with a random
//! port, and a small HTTP/1.1 client that can also send malformed requests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context as _, bail};
use mqtt_policy_host::{PolicyEngine, PolicyHost};
use mqtt_policy_tests::{TestCert, guests, now, sign_jwt, toml_str};
use mqtt_policy_webhook::{ServeConfig, Server};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

pub const SECRET: &str = "webhook-test-secret";

/// A chain like the sample: a certificate allow-list (roles `device`,
/// topics from the CN), JWTs (topics and roles from claims), topic rules.
pub fn chain_toml(cert_sha1: &str) -> String {
    format!(
        r#"
[[policy]]
name = "certs"
module = {thumbprint}
[policy.config]
thumbprints = [{sha1}]
missing_certificate = "defer"
not_listed = "deny"
roles = ["device"]

[[policy]]
name = "jwt"
module = {jwt}
[policy.config]
keys = [{{ alg = "HS256", secret = {secret} }}]
roles_claim = "roles"

[[policy]]
name = "topics"
module = {topics}
[policy.config]
session_topics = "topics"
otherwise = "deny"
[[policy.config.rules]]
publish = ["devices/{{attr:cert_cn}}/telemetry"]
subscribe = ["devices/{{attr:cert_cn}}/commands/+"]
"#,
        thumbprint = toml_str(guests::THUMBPRINT),
        jwt = toml_str(guests::JWT),
        topics = toml_str(guests::TOPIC_LIST),
        sha1 = toml_str(cert_sha1),
        secret = toml_str(SECRET),
    )
}

/// A token for `sub` with `topics` and `roles`, valid for an hour.
pub fn token(sub: &str, topics: &[&str], roles: &[&str]) -> String {
    let claims = serde_json::json!({
        "sub": sub, "exp": now() + 3600, "topics": topics, "roles": roles,
    });
    sign_jwt("HS256", SECRET, None, &claims).expect("token signs")
}

pub struct Fixture {
    pub dir: tempfile::TempDir,
    pub cert: TestCert,
    pub chain_path: PathBuf,
}

/// A temp dir with a device certificate (`sensor-7`) and the chain file.
pub fn fixture() -> anyhow::Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let cert = mqtt_policy_tests::self_signed(dir.path(), "sensor-7")?;
    let chain_path = mqtt_policy_tests::write_chain(dir.path(), &chain_toml(&cert.sha1))?;
    Ok(Fixture {
        dir,
        cert,
        chain_path,
    })
}

/// A serve config for `chain` on a random loopback port, all protocols on
/// their default paths, plus `extra` TOML lines.
pub fn serve_toml(chain: &Path, extra: &str) -> String {
    let mut text = format!(
        "listen = \"127.0.0.1:0\"\nchain = {}\n{extra}\n",
        toml_str(&chain.display().to_string())
    );
    for table in ["[amqtt]", "[azure]", "[emqx]", "[rabbitmq]"] {
        if !extra.contains(table) {
            text.push_str(table);
            text.push('\n');
        }
    }
    text
}

pub async fn start(chain: &Path, extra: &str) -> anyhow::Result<Server> {
    let config = ServeConfig::from_toml(&serve_toml(chain, extra), Path::new("/"))
        .map_err(anyhow::Error::msg)?;
    start_with(config).await
}

/// One engine for the test binary, as a broker would have.
pub fn engine() -> &'static PolicyEngine {
    static ENGINE: OnceLock<PolicyEngine> = OnceLock::new();
    ENGINE.get_or_init(|| PolicyEngine::new().expect("engine starts"))
}

/// Compiled modules shared by every test of this binary.
fn cache_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("temp dir"))
        .path()
}

pub fn host(chain: &Path) -> anyhow::Result<PolicyHost> {
    Ok(PolicyHost::builder(chain)
        .engine(engine().clone())
        .disk_cache(cache_dir())
        .build()?)
}

pub async fn start_with(config: ServeConfig) -> anyhow::Result<Server> {
    let host = host(&config.chain)?;
    Ok(Server::start(config, host).await?)
}

/// A parsed HTTP response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Send raw bytes on a new connection and read one response (the request
/// should carry `Connection: close`).
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> anyhow::Result<Reply> {
    let mut stream = TcpStream::connect(addr).await?;
    stream.write_all(bytes).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut buf))
        .await
        .context("no response within 20 s")??;
    parse(&buf)
}

pub fn parse(buf: &[u8]) -> anyhow::Result<Reply> {
    let text = String::from_utf8_lossy(buf);
    let Some((head, body)) = text.split_once("\r\n\r\n") else {
        bail!("no complete response: {text:?}");
    };
    let mut lines = head.lines();
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Ok(Reply {
        status,
        headers,
        body: body.to_owned(),
    })
}

/// One request with `headers` and `body`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> anyhow::Result<Reply> {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    raw(addr, &bytes).await
}

pub async fn post_json(
    addr: SocketAddr,
    path: &str,
    value: &serde_json::Value,
) -> anyhow::Result<Reply> {
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/json")],
        value.to_string().as_bytes(),
    )
    .await
}

pub async fn post_form(
    addr: SocketAddr,
    path: &str,
    pairs: &[(&str, &str)],
) -> anyhow::Result<Reply> {
    let body = form(pairs);
    request(
        addr,
        "POST",
        path,
        &[("Content-Type", "application/x-www-form-urlencoded")],
        body.as_bytes(),
    )
    .await
}

pub fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-encode everything but unreserved characters.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A free TCP port on 127.0.0.1 (bound and released).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Wait until something accepts on 127.0.0.1:`port`, up to `limit`.
pub fn wait_for_port(port: u16, limit: Duration) -> anyhow::Result<Duration> {
    let started = std::time::Instant::now();
    while started.elapsed() < limit {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(started.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("nothing listening on port {port} after {limit:?}")
}

/// The value of a metric line that starts with `prefix`.
pub fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Is a Python module importable?
pub fn python_has(modules: &[&str]) -> bool {
    let code = modules
        .iter()
        .map(|m| format!("import {m}"))
        .collect::<Vec<_>>()
        .join("; ");
    std::process::Command::new("python3")
        .args(["-c", &code])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Whether tests that need an external program must fail instead of skip
/// when it is missing (scripts/test.sh installs them and sets this).
pub fn required() -> bool {
    std::env::var("MQTT_POLICY_REQUIRE_BROKERS").is_ok_and(|v| v == "1")
}

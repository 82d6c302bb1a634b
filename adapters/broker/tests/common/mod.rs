//! Fixtures for the broker's end-to-end tests: certificates made with
//! openssl, a chain like the sample one built from the guests' sources, a
//! broker on random loopback ports (stopped on drop), and real clients
//! (`mosquitto_pub`/`mosquitto_sub`, paho-mqtt) run as processes with
//! bounded waits (killed on drop).
#![allow(dead_code)]

pub mod raw;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use mqtt_policy_broker::{Broker, Config};
pub use mqtt_policy_tests::process::Proc;
use mqtt_policy_tests::{
    TestCert, client_cert, now, sample_chain_toml, self_signed, sign_jwt, toml_str,
};
use serde_json::{Value, json};

pub const SECRET: &str = "e2e-shared-secret";
pub const EXAMPLES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../examples");
pub const PAHO: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/paho_client.py");
/// Compiled modules shared by every test run (compiling four policies per
/// test would dominate the run time).
pub const CACHE: &str = concat!(env!("CARGO_TARGET_TMPDIR"), "/broker-e2e-cache");

/// Certificates and chain files of one test.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub ca: TestCert,
    pub device: TestCert,
    /// Signed by the same CA, not on the allow-list.
    pub other: TestCert,
    pub server: TestCert,
    pub chain: PathBuf,
}

impl Env {
    pub fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }
}

/// A v3 client certificate `cn` signed by the CA `ca` (files in `dir`).
fn leaf(dir: &Path, cn: &str, ca: &str) -> TestCert {
    client_cert(dir, cn, ca).expect("client certificate")
}

/// The sample chain (examples/policies.toml) with this test's device
/// certificate on the allow-list and `rules_extra` appended.
pub fn chain_toml(device_sha256: &str, rules_extra: &str) -> String {
    sample_chain_toml(device_sha256, SECRET, "", rules_extra)
}

pub fn env() -> Env {
    env_with("")
}

pub fn env_with(rules_extra: &str) -> Env {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = self_signed(dir.path(), "device-1-ca").expect("CA");
    let device = leaf(dir.path(), "device-1", "device-1-ca");
    let other = leaf(dir.path(), "device-2", "device-1-ca");
    let server = self_signed(dir.path(), "server").expect("server cert");
    for f in ["passwd", "acl"] {
        std::fs::copy(format!("{EXAMPLES}/{f}"), dir.path().join(f)).expect("copy example file");
    }
    let chain = dir.path().join("chain.toml");
    std::fs::write(&chain, chain_toml(&device.sha256, rules_extra)).expect("chain");
    Env {
        dir,
        ca,
        device,
        other,
        server,
        chain,
    }
}

/// A JWT for the sample `jwt` policy with `topics`, expiring in `exp_in` s.
pub fn token(sub: &str, topics: &[&str], exp_in: i64) -> String {
    sign_jwt(
        "HS256",
        SECRET,
        None,
        &json!({"sub": sub, "iss": "https://idp.example/", "aud": "mqtt",
                "exp": now() + exp_in, "iat": now() - 10, "topics": topics}),
    )
    .expect("sign")
}

/// A broker on random loopback ports, stopped when dropped.
pub struct Running {
    rt: Option<tokio::runtime::Runtime>,
    broker: Option<Broker>,
}

impl Running {
    pub fn broker(&self) -> &Broker {
        self.broker.as_ref().expect("running")
    }

    pub fn port(&self, listener: &str) -> u16 {
        self.broker().address(listener).expect("listener").port()
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.as_ref().expect("runtime").block_on(f)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let (Some(rt), Some(broker)) = (self.rt.take(), self.broker.take()) {
            rt.block_on(broker.shutdown(Duration::from_secs(2)));
            rt.shutdown_timeout(Duration::from_secs(2));
        }
    }
}

pub fn config_toml(env: &Env, limits: &str) -> String {
    config_toml_with(env, "", limits)
}

/// The test config with `top` (top-level keys) and `limits`.
pub fn config_toml_with(env: &Env, top: &str, limits: &str) -> String {
    format!(
        r#"
chain = {chain}
cache_dir = {cache}
metrics = "127.0.0.1:0"
{top}
[limits]
{limits}
[[listener]]
name = "tcp"
transport = "tcp"
address = "127.0.0.1:0"
[[listener]]
name = "tls"
transport = "tls"
address = "127.0.0.1:0"
[listener.tls]
cert = {cert}
key = {key}
client_ca = {ca}
client_certs = "optional"
[[listener]]
name = "tls-required"
transport = "tls"
address = "127.0.0.1:0"
[listener.tls]
cert = {cert}
key = {key}
client_ca = {ca}
client_certs = "required"
[[listener]]
name = "ws"
transport = "ws"
address = "127.0.0.1:0"
"#,
        chain = toml_str(&env.chain.display().to_string()),
        cache = toml_str(CACHE),
        cert = toml_str(&env.path("server.pem")),
        key = toml_str(&env.path("server.key")),
        ca = toml_str(&env.path("device-1-ca.pem")),
    )
}

pub fn start(env: &Env) -> Running {
    start_with(env, "")
}

pub fn start_with(env: &Env, limits: &str) -> Running {
    start_configured(env, "", limits)
}

/// A broker with `top` (top-level config keys) and `limits`.
pub fn start_configured(env: &Env, top: &str, limits: &str) -> Running {
    let config = Config::parse(&config_toml_with(env, top, limits)).expect("config");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let broker = rt.block_on(Broker::start(config)).expect("broker starts");
    Running {
        rt: Some(rt),
        broker: Some(broker),
    }
}

/// Run a command to completion (bounded) and return (exit code, lines).
pub fn run(cmd: &mut Command, timeout: Duration) -> (Option<i32>, Vec<String>) {
    spawn(cmd).finish(timeout)
}

/// Start a client or broker process (a test fails if it cannot).
pub fn spawn(cmd: &mut Command) -> Proc {
    Proc::spawn(cmd).expect("start process")
}

/// A paho-mqtt client (tests/paho_client.py) with `args`.
pub fn paho(port: u16, args: &[&str]) -> Command {
    let mut cmd = Command::new("python3");
    cmd.arg(PAHO).arg("--port").arg(port.to_string()).args(args);
    cmd
}

/// The JSON events a paho client printed.
pub fn events(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .collect()
}

pub fn event<'a>(events: &'a [Value], name: &str) -> Option<&'a Value> {
    events.iter().find(|e| e["event"] == name)
}

pub fn messages(events: &[Value]) -> Vec<(String, String)> {
    events
        .iter()
        .filter(|e| e["event"] == "message")
        .map(|e| {
            (
                e["topic"].as_str().unwrap_or_default().to_owned(),
                e["payload"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

/// `mosquitto_pub`/`mosquitto_sub` with `-d` on loopback `port`.
pub fn mosquitto(tool: &str, port: u16, args: &[&str]) -> Command {
    // Line-buffered: mosquitto_sub's stdout is block-buffered into a pipe,
    // and a test would see "Subscribed" only when it exits.
    let mut cmd = Command::new("stdbuf");
    cmd.args([
        "-oL",
        "-eL",
        tool,
        "-d",
        "-h",
        "127.0.0.1",
        "-p",
        &port.to_string(),
    ])
    .args(args);
    cmd
}

/// The CONNACK code `mosquitto_*` -d reported.
pub fn connack(lines: &[String]) -> Option<u32> {
    lines.iter().find_map(|l| {
        let (_, rest) = l.split_once("received CONNACK (")?;
        rest.split(')').next()?.parse().ok()
    })
}

pub const T: Duration = Duration::from_secs(15);

/// Until `pred` holds (bounded), polling.
pub fn eventually(timeout: Duration, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if pred() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    pred()
}

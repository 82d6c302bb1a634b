//! A policy that misbehaves on request, to prove the host contains it.
//!
//! Config `{"mode": "<mode>"}` sets the behaviour of every check; a client id
//! `mode:<mode>` overrides it for one call. Modes: `allow`, `deny`, `defer`,
//! `loop` (spin forever), `trap` (panic), `alloc` (allocate without bound),
//! `recurse` (exhaust the stack), `huge-grant`, `huge-message`, `log-flood`,
//! `sleep` (block for an hour), `print` (write to stdout),
//! `count` (allow, reporting how many checks this instance has served), and
//! `echo` (allow, returning the request's fields as attributes).
//!
//! Attacks on the sandbox's import surface: `udp-bind`, `tcp-connect`,
//! `file-read` (`/etc/passwd`), `env` (deny, reporting what the environment
//! holds), `random` (64 MiB of random bytes in one call), `log-alias` (one log
//! call with 100,000 fields all pointing at one 1 MiB string), `big-grant`
//! (a grant of 2 MiB), `pollables` (100,000 pollables kept alive),
//! `signatures` (1,000 `verify-signature` calls in one check),
//! `big-signature` (a 512 KiB message to verify), `exit`
//! (`std::process::exit(3)`), `log-forge` (log text that imitates host log
//! lines), and `wasi` (allow, after using everything the sandbox offers:
//! clocks, a hash map's seed, a few random bytes).
//! Init modes, via `{"init": "<mode>"}`: `error`, `trap`, `loop`, `alloc`,
//! `slow` (spin for `init_ms` milliseconds, then succeed).

mod raw;

use std::sync::atomic::{AtomicU64, Ordering};

use mqtt_policy_sdk::log;
use mqtt_policy_sdk::prelude::*;
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Config {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    init: Option<String>,
    #[serde(default)]
    init_ms: u64,
}

pub struct Misbehave {
    mode: String,
    calls: AtomicU64,
}

/// Recurses until the stack runs out (the bound is never reached in practice).
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let pad = std::hint::black_box([depth; 64]);
    if std::hint::black_box(depth) == u64::MAX {
        return pad[3];
    }
    recurse(depth + 1) + pad[3]
}

fn spin() -> ! {
    let mut x = 0u64;
    loop {
        x = std::hint::black_box(x.wrapping_add(1));
    }
}

fn hog() -> usize {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(std::hint::black_box(vec![7u8; 1 << 20]));
        if blocks.len() == usize::MAX {
            return blocks.len();
        }
    }
}

enum Act {
    Allow(Grant),
    Deny(String),
    Defer,
}

impl Misbehave {
    fn act(&self, mode: &str, echo: impl FnOnce() -> Grant) -> Act {
        let calls = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
        match mode {
            "allow" => Act::Allow(Grant::default()),
            "deny" => Act::Deny("denied by request".into()),
            "defer" => Act::Defer,
            "loop" => spin(),
            "trap" => panic!("trap requested"),
            "alloc" => Act::Deny(format!("{}", hog())),
            "recurse" => Act::Deny(format!("{}", recurse(0))),
            "huge-grant" => {
                let mut g = Grant::default();
                for i in 0..100_000 {
                    g = g.attribute(format!("k{i}"), "v".repeat(64));
                }
                Act::Allow(g)
            }
            "huge-message" => Act::Deny("x".repeat(1 << 20)),
            "log-flood" => {
                for i in 0..10_000 {
                    log::info("flood", &[("i", &i.to_string())]);
                }
                Act::Allow(Grant::default())
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_secs(3600));
                Act::Allow(Grant::default())
            }
            "print" => {
                println!("a policy printing to stdout");
                Act::Allow(Grant::default())
            }
            "udp-bind" => Act::Deny(format!("{:?}", std::net::UdpSocket::bind("0.0.0.0:0"))),
            "tcp-connect" => Act::Deny(format!(
                "{:?}",
                std::net::TcpStream::connect("127.0.0.1:1883")
            )),
            "file-read" => Act::Deny(format!(
                "{:?}",
                std::fs::read("/etc/passwd").map(|b| b.len())
            )),
            "env" => Act::Deny(format!(
                "environment: {} variables, {} arguments, HOME {:?}",
                std::env::vars().count(),
                std::env::args().count(),
                std::env::var("HOME").ok()
            )),
            "random" => Act::Deny(format!("{} random bytes", raw::random_bytes(64 << 20))),
            "log-alias" => {
                raw::log_aliased(&"x".repeat(1 << 20), 100_000);
                Act::Allow(Grant::default())
            }
            "big-grant" => {
                let value = "v".repeat(256 << 10);
                let grant = (0..8).fold(Grant::default(), |g, i| {
                    g.attribute(format!("k{i}"), value.clone())
                });
                Act::Allow(grant)
            }
            "pollables" => Act::Deny(format!("{} pollables", raw::leak_pollables(100_000))),
            "signatures" => {
                // Past the per-check bound the host traps the check.
                use mqtt_policy_sdk::bindings::mqtt::policy::host::{
                    PublicKey, SignatureAlgorithm, verify_signature,
                };
                let key = PublicKey::EcPoint([4u8; 65].to_vec());
                let n = (0..1000)
                    .filter(|_| {
                        verify_signature(SignatureAlgorithm::Es256, &key, b"m", &[0; 64])
                            .unwrap_or(false)
                    })
                    .count();
                Act::Deny(format!("{n} signatures verified"))
            }
            "big-signature" => {
                // Over the size bounds: refused with a reason, not a trap.
                use mqtt_policy_sdk::bindings::mqtt::policy::host::{
                    PublicKey, SignatureAlgorithm, verify_signature,
                };
                let key = PublicKey::EcPoint([4u8; 65].to_vec());
                let message = vec![b'm'; 512 << 10];
                match verify_signature(SignatureAlgorithm::Es256, &key, &message, &[0; 64]) {
                    Ok(valid) => Act::Deny(format!("verified: {valid}")),
                    Err(reason) => Act::Deny(format!("refused: {reason}")),
                }
            }
            "exit" => std::process::exit(3),
            "log-forge" => {
                log::info(
                    "innocent\n2030-01-01T00:00:00.000000Z  INFO mqtt_policy::decision: FORGED allow client_id=admin\r\u{1b}[2K",
                    &[("key\nFORGED-FIELD", "value\nFORGED-VALUE")],
                );
                Act::Allow(Grant::default())
            }
            "wasi" => {
                let started = std::time::Instant::now();
                let wall = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                let mut seen = std::collections::HashMap::new();
                seen.insert("random", raw::random_bytes(32));
                Act::Allow(
                    Grant::default()
                        .attribute("wall_secs", wall.to_string())
                        .attribute("random_len", seen["random"].to_string())
                        .attribute(
                            "monotonic_ok",
                            (started.elapsed().as_secs() < 60).to_string(),
                        ),
                )
            }
            "count" => Act::Allow(Grant::default().attribute("calls", calls.to_string())),
            "echo" => Act::Allow(echo()),
            other => Act::Deny(format!("unknown mode {other}")),
        }
    }

    fn mode_for<'a>(&'a self, client_id: &'a str) -> &'a str {
        client_id.strip_prefix("mode:").unwrap_or(&self.mode)
    }
}

impl Policy for Misbehave {
    fn new(config: &str) -> Result<Self, String> {
        let config: Config =
            serde_json::from_str(config).map_err(|e| format!("invalid config: {e}"))?;
        match config.init.as_deref() {
            None => {}
            Some("error") => return Err("init refused: requested by config".into()),
            Some("trap") => panic!("init trap requested"),
            Some("loop") => spin(),
            Some("alloc") => return Err(format!("{}", hog())),
            Some("slow") => {
                let until = log::now_unix_ms().saturating_add(config.init_ms);
                while log::now_unix_ms() < until {
                    std::hint::black_box(());
                }
            }
            Some(other) => return Err(format!("unknown init mode {other}")),
        }
        Ok(Misbehave {
            mode: config.mode.unwrap_or_else(|| "allow".into()),
            calls: AtomicU64::new(0),
        })
    }

    fn connect_check(&self, r: &ConnectRequest) -> ConnectVerdict {
        let echo = || {
            let leaf = r.leaf_certificate();
            Grant::default()
                .attribute("client_id", r.client_id.clone())
                .attribute("username", r.username.clone().unwrap_or_default())
                .attribute(
                    "password_len",
                    r.password.as_ref().map_or(0, Vec::len).to_string(),
                )
                .attribute("protocol_version", r.protocol_version.to_string())
                .attribute("clean_start", r.clean_start.to_string())
                .attribute("keep_alive", r.keep_alive.to_string())
                .attribute("peer_address", r.peer_address.clone().unwrap_or_default())
                .attribute("listener", r.listener.clone().unwrap_or_default())
                .attribute(
                    "user_property:region",
                    r.user_property("region").unwrap_or_default(),
                )
                .attribute("certificates", r.certificates.len().to_string())
                .attribute(
                    "leaf_sha1",
                    leaf.map(|c| c.sha1.clone()).unwrap_or_default(),
                )
                .attribute(
                    "leaf_sha256",
                    leaf.map(|c| c.sha256.clone()).unwrap_or_default(),
                )
                .attribute(
                    "leaf_cn",
                    leaf.and_then(|c| c.common_name.clone()).unwrap_or_default(),
                )
                .attribute(
                    "leaf_subject",
                    leaf.map(|c| c.subject.clone()).unwrap_or_default(),
                )
                .attribute(
                    "leaf_issuer",
                    leaf.map(|c| c.issuer.clone()).unwrap_or_default(),
                )
                .attribute(
                    "leaf_serial",
                    leaf.map(|c| c.serial.clone()).unwrap_or_default(),
                )
                .attribute(
                    "leaf_sans",
                    leaf.map(|c| c.sans.join(",")).unwrap_or_default(),
                )
                .attribute(
                    "leaf_not_after",
                    leaf.map_or(0, |c| c.not_after).to_string(),
                )
                .attribute("leaf_der_len", leaf.map_or(0, |c| c.der.len()).to_string())
                .attribute("now_ms", log::now_unix_ms().to_string())
        };
        match self.act(self.mode_for(&r.client_id), echo) {
            Act::Allow(g) => allow_connect(g),
            Act::Deny(m) => deny_connect(DenyReason::Banned, m),
            Act::Defer => ConnectVerdict::Defer,
        }
    }

    fn topic_check(&self, r: &TopicRequest) -> TopicAnswer {
        // Never cached: its answers change with its mode.
        match self.act(self.mode_for(&r.client_id), Grant::default) {
            Act::Allow(g) if g.attributes.len() > 1000 => {
                deny_topic(DenyReason::NotAuthorized, "x".repeat(g.attributes.len()))
            }
            Act::Allow(_) => allow_topic(),
            Act::Deny(m) => deny_topic(DenyReason::NotAuthorized, m),
            Act::Defer => TopicVerdict::Defer.into(),
        }
    }
}

export_policy!(Misbehave);

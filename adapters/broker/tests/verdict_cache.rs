//! The sessions' verdict cache inside the running broker, driven by a real
//! MQTT 5 client over a loopback socket (a small raw client: it reads each
//! PUBACK's reason code, which tells a cached allow from a fresh deny on the
//! very next publish): a reload revokes at once, an `until` verdict ends at
//! its instant, `0.1.0` verdicts are never cached, and a client publishing
//! to a million distinct topics keeps its session's cache within bounds.

mod common;

use std::io::{BufWriter, Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use common::*;
use mqtt_policy_tests::{guests, now, toml_str};

const T: Duration = Duration::from_secs(20);

/// MQTT's variable-length integer.
fn varint(mut n: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if n == 0 {
            break;
        }
    }
}

fn string(s: &str, out: &mut Vec<u8>) {
    out.extend_from_slice(&(s.len() as u16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn packet(first: u8, body: &[u8]) -> Vec<u8> {
    let mut p = vec![first];
    varint(body.len(), &mut p);
    p.extend_from_slice(body);
    p
}

/// An MQTT 5 client on one connection.
struct Client {
    stream: TcpStream,
    next_id: u16,
}

impl Client {
    fn connect(port: u16, id: &str, login: Option<(&str, &str)>) -> Client {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let mut body = Vec::new();
        string("MQTT", &mut body);
        let flags = 0x02 | if login.is_some() { 0xc0 } else { 0 };
        body.extend_from_slice(&[5, flags, 0, 60, 0]);
        string(id, &mut body);
        if let Some((user, password)) = login {
            string(user, &mut body);
            string(password, &mut body);
        }
        let mut client = Client { stream, next_id: 1 };
        client.send(&packet(0x10, &body));
        let (kind, ack) = client.read();
        assert_eq!(kind, 0x20, "CONNACK expected");
        assert_eq!(ack.get(1), Some(&0), "CONNACK refused: {ack:?}");
        client
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("send");
    }

    /// One packet: (type nibble << 4, body).
    fn read(&mut self) -> (u8, Vec<u8>) {
        let mut first = [0u8; 1];
        self.stream.read_exact(&mut first).expect("packet type");
        let (mut len, mut shift) = (0usize, 0);
        loop {
            let mut b = [0u8; 1];
            self.stream.read_exact(&mut b).expect("length");
            len |= usize::from(b[0] & 0x7f) << shift;
            shift += 7;
            if b[0] & 0x80 == 0 {
                break;
            }
        }
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body).expect("body");
        (first[0] & 0xf0, body)
    }

    /// PUBLISH at QoS 1 and return the PUBACK's reason code.
    fn publish1(&mut self, topic: &str) -> u8 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let mut body = Vec::new();
        string(topic, &mut body);
        body.extend_from_slice(&id.to_be_bytes());
        body.push(0); // no properties
        body.extend_from_slice(b"m");
        self.send(&packet(0x32, &body));
        loop {
            let (kind, ack) = self.read();
            if kind == 0x40 && ack.get(..2) == Some(&id.to_be_bytes()[..]) {
                // Reason code omitted: success (MQTT 5 §3.4.2.1).
                return ack.get(2).copied().unwrap_or(0);
            }
        }
    }
}

const FEED: &str = r#"
[[policy.config.rules]]
publish = ["feed/#"]
"#;

#[test]
fn a_reload_that_revokes_a_right_takes_effect_on_the_very_next_publish() {
    let env = env_with(FEED);
    let b = start(&env);
    let host = b.broker().host().clone();
    let mut c = Client::connect(b.port("tcp"), "cache-1", Some(("demo", "demo-password")));
    let before = host.verdict_cache_stats();
    for _ in 0..20 {
        assert_eq!(c.publish1("feed/open/x"), 0);
    }
    let after = host.verdict_cache_stats();
    assert!(after.hits >= before.hits + 19, "{before:?} → {after:?}");

    let generation = host.generation();
    let revoked = FEED.replace("feed/#", "elsewhere/#");
    std::fs::write(&env.chain, chain_toml(&env.device.sha256, &revoked)).expect("edit");
    assert!(eventually(T, || host.generation() > generation), "reloaded");
    // The very next publish: no stale allow.
    assert_eq!(c.publish1("feed/open/x"), 0x87);
    assert_eq!(c.publish1("elsewhere/y"), 0);
}

#[test]
fn an_until_verdict_ends_at_its_instant() {
    let env = env();
    let b = start(&env);
    let host = b.broker().host().clone();
    // The token's topics hold until its expiry, three seconds from now.
    let exp_in = 3;
    let token = token("cache-2", &["tok/#"], exp_in);
    let deadline = now() + exp_in;
    let mut c = Client::connect(b.port("tcp"), "cache-2", Some(("JWT", &token)));
    let before = host.verdict_cache_stats();
    for _ in 0..5 {
        assert_eq!(c.publish1("tok/a"), 0);
    }
    assert!(host.verdict_cache_stats().hits >= before.hits + 4);
    let wait = u64::try_from(deadline + 1 - now()).unwrap_or(0);
    std::thread::sleep(Duration::from_millis(wait * 1000 + 200));
    // Asked again after the instant, and the expired topics grant nothing.
    assert_eq!(c.publish1("tok/a"), 0x87);
}

#[test]
fn verdicts_of_a_0_1_0_policy_are_never_cached() {
    let env = env();
    let legacy = format!(
        "[[policy]]\nname = \"legacy\"\nmodule = {}\n",
        toml_str(guests::LEGACY_V0_1)
    );
    std::fs::write(&env.chain, legacy).expect("chain");
    let b = start(&env);
    let host = b.broker().host().clone();
    let mut c = Client::connect(b.port("tcp"), "old-1", None);
    let before = host.verdict_cache_stats();
    for _ in 0..10 {
        assert_eq!(c.publish1("old/x"), 0);
        assert_eq!(c.publish1("new/x"), 0x87);
    }
    let after = host.verdict_cache_stats();
    assert_eq!((after.hits, after.entries), (before.hits, 0), "{after:?}");
    assert!(after.misses >= before.misses + 20);
}

#[test]
fn a_million_distinct_topics_keep_the_cache_within_bounds() {
    let env = env_with(FEED);
    let b = start(&env);
    let host = b.broker().host().clone();
    let mut c = Client::connect(b.port("tcp"), "cache-3", Some(("demo", "demo-password")));
    {
        let mut w = BufWriter::with_capacity(1 << 16, c.stream.try_clone().expect("clone"));
        let mut body = Vec::with_capacity(64);
        for i in 0..1_000_000u32 {
            body.clear();
            string(&format!("feed/many/{i}"), &mut body);
            body.push(0); // no properties
            body.extend_from_slice(b"m");
            w.write_all(&packet(0x30, &body)).expect("publish");
        }
        w.flush().expect("flush");
    }
    // A QoS 1 publish after them: its PUBACK means all were handled.
    assert_eq!(c.publish1("feed/last"), 0);
    let stats = host.verdict_cache_stats();
    // The defaults: 256 entries or 64 KiB per session.
    assert!(
        stats.entries <= 256 && stats.bytes <= 64 * 1024,
        "{stats:?}"
    );
    assert!(stats.evictions >= 999_000, "{stats:?}");
    drop(c);
    assert!(
        eventually(T, || host.verdict_cache_stats().entries == 0),
        "the session's cache is freed on disconnect: {:?}",
        host.verdict_cache_stats()
    );
}

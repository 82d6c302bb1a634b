//! The sessions' verdict cache inside the running broker, driven by a real
//! MQTT 5 client over a loopback socket (a small raw client: it reads each
//! PUBACK's reason code, which tells a cached allow from a fresh deny on the
//! very next publish): a reload revokes at once, an `until` verdict ends at
//! its instant, `0.1.0` verdicts are never cached, and a client publishing
//! to a million distinct topics keeps its session's cache within bounds.

mod common;

use std::io::{BufWriter, Write as _};
use std::time::Duration;

use common::raw::{Client, packet, string};
use common::*;
use mqtt_policy_tests::{guests, now, toml_str};

const T: Duration = Duration::from_secs(20);

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

//! `connect_checks`: which thread runs a connect check, seen through the
//! broker's counters while a real MQTT 5 client connects over loopback.
//! `inline` keeps every check on the async workers, `pool` sends every one
//! to the blocking pool, and `auto` starts on the pool, runs checks inline
//! after a window without slow ones, and moves back to the pool once checks
//! are slow (here one wrong password against an argon2id hash, ~35 ms,
//! never remembered, is enough) for the next window.

mod common;

use common::raw::Client;
use common::*;

/// One broker at a time: these tests judge where checks ran by their time,
/// and another test's argon2id hashes on this 2-core machine would stretch
/// a cheap check's wall time past `SLOW_CONNECT_WAIT`.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner())
}

/// `n` connects of the `legacy` user (a `$7$` hash, remembered after the
/// first) and the (worker, pool) counts they added.
fn fast_connects(b: &Running, n: u64) -> (u64, u64) {
    let before = b.broker().metrics().connect_threads();
    for i in 0..n {
        Client::connect(
            b.port("tcp"),
            &format!("fast-{i}"),
            Some(("legacy", "legacy-password")),
        );
    }
    let after = b.broker().metrics().connect_threads();
    (after.0 - before.0, after.1 - before.1)
}

/// A connect that is refused after a full argon2id hash.
fn slow_connect(b: &Running) {
    let (_, code) = Client::try_connect(b.port("tcp"), "slow", Some(("demo", "wrong")));
    assert_eq!(code, 0x86, "bad username or password");
}

#[test]
fn inline_and_pool_do_what_they_say() {
    let _one = one_at_a_time();
    let env = env();
    let b = start_configured(&env, r#"connect_checks = "inline""#, "");
    slow_connect(&b);
    assert_eq!(fast_connects(&b, 5), (5, 0));
    drop(b);

    let b = start_configured(&env, r#"connect_checks = "pool""#, "");
    assert_eq!(fast_connects(&b, 5), (0, 5));
}

#[test]
fn auto_starts_on_the_pool() {
    let _one = one_at_a_time();
    let env = env();
    // The default.
    let b = start(&env);
    assert_eq!(
        fast_connects(&b, 3),
        (0, 3),
        "the first window after start runs on the pool"
    );
    let text = b.broker().metrics().render(b.broker().host(), 0, 0);
    assert!(
        text.contains("mqtt_policy_broker_connect_checks_total{thread=\"pool\"}"),
        "{text}"
    );
}

#[test]
fn auto_runs_checks_inline_after_a_quiet_window_and_on_the_pool_after_a_slow_one() {
    let _one = one_at_a_time();
    let env = env();
    let b = start(&env);
    // Instances made and `legacy` remembered, on the pool; cheap checks do
    // not extend the start-up window. The broker is kept busy meanwhile: on
    // this machine's VM the first check after seconds of idleness can take
    // over 10 ms of wall time, which counts as slow and opens a window.
    // Bounded: three windows, in case one check is slow after all.
    let give_up = std::time::Instant::now() + 3 * mqtt_policy_broker::SLOW_CONNECT_WINDOW;
    while fast_connects(&b, 1) != (1, 0) {
        assert!(
            std::time::Instant::now() < give_up,
            "cheap checks never ran inline"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A new instance's first hash of `legacy` (a few ms) is a one-off and
    // keeps them inline.
    assert_eq!(fast_connects(&b, 5), (5, 0), "inline after a quiet window");
    slow_connect(&b);
    assert_eq!(
        fast_connects(&b, 5),
        (0, 5),
        "after a slow check every connect check of the window runs on the pool"
    );
}

//! A failing policy must not make checks expensive: instances are replaced
//! off the hot path, a check costs at most about two deadlines whatever the
//! policy's `init` costs, a policy that keeps failing is not asked for a
//! while (the circuit breaker), and an instance that produced a malformed
//! result is never asked again.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mqtt_policy_host::{
    BreakerConfig, Chain, ConnectRequest, ConnectVerdict, DenyReason, FailureMode, Grant, Limits,
    Outcome, Policy, PolicyError, StepResult, TopicRequest, TopicVerdict,
};
use mqtt_policy_tests::connect;

/// Thread CPU time and wall time of `f`.
fn costs<R>(f: impl FnOnce() -> R) -> anyhow::Result<(R, Duration, Duration)> {
    let cpu = cpu_time::ThreadTime::try_now()?;
    let wall = Instant::now();
    let r = f();
    Ok((r, cpu.try_elapsed()?, wall.elapsed()))
}

/// `init` spins for 1.5 s (under the 2 s init deadline) and every check
/// traps. Before, each failed check dropped its instance and the next check
/// ran `init` inline: every check cost 1.5 s.
#[test]
fn a_slow_init_does_not_make_failed_checks_slow() -> anyhow::Result<()> {
    let deadline = Duration::from_millis(20);
    let limits = Limits {
        deadline,
        memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let policy = crate::misbehave(
        "slow-trap",
        r#"{"init":"slow","init_ms":1500,"mode":"trap"}"#,
        limits,
    )?;
    for check in 0..10 {
        let (result, cpu, wall) = costs(|| policy.connect_check(&connect("c")))?;
        eprintln!("check {check}: cpu {cpu:?}, wall {wall:?}: {result:?}");
        assert!(result.is_err(), "check {check}");
        // At most about two deadlines of CPU; generous on wall time, which a
        // loaded machine stretches, but far below init's 1.5 s.
        assert!(
            cpu <= 2 * deadline + Duration::from_millis(10),
            "check {check}: cpu {cpu:?}"
        );
        assert!(
            wall < Duration::from_millis(400),
            "check {check}: wall {wall:?}"
        );
    }
    Ok(())
}

/// The same policy in a chain: the first checks fail within a deadline
/// each, then the circuit opens and checks get the failure mode at once.
#[test]
fn a_chain_stops_asking_a_policy_that_keeps_failing() -> anyhow::Result<()> {
    let deadline = Duration::from_millis(20);
    let limits = Limits {
        deadline,
        memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let policy = crate::misbehave(
        "slow-trap",
        r#"{"init":"slow","init_ms":1500,"mode":"trap"}"#,
        limits,
    )?;
    let breaker = BreakerConfig {
        failures: 5,
        backoff_ms: 60_000,
        max_backoff_ms: 60_000,
    };
    let chain = Chain::builder()
        .policy_with("slow-trap", policy, FailureMode::Skip)
        .breaker(breaker)
        .build()?;
    let mut short_circuited = Vec::new();
    for check in 0..30 {
        let (d, cpu, wall) = costs(|| chain.connect_check(&connect("c")))?;
        let StepResult::Failed(error) = &d.trace[0].result else {
            anyhow::bail!("check {check}: {d:?}")
        };
        assert!(
            cpu <= 2 * deadline + Duration::from_millis(10),
            "check {check}: cpu {cpu:?}"
        );
        assert!(
            wall < Duration::from_millis(400),
            "check {check}: wall {wall:?}"
        );
        if check >= 5 {
            assert_eq!(*error, PolicyError::CircuitOpen(5), "check {check}");
            short_circuited.push(wall);
        }
    }
    short_circuited.sort();
    let median = short_circuited[short_circuited.len() / 2];
    assert!(
        median < Duration::from_millis(5),
        "short circuits: {short_circuited:?}"
    );
    let stats = chain.stats()[0].1;
    assert_eq!(
        (stats.error, stats.circuit_opens, stats.short_circuits),
        (30, 1, 25)
    );
    Ok(())
}

/// A native policy that fails while `broken` is set, counting its calls.
#[derive(Default)]
struct Flaky {
    broken: AtomicBool,
    calls: AtomicU64,
}

impl Policy for Flaky {
    fn connect_check(&self, _: &ConnectRequest) -> Result<ConnectVerdict, PolicyError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        if self.broken.load(Ordering::SeqCst) {
            return Err(PolicyError::Trap("broken".into()));
        }
        Ok(ConnectVerdict::Allow(Grant::default()))
    }

    fn topic_check(&self, _: &TopicRequest) -> Result<TopicVerdict, PolicyError> {
        Ok(TopicVerdict::Defer)
    }
}

#[test]
fn the_breaker_opens_probes_backs_off_and_closes() -> anyhow::Result<()> {
    let flaky = Arc::new(Flaky::default());
    let backoff = Duration::from_millis(300);
    let chain = Chain::builder()
        .policy("flaky", flaky.clone())
        .breaker(BreakerConfig {
            failures: 3,
            backoff_ms: 300,
            max_backoff_ms: 1200,
        })
        .build()?;
    let result = |d: &mqtt_policy_host::ConnectDecision| d.trace[0].result.clone();
    let calls = || flaky.calls.load(Ordering::SeqCst);
    let trap = StepResult::Failed(PolicyError::Trap("broken".into()));

    flaky.broken.store(true, Ordering::SeqCst);
    for _ in 0..3 {
        assert_eq!(result(&chain.connect_check(&connect("c"))), trap);
    }
    // Open: not asked, failure mode at once (deny: server unavailable).
    let d = chain.connect_check(&connect("c"));
    assert_eq!(result(&d), StepResult::Failed(PolicyError::CircuitOpen(3)));
    assert_eq!(
        d.deny().map(|d| d.reason),
        Some(DenyReason::ServerUnavailable)
    );
    assert_eq!(calls(), 3, "an open circuit does not ask the policy");
    assert_eq!(
        PolicyError::CircuitOpen(3).to_string(),
        "circuit open after 3 consecutive failures: not asked"
    );

    // After the backoff one check probes; still broken, it opens again for
    // twice as long.
    std::thread::sleep(backoff + Duration::from_millis(50));
    let reopened = Instant::now();
    assert_eq!(result(&chain.connect_check(&connect("c"))), trap);
    assert_eq!(calls(), 4, "the probe asked the policy");
    std::thread::sleep(backoff + Duration::from_millis(50));
    let d = chain.connect_check(&connect("c"));
    // Only meaningful if this thread was not descheduled past the doubled backoff.
    if reopened.elapsed() < 2 * backoff {
        assert_eq!(result(&d), StepResult::Failed(PolicyError::CircuitOpen(4)));
        assert_eq!(calls(), 4, "the backoff doubled after the failed probe");
    }

    // Fixed: the next probe succeeds and closes the circuit.
    flaky.broken.store(false, Ordering::SeqCst);
    std::thread::sleep(2 * backoff + Duration::from_millis(50));
    let d = chain.connect_check(&connect("c"));
    assert!(d.is_allowed(), "{d:?}");
    let before = calls();
    assert!(chain.connect_check(&connect("c")).is_allowed());
    assert_eq!(calls(), before + 1, "closed: every check asks again");
    let stats = chain.stats()[0].1;
    assert!(stats.circuit_opens >= 2, "{stats:?}");
    assert!(stats.short_circuits >= 1, "{stats:?}");

    // A success resets the count: failures that are not consecutive never open it.
    for _ in 0..10 {
        flaky.broken.store(true, Ordering::SeqCst);
        chain.connect_check(&connect("c"));
        chain.connect_check(&connect("c"));
        flaky.broken.store(false, Ordering::SeqCst);
        assert!(chain.connect_check(&connect("c")).is_allowed());
    }
    Ok(())
}

#[test]
fn the_breaker_can_be_turned_off() -> anyhow::Result<()> {
    let flaky = Arc::new(Flaky::default());
    flaky.broken.store(true, Ordering::SeqCst);
    let chain = Chain::builder()
        .policy_with("flaky", flaky.clone(), FailureMode::Skip)
        .breaker(BreakerConfig {
            failures: 0,
            ..BreakerConfig::default()
        })
        .build()?;
    for _ in 0..100 {
        chain.connect_check(&connect("c"));
    }
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 100);
    assert_eq!(chain.stats()[0].1.circuit_opens, 0);
    Ok(())
}

/// Under `allow`, an open circuit is an allow at once (the operator's
/// choice for a broken policy), with an empty grant.
#[test]
fn an_open_circuit_gets_the_failure_mode() -> anyhow::Result<()> {
    let flaky = Arc::new(Flaky::default());
    flaky.broken.store(true, Ordering::SeqCst);
    let chain = Chain::builder()
        .policy_with("flaky", flaky.clone(), FailureMode::Allow)
        .breaker(BreakerConfig {
            failures: 2,
            ..BreakerConfig::default()
        })
        .build()?;
    for _ in 0..5 {
        let d = chain.connect_check(&connect("c"));
        assert_eq!(d.outcome, Outcome::Allow(Grant::default()));
    }
    assert_eq!(flaky.calls.load(Ordering::SeqCst), 2);
    Ok(())
}

/// Each error prints its cause once, in the chain's warning too.
#[test]
fn failure_messages_say_each_thing_once() -> anyhow::Result<()> {
    assert_eq!(
        PolicyError::NoInstance(Duration::from_millis(20)).to_string(),
        "no instance ready within 20ms (instances are replaced in the background)"
    );
    let trap = crate::misbehave("trap", r#"{"mode":"trap"}"#, Limits::default())?;
    let err = trap
        .connect_check(&connect("c"))
        .err()
        .map(|e| e.to_string());
    let text = err.unwrap_or_default();
    // The SDK's panic hook reports the message and location: said once, and
    // not blamed on stdio.
    assert!(text.starts_with("panicked: trap requested at "), "{text}");
    assert!(text.contains("misbehave/src/lib.rs:"), "{text}");
    assert_eq!(text.matches("trap requested").count(), 1, "{text}");
    assert!(!text.contains("may not use"), "{text}");
    Ok(())
}

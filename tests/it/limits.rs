use std::time::{Duration, Instant};

use mqtt_policy_host::{Access, Chain, Limits, Policy, PolicyError, StepResult};
use mqtt_policy_tests::{connect, topic};

fn limits(deadline_ms: u64, memory_mb: usize) -> Limits {
    Limits {
        deadline: Duration::from_millis(deadline_ms),
        memory_bytes: memory_mb << 20,
        ..Limits::default()
    }
}

/// The generous bound on "stopped at the deadline": proves the call was cut
/// off (an infinite loop would never return), not how fast.
const STOPPED_WELL_WITHIN: Duration = Duration::from_secs(2);

#[test]
fn an_infinite_loop_is_denied_at_the_deadline() -> anyhow::Result<()> {
    let policy = crate::misbehave("spinner", r#"{"mode":"loop"}"#, limits(10, 16))?;
    let chain = Chain::builder().policy("spinner", policy.clone()).build()?;
    for check in 0..3 {
        let started = Instant::now();
        let d = chain.connect_check(&connect("c"));
        let took = started.elapsed();
        assert!(!d.is_allowed());
        assert_eq!(d.decider(), Some("spinner"));
        assert_eq!(
            d.trace[0].result,
            StepResult::Failed(PolicyError::Timeout(Duration::from_millis(10))),
            "check {check}"
        );
        assert!(
            took >= Duration::from_millis(10),
            "stopped before its deadline: {took:?}"
        );
        assert!(took < STOPPED_WELL_WITHIN, "not stopped: {took:?}");
    }
    let d = chain.topic_check(&topic("c", Access::Publish, "a", &[]));
    assert!(matches!(
        d.trace[0].result,
        StepResult::Failed(PolicyError::Timeout(_))
    ));
    assert_eq!(chain.stats()[0].1.error, 4);
    Ok(())
}

#[test]
fn a_trap_is_denied_and_the_instance_is_replaced() -> anyhow::Result<()> {
    // Counts calls per instance: a reused instance counts up, a replaced one restarts.
    let policy = crate::misbehave("counter", r#"{"mode":"count"}"#, limits(50, 16))?;
    let calls = |p: &dyn Policy| -> anyhow::Result<String> {
        match p.connect_check(&connect("c"))? {
            mqtt_policy_host::ConnectVerdict::Allow(g) => Ok(g.attributes[0].value.clone()),
            other => anyhow::bail!("expected allow, got {other:?}"),
        }
    };
    assert_eq!(calls(policy.as_ref())?, "1");
    assert_eq!(calls(policy.as_ref())?, "2", "the warm instance is reused");
    let created = policy.instances_created();
    let err = policy.connect_check(&connect("mode:trap")).err();
    // The SDK's panic hook reports the panic; the host names it.
    assert!(
        matches!(&err, Some(PolicyError::Panicked { message, .. }) if message == "trap requested"),
        "{err:?}"
    );
    assert_eq!(
        calls(policy.as_ref())?,
        "1",
        "a fresh instance after the trap"
    );
    // The replacement is made in the background or, as init is cheap, by
    // the check itself; both may race to make one.
    let now = policy.instances_created();
    assert!(
        (created + 1..=created + 2).contains(&now),
        "{created} -> {now}"
    );
    Ok(())
}

#[test]
fn an_instance_that_returned_a_malformed_result_is_not_reused() -> anyhow::Result<()> {
    let policy = crate::misbehave("counter", r#"{"mode":"count"}"#, limits(2000, 32))?;
    let calls = |p: &dyn Policy| -> anyhow::Result<String> {
        match p.connect_check(&connect("c"))? {
            mqtt_policy_host::ConnectVerdict::Allow(g) => Ok(g.attributes[0].value.clone()),
            other => anyhow::bail!("expected allow, got {other:?}"),
        }
    };
    assert_eq!(calls(policy.as_ref())?, "1");
    assert_eq!(calls(policy.as_ref())?, "2", "the warm instance is reused");
    // The same instance answers with a grant over the host's cap: its
    // third call. Reused, it would answer "4" next.
    let err = policy.connect_check(&connect("mode:huge-grant")).err();
    // Over the grant cap, or over the data the host lifts at all (1 MiB):
    // either way a malformed result.
    assert!(
        matches!(
            err,
            Some(PolicyError::InvalidResult(_) | PolicyError::TooMuchData(_))
        ),
        "{err:?}"
    );
    assert_eq!(
        calls(policy.as_ref())?,
        "1",
        "a fresh instance after the malformed result"
    );
    Ok(())
}

#[test]
fn unbounded_allocation_hits_the_memory_cap() -> anyhow::Result<()> {
    let policy = crate::misbehave("hog", r#"{"mode":"allow"}"#, limits(2000, 8))?;
    let err = policy.connect_check(&connect("mode:alloc")).err();
    assert_eq!(err, Some(PolicyError::OutOfMemory(8 << 20)));
    // The host keeps serving: the next check runs on a fresh instance.
    assert!(matches!(
        policy.connect_check(&connect("c")),
        Ok(mqtt_policy_host::ConnectVerdict::Allow(_))
    ));
    Ok(())
}

#[test]
fn stack_exhaustion_is_a_trap() -> anyhow::Result<()> {
    let policy = crate::misbehave("deep", r#"{"mode":"allow"}"#, limits(2000, 16))?;
    let err = policy.connect_check(&connect("mode:recurse")).err();
    assert!(
        matches!(
            err,
            Some(PolicyError::Trap(_) | PolicyError::OutOfMemory(_))
        ),
        "{err:?}"
    );
    assert!(policy.connect_check(&connect("c")).is_ok());
    Ok(())
}

#[test]
fn oversized_results_are_malformed_or_cut() -> anyhow::Result<()> {
    let policy = crate::misbehave("big", r#"{"mode":"allow"}"#, limits(2000, 32))?;
    // 100,000 attributes: over the data the host lifts from one result
    // (before the grant's own bound is even checked).
    let err = policy.connect_check(&connect("mode:huge-grant")).err();
    assert_eq!(err, Some(PolicyError::TooMuchData(1 << 20)));
    match policy.connect_check(&connect("mode:huge-message"))? {
        mqtt_policy_host::ConnectVerdict::Deny(d) => assert!(d.message.len() <= 256 * 4),
        other => anyhow::bail!("expected deny, got {other:?}"),
    }
    Ok(())
}

#[test]
fn log_floods_are_dropped_not_fatal() -> anyhow::Result<()> {
    let policy = crate::misbehave("noisy", r#"{"mode":"log-flood"}"#, limits(2000, 16))?;
    assert!(matches!(
        policy.connect_check(&connect("c")),
        Ok(mqtt_policy_host::ConnectVerdict::Allow(_))
    ));
    Ok(())
}

#[test]
fn checks_run_concurrently_from_many_threads() -> anyhow::Result<()> {
    let counter = crate::misbehave("count", r#"{"mode":"count"}"#, limits(100, 16))?;
    let spinner = crate::misbehave("spin", r#"{"mode":"allow"}"#, limits(5, 16))?;
    let chain = Chain::builder()
        .policy("spin", spinner)
        .policy("count", counter.clone())
        .build()?;
    let chain = &chain;
    std::thread::scope(|s| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..4)
            .map(|t| {
                s.spawn(move || {
                    let mut allowed = 0u32;
                    for i in 0..200 {
                        // Every 50th call from one thread loops: the others keep being served.
                        let id = if t == 0 && i % 50 == 0 {
                            "mode:loop".to_string()
                        } else {
                            format!("c{t}")
                        };
                        if chain.connect_check(&connect(&id)).is_allowed() {
                            allowed += 1;
                        }
                    }
                    allowed
                })
            })
            .collect();
        let allowed: Vec<u32> = workers.into_iter().map(|w| w.join().unwrap_or(0)).collect();
        assert_eq!(allowed, vec![196, 200, 200, 200]);
        Ok(())
    })?;
    assert!(
        counter.instances_created() <= 8,
        "instances are reused, not made per check"
    );
    Ok(())
}

//! A panicking policy is reported with its own message and location (the
//! SDK's panic hook, kept by the host outside the log budget), in `init`,
//! `connect_check` and `topic_check`, never as a stdio trap.

use mqtt_policy_host::{Access, Chain, LoadError, PolicyError, StepResult};
use mqtt_policy_tests::{connect, topic};

fn is_panic(e: &PolicyError, message: &str) -> bool {
    matches!(e, PolicyError::Panicked { message: m, location }
        if m == message && location.starts_with("tests/guests/misbehave/src/lib.rs:"))
}

#[test]
fn a_panic_in_init_names_its_message_and_location() {
    let err = crate::misbehave("p", r#"{"init":"trap"}"#, Default::default()).err();
    let load = err.as_ref().and_then(|e| e.downcast_ref::<LoadError>());
    assert!(
        matches!(load, Some(LoadError::InitFailed { policy, error }) if policy == "p" && is_panic(error, "init trap requested")),
        "{err:?}"
    );
    let text = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        text.starts_with("policy \"p\": init failed: panicked: init trap requested at tests/guests/misbehave/src/lib.rs:"),
        "{text}"
    );
    assert_eq!(text.matches("init trap requested").count(), 1, "{text}");
}

#[test]
fn a_panic_in_a_check_reaches_the_trace() -> anyhow::Result<()> {
    let policy = crate::misbehave("p", r#"{"mode":"trap"}"#, Default::default())?;
    let chain = Chain::builder().policy("p", policy).build()?;

    let d = chain.connect_check(&connect("c"));
    assert!(!d.is_allowed());
    assert_eq!(d.decider(), Some("p"));
    assert!(
        matches!(&d.trace[0].result, StepResult::Failed(e) if is_panic(e, "trap requested")),
        "{:?}",
        d.trace
    );

    let d = chain.topic_check(&topic("c", Access::Publish, "a/b", &[]));
    assert!(!d.is_allowed());
    assert!(
        matches!(&d.trace[0].result, StepResult::Failed(e) if is_panic(e, "trap requested")),
        "{:?}",
        d.trace
    );
    // The next check runs on a fresh instance and panics the same way: the
    // report belongs to its call, not to an earlier one.
    let d = chain.topic_check(&topic("c", Access::Subscribe, "a/#", &[]));
    assert!(
        matches!(&d.trace[0].result, StepResult::Failed(e) if is_panic(e, "trap requested")),
        "{:?}",
        d.trace
    );
    Ok(())
}

//! MQTT topic semantics, checked through the compiled topic-list component.

use mqtt_policy_host::{Access, Attribute, Chain, Limits, WasmPolicy};
use mqtt_policy_tests::{guests, topic};

fn chain(config: &str) -> anyhow::Result<Chain> {
    let p = WasmPolicy::from_file(
        crate::engine(),
        "topics",
        guests::TOPIC_LIST.as_ref(),
        config,
        Limits::default(),
    )?;
    Ok(Chain::builder()
        .policy("topics", std::sync::Arc::new(p))
        .build()?)
}

fn allowed(c: &Chain, access: Access, t: &str) -> bool {
    c.topic_check(&topic("c1", access, t, &[])).is_allowed()
}

#[test]
fn spec_examples() -> anyhow::Result<()> {
    let c = chain(
        r#"{"rules": [{"publish": [], "subscribe": ["sport/tennis/player1/#", "sport/+", "+/+", "/+"], "receive": ["sport/tennis/player1/#", "sport/+", "+/+", "/+"]}]}"#,
    )?;
    for name in [
        "sport/tennis/player1",
        "sport/tennis/player1/ranking",
        "sport/tennis/player1/score/wimbledon",
    ] {
        assert!(allowed(&c, Access::Receive, name), "{name}");
    }
    assert!(
        allowed(&c, Access::Receive, "sport/"),
        "sport/+ matches sport/ (empty level)"
    );
    assert!(
        allowed(&c, Access::Receive, "/finance"),
        "+/+ and /+ match /finance"
    );
    assert!(
        !allowed(&c, Access::Receive, "finance"),
        "no filter matches a single level"
    );
    Ok(())
}

#[test]
fn multi_level_wildcard_includes_the_parent() -> anyhow::Result<()> {
    let c = chain(r#"{"rules": [{"publish": ["a/#"], "subscribe": ["a/#"]}]}"#)?;
    assert!(allowed(&c, Access::Publish, "a"));
    assert!(allowed(&c, Access::Publish, "a/b/c"));
    assert!(!allowed(&c, Access::Publish, "ab"));
    assert!(allowed(&c, Access::Subscribe, "a"));
    assert!(allowed(&c, Access::Subscribe, "a/+/c"));
    assert!(!allowed(&c, Access::Subscribe, "#"));
    assert!(
        !allowed(&c, Access::Subscribe, "+/b"),
        "+/b also matches x/b"
    );
    Ok(())
}

#[test]
fn dollar_sys_needs_an_explicit_grant() -> anyhow::Result<()> {
    let c = chain(r##"{"rules": [{"publish": ["#"], "subscribe": ["#", "+/monitor/#"]}]}"##)?;
    assert!(!allowed(&c, Access::Publish, "$SYS/broker/load"));
    assert!(!allowed(&c, Access::Subscribe, "$SYS/#"));
    assert!(!allowed(&c, Access::Subscribe, "$SYS/monitor/Clients"));
    assert!(allowed(&c, Access::Subscribe, "x/monitor/Clients"));
    let c = chain(r#"{"rules": [{"subscribe": ["$SYS/#"]}]}"#)?;
    assert!(allowed(&c, Access::Subscribe, "$SYS/broker/+"));
    Ok(())
}

#[test]
fn empty_levels_are_levels() -> anyhow::Result<()> {
    let c = chain(r#"{"rules": [{"publish": ["a//b", "x/+/y"]}]}"#)?;
    assert!(allowed(&c, Access::Publish, "a//b"));
    assert!(!allowed(&c, Access::Publish, "a/b"));
    assert!(allowed(&c, Access::Publish, "x//y"));
    Ok(())
}

#[test]
fn invalid_topics_are_denied() -> anyhow::Result<()> {
    let c = chain(r##"{"rules": [{"publish": ["#"], "subscribe": ["#"]}]}"##)?;
    assert!(
        !allowed(&c, Access::Publish, "a/+"),
        "wildcards in a topic name"
    );
    assert!(!allowed(&c, Access::Publish, ""), "empty topic");
    assert!(!allowed(&c, Access::Subscribe, "a/#/b"), "# not last");
    assert!(!allowed(&c, Access::Subscribe, "a+"), "+ not a whole level");
    assert!(!allowed(&c, Access::Publish, "a\0b"), "NUL");
    Ok(())
}

#[test]
fn session_topics_are_matched_with_mqtt_semantics() -> anyhow::Result<()> {
    let c = chain("{}")?;
    let attrs = [Attribute {
        key: "topics".into(),
        value: r#"["devices/d1/#","alerts/+"]"#.into(),
    }];
    let check = |access, t: &str| c.topic_check(&topic("d1", access, t, &attrs)).is_allowed();
    assert!(check(Access::Publish, "devices/d1"));
    assert!(check(Access::Subscribe, "alerts/+"));
    assert!(!check(Access::Subscribe, "alerts/#"));
    assert!(!check(Access::Publish, "devices/d2/x"));
    Ok(())
}

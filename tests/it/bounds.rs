//! Client input over the host's bounds: refused by the host before any
//! policy runs, whatever the failure modes say. Without the bounds a client
//! could pick a request big enough to make a policy miss its deadline while
//! the request is being lowered into it, and so pull the policy's failure
//! mode (`skip`, `allow`) as a lever.

use mqtt_policy_host::{
    Access, Certificate, Chain, DecidedBy, DenyReason, FailureMode, Password, PolicyHost,
    ProtocolVersion, RequestBounds, StepResult, UserProperty,
};
use mqtt_policy_tests::{connect, guests, toml_str, topic, write_chain};

/// A chain that lets everyone in by default, behind a certificate ban list
/// (no listed certificate: denied) with the given failure mode.
fn ban_list_chain(dir: &std::path::Path, on_error: &str) -> anyhow::Result<Chain> {
    let path = write_chain(
        dir,
        &format!(
            r#"
default = "allow"
[[policy]]
name = "ban"
module = {thumbprint}
on_error = "{on_error}"
[policy.config]
thumbprints = ["00112233445566778899AABBCCDDEEFF00112233"]
missing_certificate = "deny"

[[policy]]
name = "topics"
module = {topic_list}
on_error = "{on_error}"
[policy.config]
[[policy.config.rules]]
publish = ["allowed/#"]
"#,
            thumbprint = toml_str(guests::THUMBPRINT),
            topic_list = toml_str(guests::TOPIC_LIST),
        ),
    )?;
    Ok(Chain::from_config_file(crate::engine(), &path)?)
}

fn user_properties(n: usize) -> mqtt_policy_host::ConnectRequest {
    let mut request = connect("attacker").protocol_version(ProtocolVersion::V5);
    request.user_properties = (0..n)
        .map(|i| mqtt_policy_host::UserProperty {
            name: String::from(if i % 2 == 0 { "a" } else { "b" }),
            value: String::from("v"),
        })
        .collect();
    request
}

#[test]
fn a_flood_of_user_properties_cannot_make_a_policy_fail_open() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for on_error in ["skip", "allow"] {
        let chain = ban_list_chain(dir.path(), on_error)?;
        // A few properties: the ban list answers (no certificate: denied).
        let d = chain.connect_check(&user_properties(3));
        assert_eq!(d.decider(), Some("ban"), "{on_error}: {d:?}");
        assert!(!d.is_allowed());
        // 100,000 one-byte properties (~700 KB, legal on the wire) took the
        // thumbprint policy past its 5 ms deadline while they were lowered
        // into it, and the failure mode let the client through.
        let d = chain.connect_check(&user_properties(100_000));
        assert!(!d.is_allowed(), "{on_error}: {d:?}");
        assert_eq!(d.decided_by, DecidedBy::Host, "{on_error}: {d:?}");
        assert!(d.trace.is_empty(), "no policy was asked: {:?}", d.trace);
        let deny = d.deny().cloned().unwrap_or_else(|| unreachable!());
        assert_eq!(deny.reason, DenyReason::NotAuthorized);
        assert_eq!(
            deny.message,
            "request over host bound: 100000 user properties (max 64)"
        );
        assert_eq!(d.connack_code(ProtocolVersion::V5), 0x87);
        let stats = chain.stats();
        assert_eq!(stats[0].1.error, 0, "{on_error}: the policy never failed");
    }
    Ok(())
}

#[test]
fn a_topic_over_mqtts_limit_is_a_host_deny() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    for on_error in ["skip", "allow"] {
        let chain = ban_list_chain(dir.path(), on_error)?;
        let longest = format!("allowed/{}", "x".repeat(65_535 - 8));
        let d = chain.topic_check(&topic("c", Access::Publish, &longest, &[]));
        assert_eq!(
            d.decider(),
            Some("topics"),
            "{on_error}: 65,535 bytes reach the policies"
        );
        let over = format!("{longest}x");
        let d = chain.topic_check(&topic("c", Access::Publish, &over, &[]));
        assert!(!d.is_allowed(), "{on_error}: {d:?}");
        assert_eq!(d.decided_by, DecidedBy::Host);
        assert!(d.trace.is_empty());
        assert_eq!(
            d.deny().map(|d| d.message.as_str()),
            Some("request over host bound: topic of 65536 bytes (max 65535)")
        );
    }
    Ok(())
}

/// The failure modes are not what stops the attack: a chain whose only
/// policy fails open on everything still refuses the oversized request.
#[test]
fn bounds_hold_whatever_the_failure_modes() -> anyhow::Result<()> {
    for mode in crate::FAILURE_MODES {
        let trap = crate::misbehave("trap", r#"{"mode":"trap"}"#, Default::default())?;
        let chain = Chain::builder()
            .policy_with("trap", trap, mode)
            .default_verdict(mqtt_policy_host::DefaultVerdict::Allow)
            .build()?;
        let d = chain.connect_check(&user_properties(65));
        assert_eq!(d.decided_by, DecidedBy::Host, "{mode:?}");
        let d = chain.connect_check(&user_properties(64));
        assert!(
            matches!(d.trace[..], [ref s] if matches!(s.result, StepResult::Failed(_))),
            "{mode:?}: 64 properties reach the policy: {d:?}"
        );
        assert_eq!(d.is_allowed(), mode != FailureMode::Deny, "{mode:?}");
    }
    Ok(())
}

#[test]
fn bounds_come_from_the_chain_file() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write_chain(
        dir.path(),
        &format!(
            "[requests]\nmax_user_properties = 2\nmax_client_id_bytes = 8\n\
             [[policy]]\nname = \"allow\"\nmodule = {}\n[policy.config]\nmode = \"allow\"\n",
            toml_str(guests::MISBEHAVE)
        ),
    )?;
    let chain = Chain::from_config_file(crate::engine(), &path)?;
    assert_eq!(chain.request_bounds().max_user_properties, 2);
    assert_eq!(
        chain.request_bounds().max_password_bytes,
        RequestBounds::default().max_password_bytes,
        "unset bounds keep their defaults"
    );
    let d = chain.connect_check(&user_properties(2));
    assert_eq!(d.decider(), Some("allow"));
    let d = chain.connect_check(&user_properties(3));
    assert_eq!(d.decided_by, DecidedBy::Host);
    assert_eq!(
        d.deny().map(|d| d.message.as_str()),
        Some("request over host bound: 3 user properties (max 2)")
    );
    let d = chain.connect_check(&connect("123456789"));
    assert_eq!(
        d.deny().map(|d| d.message.as_str()),
        Some("request over host bound: client id of 9 bytes (max 8)")
    );
    Ok(())
}

fn certificate(der: usize, sans: usize, sha1: &str) -> Certificate {
    Certificate {
        der: vec![0x30; der],
        sha1: sha1.into(),
        sha256: "0".repeat(64),
        subject: "CN=device,O=mqtt-policy tests".into(),
        issuer: "CN=device-ca,O=mqtt-policy tests".into(),
        common_name: Some("device".into()),
        sans: (0..sans).map(|i| format!("DNS:d{i}.example")).collect(),
        serial: "01".into(),
        not_before: 0,
        not_after: i64::MAX,
    }
}

/// The defaults are generous enough for real clients and tight enough that
/// the biggest request they admit is checked well within the default 5 ms
/// deadline.
#[test]
fn a_request_at_every_default_bound_is_answered_in_time() -> anyhow::Result<()> {
    let b = RequestBounds::default();
    let dir = tempfile::tempdir()?;
    let path = write_chain(
        dir.path(),
        &format!(
            "[[policy]]\nname = \"certs\"\nmodule = {}\n[policy.config]\nthumbprints = [\"{LISTED}\"]\n\
             [[policy]]\nname = \"topics\"\nmodule = {}\n[policy.config]\n[[policy.config.rules]]\npublish = [\"#\"]\n",
            toml_str(guests::THUMBPRINT),
            toml_str(guests::TOPIC_LIST),
        ),
    )?;
    let chain = Chain::from_config_file(crate::engine(), &path)?;

    let mut request = connect(&"c".repeat(b.max_client_id_bytes))
        .protocol_version(ProtocolVersion::V5)
        .username("u".repeat(b.max_username_bytes))
        .password(Password::new(vec![7; b.max_password_bytes]));
    let each = b.max_user_properties_bytes / b.max_user_properties;
    request.user_properties = (0..b.max_user_properties)
        .map(|i| UserProperty {
            name: format!("{i:04}"),
            value: "v".repeat(each - 4),
        })
        .collect();
    let per_cert = b.max_certificate_sans / b.max_certificates;
    let mut chain_of_certs: Vec<Certificate> = (0..b.max_certificates)
        .map(|i| certificate(0, per_cert, if i == 0 { LISTED } else { OTHER }))
        .collect();
    let used: usize = chain_of_certs.iter().map(lowered_bytes).sum();
    chain_of_certs[0].der = vec![0x30; b.max_certificate_bytes - used];
    request.certificates = chain_of_certs;
    assert_eq!(b.check_connect(&request), Ok(()), "exactly at every bound");

    let cpu = cpu_time::ThreadTime::try_now()?;
    let d = chain.connect_check(&request);
    let spent = cpu.try_elapsed()?;
    assert_eq!(d.decider(), Some("certs"), "{:?}", d.trace);
    assert!(d.is_allowed(), "{:?}", d.trace);
    eprintln!("largest CONNECT within the bounds: {spent:?} of CPU");
    let mqtt_policy_host::Outcome::Allow(grant) = d.outcome else {
        anyhow::bail!("allowed above")
    };
    // The largest topic request: a 65,535-byte topic and a full grant.
    let mut topic_request = topic("c", Access::Publish, &"t".repeat(b.max_topic_bytes), &[]);
    let value = (b.max_grant_bytes - 200 * 8) / 200;
    topic_request.attributes = (0..200)
        .map(|i| mqtt_policy_host::Attribute {
            key: format!("k{i:07}"),
            value: "v".repeat(value),
        })
        .chain(grant.attributes)
        .take(b.max_grant_entries)
        .collect();
    assert_eq!(b.check_topic(&topic_request), Ok(()));
    let d = chain.topic_check(&topic_request);
    assert_eq!(d.decider(), Some("topics"), "{:?}", d.trace);
    Ok(())
}

const LISTED: &str = "00112233445566778899AABBCCDDEEFF00112233";
const OTHER: &str = "FFEEDDCCBBAA99887766554433221100FFEEDDCC";

/// What the host counts towards `max_certificate_bytes` for one certificate.
fn lowered_bytes(c: &Certificate) -> usize {
    c.der.len()
        + c.sha1.len()
        + c.sha256.len()
        + c.subject.len()
        + c.issuer.len()
        + c.serial.len()
        + c.common_name.as_ref().map_or(0, String::len)
        + c.sans.iter().map(String::len).sum::<usize>()
}

#[test]
fn an_oversized_will_topic_refuses_the_connect() -> anyhow::Result<()> {
    let allow = crate::misbehave("allow", r#"{"mode":"allow"}"#, Default::default())?;
    let host = PolicyHost::from_chain(Chain::builder().policy("allow", allow).build()?);
    let refused = host
        .connect(connect("c").will("w".repeat(65_536), 1, false))
        .err()
        .map(|r| r.decision);
    let Some(d) = refused else {
        anyhow::bail!("accepted")
    };
    assert_eq!(d.decided_by, DecidedBy::Host);
    assert_eq!(
        d.deny().map(|d| d.message.as_str()),
        Some("request over host bound: will topic of 65536 bytes (max 65535)")
    );
    Ok(())
}

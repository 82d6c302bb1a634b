use mqtt_policy_host::ProtocolVersion::{V3_1_1, V5};
use mqtt_policy_host::{
    Access, Chain, ChainConfig, DecidedBy, DefaultVerdict, DenyReason, FailureMode, Outcome, Reply,
    StepResult, cert,
};
use mqtt_policy_tests::{
    KeyPair, TestCert, connect, connect_jwt, guests, key_pair, now, self_signed, sign_jwt,
    toml_str, topic, write_chain,
};
use serde_json::json;

const SECRET: &str = "hs-secret-for-tests";

struct Fixture {
    dir: tempfile::TempDir,
    device: TestCert,
    rotated: TestCert,
    rogue: TestCert,
    rsa: KeyPair,
    ec: KeyPair,
    chain: Chain,
}

fn sample_chain_toml(device: &TestCert, rotated: &TestCert, rsa: &KeyPair, ec: &KeyPair) -> String {
    format!(
        r#"
default = "deny"
[[policy]]
name = "certs"
module = {thumbprint}
[policy.config]
thumbprints = [{device_sha1}, {rotated_sha256}]
missing_certificate = "defer"
roles = ["device"]

[[policy]]
name = "jwt"
module = {jwt}
[policy.config]
issuer = ["https://idp.test/"]
audience = ["mqtt"]
roles_claim = "roles"
keys = [
  {{ alg = "HS256", secret = {secret} }},
  {{ alg = "RS256", kid = "rsa-1", public_key_pem = {rsa_pub} }},
  {{ alg = "ES256", kid = "ec-1", public_key_pem = {ec_pub} }},
]

[[policy]]
name = "topics"
module = {topic_list}
[policy.config]
[[policy.config.rules]]
publish = ["devices/{{attr:cert_cn}}/telemetry"]
subscribe = ["devices/{{attr:cert_cn}}/commands/+"]
"#,
        thumbprint = toml_str(guests::THUMBPRINT),
        jwt = toml_str(guests::JWT),
        topic_list = toml_str(guests::TOPIC_LIST),
        // Operators paste thumbprints in any case, with separators.
        device_sha1 = toml_str(&colon_lower(&device.sha1)),
        rotated_sha256 = toml_str(&rotated.sha256),
        secret = toml_str(SECRET),
        rsa_pub = toml_str(&rsa.public_pem),
        ec_pub = toml_str(&ec.public_pem),
    )
}

fn colon_lower(hex: &str) -> String {
    hex.as_bytes()
        .chunks(2)
        .map(|c| String::from_utf8_lossy(c).to_lowercase())
        .collect::<Vec<_>>()
        .join(":")
}

fn fixture() -> anyhow::Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let device = self_signed(dir.path(), "device-1")?;
    let rotated = self_signed(dir.path(), "device-1-new")?;
    let rogue = self_signed(dir.path(), "rogue")?;
    let rsa = key_pair(dir.path(), "rsa")?;
    let ec = key_pair(dir.path(), "ec")?;
    let path = write_chain(dir.path(), &sample_chain_toml(&device, &rotated, &rsa, &ec))?;
    let chain = Chain::from_config_file(crate::engine(), &path)?;
    Ok(Fixture {
        dir,
        device,
        rotated,
        rogue,
        rsa,
        ec,
        chain,
    })
}

fn with_cert(
    client_id: &str,
    c: &TestCert,
    version: u8,
) -> anyhow::Result<mqtt_policy_host::ConnectRequest> {
    let mut req = connect(client_id);
    req.protocol_version = mqtt_policy_tests::version(version);
    req.certificates = cert::parse_chain(c.pem.as_bytes())?;
    Ok(req)
}

fn claims(extra: serde_json::Value) -> serde_json::Value {
    let mut base = json!({
        "sub": "thermostat-1a",
        "iss": "https://idp.test/",
        "aud": "mqtt",
        "exp": now() + 600,
        "topics": ["temperature", "devices/thermostat-1a/#"],
        "roles": ["sensor"],
    });
    if let (Some(b), Some(e)) = (base.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if v.is_null() {
                b.remove(k);
            } else {
                b.insert(k.clone(), v.clone());
            }
        }
    }
    base
}

#[test]
fn listed_certificates_are_allowed_by_sha1_or_sha256() -> anyhow::Result<()> {
    let f = fixture()?;
    for (c, version) in [(&f.device, 5), (&f.rotated, 4)] {
        let d = f.chain.connect_check(&with_cert("device-1", c, version)?);
        assert_eq!(d.decided_by, DecidedBy::Policy("certs"));
        assert_eq!(d.connack_code(mqtt_policy_tests::version(version)), 0);
        let Outcome::Allow(grant) = &d.outcome else {
            anyhow::bail!("expected allow: {d:?}")
        };
        assert_eq!(grant.roles, vec!["device".to_string()]);
        assert!(
            grant
                .attributes
                .iter()
                .any(|a| a.key == "cert_sha256" && a.value == c.sha256)
        );
    }
    Ok(())
}

#[test]
fn unlisted_certificate_is_denied_with_the_protocols_code() -> anyhow::Result<()> {
    let f = fixture()?;
    for (version, code) in [(3, 5), (4, 5), (5, 0x87)] {
        let d = f
            .chain
            .connect_check(&with_cert("device-1", &f.rogue, version)?);
        assert_eq!(d.deny().map(|d| d.reason), Some(DenyReason::NotAuthorized));
        assert_eq!(d.decider(), Some("certs"));
        assert_eq!(
            d.connack_code(mqtt_policy_tests::version(version)),
            code,
            "MQTT level {version}"
        );
    }
    Ok(())
}

#[test]
fn no_credentials_falls_to_the_default_deny() -> anyhow::Result<()> {
    let f = fixture()?;
    let d = f.chain.connect_check(&connect("anonymous"));
    assert_eq!(d.decided_by, DecidedBy::Default);
    assert_eq!(d.connack_code(mqtt_policy_tests::version(4)), 5);
    assert_eq!(
        d.trace.iter().map(|s| s.result.clone()).collect::<Vec<_>>(),
        vec![StepResult::Defer; 3],
        "every policy deferred"
    );
    Ok(())
}

#[test]
fn jwts_signed_with_each_algorithm_are_accepted() -> anyhow::Result<()> {
    let f = fixture()?;
    let tokens = [
        sign_jwt("HS256", SECRET, None, &claims(json!({})))?,
        sign_jwt(
            "RS256",
            &f.rsa.private_pem,
            Some("rsa-1"),
            &claims(json!({})),
        )?,
        sign_jwt("ES256", &f.ec.private_pem, Some("ec-1"), &claims(json!({})))?,
    ];
    for token in &tokens {
        let d = f
            .chain
            .connect_check(&connect_jwt("Thermostat 1a", token, 5));
        assert_eq!(d.decider(), Some("jwt"), "{:?}", d.outcome);
        let Outcome::Allow(grant) = &d.outcome else {
            anyhow::bail!("expected allow: {d:?}")
        };
        assert_eq!(grant.roles, vec!["sensor".to_string()]);
        assert!(
            grant
                .attributes
                .iter()
                .any(|a| a.key == "sub" && a.value == "thermostat-1a")
        );
    }
    Ok(())
}

#[test]
fn bad_jwts_are_bad_username_or_password() -> anyhow::Result<()> {
    let f = fixture()?;
    let other_rsa = key_pair(f.dir.path(), "rsa")?;
    let past = now() - 3600;
    let future = now() + 3600;
    let b64 = |s: &str| {
        use std::fmt::Write as _;
        // base64url without padding, by hand: the tests sign nothing with it.
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in s.as_bytes().chunks(3) {
            let n = chunk.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b))
                << (8 * (3 - chunk.len()));
            for i in 0..=chunk.len() {
                let _ = write!(out, "{}", T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    };
    let none = format!(
        "{}.{}.",
        b64(r#"{"alg":"none","typ":"JWT"}"#),
        b64(&claims(json!({})).to_string())
    );
    let cases = [
        (
            "expired",
            sign_jwt("HS256", SECRET, None, &claims(json!({"exp": past})))?,
        ),
        (
            "not yet valid",
            sign_jwt("HS256", SECRET, None, &claims(json!({"nbf": future})))?,
        ),
        (
            "wrong issuer",
            sign_jwt(
                "HS256",
                SECRET,
                None,
                &claims(json!({"iss": "https://evil/"})),
            )?,
        ),
        (
            "wrong audience",
            sign_jwt("HS256", SECRET, None, &claims(json!({"aud": "web"})))?,
        ),
        (
            "no exp",
            sign_jwt("HS256", SECRET, None, &claims(json!({"exp": null})))?,
        ),
        (
            "wrong secret",
            sign_jwt("HS256", "not-the-secret", None, &claims(json!({})))?,
        ),
        (
            "wrong rsa key",
            sign_jwt(
                "RS256",
                &other_rsa.private_pem,
                Some("rsa-1"),
                &claims(json!({})),
            )?,
        ),
        (
            "unknown kid",
            sign_jwt(
                "RS256",
                &f.rsa.private_pem,
                Some("nowhere"),
                &claims(json!({})),
            )?,
        ),
        // Algorithm confusion: HS256 keyed with the RSA public key's PEM text.
        (
            "hs256 with rsa public key",
            sign_jwt(
                "HS256",
                &f.rsa.public_pem,
                Some("rsa-1"),
                &claims(json!({})),
            )?,
        ),
        ("alg none", none),
        ("garbage", "not.a.token".to_string()),
        ("oversized", "a".repeat(20_000)),
    ];
    for (what, token) in &cases {
        for (version, code) in [(4, 4), (5, 0x86)] {
            let d = f
                .chain
                .connect_check(&connect_jwt("Thermostat 1a", token, version));
            assert_eq!(
                d.deny().map(|d| d.reason),
                Some(DenyReason::BadUsernameOrPassword),
                "{what}: {d:?}"
            );
            assert_eq!(d.decider(), Some("jwt"), "{what}");
            assert_eq!(
                d.connack_code(mqtt_policy_tests::version(version)),
                code,
                "{what}"
            );
        }
    }
    // A tampered payload with the original signature.
    let good = sign_jwt("HS256", SECRET, None, &claims(json!({})))?;
    let parts: Vec<&str> = good.split('.').collect();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        b64(&claims(json!({"topics": ["#"]})).to_string()),
        parts[2]
    );
    let d = f
        .chain
        .connect_check(&connect_jwt("Thermostat 1a", &tampered, 4));
    assert_eq!(
        d.deny().map(|d| d.reason),
        Some(DenyReason::BadUsernameOrPassword)
    );
    Ok(())
}

/// The Auth0 device-profile flow: jwt grants the token's topics at connect,
/// topic-list authorizes every publish and subscribe against them.
#[test]
fn jwt_topics_authorize_the_session() -> anyhow::Result<()> {
    let f = fixture()?;
    let token = sign_jwt("ES256", &f.ec.private_pem, Some("ec-1"), &claims(json!({})))?;
    let d = f
        .chain
        .connect_check(&connect_jwt("Thermostat 1a", &token, 5));
    let Outcome::Allow(grant) = d.outcome else {
        anyhow::bail!("expected allow")
    };
    let check = |access, t: &str| {
        let mut req = topic("Thermostat 1a", access, t, &grant.attributes);
        req.roles = grant.roles.clone();
        f.chain.topic_check(&req)
    };
    assert!(check(Access::Publish, "temperature").is_allowed());
    assert!(check(Access::Subscribe, "devices/thermostat-1a/+").is_allowed());
    assert!(check(Access::Receive, "devices/thermostat-1a/x").is_allowed());
    let denied = check(Access::Publish, "humidity");
    assert_eq!(denied.decider(), Some("topics"));
    assert_eq!(denied.puback(V5, 1), Reply::Code(0x87));
    assert_eq!(
        denied.puback(V3_1_1, 1),
        Reply::Ack,
        "3.1.1 has no PUBACK refusal code"
    );
    let sub = check(Access::Subscribe, "devices/#");
    assert_eq!(sub.suback(V3_1_1, 1), Reply::Code(0x80));
    assert_eq!(sub.suback(V5, 1), Reply::Code(0x87));
    assert_eq!(
        check(Access::Subscribe, "devices/thermostat-1a/#").suback(V5, 1),
        Reply::Code(1)
    );
    Ok(())
}

#[test]
fn certificate_sessions_get_topics_from_their_cn() -> anyhow::Result<()> {
    let f = fixture()?;
    let d = f
        .chain
        .connect_check(&with_cert("any-client-id", &f.device, 5)?);
    let Outcome::Allow(grant) = d.outcome else {
        anyhow::bail!("expected allow")
    };
    let check = |access, t: &str| {
        f.chain
            .topic_check(&topic("any-client-id", access, t, &grant.attributes))
    };
    assert!(check(Access::Publish, "devices/device-1/telemetry").is_allowed());
    assert!(!check(Access::Publish, "devices/device-2/telemetry").is_allowed());
    assert!(check(Access::Subscribe, "devices/device-1/commands/+").is_allowed());
    assert!(!check(Access::Subscribe, "devices/device-1/#").is_allowed());
    Ok(())
}

#[test]
fn first_allow_or_deny_wins_and_defaults_apply() -> anyhow::Result<()> {
    let deny = crate::misbehave("deny", r#"{"mode":"deny"}"#, Default::default())?;
    let allow = crate::misbehave("allow", r#"{"mode":"allow"}"#, Default::default())?;
    let defer = crate::misbehave("defer", r#"{"mode":"defer"}"#, Default::default())?;
    let chain = Chain::builder()
        .policy("defer", defer.clone())
        .policy("deny", deny.clone())
        .policy("allow", allow.clone())
        .build()?;
    let d = chain.connect_check(&connect("c"));
    assert_eq!(d.decider(), Some("deny"));
    assert_eq!(d.trace.len(), 2, "the chain stops at the first verdict");
    let chain = Chain::builder()
        .policy("defer", defer.clone())
        .policy("allow", allow)
        .build()?;
    assert_eq!(chain.connect_check(&connect("c")).decider(), Some("allow"));
    let all_defer = Chain::builder().policy("defer", defer.clone()).build()?;
    assert!(
        !all_defer.connect_check(&connect("c")).is_allowed(),
        "deny unless configured"
    );
    let open = Chain::builder()
        .policy("defer", defer)
        .default_verdict(DefaultVerdict::Allow)
        .build()?;
    let d = open.connect_check(&connect("c"));
    assert!(d.is_allowed());
    assert_eq!(d.decided_by, DecidedBy::Default);
    assert!(
        Chain::builder()
            .policy("a", deny.clone())
            .policy("a", deny)
            .build()
            .is_err(),
        "duplicate names"
    );
    Ok(())
}

#[test]
fn failure_modes_decide_what_a_failed_policy_means() -> anyhow::Result<()> {
    let trap = crate::misbehave("trap", r#"{"mode":"trap"}"#, Default::default())?;
    let allow = crate::misbehave("allow", r#"{"mode":"allow"}"#, Default::default())?;
    for mode in crate::FAILURE_MODES {
        let chain = Chain::builder()
            .policy_with("trap", trap.clone(), mode)
            .policy_with(
                "deny-all",
                crate::misbehave("deny", r#"{"mode":"deny"}"#, Default::default())?,
                FailureMode::Deny,
            )
            .build()?;
        let d = chain.connect_check(&connect("c"));
        assert!(
            matches!(d.trace[0].result, StepResult::Failed(_)),
            "{mode:?}: {d:?}"
        );
        match mode {
            FailureMode::Deny => {
                assert_eq!(d.decider(), Some("trap"));
                assert_eq!(
                    d.deny().map(|d| d.reason),
                    Some(DenyReason::ServerUnavailable)
                );
                assert_eq!(d.connack_code(mqtt_policy_tests::version(5)), 0x88);
            }
            FailureMode::Allow => assert!(d.is_allowed() && d.decider() == Some("trap")),
            FailureMode::Skip => assert_eq!(d.decider(), Some("deny-all")),
        }
    }
    // Topic checks fail closed the same way.
    let chain = Chain::builder()
        .policy("trap", trap)
        .policy("allow", allow)
        .build()?;
    let d = chain.topic_check(&topic("c", Access::Subscribe, "a/b", &[]));
    assert!(!d.is_allowed());
    assert_eq!(d.suback(V3_1_1, 0), Reply::Code(0x80));
    Ok(())
}

/// `on_error = "allow"` is the failed policy's allow with an empty grant:
/// the first allow wins, so no later policy is asked (not even a ban list)
/// and the session gets no attributes or roles. `skip` is the mode that
/// asks the later policies.
#[test]
fn on_error_allow_is_the_failed_policys_allow_and_ends_the_chain() -> anyhow::Result<()> {
    let trap = crate::misbehave("trap", r#"{"mode":"trap"}"#, Default::default())?;
    let ban = crate::misbehave("ban", r#"{"mode":"deny"}"#, Default::default())?;
    let chain = Chain::builder()
        .policy_with("advisory", trap.clone(), FailureMode::Allow)
        .policy("ban", ban.clone())
        .build()?;
    let d = chain.connect_check(&connect("c"));
    assert_eq!(
        d.outcome,
        Outcome::Allow(mqtt_policy_host::Grant::default())
    );
    assert_eq!(d.decided_by, DecidedBy::Policy("advisory"));
    assert_eq!(
        d.trace.len(),
        1,
        "the ban list was not asked: {:?}",
        d.trace
    );
    let d = chain.topic_check(&topic("c", Access::Publish, "a", &[]));
    assert!(d.is_allowed());
    assert_eq!(d.trace.len(), 1);
    assert_eq!(chain.stats()[1].1.checks(), 0);

    let chain = Chain::builder()
        .policy_with("advisory", trap, FailureMode::Skip)
        .policy("ban", ban)
        .build()?;
    let d = chain.connect_check(&connect("c"));
    assert_eq!(d.decider(), Some("ban"));
    assert!(!d.is_allowed());
    Ok(())
}

#[test]
fn stats_count_each_policys_verdicts() -> anyhow::Result<()> {
    let f = fixture()?;
    f.chain.connect_check(&with_cert("device-1", &f.device, 4)?);
    f.chain.connect_check(&with_cert("device-1", &f.rogue, 4)?);
    f.chain.connect_check(&connect("anon"));
    let stats = f.chain.stats();
    let certs = stats
        .iter()
        .find(|(n, _)| n == "certs")
        .map(|(_, s)| *s)
        .unwrap_or_default();
    assert_eq!(
        (certs.allow, certs.deny, certs.defer, certs.error),
        (1, 1, 1, 0)
    );
    assert_eq!(certs.checks(), 3);
    assert!(certs.time_spent > std::time::Duration::ZERO);
    let jwt = stats
        .iter()
        .find(|(n, _)| n == "jwt")
        .map(|(_, s)| *s)
        .unwrap_or_default();
    assert_eq!(jwt.defer, 1);
    Ok(())
}

#[test]
fn async_face_gives_the_same_decisions() -> anyhow::Result<()> {
    let f = fixture()?;
    let req = with_cert("device-1", &f.device, 5)?;
    let fut = f.chain.connect_check_async(&req);
    let mut fut = std::pin::pin!(fut);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    let std::task::Poll::Ready(d) = fut.as_mut().poll(&mut cx) else {
        anyhow::bail!("the async face completes on first poll")
    };
    assert_eq!(d, f.chain.connect_check(&req));
    Ok(())
}

#[test]
fn chain_files_resolve_modules_relative_to_themselves() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    std::fs::copy(guests::MISBEHAVE, dir.path().join("m.wasm"))?;
    let path = write_chain(
        dir.path(),
        "[[policy]]\nname = \"m\"\nmodule = \"m.wasm\"\non_error = \"skip\"\ndeadline_ms = 3\n[policy.config]\nmode = \"allow\"\n",
    )?;
    let config = ChainConfig::from_file(&path)?;
    assert_eq!(config.policies[0].on_error, FailureMode::Skip);
    let chain = Chain::from_config(crate::engine(), &config, &path)?;
    assert!(chain.connect_check(&connect("c")).is_allowed());
    assert_eq!(chain.policy_names(), vec!["m"]);
    Ok(())
}

/// `[policy.ask_connect]`: a policy outside its scope is not asked (no
/// guest call, no stats), and the chain reaches the same decisions.
#[test]
fn policies_outside_their_connect_scope_are_not_asked() -> anyhow::Result<()> {
    let f = fixture()?;
    let scoped = sample_chain_toml(&f.device, &f.rotated, &f.rsa, &f.ec)
        .replacen(
            "roles = [\"device\"]\n",
            "roles = [\"device\"]\n[policy.ask_connect]\ncertificate = true\n",
            1,
        )
        .replacen(
            "\n[[policy]]\nname = \"topics\"",
            "[policy.ask_connect]\nusernames = [\"JWT\"]\n\n[[policy]]\nname = \"topics\"",
            1,
        );
    anyhow::ensure!(
        scoped.matches("[policy.ask_connect]").count() == 2,
        "{scoped}"
    );
    let path = write_chain(f.dir.path(), &scoped)?;
    let chain = Chain::from_config_file(crate::engine(), &path)?;
    let results = |d: &mqtt_policy_host::ConnectDecision| {
        d.trace
            .iter()
            .map(|s| (s.policy, s.result.clone()))
            .collect::<Vec<_>>()
    };

    let anonymous = chain.connect_check(&connect("anonymous"));
    assert_eq!(anonymous.decided_by, DecidedBy::Default);
    assert_eq!(
        results(&anonymous),
        vec![
            ("certs", StepResult::NotAsked),
            ("jwt", StepResult::NotAsked),
            ("topics", StepResult::Defer),
        ]
    );

    let token = sign_jwt("HS256", SECRET, None, &claims(json!({})))?;
    let jwt = chain.connect_check(&connect_jwt("Thermostat 1a", &token, 5));
    assert_eq!(jwt.decider(), Some("jwt"), "{:?}", jwt.outcome);
    assert_eq!(
        results(&jwt),
        vec![("certs", StepResult::NotAsked), ("jwt", StepResult::Allow)]
    );

    let device = chain.connect_check(&with_cert("device-1", &f.device, 5)?);
    assert_eq!(device.decider(), Some("certs"));
    let rogue = chain.connect_check(&with_cert("device-1", &f.rogue, 4)?);
    assert_eq!(
        rogue.decider(),
        Some("certs"),
        "a listed policy still denies"
    );

    // Only the two certificate connects reached the certs policy, and only
    // the JWT connect reached the jwt policy.
    let stats = chain.stats();
    let checks = |name: &str| {
        stats
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, s)| s.checks())
    };
    assert_eq!(checks("certs"), Some(2));
    assert_eq!(checks("jwt"), Some(1));

    // The same requests through the unscoped chain: the same decisions.
    for (scoped, req) in [
        (&anonymous, connect("anonymous")),
        (&jwt, connect_jwt("Thermostat 1a", &token, 5)),
        (&device, with_cert("device-1", &f.device, 5)?),
        (&rogue, with_cert("device-1", &f.rogue, 4)?),
    ] {
        let unscoped = f.chain.connect_check(&req);
        assert_eq!(unscoped.outcome, scoped.outcome);
        assert_eq!(unscoped.decided_by, scoped.decided_by);
    }
    Ok(())
}

/// A policy outside a connect's scope is not asked even when it is broken:
/// its `on_error` and circuit apply only to the connects it is asked about.
#[test]
fn a_broken_policy_outside_the_scope_does_not_refuse_the_connect() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let chain = |scope: &str| -> anyhow::Result<Chain> {
        let path = write_chain(
            dir.path(),
            &format!(
                r#"
default = "allow"
[[policy]]
name = "broken"
module = {misbehave}
[policy.config]
mode = "trap"
{scope}
"#,
                misbehave = toml_str(guests::MISBEHAVE),
            ),
        )?;
        Ok(Chain::from_config_file(crate::engine(), &path)?)
    };
    let scoped = chain("[policy.ask_connect]\nusernames = [\"JWT\"]")?;
    let unscoped = chain("")?;
    let plain = connect("c").username("someone");
    // Unscoped, the trap is a deny (fail closed).
    let d = unscoped.connect_check(&plain);
    assert_eq!(
        d.deny().map(|d| d.reason),
        Some(DenyReason::ServerUnavailable)
    );
    // Scoped, a connect outside the scope never reaches it; one inside does.
    let d = scoped.connect_check(&plain);
    assert!(d.is_allowed(), "{d:?}");
    assert_eq!(d.trace[0].result, StepResult::NotAsked);
    let d = scoped.connect_check(&connect("c").username("JWT"));
    assert_eq!(
        d.deny().map(|d| d.reason),
        Some(DenyReason::ServerUnavailable)
    );
    Ok(())
}

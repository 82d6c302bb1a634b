//! The sessions' verdict cache through real policy components: a reload
//! revokes on the very next check, an `until` verdict is asked again after
//! its instant, `none` verdicts and `0.1.0` policies are never cached, and
//! a client publishing to a million distinct topics stays within the bound.

use mqtt_policy_host::{ConnectRequest, PolicyHost, ProtocolVersion, Session, VerdictLifetime};
use mqtt_policy_tests::{guests, now, sign_jwt, toml_str, write_chain};
use serde_json::json;

const SECRET: &str = "cache-test-secret";

/// jwt (topics from the token) + topic-list (a rule for `fixed/…`, plus the
/// session topics), with `extra` before the policies.
fn chain(fixed_publish: &str, extra: &str) -> String {
    format!(
        r#"
{extra}
[[policy]]
name = "jwt"
module = {jwt}
[policy.config]
keys = [{{ alg = "HS256", secret = {secret} }}]

[[policy]]
name = "topics"
module = {topics}
[policy.config]
[[policy.config.rules]]
client_id = "dev-*"
publish = [{fixed}]
"#,
        jwt = toml_str(guests::JWT),
        topics = toml_str(guests::TOPIC_LIST),
        secret = toml_str(SECRET),
        fixed = toml_str(fixed_publish),
    )
}

fn connect(host: &PolicyHost, client: &str, claims: &serde_json::Value) -> anyhow::Result<Session> {
    let token = sign_jwt("HS256", SECRET, None, claims)?;
    let request = ConnectRequest::new(client)
        .username("JWT")
        .password(token.as_str())
        .protocol_version(ProtocolVersion::V5);
    host.connect(request)
        .map_err(|r| anyhow::anyhow!("refused: {:?}", r.decision))
}

#[test]
fn a_reload_that_revokes_a_right_takes_effect_on_the_very_next_publish() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write_chain(dir.path(), &chain("fixed/#", ""))?;
    let host = PolicyHost::builder(&path).build()?;
    let session = connect(&host, "dev-1", &json!({"exp": now() + 3600}))?;

    let first = session.publish("fixed/a", 1, false);
    assert!(first.allowed() && !first.cached);
    let second = session.publish("fixed/a", 1, false);
    assert!(second.allowed() && second.cached, "{second:?}");
    // The cached answer is the chain's answer: same decision, same reply.
    assert_eq!(
        (second.decision, second.reply),
        (first.decision, first.reply)
    );
    assert!(host.verdict_cache_stats().hits >= 1);

    // Revoke `fixed/#` and reload: the next publish asks the new chain.
    std::fs::write(&path, chain("other/#", ""))?;
    host.reload()?;
    let after = session.publish("fixed/a", 1, false);
    assert!(!after.allowed(), "stale allow after a reload: {after:?}");
    assert!(!after.cached);
    assert_eq!(after.decision.generation, host.generation());
    // And the new right is cached under the new generation.
    assert!(session.publish("other/b", 0, false).allowed());
    assert!(session.publish("other/b", 0, false).cached);
    Ok(())
}

#[test]
fn an_until_verdict_is_asked_again_after_its_instant() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write_chain(dir.path(), &chain("fixed/#", ""))?;
    let host = PolicyHost::builder(&path).build()?;
    // Topics granted by a token that expires in two seconds (the leeway
    // applies to the connect, not to the topics afterwards).
    let exp = now() + 2;
    let session = connect(
        &host,
        "dev-2",
        &json!({"exp": exp, "topics": ["granted/#"]}),
    )?;
    assert_eq!(
        session.grant().attribute("exp"),
        Some(exp.to_string().as_str())
    );

    let first = session.publish("granted/x", 0, false);
    assert!(first.allowed() && !first.cached, "{first:?}");
    assert!(session.publish("granted/x", 0, false).cached);
    // The rule's allow holds for the session, unaffected by the token.
    assert!(session.publish("fixed/x", 0, false).allowed());

    let wait = u64::try_from(exp + 1 - now()).unwrap_or(0);
    std::thread::sleep(std::time::Duration::from_millis(wait * 1000 + 100));
    let after = session.publish("granted/x", 0, false);
    assert!(!after.cached, "kept past its instant: {after:?}");
    assert!(!after.allowed(), "expired topics still grant: {after:?}");
    let fixed = session.publish("fixed/x", 0, false);
    assert!(fixed.allowed() && fixed.cached);
    Ok(())
}

#[test]
fn policies_built_for_0_1_0_load_and_are_never_cached() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let toml = format!(
        r#"
[[policy]]
name = "legacy"
module = {legacy}
"#,
        legacy = toml_str(guests::LEGACY_V0_1),
    );
    let path = write_chain(dir.path(), &toml)?;
    let host = PolicyHost::builder(&path).build()?;

    // The 0.1.0 policy loads beside 0.2.0 ones and decides as before.
    let old = host
        .connect(ConnectRequest::new("old-1"))
        .map_err(|r| anyhow::anyhow!("refused: {:?}", r.decision))?;
    for _ in 0..3 {
        let a = old.publish("old/t", 0, false);
        assert!(a.allowed() && !a.cached, "{a:?}");
        let d = old.publish("new/t", 0, false);
        assert!(!d.allowed() && !d.cached, "{d:?}");
    }
    let stats = host.verdict_cache_stats();
    assert_eq!((stats.hits, stats.entries), (0, 0), "{stats:?}");
    Ok(())
}

#[test]
fn an_explicit_none_anywhere_in_the_walk_keeps_the_decision_out() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // topic-list defers (session) on what it does not grant; misbehave then
    // allows with `none`: the decision rests on a `none`, so it is not kept.
    let toml = format!(
        r#"
[[policy]]
name = "topics"
module = {topics}
[policy.config]
otherwise = "defer"
[[policy.config.rules]]
publish = ["mine/#"]

[[policy]]
name = "explicit"
module = {misbehave}
[policy.config]
mode = "allow"
"#,
        topics = toml_str(guests::TOPIC_LIST),
        misbehave = toml_str(guests::MISBEHAVE),
    );
    let path = write_chain(dir.path(), &toml)?;
    let host = PolicyHost::builder(&path).build()?;
    let live = host.chain();
    let request =
        mqtt_policy_tests::topic("c", mqtt_policy_host::Access::Publish, "elsewhere", &[]);
    assert_eq!(live.topic_check_lasting(&request).1, VerdictLifetime::None);
    let mine = mqtt_policy_tests::topic("c", mqtt_policy_host::Access::Publish, "mine/x", &[]);
    assert_eq!(live.topic_check_lasting(&mine).1, VerdictLifetime::Session);

    let session = host
        .connect(ConnectRequest::new("c"))
        .map_err(|r| anyhow::anyhow!("refused: {:?}", r.decision))?;
    for _ in 0..3 {
        assert!(!session.publish("elsewhere", 0, false).cached);
    }
    session.publish("mine/x", 0, false);
    assert!(session.publish("mine/x", 0, false).cached);
    Ok(())
}

#[test]
fn a_million_distinct_topics_stay_within_the_bound() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let extra = "[verdict_cache]\nmax_session_entries = 1000\nmax_session_bytes = 300000\n";
    let path = write_chain(dir.path(), &chain("fixed/#", extra))?;
    let host = PolicyHost::builder(&path).build()?;
    let session = connect(&host, "dev-3", &json!({"exp": now() + 3600}))?;
    let mut peak = 0;
    for i in 0..1_000_000u32 {
        let answer = session.publish(&format!("fixed/{i}"), 0, false);
        assert!(answer.allowed());
        if i % 10_000 == 0 {
            let stats = host.verdict_cache_stats();
            assert!(stats.entries <= 1000 && stats.bytes <= 300_000, "{stats:?}");
            peak = peak.max(stats.entries);
        }
    }
    let stats = host.verdict_cache_stats();
    assert!(peak > 0 && stats.entries <= 1000, "{stats:?}");
    assert!(stats.evictions >= 999_000, "{stats:?}");
    drop(session);
    let stats = host.verdict_cache_stats();
    assert_eq!((stats.entries, stats.bytes), (0, 0), "{stats:?}");
    Ok(())
}

#[test]
fn the_cache_can_be_turned_off() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let path = write_chain(
        dir.path(),
        &chain("fixed/#", "[verdict_cache]\nenabled = false\n"),
    )?;
    let host = PolicyHost::builder(&path).build()?;
    let session = connect(&host, "dev-4", &json!({"exp": now() + 3600}))?;
    for _ in 0..3 {
        let a = session.publish("fixed/a", 0, false);
        assert!(a.allowed() && !a.cached);
    }
    assert_eq!(host.verdict_cache_stats().hits, 0);
    Ok(())
}

/// Every public-key algorithm of the `verify-signature` import, through the
/// jwt component: PEM keys and a JWKS (RSA as modulus/exponent), a good
/// token accepted, the same token with another key's signature refused.
#[test]
fn every_signature_algorithm_verifies_through_the_host() -> anyhow::Result<()> {
    use mqtt_policy_tests::key_pair;
    let dir = tempfile::tempdir()?;
    let rsa = key_pair(dir.path(), "rsa")?;
    let ec = key_pair(dir.path(), "ec")?;
    let ec384 = key_pair(dir.path(), "ec384")?;
    let ed = key_pair(dir.path(), "ed25519")?;
    let other = dir.path().join("other");
    std::fs::create_dir_all(&other)?;
    let other_ec = key_pair(&other, "ec")?;
    let cases: &[(&str, &str, &str)] = &[
        ("RS256", "rsa", &rsa.private_pem),
        ("RS384", "rsa", &rsa.private_pem),
        ("RS512", "rsa", &rsa.private_pem),
        ("PS256", "rsa", &rsa.private_pem),
        ("PS384", "rsa", &rsa.private_pem),
        ("PS512", "rsa", &rsa.private_pem),
        ("ES256", "ec", &ec.private_pem),
        ("ES384", "ec384", &ec384.private_pem),
        ("EdDSA", "ed", &ed.private_pem),
    ];
    let keys: Vec<String> = cases
        .iter()
        .map(|(alg, kid, _)| {
            let public = match *kid {
                "rsa" => &rsa.public_pem,
                "ec" => &ec.public_pem,
                "ec384" => &ec384.public_pem,
                _ => &ed.public_pem,
            };
            format!(
                "{{ alg = {}, kid = {}, public_key_pem = {} }}",
                toml_str(alg),
                toml_str(&format!("{kid}-{alg}")),
                toml_str(public)
            )
        })
        .collect();
    let toml = format!(
        "[[policy]]\nname = \"jwt\"\nmodule = {}\n[policy.config]\nkeys = [{}]\n",
        toml_str(guests::JWT),
        keys.join(", ")
    );
    let path = write_chain(dir.path(), &toml)?;
    let host = PolicyHost::builder(&path).build()?;
    let claims = json!({"exp": now() + 600});
    for (alg, kid, private) in cases {
        let kid = format!("{kid}-{alg}");
        let token = sign_jwt(alg, private, Some(&kid), &claims)?;
        let request = ConnectRequest::new("c")
            .username("JWT")
            .password(token.as_str());
        let decision = host.connect_check(&request);
        assert!(decision.is_allowed(), "{alg}: {decision:?}");
        // The same claims signed by a key the policy does not know.
        if *alg == "ES256" {
            let forged = sign_jwt(alg, &other_ec.private_pem, Some(&kid), &claims)?;
            let request = ConnectRequest::new("c")
                .username("JWT")
                .password(forged.as_str());
            assert!(!host.connect_check(&request).is_allowed(), "{alg} forged");
        }
        // A changed signature character never verifies.
        let mut bytes = token.into_bytes();
        let at = bytes.len() - 10;
        bytes[at] = if bytes[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes)?;
        let request = ConnectRequest::new("c")
            .username("JWT")
            .password(tampered.as_str());
        assert!(!host.connect_check(&request).is_allowed(), "{alg} tampered");
    }
    Ok(())
}

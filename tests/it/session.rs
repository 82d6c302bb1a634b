//! Whole connections through the session API, as an adapter drives them:
//! CONNECT with an openssl-made chain as DER, SUBSCRIBE with several filters,
//! QoS 0/1/2 publishes, retained and will deliveries, UNSUBSCRIBE,
//! disconnect, for MQTT 3.1, 3.1.1 and 5. Every code is checked against the
//! specs' tables: MQTT 3.1.1 §3.2.2.3 (CONNACK), §3.9.3 (SUBACK), §3.3.5
//! (refused PUBLISH: positive acknowledgement, message dropped), §3.11
//! (UNSUBACK has no payload); MQTT 5.0 Tables 3-1 (CONNACK), 3-4 (PUBACK),
//! 3-5 (PUBREC), 3-8 (SUBACK) and 3-9 (UNSUBACK); MQTT 3.1 SUBACK carries
//! only granted QoS levels.

use std::sync::Arc;

use mqtt_policy_host::ProtocolVersion::{self, V3_1, V3_1_1, V5};
use mqtt_policy_host::{
    Chain, ConnectRequest, ConnectVerdict, DecidedBy, Deny, DenyReason, Grant, Policy, PolicyError,
    PolicyHost, Reply, TopicRequest, TopicVerdict,
};
use mqtt_policy_tests::{ca_signed, guests, now, sign_jwt, toml_str, write_chain};
use serde_json::json;

const SECRET: &str = "session-test-secret";

fn chain_toml(leaf_sha256: &str, telemetry: &str) -> String {
    format!(
        r#"
[[policy]]
name = "certs"
module = {thumbprint}
[policy.config]
thumbprints = [{leaf}]
missing_certificate = "defer"

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
publish = ["devices/{{attr:cert_cn}}/{telemetry}", "devices/{{attr:cert_cn}}/will"]
subscribe = ["devices/{{attr:cert_cn}}/commands/+"]
receive = ["devices/{{attr:cert_cn}}/commands/+", "alerts/#"]
"#,
        thumbprint = toml_str(guests::THUMBPRINT),
        jwt = toml_str(guests::JWT),
        topics = toml_str(guests::TOPIC_LIST),
        leaf = toml_str(leaf_sha256),
        secret = toml_str(SECRET),
    )
}

struct Fixture {
    dir: tempfile::TempDir,
    chain_path: std::path::PathBuf,
    host: PolicyHost,
    /// Leaf then CA, DER, as a TLS stack hands them over.
    tls_chain: Vec<Vec<u8>>,
}

fn fixture() -> anyhow::Result<Fixture> {
    let dir = tempfile::tempdir()?;
    let (leaf, ca) = ca_signed(dir.path(), "sensor-7")?;
    let chain_path = write_chain(dir.path(), &chain_toml(&leaf.sha256, "telemetry"))?;
    let host = PolicyHost::builder(&chain_path)
        .engine(crate::engine().clone())
        .build()?;
    Ok(Fixture {
        dir,
        chain_path,
        host,
        tls_chain: vec![leaf.der, ca.der],
    })
}

fn device(f: &Fixture, version: ProtocolVersion) -> ConnectRequest {
    ConnectRequest::new("sensor-7")
        .protocol_version(version)
        .peer_address("127.0.0.1:40001")
        .listener("mqtts")
        .certificate_chain_der(&f.tls_chain)
}

/// The SUBACK, PUBACK/PUBREC and UNSUBACK answers of one version.
struct Expected {
    version: ProtocolVersion,
    refused_filter: Reply,
    allowed_qos12: Reply,
    refused_qos12: Reply,
    unsubscribed: Reply,
}

const TABLE: [Expected; 3] = [
    Expected {
        version: V3_1,
        refused_filter: Reply::Disconnect,
        allowed_qos12: Reply::Ack,
        refused_qos12: Reply::Ack,
        unsubscribed: Reply::Ack,
    },
    Expected {
        version: V3_1_1,
        refused_filter: Reply::Code(0x80),
        allowed_qos12: Reply::Ack,
        refused_qos12: Reply::Ack,
        unsubscribed: Reply::Ack,
    },
    Expected {
        version: V5,
        refused_filter: Reply::Code(0x87),
        allowed_qos12: Reply::Code(0x00),
        refused_qos12: Reply::Code(0x87),
        unsubscribed: Reply::Code(0x00),
    },
];

#[test]
fn a_certificate_client_goes_through_a_whole_connection_on_every_version() -> anyhow::Result<()> {
    let f = fixture()?;
    for e in TABLE {
        let v = e.version;
        let session = f
            .host
            .connect(device(&f, v))
            .map_err(|r| anyhow::anyhow!("{v}: refused: {:?}", r.decision))?;
        assert_eq!(session.connack(), 0, "{v}");
        assert_eq!(session.connect_decision().decider(), Some("certs"), "{v}");
        assert_eq!(session.grant().attribute("cert_cn"), Some("sensor-7"));
        assert_eq!(session.protocol_version(), v);

        // One SUBSCRIBE, three filters, the middle one too wide.
        let sub = session.subscribe([
            ("devices/sensor-7/commands/+", 1),
            ("devices/#", 0),
            ("devices/sensor-7/commands/reboot", 2),
        ]);
        let replies: Vec<Reply> = sub.iter().map(|a| a.reply).collect();
        assert_eq!(
            replies,
            [Reply::Code(1), e.refused_filter, Reply::Code(2)],
            "{v} SUBACK"
        );
        assert_eq!(sub[1].decision.decider(), Some("topics"));

        // Publishes at each QoS, allowed and refused.
        for qos in 0..=2 {
            let ok = session.publish("devices/sensor-7/telemetry", qos, false);
            let no = session.publish("devices/sensor-8/telemetry", qos, false);
            assert!(ok.allowed() && !no.allowed(), "{v} QoS {qos}");
            let (want_ok, want_no) = match qos {
                0 => (Reply::Nothing, Reply::Nothing),
                _ => (e.allowed_qos12, e.refused_qos12),
            };
            assert_eq!((ok.reply, no.reply), (want_ok, want_no), "{v} QoS {qos}");
        }

        // Deliveries: a retained message sent on SUBSCRIBE and another
        // client's will, each allowed or not by the receive rules.
        let retained_ok = session.receive("devices/sensor-7/commands/reboot", 1, true);
        let retained_no = session.receive("devices/sensor-8/commands/reboot", 1, true);
        let will_ok = session.receive("alerts/sensor-3", 0, false);
        let will_no = session.receive("devices/sensor-3/will", 0, false);
        assert!(retained_ok.allowed() && will_ok.allowed(), "{v}");
        assert!(!retained_no.allowed() && !will_no.allowed(), "{v}");
        assert_eq!(retained_no.reply, Reply::Nothing, "deliveries are silent");

        let unsub = session.unsubscribe(["devices/sensor-7/commands/+"]);
        assert!(unsub[0].allowed(), "{v}");
        assert_eq!(unsub[0].reply, e.unsubscribed, "{v} UNSUBACK");
        let refused = session.unsubscribe(["other/#"]);
        let want = match v {
            V5 => Reply::Code(0x87),
            _ => Reply::Ack,
        };
        assert_eq!(refused[0].reply, want, "{v} refused UNSUBACK");
        session.disconnect();
    }
    Ok(())
}

#[test]
fn refused_connects_get_each_versions_connack() -> anyhow::Result<()> {
    let f = fixture()?;
    // Not listed: certs denies not-authorized. 3.1/3.1.1 return code 5, 5.0 0x87.
    let (other, _) = ca_signed(f.dir.path(), "intruder")?;
    for (v, code) in [(V3_1, 5), (V3_1_1, 5), (V5, 0x87)] {
        let refused = f
            .host
            .connect(
                ConnectRequest::new("intruder")
                    .protocol_version(v)
                    .certificate_chain_der([&other.der]),
            )
            .err()
            .ok_or_else(|| anyhow::anyhow!("{v}: intruder accepted"))?;
        assert_eq!(refused.connack, code, "{v}");
        assert_eq!(refused.decision.decider(), Some("certs"));
    }
    // A bad token: bad user name or password, 4 / 0x86.
    for (v, code) in [(V3_1, 4), (V3_1_1, 4), (V5, 0x86)] {
        let refused = f
            .host
            .connect(
                ConnectRequest::new("t1")
                    .protocol_version(v)
                    .username("JWT")
                    .password("not.a.token"),
            )
            .err()
            .ok_or_else(|| anyhow::anyhow!("{v}: bad token accepted"))?;
        assert_eq!(refused.connack, code, "{v}");
    }
    Ok(())
}

#[test]
fn a_chain_that_does_not_parse_is_a_host_deny() -> anyhow::Result<()> {
    let f = fixture()?;
    let mut truncated = f.tls_chain.clone();
    truncated[0].truncate(100);
    for (v, code) in [(V3_1_1, 5), (V5, 0x87)] {
        let refused = f
            .host
            .connect(
                ConnectRequest::new("sensor-7")
                    .protocol_version(v)
                    .certificate_chain_der(&truncated),
            )
            .err()
            .ok_or_else(|| anyhow::anyhow!("a truncated chain was accepted"))?;
        assert_eq!(refused.decision.decided_by, DecidedBy::Host);
        assert!(refused.decision.trace.is_empty(), "no policy ran");
        assert_eq!(refused.connack, code);
        let message = &refused.decision.deny().map(|d| d.message.clone());
        assert!(
            message
                .as_deref()
                .is_some_and(|m| m.contains("bad client certificate")),
            "{message:?}"
        );
    }
    Ok(())
}

#[test]
fn a_will_the_session_may_not_publish_refuses_the_connect() -> anyhow::Result<()> {
    let f = fixture()?;
    let ok = f
        .host
        .connect(device(&f, V5).will("devices/sensor-7/will", 1, false));
    assert!(ok.is_ok(), "an allowed will topic connects");
    let refused = f
        .host
        .connect(device(&f, V5).will("devices/sensor-8/will", 1, true))
        .err()
        .ok_or_else(|| anyhow::anyhow!("a forbidden will was accepted"))?;
    assert_eq!(refused.connack, 0x87);
    assert_eq!(refused.decision.decider(), Some("topics"));
    let refused = f
        .host
        .connect(device(&f, V3_1_1).will("devices/sensor-8/will", 0, false))
        .err()
        .ok_or_else(|| anyhow::anyhow!("a forbidden will was accepted"))?;
    assert_eq!(refused.connack, 5);
    Ok(())
}

#[test]
fn a_jwt_session_can_unsubscribe_what_its_token_granted() -> anyhow::Result<()> {
    let f = fixture()?;
    let token = sign_jwt(
        "HS256",
        SECRET,
        None,
        &json!({"sub": "t1", "exp": now() + 600, "topics": ["temperature", "devices/t1/#"]}),
    )?;
    for (v, unsubscribed) in [(V3_1_1, Reply::Ack), (V5, Reply::Code(0))] {
        let session = f
            .host
            .connect(
                ConnectRequest::new("t1")
                    .protocol_version(v)
                    .username("JWT")
                    .password(token.as_str()),
            )
            .map_err(|r| anyhow::anyhow!("refused: {:?}", r.decision))?;
        let sub = session.subscribe([("devices/t1/+", 1), ("devices/t2/+", 1)]);
        assert!(sub[0].allowed() && !sub[1].allowed());
        let unsub = session.unsubscribe(["devices/t1/+"]);
        assert!(unsub[0].allowed(), "{v}: {:?}", unsub[0].decision);
        assert_eq!(unsub[0].reply, unsubscribed);
        session.disconnect();
    }
    Ok(())
}

#[test]
fn a_session_outlives_a_reload_on_the_new_generation() -> anyhow::Result<()> {
    let f = fixture()?;
    let session = f
        .host
        .connect(device(&f, V5))
        .map_err(|r| anyhow::anyhow!("refused: {:?}", r.decision))?;
    assert_eq!(session.granted_generation(), 0);
    let before = session.publish("devices/sensor-7/telemetry", 1, false);
    assert!(before.allowed());
    assert_eq!(before.decision.generation, 0);

    // The operator renames the telemetry topic; the session stays connected.
    let leaf_sha256 = mqtt_policy_host::cert::parse_der(&f.tls_chain[0])?.sha256;
    std::fs::write(&f.chain_path, chain_toml(&leaf_sha256, "metrics"))?;
    assert_eq!(f.host.reload()?, 1);

    let after = session.publish("devices/sensor-7/telemetry", 1, false);
    assert!(!after.allowed(), "the next check runs on the new chain");
    assert_eq!(after.decision.generation, 1);
    assert_eq!(after.reply, Reply::Code(0x87));
    let renamed = session.publish("devices/sensor-7/metrics", 1, false);
    assert!(renamed.allowed());
    assert_eq!(
        session.grant().attribute("cert_cn"),
        Some("sensor-7"),
        "the grant from the CONNECT stays"
    );
    assert_eq!(session.granted_generation(), 0);
    Ok(())
}

/// A native policy: what an adapter's own tests can use instead of wasm.
struct Fake;

impl Policy for Fake {
    fn connect_check(&self, request: &ConnectRequest) -> Result<ConnectVerdict, PolicyError> {
        Ok(match request.username.as_deref() {
            Some("ok") => ConnectVerdict::Allow(Grant {
                roles: vec!["fake".into()],
                ..Grant::default()
            }),
            Some("boom") => return Err(PolicyError::Trap("fake failure".into())),
            _ => ConnectVerdict::Deny(Deny::new(DenyReason::Banned, "not ok")),
        })
    }

    fn topic_check(&self, request: &TopicRequest) -> Result<TopicVerdict, PolicyError> {
        Ok(
            if request.roles.iter().any(|r| r == "fake") && request.topic == "a" {
                TopicVerdict::Allow
            } else {
                TopicVerdict::Defer
            },
        )
    }
}

#[test]
fn native_fakes_drive_sessions_too() -> anyhow::Result<()> {
    let host = PolicyHost::from_chain(Chain::builder().policy("fake", Arc::new(Fake)).build()?);
    let session = host
        .connect(ConnectRequest::new("c").username("ok"))
        .map_err(|r| anyhow::anyhow!("refused: {:?}", r.decision))?;
    assert!(session.publish("a", 0, false).allowed());
    let b = session.publish("b", 1, false);
    assert_eq!(b.decision.decided_by, DecidedBy::Default);
    assert_eq!(b.reply, Reply::Ack);
    let banned = host
        .connect(ConnectRequest::new("c").username("x").protocol_version(V5))
        .err()
        .map(|r| r.connack);
    assert_eq!(banned, Some(0x8A));
    let failed = host
        .connect(ConnectRequest::new("c").username("boom"))
        .err()
        .map(|r| r.connack);
    assert_eq!(failed, Some(3), "a failed policy is server-unavailable");
    assert!(host.reload().is_err(), "a chain built in code has no file");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn the_async_face_gives_the_same_answers() -> anyhow::Result<()> {
    let f = fixture()?;
    let session = f
        .host
        .connect_async(device(&f, V5))
        .await
        .map_err(|r| anyhow::anyhow!("refused: {:?}", r.decision))?;
    let publish = session
        .publish_async("devices/sensor-7/telemetry", 1, false)
        .await;
    assert_eq!(publish.reply, Reply::Code(0));
    let sub = session.subscribe_async([("devices/#", 1)]).await;
    assert_eq!(sub[0].reply, Reply::Code(0x87));
    assert!(
        !session
            .receive_async("devices/x/commands/y", 0, false)
            .await
            .allowed()
    );
    assert_eq!(
        session.unsubscribe_async(["x"]).await[0].reply,
        Reply::Code(0x87)
    );
    Ok(())
}

#[test]
fn debug_output_of_requests_never_shows_the_password() {
    let request = ConnectRequest::new("c")
        .username("JWT")
        .password("eyJ.secret-token.sig");
    for shown in [format!("{request:?}"), format!("{request:#?}")] {
        assert!(!shown.contains("secret-token"), "{shown}");
        assert!(shown.contains("redacted"), "{shown}");
    }
    let topic = TopicRequest::new("c", mqtt_policy_host::Access::Publish, "t").username("JWT");
    assert!(!format!("{topic:?}").contains("secret"));
}

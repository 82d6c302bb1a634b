//! Azure Web PubSub's MQTT `connect` event, shaped as Microsoft's reference
//! ("CloudEvents extension for Azure Web PubSub MQTT event handler with
//! HTTP protocol") shows it: binary-mode CloudEvents headers, `mqtt`
//! properties with a base64 password, client certificates with thumbprint
//! and PEM content. The protocol fixes: 200 (or 204) for success with
//! `userId`, `groups`, `roles`, `mqtt.userProperties`; 4xx/5xx for failure
//! with `mqtt.code` of the client's version and `mqtt.reason`; the
//! `OPTIONS` handshake answered with `WebHook-Allowed-Origin`.

use std::net::SocketAddr;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::common::{Reply, fixture, request, start, token};

const PATH: &str = "/azure/mqtt";

async fn event(
    addr: SocketAddr,
    ce_type: &str,
    connection_id: &str,
    body: &Value,
    extra: &[(&str, &str)],
) -> anyhow::Result<Reply> {
    let source = format!("/hubs/hub1/client/{connection_id}/phys-1");
    let mut headers = vec![
        ("Content-Type", "application/json; charset=utf-8"),
        ("WebHook-Request-Origin", "demo.webpubsub.azure.com"),
        ("ce-specversion", "1.0"),
        ("ce-type", ce_type),
        ("ce-source", source.as_str()),
        ("ce-id", "1"),
        ("ce-time", "2024-07-16T00:00:00Z"),
        ("ce-connectionId", connection_id),
        ("ce-hub", "hub1"),
        ("ce-eventName", "connect"),
        ("ce-physicalConnectionId", "phys-1"),
        ("ce-subprotocol", "mqtt"),
        ("ce-awpsversion", "1.0"),
    ];
    headers.extend_from_slice(extra);
    request(addr, "POST", PATH, &headers, body.to_string().as_bytes()).await
}

fn connect_body(
    version: u8,
    username: Option<&str>,
    password: Option<&[u8]>,
    certs: Value,
) -> Value {
    let user_properties = if version == 5 {
        json!([{"name": "region", "value": "eu"}])
    } else {
        Value::Null
    };
    json!({
        "mqtt": {
            "protocolVersion": version,
            "cleanStart": true,
            "username": username,
            "password": password.map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
            "userProperties": user_properties,
        },
        "claims": {},
        "query": {},
        "headers": {"Connection": ["Upgrade"]},
        "subprotocols": ["mqtt"],
        "clientCertificates": certs,
    })
}

const EXTRA: &str = r#"
[azure]
user_id_attribute = "sub"
groups_attribute = "topics"
user_property_attributes = ["sub"]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_clients_on_3_1_1_and_5() -> anyhow::Result<()> {
    let f = fixture()?;
    let rogue = mqtt_policy_tests::self_signed(f.dir.path(), "rogue")?;
    let server = start(&f.chain_path, "").await?;
    let addr = server.local_addr();
    for version in [4u8, 5] {
        // The thumbprint as the service sends it (letter case unspecified).
        let certs = json!([{"thumbprint": f.cert.sha1.to_lowercase(), "content": f.cert.pem}]);
        let r = event(
            addr,
            "azure.webpubsub.sys.connect",
            "sensor7",
            &connect_body(version, None, None, certs),
            &[],
        )
        .await?;
        assert_eq!(r.status, 200, "v{version}: {}", r.body);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(r.json()["roles"], json!(["device"]));

        // A forged thumbprint: the listed certificate's thumbprint beside
        // another certificate's content. Recomputed, refused.
        let forged = json!([{"thumbprint": f.cert.sha1, "content": rogue.pem}]);
        let r = event(
            addr,
            "azure.webpubsub.sys.connect",
            "sensor7",
            &connect_body(version, None, None, forged),
            &[],
        )
        .await?;
        assert_eq!(r.status, 401, "v{version}");
        let expected = if version == 5 { 0x87 } else { 5 };
        assert_eq!(r.json()["mqtt"]["code"], expected, "v{version}");
        assert!(
            r.json()["mqtt"]["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("thumbprint")
        );

        // The rogue certificate with its own thumbprint: the chain refuses it.
        let honest = json!([{"thumbprint": rogue.sha1, "content": rogue.pem}]);
        let r = event(
            addr,
            "azure.webpubsub.sys.connect",
            "rogue1",
            &connect_body(version, None, None, honest),
            &[],
        )
        .await?;
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["mqtt"]["code"], expected);

        // No thumbprint field (content only): the chain decides from the content.
        let bare = json!([{"content": f.cert.pem}]);
        let r = event(
            addr,
            "azure.webpubsub.sys.connect",
            "sensor7",
            &connect_body(version, None, None, bare),
            &[],
        )
        .await?;
        assert_eq!(r.status, 200);
    }
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_clients_get_user_id_groups_and_properties() -> anyhow::Result<()> {
    let f = fixture()?;
    let server = start(&f.chain_path, EXTRA).await?;
    let addr = server.local_addr();
    let good = token(
        "alice",
        &["alice/#", "news/+"],
        &["webpubsub.joinLeaveGroup"],
    );
    let r = event(
        addr,
        "azure.webpubsub.sys.connect",
        "c5",
        &connect_body(5, Some("JWT"), Some(good.as_bytes()), Value::Null),
        &[],
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    let body = r.json();
    assert_eq!(body["userId"], "alice");
    assert_eq!(body["groups"], json!(["alice/#", "news/+"]));
    assert_eq!(body["roles"], json!(["webpubsub.joinLeaveGroup"]));
    assert_eq!(
        body["mqtt"]["userProperties"],
        json!([{"name": "sub", "value": "alice"}])
    );

    // 3.1.1 has no user properties: none are sent back.
    let r = event(
        addr,
        "azure.webpubsub.sys.connect",
        "c4",
        &connect_body(4, Some("JWT"), Some(good.as_bytes()), json!([])),
        &[],
    )
    .await?;
    assert_eq!(r.status, 200);
    assert!(r.json().get("mqtt").is_none());

    // A bad token: bad username or password, in each version's code.
    for (version, code) in [(4u8, 4), (5, 0x86)] {
        let r = event(
            addr,
            "azure.webpubsub.sys.connect",
            "c6",
            &connect_body(version, Some("JWT"), Some(b"nope"), Value::Null),
            &[],
        )
        .await?;
        assert_eq!(r.status, 401);
        assert_eq!(r.json()["mqtt"]["code"], code, "v{version}");
    }
    // No credentials at all: the chain's default deny (not authorized).
    let r = event(
        addr,
        "azure.webpubsub.sys.connect",
        "c7",
        &connect_body(5, None, None, Value::Null),
        &[],
    )
    .await?;
    assert_eq!(r.status, 401);
    assert_eq!(r.json()["mqtt"]["code"], 0x87);
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_and_other_events() -> anyhow::Result<()> {
    let f = fixture()?;
    let server = start(&f.chain_path, "").await?;
    let addr = server.local_addr();
    let r = request(
        addr,
        "OPTIONS",
        PATH,
        &[("WebHook-Request-Origin", "demo.webpubsub.azure.com")],
        b"",
    )
    .await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("webhook-allowed-origin"), Some("*"));
    let r = request(addr, "OPTIONS", PATH, &[], b"").await?;
    assert_eq!(r.status, 400);
    for ce_type in [
        "azure.webpubsub.sys.connected",
        "azure.webpubsub.sys.disconnected",
    ] {
        let r = event(addr, ce_type, "c1", &json!({}), &[]).await?;
        assert_eq!(r.status, 204, "{ce_type}");
    }
    server.shutdown().await;

    let server = start(
        &f.chain_path,
        "[azure]\nallowed_origins = [\"demo.webpubsub.azure.com\"]",
    )
    .await?;
    let addr = server.local_addr();
    let r = request(
        addr,
        "OPTIONS",
        PATH,
        &[("WebHook-Request-Origin", "demo.webpubsub.azure.com")],
        b"",
    )
    .await?;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("webhook-allowed-origin"),
        Some("demo.webpubsub.azure.com")
    );
    let r = request(
        addr,
        "OPTIONS",
        PATH,
        &[("WebHook-Request-Origin", "evil.example")],
        b"",
    )
    .await?;
    assert_eq!(r.status, 403);
    assert_eq!(r.header("webhook-allowed-origin"), None);
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signatures_are_checked_when_keys_are_configured() -> anyhow::Result<()> {
    let f = fixture()?;
    let server = start(
        &f.chain_path,
        "[azure]\naccess_keys = [\"primary-key\", \"secondary-key\"]",
    )
    .await?;
    let addr = server.local_addr();
    let sign = |key: &str, id: &str| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).expect("key");
        mac.update(id.as_bytes());
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    };
    let certs = json!([{"thumbprint": f.cert.sha1, "content": f.cert.pem}]);
    let body = connect_body(4, None, None, certs);
    // Key rotation: two signatures, the second matches.
    let both = format!(
        "{},{}",
        sign("old-key", "dev1"),
        sign("secondary-key", "dev1")
    );
    let r = event(
        addr,
        "azure.webpubsub.sys.connect",
        "dev1",
        &body,
        &[("ce-signature", &both)],
    )
    .await?;
    assert_eq!(r.status, 200, "{}", r.body);
    for bad in [
        sign("other", "dev1"),
        sign("primary-key", "dev2"),
        String::new(),
    ] {
        let r = event(
            addr,
            "azure.webpubsub.sys.connect",
            "dev1",
            &body,
            &[("ce-signature", &bad)],
        )
        .await?;
        assert_eq!(r.status, 401, "{bad}");
    }
    let r = event(addr, "azure.webpubsub.sys.connect", "dev1", &body, &[]).await?;
    assert_eq!(r.status, 401);
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_connect_events_are_4xx_with_a_code() -> anyhow::Result<()> {
    let f = fixture()?;
    let server = start(&f.chain_path, "").await?;
    let addr = server.local_addr();
    let key = std::fs::read_to_string(f.dir.path().join("sensor-7.key"))?;
    let cases: Vec<(Value, &str)> = vec![
        (
            json!({"mqtt": {"protocolVersion": 3}}),
            "protocol version 3",
        ),
        (
            json!({"mqtt": {"protocolVersion": "five"}}),
            "malformed JSON",
        ),
        (json!({"mqtt": {}}), "mqtt.protocolVersion"),
        (json!({"claims": {}}), "missing field \"mqtt\""),
        (
            json!({"mqtt": {"protocolVersion": 5, "password": "not base64!"}}),
            "base64",
        ),
        (
            json!({"mqtt": {"protocolVersion": 4}, "clientCertificates": [{"thumbprint": "00", "content": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"}]}),
            "client certificate",
        ),
        (
            json!({"mqtt": {"protocolVersion": 4}, "clientCertificates": [{"content": key}]}),
            "client certificate",
        ),
        (
            json!({"mqtt": {"protocolVersion": 4}, "clientCertificates": [{"content": "%%%"}]}),
            "base64",
        ),
        (
            json!({"mqtt": {"protocolVersion": 4}, "clientCertificates": [{"thumbprint": "00"}]}),
            "content",
        ),
        (
            json!({"mqtt": {"protocolVersion": 4}, "clientCertificates": [{"content": format!("{}{}", f.cert.pem, f.cert.pem)}]}),
            "each entry must hold one",
        ),
    ];
    for (body, message) in cases {
        let r = event(addr, "azure.webpubsub.sys.connect", "c1", &body, &[]).await?;
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let reason = r.json()["mqtt"]["reason"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        assert!(reason.contains(message), "{body}: {reason}");
        assert!(r.json()["mqtt"]["code"].is_u64());
    }
    // Not JSON at all, no connection id, an event type not handled.
    let r = request(
        addr,
        "POST",
        PATH,
        &[
            ("ce-type", "azure.webpubsub.sys.connect"),
            ("ce-connectionId", "c1"),
            ("Content-Type", "application/json"),
        ],
        b"{not json",
    )
    .await?;
    assert_eq!(r.status, 400);
    let r = request(
        addr,
        "POST",
        PATH,
        &[("ce-type", "azure.webpubsub.sys.connect")],
        b"{}",
    )
    .await?;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("ce-connectionid"), "{}", r.body);
    let r = event(addr, "azure.webpubsub.user.message", "c1", &json!({}), &[]).await?;
    assert_eq!(r.status, 400);
    server.shutdown().await;
    Ok(())
}

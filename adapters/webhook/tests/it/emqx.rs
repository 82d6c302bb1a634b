//! EMQX 5's HTTP authenticator and authorizer, with the request templates
//! EMQX's documentation shows (JSON body, POST; placeholders in the query
//! string with GET; urlencoded bodies) and its response contract: 200 with
//! `application/json` and `result` allow/deny, `is_superuser`,
//! `client_attrs` (strings).

use serde_json::json;

use crate::common::{fixture, post_form, post_json, request, start, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authn_and_authz_answer_from_the_chain() -> anyhow::Result<()> {
    let f = fixture()?;
    let server = start(&f.chain_path, "superuser_role = \"admin\"").await?;
    let addr = server.local_addr();
    let good = token("alice", &["alice/#"], &[]);

    // The documented template: clientid, username, password, peerhost, cert_common_name.
    let r = post_json(
        addr,
        "/emqx/authn",
        &json!({"clientid": "c1", "username": "JWT", "password": good,
                "peerhost": "10.1.2.3", "cert_common_name": ""}),
    )
    .await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    let body = r.json();
    assert_eq!(body["result"], "allow");
    assert_eq!(body["is_superuser"], false);
    assert_eq!(body["client_attrs"]["topics"], "[\"alice/#\"]");
    assert!(
        body["client_attrs"]
            .as_object()
            .is_some_and(|m| m.values().all(|v| v.is_string()))
    );

    // Authz template with qos and retain as EMQX renders them (numbers,
    // or strings when quoted in the template).
    for (topic, action, qos, retain, expected) in [
        ("alice/t", "publish", json!(1), json!(false), "allow"),
        ("alice/t", "publish", json!("2"), json!("true"), "allow"),
        ("bob/t", "publish", json!(0), json!(false), "deny"),
        ("alice/+", "subscribe", json!(1), json!(false), "allow"),
        ("#", "subscribe", json!(0), json!(false), "deny"),
    ] {
        let r = post_json(
            addr,
            "/emqx/authz",
            &json!({"clientid": "c1", "username": "JWT", "topic": topic, "action": action,
                    "qos": qos, "retain": retain}),
        )
        .await?;
        assert_eq!(r.status, 200, "{topic} {action}");
        assert_eq!(r.json(), json!({"result": expected}), "{topic} {action}");
    }

    // Another client id, or another username, has no session: deny.
    for (cid, user) in [("c2", "JWT"), ("c1", "other")] {
        let r = post_json(
            addr,
            "/emqx/authz",
            &json!({"clientid": cid, "username": user, "topic": "alice/t", "action": "publish"}),
        )
        .await?;
        assert_eq!(r.json(), json!({"result": "deny"}));
    }

    // A wrong token: deny, and the old session of c1 is forgotten (fail closed).
    let r = post_json(
        addr,
        "/emqx/authn",
        &json!({"clientid": "c1", "username": "JWT", "password": "not-a-token"}),
    )
    .await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.json(), json!({"result": "deny"}));
    let r = post_json(
        addr,
        "/emqx/authz",
        &json!({"clientid": "c1", "username": "JWT", "topic": "alice/t", "action": "publish"}),
    )
    .await?;
    assert_eq!(r.json(), json!({"result": "deny"}));

    // Superusers: a grant holding `superuser_role`.
    let admin = token("root", &["#"], &["admin"]);
    let r = post_json(
        addr,
        "/emqx/authn",
        &json!({"clientid": "c9", "username": "JWT", "password": admin}),
    )
    .await?;
    assert_eq!(r.json()["is_superuser"], true);
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_with_query_and_urlencoded_bodies() -> anyhow::Result<()> {
    let f = fixture()?;
    // Connects handed off the async workers give the same answers.
    let server = start(&f.chain_path, "[limits]\noffload_connects = true").await?;
    let addr = server.local_addr();
    let good = token("bob", &["bob/#"], &[]);
    let query =
        crate::common::form(&[("clientid", "g1"), ("username", "JWT"), ("password", &good)]);
    let r = request(addr, "GET", &format!("/emqx/authn?{query}"), &[], b"").await?;
    assert_eq!(r.json()["result"], "allow");
    let r = post_form(
        addr,
        "/emqx/authz",
        &[
            ("clientid", "g1"),
            ("username", "JWT"),
            ("topic", "bob/x"),
            ("action", "subscribe"),
            ("qos", "1"),
        ],
    )
    .await?;
    assert_eq!(r.json(), json!({"result": "allow"}));
    let q = crate::common::form(&[
        ("clientid", "g1"),
        ("username", "JWT"),
        ("topic", "x"),
        ("action", "publish"),
    ]);
    let r = request(addr, "GET", &format!("/emqx/authz?{q}"), &[], b"").await?;
    assert_eq!(r.json(), json!({"result": "deny"}));
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_emqx_requests_are_4xx() -> anyhow::Result<()> {
    let f = fixture()?;
    let server = start(&f.chain_path, "").await?;
    let addr = server.local_addr();
    let cases = [
        (
            "/emqx/authn",
            json!({"username": "JWT", "password": "x"}),
            "missing field \"clientid\"",
        ),
        (
            "/emqx/authn",
            json!({"clientid": "c", "proto_ver": 6}),
            "protocol version 6",
        ),
        ("/emqx/authn", json!({"clientid": 7}), "expected a string"),
        (
            "/emqx/authz",
            json!({"clientid": "c", "topic": "t", "action": "all"}),
            "not publish or subscribe",
        ),
        (
            "/emqx/authz",
            json!({"clientid": "c", "topic": "t"}),
            "missing field \"action\"",
        ),
        (
            "/emqx/authz",
            json!({"clientid": "c", "topic": "t", "action": "publish", "qos": 3}),
            "QoS must be",
        ),
        (
            "/emqx/authz",
            json!({"clientid": "c", "topic": "t", "action": "publish", "retain": "maybe"}),
            "true or false",
        ),
    ];
    for (path, body, message) in cases {
        let r = post_json(addr, path, &body).await?;
        assert_eq!(r.status, 400, "{body}");
        let error = r.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(error.contains(message), "{body}: {error}");
        assert_ne!(r.json()["result"], "allow");
    }
    server.shutdown().await;
    Ok(())
}

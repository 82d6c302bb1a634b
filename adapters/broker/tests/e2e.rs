//! The broker driven by real clients over real sockets: `mosquitto_pub` /
//! `mosquitto_sub` (Debian `mosquitto-clients`) and paho-mqtt (PyPI), MQTT
//! 3.1, 3.1.1 and 5, over TCP, TLS (client certificates optional and
//! required) and WebSocket. Every broker runs on random loopback ports and
//! stops when its test ends; every client process is bounded and killed on
//! drop.

mod common;

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

fn mosq_connack(port: u16, version: &str, args: &[&str]) -> Option<u32> {
    let mut all = vec!["-V", version, "-t", "probe/x", "-m", "x"];
    all.extend_from_slice(args);
    let (_, lines) = run(&mut mosquitto("mosquitto_pub", port, &all), T);
    connack(&lines)
}

#[test]
fn password_users_connect_and_a_wrong_password_is_refused() {
    let env = env();
    let b = start(&env);
    let port = b.port("tcp");
    let ok = ["-u", "demo", "-P", "demo-password"];
    let bad = ["-u", "demo", "-P", "nope"];
    assert_eq!(mosq_connack(port, "mqttv311", &ok), Some(0));
    assert_eq!(mosq_connack(port, "mqttv5", &ok), Some(0));
    assert_eq!(mosq_connack(port, "mqttv31", &ok), Some(0));
    assert_eq!(mosq_connack(port, "mqttv311", &bad), Some(4));
    assert_eq!(mosq_connack(port, "mqttv5", &bad), Some(0x86));
    let legacy = ["-u", "legacy", "-P", "legacy-password"];
    assert_eq!(mosq_connack(port, "mqttv5", &legacy), Some(0));
}

#[test]
fn anonymous_clients_reach_the_chain_and_are_refused() {
    let env = env();
    let b = start(&env);
    let port = b.port("tcp");
    // No username at all: rmqtt would let it in without `allow_anonymous =
    // false`; the chain's default denies it.
    assert_eq!(mosq_connack(port, "mqttv311", &[]), Some(5));
    assert_eq!(mosq_connack(port, "mqttv5", &[]), Some(0x87));
    // A username nobody knows: every policy defers, the default denies.
    assert_eq!(
        mosq_connack(port, "mqttv5", &["-u", "nobody", "-P", "x"]),
        Some(0x87)
    );
    let (allowed, denied) = b
        .broker()
        .metrics()
        .decisions(mqtt_policy_broker::metrics::Check::Connect);
    assert_eq!((allowed, denied), (0, 3), "every client reached the chain");
}

#[test]
fn tls_client_certificates_allowed_other_and_none() {
    let env = env();
    let b = start(&env);
    let tls = b.port("tls");
    let required = b.port("tls-required");
    let ca = env.path("server.pem");
    let device = [
        "--cafile",
        &ca,
        "--cert",
        &env.path("device-1.pem"),
        "--key",
        &env.path("device-1.key"),
    ];
    let other = [
        "--cafile",
        &ca,
        "--cert",
        &env.path("device-2.pem"),
        "--key",
        &env.path("device-2.key"),
    ];
    let none = ["--cafile", &ca];
    for (version, refused) in [("mqttv311", 5), ("mqttv5", 0x87)] {
        assert_eq!(mosq_connack(tls, version, &device), Some(0), "{version}");
        assert_eq!(
            mosq_connack(required, version, &device),
            Some(0),
            "{version}"
        );
        // Verified by the CA but not on the allow-list: the certs policy denies.
        assert_eq!(
            mosq_connack(tls, version, &other),
            Some(refused),
            "{version}"
        );
        // No certificate on an optional listener: the chain decides (deny).
        assert_eq!(
            mosq_connack(tls, version, &none),
            Some(refused),
            "{version}"
        );
        // No certificate where one is required: the TLS handshake fails.
        assert_eq!(mosq_connack(required, version, &none), None, "{version}");
    }
    // The certificate's CN names its topics ({attr:cert_cn}).
    let (_, lines) = run(
        &mut paho(
            tls,
            &[
                "--version",
                "5",
                "--id",
                "any-id",
                "--cafile",
                &ca,
                "--cert",
                &env.path("device-1.pem"),
                "--key",
                &env.path("device-1.key"),
                "--pub",
                "devices/device-1/telemetry:1:t",
                "--pub",
                "devices/device-2/telemetry:1:t",
            ],
        ),
        T,
    );
    let ev = events(&lines);
    let acks: Vec<_> = ev
        .iter()
        .filter(|e| e["event"] == "puback")
        .map(|e| e["code"].clone())
        .collect();
    assert_eq!(
        acks,
        vec![serde_json::json!(0), serde_json::json!(0x87)],
        "{lines:?}"
    );
}

#[test]
fn jwt_clients_publish_and_subscribe_within_their_topics() {
    let env = env();
    let b = start(&env);
    let port = b.port("tcp");
    let tok = token("thermostat-1a", &["sensors/t1/#", "alerts"], 600);
    for (version, refused_sub, refused_pub) in [("5", 0x87, Some(0x87)), ("4", 0x80, None)] {
        let mut sub = spawn(&mut paho(
            port,
            &[
                "--version",
                version,
                "--id",
                &format!("sub-{version}"),
                "-u",
                "JWT",
                "-P",
                &tok,
                "--sub",
                "sensors/t1/#:1",
                "--sub",
                "sensors/#:1",
                "--wait",
                "3",
            ],
        ));
        let suback = sub.wait_for(T, |l| l.contains("suback")).expect("SUBACK");
        let suback: serde_json::Value = serde_json::from_str(&suback).expect("json");
        assert_eq!(
            suback["codes"],
            serde_json::json!([1, refused_sub]),
            "v{version}"
        );
        let (_, lines) = run(
            &mut paho(
                port,
                &[
                    "--version",
                    version,
                    "--id",
                    &format!("pub-{version}"),
                    "-u",
                    "JWT",
                    "-P",
                    &tok,
                    "--pub",
                    "sensors/t1/temp:1:ok",
                    "--pub",
                    "sensors/t2/temp:1:no",
                ],
            ),
            T,
        );
        let ev = events(&lines);
        let acks: Vec<_> = ev
            .iter()
            .filter(|e| e["event"] == "puback")
            .map(|e| e["code"].as_u64())
            .collect();
        match refused_pub {
            Some(code) => assert_eq!(acks, vec![Some(0), Some(code)], "{lines:?}"),
            // 3.1.1 has no refusal code: a plain PUBACK, not forwarded.
            None => assert_eq!(acks.len(), 2, "{lines:?}"),
        }
        let (_, lines) = sub.finish(T);
        let got = messages(&events(&lines));
        assert_eq!(
            got,
            vec![("sensors/t1/temp".to_owned(), "ok".to_owned())],
            "v{version}: {lines:?}"
        );
    }
}

#[test]
fn an_expired_token_is_refused_at_connect() {
    let env = env();
    let b = start(&env);
    let port = b.port("tcp");
    let expired = token("thermostat-1a", &["sensors/#"], -3600);
    assert_eq!(
        mosq_connack(port, "mqttv311", &["-u", "JWT", "-P", &expired]),
        Some(4)
    );
    assert_eq!(
        mosq_connack(port, "mqttv5", &["-u", "JWT", "-P", &expired]),
        Some(0x86)
    );
    let valid = token("thermostat-1a", &["sensors/#"], 600);
    assert_eq!(
        mosq_connack(port, "mqttv5", &["-u", "JWT", "-P", &valid]),
        Some(0)
    );
}

#[test]
fn a_wide_subscribe_is_refused_for_that_filter_only() {
    let env = env();
    let b = start(&env);
    let port = b.port("tcp");
    for (version, refused) in [("mqttv311", "128"), ("mqttv5", "135")] {
        let (_, lines) = run(
            &mut mosquitto(
                "mosquitto_sub",
                port,
                &[
                    "-V",
                    version,
                    "-u",
                    "demo",
                    "-P",
                    "demo-password",
                    "-i",
                    "demo-c1",
                    "-t",
                    "demo/#",
                    "-t",
                    "#",
                    "-t",
                    "clients/demo-c1/inbox",
                    "-t",
                    "clients/other/inbox",
                    "-W",
                    "1",
                ],
            ),
            T,
        );
        let line = lines
            .iter()
            .find(|l| l.starts_with("Subscribed"))
            .cloned()
            .unwrap_or_default();
        assert!(
            line.ends_with(&format!(": 0, {refused}, 0, {refused}")),
            "{version}: {lines:?}"
        );
    }
}

#[test]
fn a_denied_publish_is_not_delivered() {
    let env = env();
    let b = start(&env);
    let port = b.port("tcp");
    let mut sub = spawn(&mut mosquitto(
        "mosquitto_sub",
        port,
        &[
            "-V",
            "mqttv5",
            "-u",
            "demo",
            "-P",
            "demo-password",
            "-t",
            "demo/#",
            "-t",
            "legacy/#",
            "-v",
            "-W",
            "4",
        ],
    ));
    sub.wait_for(T, |l| l.starts_with("Subscribed"))
        .expect("subscribed");
    // legacy may only write legacy/telemetry: demo/x is refused with 0x87
    // on 5 (QoS 1) and silently dropped on 3.1.1.
    let (_, lines) = run(
        &mut mosquitto(
            "mosquitto_pub",
            port,
            &[
                "-V",
                "mqttv5",
                "-u",
                "legacy",
                "-P",
                "legacy-password",
                "-t",
                "demo/x",
                "-m",
                "denied-5",
                "-q",
                "1",
            ],
        ),
        T,
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("received PUBACK") && l.contains("RC:135")),
        "{lines:?}"
    );
    run(
        &mut mosquitto(
            "mosquitto_pub",
            port,
            &[
                "-V",
                "mqttv311",
                "-u",
                "legacy",
                "-P",
                "legacy-password",
                "-t",
                "demo/y",
                "-m",
                "denied-311",
                "-q",
                "1",
            ],
        ),
        T,
    );
    run(
        &mut mosquitto(
            "mosquitto_pub",
            port,
            &[
                "-V",
                "mqttv311",
                "-u",
                "demo",
                "-P",
                "demo-password",
                "-t",
                "demo/z",
                "-m",
                "allowed",
                "-q",
                "1",
            ],
        ),
        T,
    );
    let got = sub.wait_for(T, |l| l.contains("allowed"));
    assert!(got.is_some(), "{:?}", sub.seen);
    let (_, lines) = sub.finish(T);
    assert!(!lines.iter().any(|l| l.contains("denied")), "{lines:?}");
}

const FEED_RULES: &str = r#"
[[policy.config.rules]]
publish = ["feed/#"]
subscribe = ["feed/#", "$share/g/feed/#"]
receive = ["feed/open/#"]
"#;

#[test]
fn retained_and_will_messages_are_receive_checked() {
    let env = env_with(FEED_RULES);
    let b = start(&env);
    let port = b.port("tcp");
    let demo = ["-u", "demo", "-P", "demo-password"];
    for (topic, payload) in [
        ("feed/secret/r", "secret-retained"),
        ("feed/open/r", "open-retained"),
    ] {
        let mut args = vec!["-V", "mqttv5", "-t", topic, "-m", payload, "-r", "-q", "1"];
        args.extend_from_slice(&demo);
        let (_, lines) = run(&mut mosquitto("mosquitto_pub", port, &args), T);
        assert!(
            lines
                .iter()
                .any(|l| l.contains("received PUBACK") && l.contains("RC:0")),
            "{lines:?}"
        );
    }
    let mut sub = spawn(&mut paho(
        port,
        &[
            "--version",
            "5",
            "--id",
            "watcher",
            "-u",
            "demo",
            "-P",
            "demo-password",
            "--sub",
            "feed/#:1",
            "--wait",
            "4",
        ],
    ));
    sub.wait_for(T, |l| l.contains("suback")).expect("SUBACK");
    sub.wait_for(T, |l| l.contains("open-retained"))
        .expect("retained message the subscriber may receive");
    // Wills: both allowed at CONNECT (publish right), one not receivable.
    for (id, will) in [("w1", "feed/secret/will"), ("w2", "feed/open/will")] {
        let (_, lines) = run(
            &mut paho(
                port,
                &[
                    "--version",
                    "4",
                    "--id",
                    id,
                    "-u",
                    "demo",
                    "-P",
                    "demo-password",
                    "--will",
                    will,
                    "--wait",
                    "0.2",
                    "--abrupt",
                ],
            ),
            T,
        );
        assert!(
            lines.iter().any(|l| l.contains("\"connack\", \"code\": 0")),
            "{lines:?}"
        );
    }
    sub.wait_for(T, |l| l.contains("feed/open/will"))
        .expect("open will delivered");
    let (_, lines) = sub.finish(T);
    let got = messages(&events(&lines));
    assert!(
        got.iter().all(|(t, _)| t.starts_with("feed/open/")),
        "{got:?}"
    );
}

#[test]
fn shared_subscriptions_skip_members_that_may_not_receive() {
    let env = env_with(FEED_RULES);
    let b = start(&env);
    let port = b.port("tcp");
    let mut s = spawn(&mut paho(
        port,
        &[
            "--version",
            "5",
            "--id",
            "member",
            "-u",
            "demo",
            "-P",
            "demo-password",
            "--sub",
            "$share/g/feed/#:1",
            "--wait",
            "3",
        ],
    ));
    s.wait_for(T, |l| l.contains("suback")).expect("SUBACK");
    let (_, lines) = run(
        &mut paho(
            port,
            &[
                "--version",
                "5",
                "--id",
                "p",
                "-u",
                "demo",
                "-P",
                "demo-password",
                "--pub",
                "feed/open/1:1:a",
                "--pub",
                "feed/secret/1:1:b",
                "--pub",
                "feed/open/2:1:c",
            ],
        ),
        T,
    );
    assert_eq!(
        events(&lines)
            .iter()
            .filter(|e| e["event"] == "puback")
            .count(),
        3,
        "{lines:?}"
    );
    let (_, lines) = s.finish(T);
    let got: Vec<_> = messages(&events(&lines))
        .into_iter()
        .map(|(_, p)| p)
        .collect();
    assert_eq!(got, vec!["a", "c"], "{lines:?}");
}

#[test]
fn a_policy_edited_on_disk_changes_the_next_decision_of_connected_clients() {
    let env = env_with(FEED_RULES);
    let b = start(&env);
    let port = b.port("tcp");
    let generation = b.broker().host().generation();
    let mut sub = spawn(&mut mosquitto(
        "mosquitto_sub",
        port,
        &[
            "-V",
            "mqttv5",
            "-u",
            "demo",
            "-P",
            "demo-password",
            "-t",
            "feed/#",
            "-v",
            "-W",
            "20",
        ],
    ));
    sub.wait_for(T, |l| l.starts_with("Subscribed"))
        .expect("subscribed");
    let publish = |payload: &str| {
        run(
            &mut mosquitto(
                "mosquitto_pub",
                port,
                &[
                    "-V",
                    "mqttv5",
                    "-u",
                    "demo",
                    "-P",
                    "demo-password",
                    "-t",
                    "feed/open/x",
                    "-m",
                    payload,
                    "-q",
                    "1",
                ],
            ),
            T,
        )
    };
    publish("before");
    sub.wait_for(T, |l| l.contains("before"))
        .expect("delivered before the edit");
    // Narrow what may be received; the subscriber stays connected.
    let narrowed = FEED_RULES.replace("receive = [\"feed/open/#\"]", "receive = [\"feed/none/#\"]");
    std::fs::write(&env.chain, chain_toml(&env.device.sha256, &narrowed)).expect("edit chain");
    assert!(
        eventually(T, || b.broker().host().generation() > generation),
        "reloaded"
    );
    publish("after");
    // A broken edit keeps the running chain.
    std::fs::write(&env.chain, "this is not toml [").expect("break chain");
    std::thread::sleep(Duration::from_millis(800));
    publish("after-broken");
    std::thread::sleep(Duration::from_millis(500));
    let (_, lines) = sub.finish(Duration::from_secs(1));
    assert!(!lines.iter().any(|l| l.contains("after")), "{lines:?}");
    assert!(b.broker().host().status().failures >= 1);
}

#[test]
fn a_policy_that_spins_or_traps_denies_within_its_deadline() {
    let env = env();
    let misbehave = format!(
        "deadline_ms = 50\n[[policy]]\nname = \"misbehave\"\nmodule = {}\n[policy.config]\nmode = \"defer\"\n\n",
        mqtt_policy_tests::toml_str(mqtt_policy_tests::guests::MISBEHAVE)
    );
    let chain = chain_toml(&env.device.sha256, "")
        .replace("deadline_ms = 50\n", "")
        .replacen("[[policy]]", &format!("{misbehave}[[policy]]"), 1);
    std::fs::write(&env.chain, chain).expect("chain");
    let b = start(&env);
    let port = b.port("tcp");
    for mode in ["mode:loop", "mode:trap"] {
        let started = Instant::now();
        let code = mosq_connack(
            port,
            "mqttv5",
            &["-i", mode, "-u", "demo", "-P", "demo-password"],
        );
        assert_eq!(code, Some(0x87), "{mode}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{mode} took {:?}",
            started.elapsed()
        );
    }
    assert_eq!(
        mosq_connack(
            port,
            "mqttv5",
            &["-i", "fine", "-u", "demo", "-P", "demo-password"]
        ),
        Some(0)
    );
}

#[test]
fn websocket_and_mqtt_3_1_clients() {
    let env = env();
    let b = start(&env);
    let (_, lines) = run(
        &mut paho(
            b.port("ws"),
            &[
                "--version",
                "5",
                "--transport",
                "websockets",
                "-u",
                "demo",
                "-P",
                "demo-password",
                "--sub",
                "demo/#:0",
                "--sub",
                "secret/#:0",
            ],
        ),
        T,
    );
    let ev = events(&lines);
    assert_eq!(
        event(&ev, "connack").map(|e| e["code"].clone()),
        Some(serde_json::json!(0)),
        "{lines:?}"
    );
    assert_eq!(
        event(&ev, "suback").map(|e| e["codes"].clone()),
        Some(serde_json::json!([0, 0x87])),
        "{lines:?}"
    );
    let (_, lines) = run(
        &mut paho(
            b.port("ws"),
            &["--version", "4", "--transport", "websockets"],
        ),
        T,
    );
    assert_eq!(
        event(&events(&lines), "connack").map(|e| e["code"].clone()),
        Some(serde_json::json!(0x87)),
        "{lines:?}"
    );
    // MQTT 3.1 (MQIsdp).
    let (_, lines) = run(
        &mut paho(
            b.port("tcp"),
            &[
                "--version",
                "3",
                "-u",
                "demo",
                "-P",
                "demo-password",
                "--pub",
                "demo/v31:1:x",
            ],
        ),
        T,
    );
    let ev = events(&lines);
    assert_eq!(
        event(&ev, "connack").map(|e| e["code"].clone()),
        Some(serde_json::json!(0)),
        "{lines:?}"
    );
}

#[test]
fn a_takeover_reruns_the_connect_check() {
    let env = env();
    let b = start(&env);
    let port = b.port("tcp");
    let mut first = spawn(&mut mosquitto(
        "mosquitto_sub",
        port,
        &[
            "-V",
            "mqttv5",
            "-i",
            "same",
            "-u",
            "demo",
            "-P",
            "demo-password",
            "-t",
            "demo/#",
            "-v",
            "-W",
            "10",
        ],
    ));
    first
        .wait_for(T, |l| l.starts_with("Subscribed"))
        .expect("first subscribed");
    // Same client id, wrong password: refused, the first keeps its session.
    assert_eq!(
        mosq_connack(port, "mqttv5", &["-i", "same", "-u", "demo", "-P", "wrong"]),
        Some(0x86)
    );
    assert_eq!(
        mosq_connack(port, "mqttv5", &["-i", "same", "-u", "JWT", "-P", "x.y.z"]),
        Some(0x86)
    );
    run(
        &mut mosquitto(
            "mosquitto_pub",
            port,
            &[
                "-V",
                "mqttv5",
                "-u",
                "demo",
                "-P",
                "demo-password",
                "-t",
                "demo/t",
                "-m",
                "still-here",
                "-q",
                "1",
            ],
        ),
        T,
    );
    first
        .wait_for(T, |l| l.contains("still-here"))
        .expect("the first session kept its subscription");
    // Same client id, other valid user: takes the session over with its
    // own grant (legacy may not publish to probe/x: PUBACK 0x87).
    let (_, lines) = run(
        &mut mosquitto(
            "mosquitto_pub",
            port,
            &[
                "-V",
                "mqttv5",
                "-i",
                "same",
                "-u",
                "legacy",
                "-P",
                "legacy-password",
                "-t",
                "probe/x",
                "-m",
                "x",
                "-q",
                "1",
            ],
        ),
        T,
    );
    assert_eq!(connack(&lines), Some(0), "{lines:?}");
    assert!(lines.iter().any(|l| l.contains("RC:135")), "{lines:?}");
    drop(first);
}

fn raw_connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s
}

/// Read until EOF or error (bounded by the read timeout): was it closed?
fn closed(mut s: TcpStream) -> bool {
    let mut buf = [0u8; 256];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) => {
                return e.kind() != std::io::ErrorKind::WouldBlock
                    && e.kind() != std::io::ErrorKind::TimedOut;
            }
        }
    }
}

/// A CONNECT (3.1.1, clean session) for `demo`.
fn connect_packet() -> Vec<u8> {
    let mut body = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0b1100_0010, 0, 30];
    for field in ["raw", "demo", "demo-password"] {
        body.extend_from_slice(&(field.len() as u16).to_be_bytes());
        body.extend_from_slice(field.as_bytes());
    }
    let mut p = vec![0x10, body.len() as u8];
    p.extend(body);
    p
}

#[test]
fn bad_input_closes_the_connection_and_leaks_nothing() {
    let env = env();
    let b = start_with(
        &env,
        "connect_timeout_ms = 400\nmax_packet_size = 1024\nmax_connections = 8",
    );
    let port = b.port("tcp");
    // Says nothing: closed after the connect timeout.
    let started = Instant::now();
    assert!(closed(raw_connect(port)), "silent client closed");
    assert!(started.elapsed() < Duration::from_secs(3));
    // Says too little (half a CONNECT).
    let mut s = raw_connect(port);
    s.write_all(&[0x10, 40, 0, 4, b'M']).expect("write");
    assert!(closed(s), "partial CONNECT closed");
    // Garbage.
    let mut s = raw_connect(port);
    s.write_all(&[0xFF; 64]).expect("write");
    assert!(closed(s), "garbage closed");
    // A PUBLISH over max_packet_size after a good CONNECT.
    let mut s = raw_connect(port);
    s.write_all(&connect_packet()).expect("write");
    let mut ack = [0u8; 4];
    s.read_exact(&mut ack).expect("CONNACK");
    assert_eq!(ack, [0x20, 2, 0, 0]);
    let topic = b"demo/big";
    let payload = vec![b'x'; 4096];
    let len = 2 + topic.len() + payload.len();
    let mut p = vec![0x30, (len & 0x7f) as u8 | 0x80, (len >> 7) as u8];
    p.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    p.extend_from_slice(topic);
    p.extend_from_slice(&payload);
    let _ = s.write_all(&p);
    assert!(closed(s), "oversized packet closed");
    // Over the connection limit: closed at accept, the others are served.
    let held: Vec<_> = (0..8).map(|_| raw_connect(port)).collect();
    let ok = eventually(T, || b.broker().state().connections == 8);
    assert!(ok, "state {:?}", b.broker().state());
    assert!(closed(raw_connect(port)), "ninth connection closed");
    drop(held);
    // Served again once the front has seen them go.
    assert!(eventually(T, || b.broker().state().connections == 0));
    assert_eq!(
        mosq_connack(port, "mqttv5", &["-u", "demo", "-P", "demo-password"]),
        Some(0)
    );
    // Nothing left behind.
    assert!(
        eventually(T, || {
            let s = b.broker().state();
            s.connections == 0 && s.front_entries == 0 && s.pending == 0 && s.sessions == 0
        }),
        "{:?}",
        b.broker().state()
    );
}

#[test]
fn sessions_are_freed_on_disconnect_and_metrics_are_served() {
    let env = env();
    // Fifty cycles of one client id race takeovers; a handshake that loses
    // one is swept after twice the connect timeout, inside the wait below.
    let b = start_with(&env, "connect_timeout_ms = 2000");
    let port = b.port("tcp");
    for _ in 0..50 {
        let mut s = raw_connect(port);
        s.write_all(&connect_packet()).expect("write");
        let mut ack = [0u8; 4];
        s.read_exact(&mut ack).expect("CONNACK");
        s.write_all(&[0xE0, 0]).expect("DISCONNECT");
        // The client closes after DISCONNECT (MQTT 3.1.1 §3.14.4).
        drop(s);
    }
    assert!(
        eventually(T, || {
            let s = b.broker().state();
            s.connections == 0
                && s.front_entries == 0
                && s.pending == 0
                && s.online == 0
                && s.sessions == 0
        }),
        "{:?}",
        b.broker().state()
    );
    let addr = b.broker().metrics_address().expect("metrics");
    let mut s = TcpStream::connect(addr).expect("metrics connect");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("mqtt_policy_broker_decisions_total{check=\"connect\",verdict=\"allow\"} 50"),
        "{text}"
    );
    assert!(
        text.contains("mqtt_policy_policy_checks_total{policy=\"passwords\",verdict=\"allow\"}"),
        "{text}"
    );
    assert!(
        text.contains("mqtt_policy_broker_check_seconds_bucket"),
        "{text}"
    );
}

//! RabbitMQ's `rabbitmq_auth_backend_http` as its MQTT plugin calls it.
//!
//! The request shapes below are the ones RabbitMQ 3.10's MQTT plugin sent
//! to a capturing server (POST, urlencoded): user (`username`, `password`,
//! `vhost`, `client_id`), vhost (`ip`, `tags`), resource (the
//! `mqtt-subscription-{id}qos{0,1}` queues and `amq.topic`), topic
//! (`routing_key` with `/` written as `.` and `+` as `*`,
//! `variable_map.client_id`). Answers: 200 with `allow` / `deny`.
//!
//! `real_rabbitmq_with_paho` starts Debian's `rabbitmq-server` with
//! `rabbitmq_mqtt` and the HTTP backend pointed at this server and drives it
//! with paho-mqtt (MQTT 3.1.1).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{self, Reply, fixture, post_form, request, start, token};

async fn user(
    addr: SocketAddr,
    client_id: &str,
    username: &str,
    password: &str,
) -> anyhow::Result<Reply> {
    post_form(
        addr,
        "/rabbitmq/user",
        &[
            ("username", username),
            ("password", password),
            ("vhost", "/"),
            ("client_id", client_id),
        ],
    )
    .await
}

async fn topic(
    addr: SocketAddr,
    client_id: &str,
    permission: &str,
    routing_key: &str,
) -> anyhow::Result<Reply> {
    post_form(
        addr,
        "/rabbitmq/topic",
        &[
            ("username", "JWT"),
            ("vhost", "/"),
            ("resource", "topic"),
            ("name", "amq.topic"),
            ("permission", permission),
            ("tags", ""),
            ("routing_key", routing_key),
            ("variable_map.client_id", client_id),
            ("variable_map.username", "JWT"),
            ("variable_map.vhost", "/"),
        ],
    )
    .await
}

async fn resource(
    addr: SocketAddr,
    client_id: &str,
    kind: &str,
    name: &str,
    permission: &str,
) -> anyhow::Result<Reply> {
    post_form(
        addr,
        "/rabbitmq/resource",
        &[
            ("username", "JWT"),
            ("vhost", "/"),
            ("resource", kind),
            ("name", name),
            ("permission", permission),
            ("tags", ""),
            ("client_id", client_id),
        ],
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_shapes_of_the_mqtt_plugin() -> anyhow::Result<()> {
    let f = fixture()?;
    let server = start(
        &f.chain_path,
        "superuser_role = \"admin\"\n[rabbitmq]\ntag_roles = [\"administrator\"]",
    )
    .await?;
    let addr = server.local_addr();
    let good = token("alice", &["alice/#"], &["administrator"]);

    let r = user(addr, "c1", "JWT", &good).await?;
    assert_eq!((r.status, r.body.as_str()), (200, "allow administrator"));
    let r = user(addr, "c2", "JWT", "bad-token").await?;
    assert_eq!((r.status, r.body.as_str()), (200, "deny"));
    // Another virtual host than the configured ones.
    let r = post_form(
        addr,
        "/rabbitmq/user",
        &[
            ("username", "JWT"),
            ("password", &good),
            ("vhost", "other"),
            ("client_id", "c3"),
        ],
    )
    .await?;
    assert_eq!(r.body, "deny");

    let vhost = |cid: &'static str| async move {
        post_form(
            addr,
            "/rabbitmq/vhost",
            &[
                ("username", "JWT"),
                ("vhost", "/"),
                ("ip", "127.0.0.1"),
                ("tags", ""),
                ("client_id", cid),
            ],
        )
        .await
    };
    assert_eq!(vhost("c1").await?.body, "allow");
    assert_eq!(vhost("c2").await?.body, "deny");

    for (kind, name, permission, expected) in [
        ("queue", "mqtt-subscription-c1qos0", "configure", "allow"),
        ("queue", "mqtt-subscription-c1qos1", "read", "allow"),
        ("exchange", "amq.topic", "write", "allow"),
        ("exchange", "amq.topic", "read", "allow"),
        ("exchange", "amq.topic", "configure", "deny"),
        ("queue", "mqtt-subscription-c2qos0", "configure", "deny"),
        ("queue", "orders", "read", "deny"),
    ] {
        let r = resource(addr, "c1", kind, name, permission).await?;
        assert_eq!(r.body, expected, "{kind} {name} {permission}");
    }
    // Another client's session cannot use c1's queues.
    assert_eq!(
        resource(addr, "c2", "queue", "mqtt-subscription-c2qos0", "read")
            .await?
            .body,
        "deny"
    );

    for (permission, key, expected) in [
        ("write", "alice.t", "allow"),
        ("write", "alice.a.b", "allow"),
        ("write", "bob.t", "deny"),
        ("read", "alice.*", "allow"),
        ("read", "alice.#", "allow"),
        ("read", "#", "deny"),
        ("read", "*.t", "deny"),
    ] {
        let r = topic(addr, "c1", permission, key).await?;
        assert_eq!(
            (r.status, r.body.as_str()),
            (200, expected),
            "{permission} {key}"
        );
    }
    // No session for c2: every topic is refused.
    assert_eq!(topic(addr, "c2", "write", "alice.t").await?.body, "deny");

    // GET with a query string is the backend's default method.
    let q = common::form(&[
        ("username", "JWT"),
        ("password", &good),
        ("vhost", "/"),
        ("client_id", "g1"),
    ]);
    let r = request(addr, "GET", &format!("/rabbitmq/user?{q}"), &[], b"").await?;
    assert_eq!(r.body, "allow administrator");
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_rabbitmq_requests_are_4xx() -> anyhow::Result<()> {
    let f = fixture()?;
    let server = start(&f.chain_path, "").await?;
    let addr = server.local_addr();
    type Pairs<'a> = &'a [(&'a str, &'a str)];
    let cases: [(&str, Pairs, &str); 5] = [
        (
            "/rabbitmq/user",
            &[("password", "x")],
            "missing field \"username\"",
        ),
        (
            "/rabbitmq/user",
            &[("username", "u")],
            "missing field \"client_id\"",
        ),
        (
            "/rabbitmq/topic",
            &[
                ("username", "u"),
                ("vhost", "/"),
                ("name", "amq.topic"),
                ("permission", "configure"),
                ("routing_key", "a"),
                ("variable_map.client_id", "c"),
            ],
            "not write or read",
        ),
        (
            "/rabbitmq/resource",
            &[
                ("username", "u"),
                ("vhost", "/"),
                ("resource", "queue"),
                ("name", "q"),
                ("permission", "delete"),
                ("client_id", "c"),
            ],
            "not configure, write or read",
        ),
        (
            "/rabbitmq/user",
            &[("username", "u"), ("username", "v"), ("client_id", "c")],
            "more than once",
        ),
    ];
    for (path, pairs, message) in cases {
        let r = post_form(addr, path, pairs).await?;
        assert_eq!(r.status, 400, "{pairs:?}");
        assert!(r.body.contains(message), "{pairs:?}: {}", r.body);
        assert!(!r.body.starts_with("allow"));
    }
    server.shutdown().await;
    Ok(())
}

/// A RabbitMQ node in a temp dir, on its own ports; stopped on drop.
struct Rabbit {
    child: Child,
    env: Vec<(String, String)>,
}

impl Drop for Rabbit {
    fn drop(&mut self) {
        let _ = Command::new("/usr/lib/rabbitmq/bin/rabbitmqctl")
            .arg("shutdown")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        // epmd daemonizes; stop the one this node started on its own port.
        let _ = Command::new("epmd")
            .arg("-kill")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn start_rabbit(dir: &Path, webhook: SocketAddr, mqtt_port: u16) -> anyhow::Result<Rabbit> {
    let base = format!("http://{webhook}/rabbitmq");
    std::fs::write(
        dir.join("rabbitmq.conf"),
        format!(
            "listeners.tcp = none\n\
             mqtt.listeners.tcp.default = 127.0.0.1:{mqtt_port}\n\
             mqtt.allow_anonymous = false\n\
             auth_backends.1 = http\n\
             auth_http.http_method = post\n\
             auth_http.user_path = {base}/user\n\
             auth_http.vhost_path = {base}/vhost\n\
             auth_http.resource_path = {base}/resource\n\
             auth_http.topic_path = {base}/topic\n\
             log.console = false\n"
        ),
    )?;
    std::fs::write(
        dir.join("enabled_plugins"),
        "[rabbitmq_mqtt,rabbitmq_auth_backend_http].\n",
    )?;
    let d = dir.display();
    let node = format!("mqttpolicy{mqtt_port}@localhost");
    let env: Vec<(String, String)> = [
        ("HOME", d.to_string()),
        ("RABBITMQ_BASE", d.to_string()),
        ("RABBITMQ_CONFIG_FILE", format!("{d}/rabbitmq")),
        (
            "RABBITMQ_ENABLED_PLUGINS_FILE",
            format!("{d}/enabled_plugins"),
        ),
        ("RABBITMQ_MNESIA_BASE", format!("{d}/mnesia")),
        ("RABBITMQ_LOG_BASE", format!("{d}/log")),
        ("RABBITMQ_PID_FILE", format!("{d}/rabbit.pid")),
        ("RABBITMQ_NODENAME", node),
        ("RABBITMQ_DIST_PORT", common::free_port()?.to_string()),
        ("ERL_EPMD_PORT", common::free_port()?.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    let log = std::fs::File::create(dir.join("server.log"))?;
    let child = Command::new("/usr/lib/rabbitmq/bin/rabbitmq-server")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()?;
    Ok(Rabbit { child, env })
}

pub const PAHO_DRIVER: &str = r#"
# Connects every step's client (in order), then makes each one's
# subscriptions, then each one's publishes, waits, and reports per client:
# the CONNACK code, the SUBACK entry per filter (None: no SUBACK, the broker
# closed the connection), the topics received, and whether it is still
# connected. paho-mqtt's VERSION1 callbacks hand over the raw MQTT 3.1.1
# codes; VERSION2 would translate them to MQTT 5 values.
import json, sys, time, threading, warnings
warnings.simplefilter("ignore")
import paho.mqtt.client as mqtt

port = int(sys.argv[1])
steps = json.loads(sys.argv[2])

def client(cid, user, password):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id=cid, protocol=mqtt.MQTTv311,
                    reconnect_on_failure=False)
    c.username_pw_set(user, password)
    c.got = []
    c.rc = None
    c.connack = threading.Event()
    c.suback = threading.Event()
    def on_connect(cl, u, flags, rc):
        cl.rc = int(rc)
        cl.connack.set()
    def on_subscribe(cl, u, mid, granted):
        cl.granted = [int(g) for g in granted]
        cl.suback.set()
    c.on_connect = on_connect
    c.on_subscribe = on_subscribe
    c.on_message = lambda cl, u, m: cl.got.append(m.topic)
    return c

clients, out = [], []
for step in steps:
    c = client(step["client_id"], step["username"], step["password"])
    result = {"client_id": step["client_id"]}
    out.append(result)
    try:
        c.connect("127.0.0.1", port, keepalive=30)
    except Exception as e:
        result["error"] = str(e)
        clients.append(None)
        continue
    c.loop_start()
    c.connack.wait(10)
    result["connack"] = c.rc
    if c.rc != 0:
        c.loop_stop()
        c = None
    clients.append(c)

for step, c, result in zip(steps, clients, out):
    if c is None:
        continue
    granted = []
    for f in step.get("subscribe", []):
        c.suback.clear()
        c.subscribe(f, qos=0)
        granted.append(c.granted[0] if c.suback.wait(5) else None)
    result["granted"] = granted

for step, c in zip(steps, clients):
    if c is not None:
        for t in step.get("publish", []):
            c.publish(t, b"x", qos=0)

time.sleep(max([s.get("wait", 1.5) for s in steps] + [1.5]))
for c, result in zip(clients, out):
    if c is None:
        continue
    result["received"] = sorted(set(c.got))
    result["connected"] = c.is_connected()
    c.disconnect()
    c.loop_stop()
print(json.dumps(out))
"#;

/// Run the paho driver against `port` with `steps`; returns its results.
pub fn paho(
    dir: &Path,
    port: u16,
    steps: &serde_json::Value,
    driver: &str,
) -> anyhow::Result<serde_json::Value> {
    let script = dir.join("paho_driver.py");
    std::fs::write(&script, driver)?;
    let out = Command::new("timeout")
        .args(["120", "python3"])
        .arg(&script)
        .arg(port.to_string())
        .arg(steps.to_string())
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "paho driver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(serde_json::from_slice(&out.stdout)?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_rabbitmq_with_paho() -> anyhow::Result<()> {
    let installed = Path::new("/usr/lib/rabbitmq/bin/rabbitmq-server").exists();
    if !installed || !common::python_has(&["paho.mqtt.client"]) {
        anyhow::ensure!(
            !common::required(),
            "rabbitmq-server or paho-mqtt is not installed"
        );
        eprintln!(
            "SKIP real_rabbitmq_with_paho: rabbitmq-server or paho-mqtt not installed (scripts/test.sh installs them)"
        );
        return Ok(());
    }
    let f = fixture()?;
    let server = start(&f.chain_path, "").await?;
    let mqtt_port = common::free_port()?;
    let rabbit_dir = tempfile::tempdir()?;
    let rabbit = start_rabbit(rabbit_dir.path(), server.local_addr(), mqtt_port)?;
    let up = tokio::task::spawn_blocking(move || {
        common::wait_for_port(mqtt_port, Duration::from_secs(60))
    })
    .await?;
    let up = match up {
        Ok(t) => t,
        Err(e) => {
            let log =
                std::fs::read_to_string(rabbit_dir.path().join("server.log")).unwrap_or_default();
            anyhow::bail!("RabbitMQ did not start: {e}\n{log}");
        }
    };
    eprintln!("RabbitMQ accepted MQTT connections after {up:?}");

    let alice = token("alice", &["alice/#"], &[]);
    let bob = token("bob", &["bob/#"], &[]);
    let carol = token("carol", &["carol/#"], &[]);
    let steps = serde_json::json!([
        {"client_id": "alice", "username": "JWT", "password": alice, "subscribe": ["alice/#"], "publish": ["alice/own"]},
        // bob may not publish to alice/...: RabbitMQ refuses it and closes bob's connection.
        {"client_id": "bob", "username": "JWT", "password": bob, "publish": ["alice/from-bob"]},
        // carol may not subscribe to alice/#: no SUBACK, RabbitMQ 3.10 closes the connection.
        {"client_id": "carol", "username": "JWT", "password": carol, "subscribe": ["carol/#", "alice/#"]},
        {"client_id": "intruder", "username": "JWT", "password": "forged.token.value"},
        {"client_id": "nobody", "username": "guest", "password": "guest"},
    ]);
    let dir = f.dir.path().to_owned();
    let results =
        tokio::task::spawn_blocking(move || paho(&dir, mqtt_port, &steps, PAHO_DRIVER)).await??;
    let metrics = common::request(server.local_addr(), "GET", "/metrics", &[], b"")
        .await?
        .body;
    let decisions: Vec<&str> = metrics
        .lines()
        .filter(|l| l.starts_with("mqtt_policy_webhook_decisions"))
        .collect();
    let context = format!("{results}\n{}", decisions.join("\n"));
    let [alice, bob, carol, intruder, nobody] = [0, 1, 2, 3, 4].map(|i| &results[i]);
    assert_eq!(alice["connack"], 0, "{context}");
    assert_eq!(alice["granted"], serde_json::json!([0]), "{context}");
    // Its own publish came back; bob's refused one was never routed.
    assert_eq!(
        alice["received"],
        serde_json::json!(["alice/own"]),
        "{context}"
    );
    assert_eq!(alice["connected"], true, "{context}");
    assert_eq!(bob["connack"], 0, "{context}");
    assert_eq!(bob["connected"], false, "{context}");
    assert_eq!(carol["granted"], serde_json::json!([0, null]), "{context}");
    assert_eq!(carol["connected"], false, "{context}");
    // A refused login: CONNACK 4 (bad user name or password), RabbitMQ's
    // code for any refusal by the auth backend.
    assert_eq!(intruder["connack"], 4, "{context}");
    assert_eq!(nobody["connack"], 4, "{context}");
    assert!(
        metrics.contains("endpoint=\"rabbitmq_topic\",policy=\"topics\",verdict=\"deny\""),
        "{context}"
    );
    drop(rabbit);
    server.shutdown().await;
    Ok(())
}

//! amqtt 0.12.1's HTTP plugins: the request shapes its code sends (JSON
//! bodies on GET, forms with Python's `None` as the text "None", `acc`
//! 1/2/4), the three response modes it reads, and the real broker with its
//! plugins pointed at this server, driven by paho-mqtt.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{self, Reply, fixture, request, start, token};

async fn get_json(addr: SocketAddr, path: &str, body: &Value) -> anyhow::Result<Reply> {
    // amqtt's default: GET with a JSON body.
    request(
        addr,
        "GET",
        path,
        &[
            ("Content-Type", "application/json"),
            ("User-Agent", "amqtt"),
        ],
        body.to_string().as_bytes(),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_mode_user_and_acl() -> anyhow::Result<()> {
    let f = fixture()?;
    let server = start(&f.chain_path, "superuser_role = \"admin\"").await?;
    let addr = server.local_addr();
    let good = token("alice", &["alice/#"], &[]);

    let r = get_json(
        addr,
        "/amqtt/user",
        &json!({"username": "JWT", "password": good, "client_id": "a1"}),
    )
    .await?;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/json"));
    assert_eq!(r.json(), json!({"ok": true}));

    for (topic, acc, ok) in [
        ("alice/x", 2, true),
        ("alice/x", 1, true),
        ("alice/#", 4, true),
        ("alice/x", 3, true),
        ("bob/x", 2, false),
        ("bob/x", 1, false),
        ("#", 4, false),
        ("bob/x", 3, false),
    ] {
        let r = get_json(
            addr,
            "/amqtt/acl",
            &json!({"username": "JWT", "client_id": "a1", "topic": topic, "acc": acc}),
        )
        .await?;
        assert_eq!(r.status, 200, "{topic} {acc}");
        assert_eq!(r.json()["ok"], ok, "{topic} {acc}");
    }
    // A topic check for a client with no allowed connect: deny.
    let r = get_json(
        addr,
        "/amqtt/acl",
        &json!({"username": "JWT", "client_id": "a2", "topic": "alice/x", "acc": 2}),
    )
    .await?;
    assert_eq!(r.json()["ok"], false);

    // A wrong password: ok false, with the reason.
    let r = get_json(
        addr,
        "/amqtt/user",
        &json!({"username": "JWT", "password": "x", "client_id": "a3"}),
    )
    .await?;
    assert_eq!(
        r.json(),
        json!({"ok": false, "error": "bad-username-or-password"})
    );
    // No username at all (JSON null), as amqtt sends for anonymous clients.
    let r = get_json(
        addr,
        "/amqtt/user",
        &json!({"username": null, "password": null, "client_id": "a4"}),
    )
    .await?;
    assert_eq!(r.json()["ok"], false);

    // The superuser URI: only grants holding superuser_role.
    let r = get_json(
        addr,
        "/amqtt/superuser",
        &json!({"username": "JWT", "client_id": "a1"}),
    )
    .await?;
    assert_eq!(r.json()["ok"], false);
    let admin = token("root", &["#"], &["admin"]);
    get_json(
        addr,
        "/amqtt/user",
        &json!({"username": "JWT", "password": admin, "client_id": "root"}),
    )
    .await?;
    let r = get_json(
        addr,
        "/amqtt/superuser",
        &json!({"username": "JWT", "client_id": "root"}),
    )
    .await?;
    assert_eq!(r.json()["ok"], true);
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_params_and_status_and_text_modes() -> anyhow::Result<()> {
    let f = fixture()?;
    let good = token("carol", &["carol/#"], &[]);
    // Status mode: 2xx grants, 4xx denies.
    let server = start(&f.chain_path, "[amqtt]\nresponse_mode = \"status\"").await?;
    let addr = server.local_addr();
    let r = common::post_form(
        addr,
        "/amqtt/user",
        &[
            ("username", "JWT"),
            ("password", &good),
            ("client_id", "f1"),
        ],
    )
    .await?;
    assert_eq!(r.status, 200);
    let q = common::form(&[
        ("username", "JWT"),
        ("client_id", "f1"),
        ("topic", "carol/t"),
        ("acc", "2"),
    ]);
    assert_eq!(
        request(addr, "GET", &format!("/amqtt/acl?{q}"), &[], b"")
            .await?
            .status,
        200
    );
    let q = common::form(&[
        ("username", "JWT"),
        ("client_id", "f1"),
        ("topic", "dave/t"),
        ("acc", "2"),
    ]);
    assert_eq!(
        request(addr, "GET", &format!("/amqtt/acl?{q}"), &[], b"")
            .await?
            .status,
        403
    );
    // amqtt's form POST writes Python's None as "None": no username, no password.
    let r = common::post_form(
        addr,
        "/amqtt/user",
        &[
            ("username", "None"),
            ("password", "None"),
            ("client_id", "anon"),
        ],
    )
    .await?;
    assert_eq!(r.status, 403);
    // PUT is one of the plugin's methods.
    let r = request(
        addr,
        "PUT",
        "/amqtt/user",
        &[("Content-Type", "application/json")],
        json!({"username": "JWT", "password": good, "client_id": "f2"})
            .to_string()
            .as_bytes(),
    )
    .await?;
    assert_eq!(r.status, 200);
    server.shutdown().await;

    // Text mode: "ok" grants, anything else denies.
    let server = start(&f.chain_path, "[amqtt]\nresponse_mode = \"text\"").await?;
    let addr = server.local_addr();
    let r = common::post_form(
        addr,
        "/amqtt/user",
        &[
            ("username", "JWT"),
            ("password", &good),
            ("client_id", "t1"),
        ],
    )
    .await?;
    assert_eq!((r.status, r.body.as_str()), (200, "ok"));
    let r = common::post_form(
        addr,
        "/amqtt/user",
        &[
            ("username", "JWT"),
            ("password", "bad"),
            ("client_id", "t2"),
        ],
    )
    .await?;
    assert_ne!(r.body.to_lowercase(), "ok");
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_amqtt_requests_are_4xx_in_every_mode() -> anyhow::Result<()> {
    let f = fixture()?;
    for mode in ["json", "status", "text"] {
        let server = start(
            &f.chain_path,
            &format!("[amqtt]\nresponse_mode = \"{mode}\""),
        )
        .await?;
        let addr = server.local_addr();
        let cases = [
            (
                "/amqtt/user",
                json!({"username": "u", "password": "p"}),
                "missing field \"client_id\"",
            ),
            (
                "/amqtt/acl",
                json!({"client_id": "c", "topic": "t"}),
                "missing field \"acc\"",
            ),
            (
                "/amqtt/acl",
                json!({"client_id": "c", "topic": "t", "acc": 8}),
                "is not 1",
            ),
            (
                "/amqtt/acl",
                json!({"client_id": "c", "topic": "t", "acc": "two"}),
                "unsigned integer",
            ),
            (
                "/amqtt/user",
                json!({"client_id": ["c"]}),
                "expected a string",
            ),
        ];
        for (path, body, message) in cases {
            let r = get_json(addr, path, &body).await?;
            assert_eq!(r.status, 400, "{mode} {body}");
            // Never amqtt's grant in any mode, never its no-op (5xx, or a 2xx without `ok`).
            assert_eq!(r.json()["ok"], false, "{mode} {body}");
            let error = r.json()["error"].as_str().unwrap_or_default().to_owned();
            assert!(error.contains(message), "{mode} {body}: {error}");
        }
        server.shutdown().await;
    }
    Ok(())
}

/// amqtt's broker from a script (its HTTP plugins' config fields are enums,
/// so a YAML config cannot set them); killed on drop.
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

const BROKER: &str = r#"
import asyncio, sys, logging
from amqtt.broker import Broker
from amqtt.contrib.http import RequestMethod, ParamsMode, ResponseMode

mqtt_port, webhook_port = int(sys.argv[1]), int(sys.argv[2])
method, params, response = sys.argv[3], sys.argv[4], sys.argv[5]
logging.basicConfig(level=logging.WARNING)
http = {
    "host": "127.0.0.1",
    "port": webhook_port,
    "request_method": RequestMethod(method),
    "params_mode": ParamsMode(params),
    "response_mode": ResponseMode(response),
}
config = {
    "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{mqtt_port}"}},
    "plugins": {
        "amqtt.contrib.http.UserAuthHttpPlugin": dict(http, user_uri="/amqtt/user"),
        "amqtt.contrib.http.TopicAuthHttpPlugin": dict(http, topic_uri="/amqtt/acl"),
    },
}

async def main():
    broker = Broker(config)
    await broker.start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"#;

fn start_broker(
    dir: &Path,
    mqtt_port: u16,
    webhook_port: u16,
    modes: [&str; 3],
) -> anyhow::Result<Broker> {
    let script = dir.join("amqtt_broker.py");
    std::fs::write(&script, BROKER)?;
    let log = std::fs::File::create(dir.join(format!("amqtt-{mqtt_port}.log")))?;
    let child = Command::new("python3")
        .arg(&script)
        .args([mqtt_port.to_string(), webhook_port.to_string()])
        .args(modes)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()?;
    Ok(Broker(child))
}

/// `pip install amqtt==0.12.1 aiohttp sqlalchemy paho-mqtt`, once, if missing.
fn amqtt_installed() -> bool {
    let have = || common::python_has(&["amqtt.contrib.http", "paho.mqtt.client", "sqlalchemy"]);
    if have() {
        return true;
    }
    if std::env::var("MQTT_POLICY_NO_PIP").is_ok_and(|v| v == "1") {
        return false;
    }
    let ok = Command::new("timeout")
        .args([
            "300",
            "python3",
            "-m",
            "pip",
            "install",
            "-q",
            "amqtt==0.12.1",
            "aiohttp",
            "sqlalchemy",
            "paho-mqtt",
        ])
        .status()
        .is_ok_and(|s| s.success());
    ok && have()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_amqtt_with_paho() -> anyhow::Result<()> {
    if !tokio::task::spawn_blocking(amqtt_installed).await? {
        anyhow::ensure!(
            !common::required(),
            "amqtt 0.12.1 / paho-mqtt cannot be installed"
        );
        eprintln!("SKIP real_amqtt_with_paho: amqtt 0.12.1 or paho-mqtt not available");
        return Ok(());
    }
    let f = fixture()?;
    let alice = token("alice", &["alice/#"], &[]);
    let bob = token("bob", &["bob/#"], &[]);
    // json mode with amqtt's default GET + JSON body; status mode with POST
    // forms; text mode with PUT + JSON.
    for (modes, webhook_mode) in [
        (["get", "json", "json"], "json"),
        (["post", "form", "status"], "status"),
        (["put", "json", "text"], "text"),
    ] {
        let server = start(
            &f.chain_path,
            &format!("[amqtt]\nresponse_mode = \"{webhook_mode}\""),
        )
        .await?;
        let mqtt_port = common::free_port()?;
        let broker = start_broker(f.dir.path(), mqtt_port, server.local_addr().port(), modes)?;
        tokio::task::spawn_blocking(move || {
            common::wait_for_port(mqtt_port, Duration::from_secs(30))
        })
        .await??;
        let steps = json!([
            {"client_id": "alice", "username": "JWT", "password": alice, "subscribe": ["alice/#"], "publish": ["alice/own"]},
            // bob: SUBACK 0x80 for alice/#, and its publish to alice/... is dropped.
            {"client_id": "bob", "username": "JWT", "password": bob, "subscribe": ["bob/#", "alice/#"],
             "publish": ["alice/from-bob", "bob/own"]},
            {"client_id": "intruder", "username": "JWT", "password": "forged"},
        ]);
        let dir = f.dir.path().to_owned();
        let results = tokio::task::spawn_blocking(move || {
            crate::rabbitmq::paho(&dir, mqtt_port, &steps, crate::rabbitmq::PAHO_DRIVER)
        })
        .await??;
        let [alice, bob, intruder] = [0, 1, 2].map(|i| &results[i]);
        assert_eq!(alice["connack"], 0, "{modes:?}: {results}");
        assert_eq!(alice["granted"], json!([0]), "{modes:?}: {results}");
        assert_eq!(
            alice["received"],
            json!(["alice/own"]),
            "{modes:?}: {results}"
        );
        assert_eq!(bob["granted"], json!([0, 128]), "{modes:?}: {results}");
        assert_eq!(bob["received"], json!(["bob/own"]), "{modes:?}: {results}");
        assert_eq!(bob["connected"], true, "{modes:?}: {results}");
        // amqtt refuses a failed authentication with CONNACK 5 (not authorized).
        assert_eq!(intruder["connack"], 5, "{modes:?}: {results}");
        drop(broker);
        let m = common::request(server.local_addr(), "GET", "/metrics", &[], b"").await?;
        assert!(
            m.body
                .contains("endpoint=\"amqtt_acl\",policy=\"topics\",verdict=\"deny\""),
            "{}",
            m.body
        );
        server.shutdown().await;
    }
    Ok(())
}

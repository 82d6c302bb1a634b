//! Checks per second and latency of `mqtt-policy serve` on loopback, per
//! protocol, with keep-alive and several concurrent connections.
//!
//! ```text
//! cargo bench -p mqtt-policy-webhook --bench webhook [-- SECONDS CONNECTIONS CLIENT_THREADS SERVER_THREADS]
//! ```
//!
//! The server runs on its own 2-thread tokio runtime; the load generator
//! (hyper's HTTP/1.1 client, one connection per task, each request sent as
//! soon as the previous answer arrived) on another (2 threads by default),
//! in the same process on the same machine. Policies are the real guests built from source: jwt
//! (HS256) and thumbprint for connects, topic-list for topic checks.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;
use mqtt_policy_host::PolicyHost;
use mqtt_policy_tests::{guests, now, sign_jwt, toml_str};
use mqtt_policy_webhook::{ServeConfig, Server};
use serde_json::json;

const SECRET: &str = "bench-secret";

struct Case {
    name: &'static str,
    path: &'static str,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    body: String,
    /// A check that the answer is the expected one (an allow).
    expect: &'static str,
}

fn chain(dir: &Path, sha1: &str) -> anyhow::Result<std::path::PathBuf> {
    let text = format!(
        r#"
[[policy]]
name = "certs"
module = {thumbprint}
[policy.config]
thumbprints = [{sha1}]
missing_certificate = "defer"
roles = ["device"]

[[policy]]
name = "jwt"
module = {jwt}
[policy.config]
keys = [{{ alg = "HS256", secret = {secret} }}]

[[policy]]
name = "topics"
module = {topics}
[policy.config]
session_topics = "topics"
"#,
        thumbprint = toml_str(guests::THUMBPRINT),
        jwt = toml_str(guests::JWT),
        topics = toml_str(guests::TOPIC_LIST),
        sha1 = toml_str(sha1),
        secret = toml_str(SECRET),
    );
    mqtt_policy_tests::write_chain(dir, &text)
}

fn form(pairs: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        s.append_pair(k, v);
    }
    s.finish()
}

fn cases(token: &str, cert_pem: &str, cert_sha1: &str) -> Vec<Case> {
    let json_ct = "application/json";
    let form_ct = "application/x-www-form-urlencoded";
    vec![
        Case {
            name: "amqtt user (connect, JWT HS256)",
            path: "/amqtt/user",
            content_type: json_ct,
            headers: vec![],
            body: json!({"username": "JWT", "password": token, "client_id": "bench"}).to_string(),
            expect: "\"ok\":true",
        },
        Case {
            name: "amqtt acl (publish)",
            path: "/amqtt/acl",
            content_type: json_ct,
            headers: vec![],
            body: json!({"username": "JWT", "client_id": "bench", "topic": "bench/t", "acc": 2}).to_string(),
            expect: "\"ok\":true",
        },
        Case {
            name: "azure connect (certificate, 3.1.1)",
            path: "/azure/mqtt",
            content_type: "application/json; charset=utf-8",
            headers: vec![
                ("ce-type", "azure.webpubsub.sys.connect".into()),
                ("ce-connectionId", "sensor7".into()),
                ("ce-specversion", "1.0".into()),
            ],
            body: json!({"mqtt": {"protocolVersion": 4, "cleanStart": true},
                         "clientCertificates": [{"thumbprint": cert_sha1, "content": cert_pem}]})
            .to_string(),
            expect: "\"roles\":[\"device\"]",
        },
        Case {
            name: "emqx authn (connect, JWT HS256)",
            path: "/emqx/authn",
            content_type: json_ct,
            headers: vec![],
            body: json!({"clientid": "bench", "username": "JWT", "password": token, "peerhost": "127.0.0.1"})
                .to_string(),
            expect: "\"result\":\"allow\"",
        },
        Case {
            name: "emqx authz (publish)",
            path: "/emqx/authz",
            content_type: json_ct,
            headers: vec![],
            body: json!({"clientid": "bench", "username": "JWT", "topic": "bench/t", "action": "publish", "qos": 1, "retain": false})
                .to_string(),
            expect: "\"result\":\"allow\"",
        },
        Case {
            name: "rabbitmq user (connect, JWT HS256)",
            path: "/rabbitmq/user",
            content_type: form_ct,
            headers: vec![],
            body: form(&[("username", "JWT"), ("password", token), ("vhost", "/"), ("client_id", "bench")]),
            expect: "allow",
        },
        Case {
            name: "rabbitmq topic (publish)",
            path: "/rabbitmq/topic",
            content_type: form_ct,
            headers: vec![],
            body: form(&[
                ("username", "JWT"),
                ("vhost", "/"),
                ("resource", "topic"),
                ("name", "amq.topic"),
                ("permission", "write"),
                ("routing_key", "bench.t"),
                ("variable_map.client_id", "bench"),
            ]),
            expect: "allow",
        },
    ]
}

struct Outcome {
    checks: u64,
    elapsed: Duration,
    latencies_us: Vec<u32>,
}

async fn load(
    addr: SocketAddr,
    case: Arc<Case>,
    connections: usize,
    seconds: f64,
) -> anyhow::Result<Outcome> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let case = case.clone();
        tasks.push(tokio::spawn(async move {
            let stream = tokio::net::TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            let (mut sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(conn);
            let mut latencies = Vec::with_capacity(100_000);
            while Instant::now() < deadline {
                let mut req = Request::post(case.path)
                    .header("host", "127.0.0.1")
                    .header("content-type", case.content_type);
                for (k, v) in &case.headers {
                    req = req.header(*k, v.as_str());
                }
                let req = req.body(Full::new(Bytes::from(case.body.clone())))?;
                let t = Instant::now();
                let exchange = async {
                    let resp = sender.send_request(req).await?;
                    anyhow::Ok(resp.into_body().collect().await?.to_bytes())
                };
                let body = tokio::time::timeout(Duration::from_secs(10), exchange)
                    .await
                    .map_err(|_| anyhow::anyhow!("{}: no answer within 10 s", case.name))??;
                let us = u32::try_from(t.elapsed().as_micros()).unwrap_or(u32::MAX);
                anyhow::ensure!(
                    String::from_utf8_lossy(&body).contains(case.expect),
                    "{}: unexpected answer {:?}",
                    case.name,
                    String::from_utf8_lossy(&body)
                );
                latencies.push(us);
            }
            anyhow::Ok(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = started.elapsed();
    all.sort_unstable();
    Ok(Outcome {
        checks: all.len() as u64,
        elapsed,
        latencies_us: all,
    })
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; take the numbers that are numbers.
    let numbers: Vec<f64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let seconds = numbers.first().copied().unwrap_or(5.0);
    let connections = numbers.get(1).map_or(16, |c| *c as usize);
    let client_threads = numbers.get(2).map_or(2, |c| *c as usize);
    let server_threads = numbers.get(3).map_or(2, |c| *c as usize);

    let dir = tempfile::tempdir()?;
    let cert = mqtt_policy_tests::self_signed(dir.path(), "sensor-7")?;
    let chain_path = chain(dir.path(), &cert.sha1)?;
    let token = sign_jwt(
        "HS256",
        SECRET,
        None,
        &json!({"sub": "bench", "exp": now() + 3600, "topics": ["bench/#"]}),
    )?;
    let config = ServeConfig::from_toml(
        &format!(
            "listen = \"127.0.0.1:0\"\nchain = {}\n[rate_limit]\nburst = 0\n[amqtt]\n[azure]\n[emqx]\n[rabbitmq]\n",
            toml_str(&chain_path.display().to_string())
        ),
        Path::new("/"),
    )
    .map_err(anyhow::Error::msg)?;

    let server_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(server_threads)
        .enable_all()
        .build()?;
    let client_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(client_threads)
        .enable_all()
        .build()?;
    let host = PolicyHost::builder(&chain_path).build()?;
    let server = server_rt.block_on(Server::start(config, host))?;
    let addr = server.local_addr();

    println!(
        "webhook on {addr}: {connections} keep-alive connections, {seconds} s per protocol, server on {server_threads} threads, load generator on {client_threads}, {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| endpoint | checks | checks/s | p50 | p99 |");
    println!("|---|---|---|---|---|");
    // WEBHOOK_BENCH_ONLY=emqx measures only the endpoints whose name contains it (for profiling).
    let only = std::env::var("WEBHOOK_BENCH_ONLY").unwrap_or_default();
    for case in cases(&token, &cert.pem, &cert.sha1) {
        if !case.name.contains(only.as_str()) {
            continue;
        }
        let case = Arc::new(case);
        // Warm up: instances, connections, caches.
        client_rt.block_on(load(addr, case.clone(), connections, 0.5))?;
        let o = client_rt.block_on(load(addr, case.clone(), connections, seconds))?;
        let rate = o.checks as f64 / o.elapsed.as_secs_f64();
        println!(
            "| {} | {} | {:.0} | {} µs | {} µs |",
            case.name,
            o.checks,
            rate,
            percentile(&o.latencies_us, 0.50),
            percentile(&o.latencies_us, 0.99),
        );
    }
    server_rt.block_on(server.shutdown());
    Ok(())
}

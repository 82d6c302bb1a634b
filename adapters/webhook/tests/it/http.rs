//! The server itself: routing, bad requests, size and time limits, slow
//! clients, caller authentication (shared secret, client certificates),
//! rate limiting, metrics and health, config errors, and `mqtt-policy serve`
//! with SIGHUP reloads.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt_policy_tests::openssl;
use mqtt_policy_webhook::ServeConfig;
use serde_json::json;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::common::{self, fixture, metric, post_json, raw, request, start, token};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_methods_and_content_types() -> anyhow::Result<()> {
    let f = fixture()?;
    let server = start(&f.chain_path, "").await?;
    let addr = server.local_addr();
    assert_eq!(
        request(addr, "GET", "/nowhere", &[], b"").await?.status,
        404
    );
    let r = request(addr, "DELETE", "/emqx/authn", &[], b"").await?;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, POST"));
    let r = request(
        addr,
        "POST",
        "/emqx/authn",
        &[("Content-Type", "text/plain")],
        b"clientid=x",
    )
    .await?;
    assert_eq!(r.status, 415);
    assert!(
        r.json()["error"]
            .as_str()
            .unwrap_or_default()
            .contains("text/plain")
    );
    let r = request(
        addr,
        "POST",
        "/emqx/authn",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        b"clientid=%FF%FE",
    )
    .await?;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("malformed form data"), "{}", r.body);
    let r = request(
        addr,
        "POST",
        "/emqx/authn",
        &[("Content-Type", "application/json")],
        b"{\"clientid\": ",
    )
    .await?;
    assert_eq!(r.status, 400);
    assert!(r.body.contains("malformed JSON"), "{}", r.body);
    let h = request(addr, "GET", "/healthz", &[], b"").await?;
    assert_eq!(
        (h.status, h.json()),
        (200, json!({"status": "ok", "generation": 0}))
    );
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_slow_requests() -> anyhow::Result<()> {
    let f = fixture()?;
    let limits = "[limits]\nmax_body_bytes = 1024\nbody_timeout_ms = 300\nheader_timeout_ms = 500";
    let server = start(&f.chain_path, limits).await?;
    let addr = server.local_addr();

    // Declared too large: refused before reading.
    let big = vec![b' '; 2048];
    let r = request(
        addr,
        "POST",
        "/emqx/authn",
        &[("Content-Type", "application/json")],
        &big,
    )
    .await?;
    assert_eq!(r.status, 413);
    assert_eq!(
        r.json()["error"],
        "request body is over the 1024 byte limit"
    );
    // Chunked, no length: cut off at the limit.
    let mut chunked = b"POST /amqtt/user HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..4 {
        chunked.extend_from_slice(b"200\r\n");
        chunked.extend_from_slice(&[b' '; 0x200]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let r = raw(addr, &chunked).await?;
    assert_eq!(r.status, 413);
    assert_eq!(r.json()["ok"], false);

    // A body that stalls: 408 after the body timeout.
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"POST /emqx/authn HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"clientid\"").await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await??;
    let r = common::parse(&buf)?;
    assert_eq!(r.status, 408);
    assert!(started.elapsed() < Duration::from_secs(5));

    // Headers that never finish: the connection is closed.
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await?;
    s.write_all(b"POST /emqx/authn HTTP/1.1\r\nHost: x\r\n")
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await??;
    assert!(
        !String::from_utf8_lossy(&buf).starts_with("HTTP/1.1 2"),
        "{buf:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));

    // An idle kept-alive connection is closed too.
    let started = Instant::now();
    let mut s = TcpStream::connect(addr).await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf)).await??;
    assert!(started.elapsed() < Duration::from_secs(5));

    // Keep-alive: several requests on one connection.
    let mut s = TcpStream::connect(addr).await?;
    for _ in 0..3 {
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await?;
        let mut chunk = [0u8; 1024];
        let n = s.read(&mut chunk).await?;
        assert!(String::from_utf8_lossy(&chunk[..n]).starts_with("HTTP/1.1 200"));
    }

    let m = request(addr, "GET", "/metrics", &[], b"").await?;
    assert!(
        m.body
            .contains("endpoint=\"emqx_authn\",policy=\"(bad-request)\",verdict=\"bad_request\""),
        "{}",
        m.body
    );
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_secret_protects_the_configured_groups() -> anyhow::Result<()> {
    let f = fixture()?;
    std::fs::write(f.dir.path().join("secret"), "s3cret-value\n")?;
    let extra = format!(
        "[auth]\nshared_secret_file = {}\nprotect = [\"emqx\", \"metrics\"]",
        mqtt_policy_tests::toml_str(&f.dir.path().join("secret").display().to_string())
    );
    let server = start(&f.chain_path, &extra).await?;
    let addr = server.local_addr();
    let body =
        json!({"clientid": "c", "username": "JWT", "password": token("a", &[], &[])}).to_string();
    let ct = ("Content-Type", "application/json");
    for (headers, status) in [
        (vec![ct], 401),
        (vec![ct, ("x-mqtt-policy-secret", "wrong")], 401),
        (
            vec![ct, ("x-mqtt-policy-secret", "s3cret-value-and-more")],
            401,
        ),
        (vec![ct, ("x-mqtt-policy-secret", "s3cret-value")], 200),
    ] {
        let r = request(addr, "POST", "/emqx/authn", &headers, body.as_bytes()).await?;
        assert_eq!(r.status, status, "{headers:?}");
    }
    assert_eq!(
        request(addr, "GET", "/metrics", &[], b"").await?.status,
        401
    );
    // Not protected: amqtt (cannot send headers) and health.
    let r = post_json(
        addr,
        "/amqtt/user",
        &json!({"client_id": "c", "username": "JWT", "password": "x"}),
    )
    .await?;
    assert_eq!(r.status, 200);
    assert_eq!(
        request(addr, "GET", "/healthz", &[], b"").await?.status,
        200
    );
    let m = request(
        addr,
        "GET",
        "/metrics",
        &[("x-mqtt-policy-secret", "s3cret-value")],
        b"",
    )
    .await?;
    assert_eq!(
        metric(&m.body, "mqtt_policy_webhook_rejected_callers_total"),
        Some(4.0)
    );
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_connects_are_rate_limited() -> anyhow::Result<()> {
    let f = fixture()?;
    let server = start(&f.chain_path, "[rate_limit]\nburst = 2\nper_minute = 0").await?;
    let addr = server.local_addr();
    let good = token("eve", &["eve/#"], &[]);
    let authn = |user: &str, password: &str, host: &str| json!({"clientid": "c", "username": user, "password": password, "peerhost": host});
    for _ in 0..2 {
        let r = post_json(addr, "/emqx/authn", &authn("JWT", "wrong", "10.0.0.1")).await?;
        assert_eq!(r.json()["result"], "deny");
    }
    // The right token now: still refused, without asking the chain.
    let r = post_json(addr, "/emqx/authn", &authn("JWT", &good, "10.0.0.9")).await?;
    assert_eq!(r.json()["result"], "deny");
    // The address is held back for any username too.
    let r = post_json(addr, "/emqx/authn", &authn("someone", "x", "10.0.0.1")).await?;
    assert_eq!(r.json()["result"], "deny");
    let m = request(addr, "GET", "/metrics", &[], b"").await?;
    assert_eq!(
        metric(
            &m.body,
            "mqtt_policy_webhook_decisions_total{endpoint=\"emqx_authn\",policy=\"(rate-limited)\",verdict=\"deny\"}"
        ),
        Some(2.0),
        "{}",
        m.body
    );
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_decisions_per_policy() -> anyhow::Result<()> {
    let f = fixture()?;
    let server = start(&f.chain_path, "").await?;
    let addr = server.local_addr();
    let good = token("m", &["m/#"], &[]);
    post_json(
        addr,
        "/emqx/authn",
        &json!({"clientid": "m1", "username": "JWT", "password": good}),
    )
    .await?;
    post_json(addr, "/emqx/authn", &json!({"clientid": "m2"})).await?;
    post_json(
        addr,
        "/emqx/authz",
        &json!({"clientid": "m1", "username": "JWT", "topic": "x", "action": "publish"}),
    )
    .await?;
    let m = request(addr, "GET", "/metrics", &[], b"").await?;
    assert_eq!(
        m.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    for line in [
        "mqtt_policy_webhook_decisions_total{endpoint=\"emqx_authn\",policy=\"jwt\",verdict=\"allow\"} 1",
        "mqtt_policy_webhook_decisions_total{endpoint=\"emqx_authn\",policy=\"(default)\",verdict=\"deny\"} 1",
        "mqtt_policy_webhook_decisions_total{endpoint=\"emqx_authz\",policy=\"topics\",verdict=\"deny\"} 1",
        "mqtt_policy_webhook_request_duration_seconds_count{endpoint=\"emqx_authn\"} 2",
        "mqtt_policy_webhook_sessions 1",
        "mqtt_policy_webhook_chain_generation 0",
    ] {
        assert!(
            m.body.lines().any(|l| l == line),
            "missing {line}:\n{}",
            m.body
        );
    }
    server.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_errors_are_clear() -> anyhow::Result<()> {
    let f = fixture()?;
    let chain = mqtt_policy_tests::toml_str(&f.chain_path.display().to_string());
    for (text, message) in [
        (format!("chain = {chain}"), "no protocol enabled"),
        (
            format!("chain = {chain}\n[emqx]\nauthn_pth = \"/x\""),
            "unknown field",
        ),
        (
            format!("chain = {chain}\n[emqx]\nauthn_path = \"/x\"\nauthz_path = \"/x\""),
            "used twice",
        ),
        (
            format!("chain = {chain}\n[emqx]\nauthn_path = \"x\""),
            "must start with '/'",
        ),
        (
            format!("chain = {chain}\n[amqtt]\nresponse_mode = \"xml\""),
            "unknown variant",
        ),
        (
            format!("chain = {chain}\n[auth]\nprotect = [\"mqtt\"]\n[emqx]"),
            "unknown group",
        ),
        (
            format!(
                "chain = {chain}\n[auth]\nshared_secret = \"x\"\nshared_secret_file = \"y\"\n[emqx]"
            ),
            "not both",
        ),
    ] {
        let e = ServeConfig::from_toml(&text, Path::new("/"))
            .err()
            .unwrap_or_default();
        assert!(e.contains(message), "{text}: {e}");
    }
    // The sample serve file parses, and names the sample chain.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/serve.toml");
    let config = ServeConfig::from_file(&example)?;
    assert!(
        config.chain.ends_with("examples/policies.toml"),
        "{:?}",
        config.chain
    );
    assert!(config.listen.ip().is_loopback());
    // A public address with no caller authentication is refused.
    let config = ServeConfig::from_toml(
        &format!("listen = \"0.0.0.0:0\"\nchain = {chain}\n[emqx]"),
        Path::new("/"),
    )
    .map_err(anyhow::Error::msg)?;
    let e = common::start_with(config)
        .await
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("refusing to listen on 0.0.0.0:0"), "{e}");
    Ok(())
}

/// A v3 leaf `name` signed by the CA `ca` (made with
/// `mqtt_policy_tests::self_signed`), with extensions `ext`; returns the
/// certificate and key paths.
fn leaf(dir: &Path, name: &str, ca: &str, ext: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
    let (key, csr, pem, extfile) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
    );
    openssl(
        dir,
        &[
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={name}"),
        ],
    )?;
    std::fs::write(
        dir.join(&extfile),
        format!("basicConstraints=CA:FALSE\n{ext}\n"),
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.pem"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-out",
            &pem,
            "-days",
            "30",
            "-extfile",
            &extfile,
        ],
    )?;
    Ok((dir.join(pem), dir.join(key)))
}

async fn tls_get(
    addr: std::net::SocketAddr,
    server_ca: &Path,
    client: Option<(&Path, &Path)>,
) -> anyhow::Result<common::Reply> {
    use rustls_pki_types::pem::PemObject as _;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(server_ca)? {
        roots.add(c?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key)?)?
        }
        None => builder.with_no_client_auth(),
    };
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let mut tls = connector
        .connect(ServerName::try_from("127.0.0.1")?.to_owned(), tcp)
        .await?;
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await?;
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), tls.read_to_end(&mut buf)).await??;
    common::parse(&buf)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_client_certificates() -> anyhow::Result<()> {
    let f = fixture()?;
    let dir = f.dir.path();
    let server_ca = mqtt_policy_tests::self_signed(dir, "server-ca")?;
    let (cert, key) = leaf(
        dir,
        "server",
        "server-ca",
        "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth",
    )?;
    let caller_ca = mqtt_policy_tests::self_signed(dir, "caller-ca")?;
    let (caller, caller_key) = leaf(dir, "caller", "caller-ca", "extendedKeyUsage=clientAuth")?;
    mqtt_policy_tests::self_signed(dir, "stranger-ca")?;
    let (stranger, stranger_key) = leaf(
        dir,
        "stranger",
        "stranger-ca",
        "extendedKeyUsage=clientAuth",
    )?;
    let q = |p: &Path| mqtt_policy_tests::toml_str(&p.display().to_string());
    let extra = format!(
        "[tls]\ncert = {}\nkey = {}\nclient_ca = {}",
        q(&cert),
        q(&key),
        q(&caller_ca.pem_path)
    );
    let server = start(&f.chain_path, &extra).await?;
    let addr = server.local_addr();
    let server_ca = server_ca.pem_path;
    let r = tls_get(addr, &server_ca, Some((&caller, &caller_key))).await?;
    assert_eq!(r.status, 200);
    // No client certificate, or one from another CA: no HTTP at all.
    assert!(tls_get(addr, &server_ca, None).await.is_err());
    assert!(
        tls_get(addr, &server_ca, Some((&stranger, &stranger_key)))
            .await
            .is_err()
    );
    // Plain HTTP on the TLS port is not answered.
    assert!(request(addr, "GET", "/healthz", &[], b"").await.is_err());
    server.shutdown().await;
    Ok(())
}

/// `mqtt-policy serve` as built by this workspace (`cargo test --workspace`
/// builds it; run alone, this test skips if it is missing or stale).
fn cli_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?.parent()?;
    let bin = dir.join("mqtt-policy");
    // A binary built before `serve` existed does not count.
    let has_serve = Command::new(&bin)
        .args(["serve", "--help"])
        .output()
        .is_ok_and(|o| o.status.success());
    has_serve.then_some(bin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_subcommand_reloads_on_sighup() -> anyhow::Result<()> {
    let Some(bin) = cli_binary() else {
        anyhow::ensure!(!common::required(), "the mqtt-policy binary is not built");
        eprintln!("SKIP serve_subcommand_reloads_on_sighup: target/release/mqtt-policy not built");
        return Ok(());
    };
    let f = fixture()?;
    let serve = f.dir.path().join("serve.toml");
    std::fs::write(
        &serve,
        "listen = \"127.0.0.1:0\"\nchain = \"chain.toml\"\ndebounce_ms = 60000\n[emqx]\n",
    )?;
    let mut child = Command::new(bin)
        .args(["serve", "--config"])
        .arg(&serve)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let pid = child.id().to_string();
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| anyhow::anyhow!("no stdout"))?;
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = || -> anyhow::Result<serde_json::Value> {
        let line = rx.recv_timeout(Duration::from_secs(60))?;
        Ok(serde_json::from_str(&line)?)
    };
    let listening = next()?;
    assert_eq!(listening["event"], "listening", "{listening}");
    let addr: std::net::SocketAddr = listening["address"].as_str().unwrap_or_default().parse()?;
    let good = token("h", &["h/#"], &[]);
    let body = json!({"clientid": "h1", "username": "JWT", "password": good});
    let ask = || post_json(addr, "/emqx/authn", &body);
    assert_eq!(ask().await?.json()["result"], "allow");

    // A chain with another JWT secret: the same token is now refused.
    let changed = std::fs::read_to_string(&f.chain_path)?.replace(common::SECRET, "another-secret");
    std::fs::write(&f.chain_path, changed)?;
    Command::new("kill").args(["-HUP", &pid]).status()?;
    let loaded = next()?;
    assert_eq!(loaded, json!({"event": "loaded", "generation": 1}));
    assert_eq!(ask().await?.json()["result"], "deny");

    // A broken chain: the reload fails and the running chain stays.
    std::fs::write(&f.chain_path, "[[policy]]\nname = ")?;
    Command::new("kill").args(["-HUP", &pid]).status()?;
    let failed = next()?;
    assert_eq!(failed["event"], "reload-failed", "{failed}");
    assert_eq!(
        request(addr, "GET", "/healthz", &[], b"").await?.json()["generation"],
        1
    );

    Command::new("kill").args(["-TERM", &pid]).status()?;
    let status = tokio::task::spawn_blocking(move || child.wait()).await??;
    assert!(status.success(), "{status}");
    Ok(())
}

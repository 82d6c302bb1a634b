//! `mqtt-load`: one load generator for every broker in BENCHMARKS.md.
//!
//! - `throughput`: P publishers publish to `PREFIX/<i>` as fast as the
//!   client allows (QoS 0) or with the inflight window full (QoS 1); S
//!   subscribers subscribe to `PREFIX/#`. Reports messages published and
//!   delivered per second and delivery latency percentiles (each payload
//!   carries its send time).
//! - `connect`: C concurrent loops of connect → CONNACK → disconnect with
//!   fresh client ids. Reports connects per second and CONNACK latency.
//!
//! Prints one JSON object.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS, TlsConfiguration, Transport};
use tokio::sync::Mutex;
use tokio_rustls::rustls;

#[derive(Clone, Copy, ValueEnum)]
enum Mode {
    Throughput,
    Connect,
}

#[derive(Parser)]
struct Args {
    #[arg(value_enum)]
    mode: Mode,
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    #[arg(long, default_value_t = 1883)]
    port: u16,
    #[arg(long)]
    username: Option<String>,
    #[arg(long)]
    password: Option<String>,
    /// CA of the server certificate: connect with TLS.
    #[arg(long)]
    cafile: Option<String>,
    /// Client certificate and key (PEM) for TLS.
    #[arg(long, requires = "key")]
    cert: Option<String>,
    #[arg(long)]
    key: Option<String>,
    #[arg(long, default_value_t = 0)]
    qos: u8,
    #[arg(long, default_value_t = 4)]
    publishers: usize,
    #[arg(long, default_value_t = 4)]
    subscribers: usize,
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    #[arg(long, default_value_t = 64)]
    payload: usize,
    #[arg(long, default_value = "demo/bench")]
    prefix: String,
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// `throughput`: messages per second per publisher (0: as fast as the
    /// client goes). A fixed rate below saturation gives delivery latency
    /// without the queueing of an overloaded run.
    #[arg(long, default_value_t = 0)]
    rate: u32,
    /// `connect`: stop after this many connection attempts in all (or at
    /// `--seconds`, whichever comes first).
    #[arg(long)]
    count: Option<u64>,
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

fn tls(args: &Args) -> anyhow::Result<Option<Transport>> {
    let Some(ca) = &args.cafile else {
        return Ok(None);
    };
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).context("cafile")? {
        roots.add(c?)?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots);
    let config = match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => {
            let chain = CertificateDer::pem_file_iter(cert)?.collect::<Result<Vec<_>, _>>()?;
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_file(key)?)?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(Some(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(config),
    ))))
}

fn options(args: &Args, id: String, transport: &Option<Transport>) -> MqttOptions {
    let mut o = MqttOptions::new(id, args.host.clone(), args.port);
    o.set_keep_alive(Duration::from_secs(30));
    o.set_max_packet_size(1 << 20, 1 << 20);
    o.set_inflight(32);
    if let (Some(u), Some(p)) = (&args.username, &args.password) {
        o.set_credentials(u.clone(), p.clone());
    }
    if let Some(t) = transport {
        o.set_transport(t.clone());
    }
    o
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)] as f64
}

async fn throughput(
    args: &Args,
    transport: Option<Transport>,
) -> anyhow::Result<serde_json::Value> {
    let qos = match args.qos {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => bail!("qos 0 or 1"),
    };
    let stop = Arc::new(AtomicBool::new(false));
    // Deliveries count while the publishers run (plus a short drain).
    let window = Arc::new(AtomicBool::new(false));
    let delivered = Arc::new(AtomicU64::new(0));
    let published = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::<u64>::new()));
    let run_id = now_micros();
    let mut tasks = Vec::new();
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(args.subscribers.max(1));
    for i in 0..args.subscribers {
        let (client, mut ev) =
            AsyncClient::new(options(args, format!("bs-{run_id}-{i}"), &transport), 1000);
        // Topics unique to this run: a backlog from an earlier run cannot
        // reach these subscribers.
        client
            .subscribe(format!("{}/{run_id}/#", args.prefix), qos)
            .await?;
        let window = window.clone();
        let (stop, delivered, latencies, ready) = (
            stop.clone(),
            delivered.clone(),
            latencies.clone(),
            ready_tx.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut local = Vec::new();
            let mut subscribed = false;
            while !stop.load(Ordering::Relaxed) {
                // Until the SUBACK, poll without a timeout: cancelling a
                // poll cancels the connect in flight, and a broker slower
                // than the timeout to answer (many CONNECTs at once, each a
                // password hash) would see the client reconnect for ever.
                // The main task's SUBACK wait bounds this.
                let polled = if subscribed {
                    tokio::time::timeout(Duration::from_millis(200), ev.poll()).await
                } else {
                    Ok(ev.poll().await)
                };
                match polled {
                    Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => {
                        subscribed = true;
                        let _ = ready.send(()).await;
                    }
                    Ok(Ok(Event::Incoming(Packet::Publish(p)))) => {
                        if !window.load(Ordering::Relaxed) {
                            continue;
                        }
                        delivered.fetch_add(1, Ordering::Relaxed);
                        if p.payload.len() >= 8 {
                            let mut b = [0u8; 8];
                            b.copy_from_slice(&p.payload[..8]);
                            local.push(now_micros().saturating_sub(u64::from_be_bytes(b)));
                        }
                    }
                    Ok(Ok(_)) | Err(_) => {}
                    Ok(Err(e)) => {
                        eprintln!("subscriber: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
            }
            latencies.lock().await.extend(local);
            let _ = client.disconnect().await;
        }));
    }
    drop(ready_tx);
    for _ in 0..args.subscribers {
        tokio::time::timeout(Duration::from_secs(30), ready_rx.recv())
            .await
            .context("subscribers did not get their SUBACK")?;
    }
    window.store(true, Ordering::Relaxed);
    let started = Instant::now();
    let measuring = Arc::new(AtomicBool::new(true));
    for i in 0..args.publishers {
        let (client, mut ev) =
            AsyncClient::new(options(args, format!("bp-{run_id}-{i}"), &transport), 100);
        let (stop, published, measuring) = (stop.clone(), published.clone(), measuring.clone());
        let topic = format!("{}/{run_id}/{i}", args.prefix);
        let size = args.payload.max(8);
        let rate = args.rate;
        tasks.push(tokio::spawn(async move {
            let driver = tokio::spawn(async move {
                loop {
                    match ev.poll().await {
                        Ok(Event::Incoming(Packet::PubAck(_))) | Ok(Event::Outgoing(_)) | Ok(_) => {
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
            });
            let mut pace = (rate > 0).then(|| {
                let mut t = tokio::time::interval(Duration::from_secs_f64(1.0 / f64::from(rate)));
                t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                t
            });
            while !stop.load(Ordering::Relaxed) {
                if let Some(t) = pace.as_mut() {
                    t.tick().await;
                }
                let mut payload = vec![0u8; size];
                payload[..8].copy_from_slice(&now_micros().to_be_bytes());
                if client
                    .publish(topic.clone(), qos, false, payload)
                    .await
                    .is_err()
                {
                    break;
                }
                if measuring.load(Ordering::Relaxed) {
                    published.fetch_add(1, Ordering::Relaxed);
                }
            }
            let _ = client.disconnect().await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            driver.abort();
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(args.seconds)).await;
    measuring.store(false, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    let pubs = published.load(Ordering::Relaxed);
    // Let in-flight deliveries land (they count: they were published in the
    // window), then close the window and stop the subscribers.
    tokio::time::sleep(Duration::from_millis(500)).await;
    window.store(false, Ordering::Relaxed);
    let dels = delivered.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
    }
    let mut lat = std::mem::take(&mut *latencies.lock().await);
    lat.sort_unstable();
    Ok(serde_json::json!({
        "mode": "throughput", "qos": args.qos, "publishers": args.publishers, "subscribers": args.subscribers,
        "payload": args.payload, "rate_per_publisher": args.rate, "seconds": elapsed,
        "published_per_s": pubs as f64 / elapsed,
        "delivered_per_s": dels as f64 / elapsed,
        "latency_p50_ms": percentile(&lat, 0.50) / 1000.0,
        "latency_p99_ms": percentile(&lat, 0.99) / 1000.0,
    }))
}

async fn connects(args: &Args, transport: Option<Transport>) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs_f64(args.seconds);
    let run_id = now_micros();
    let attempts = Arc::new(AtomicU64::new(0));
    let limit = args.count.unwrap_or(u64::MAX);
    let mut tasks = Vec::new();
    for w in 0..args.concurrency {
        let attempts = attempts.clone();
        let opts_args = (args.username.clone(), args.password.clone());
        let (host, port, transport) = (args.host.clone(), args.port, transport.clone());
        tasks.push(tokio::spawn(async move {
            let (mut ok, mut refused, mut lat) = (0u64, 0u64, Vec::new());
            let mut n = 0u64;
            while Instant::now() < deadline && attempts.fetch_add(1, Ordering::Relaxed) < limit {
                n += 1;
                let mut o = MqttOptions::new(format!("bc-{run_id}-{w}-{n}"), host.clone(), port);
                o.set_keep_alive(Duration::from_secs(30));
                if let (Some(u), Some(p)) = &opts_args {
                    o.set_credentials(u.clone(), p.clone());
                }
                if let Some(t) = &transport {
                    o.set_transport(t.clone());
                }
                let (client, mut ev) = AsyncClient::new(o, 10);
                let t0 = Instant::now();
                let accepted = loop {
                    match tokio::time::timeout(Duration::from_secs(10), ev.poll()).await {
                        Ok(Ok(Event::Incoming(Packet::ConnAck(c)))) => {
                            break c.code == rumqttc::ConnectReturnCode::Success;
                        }
                        Ok(Ok(_)) => continue,
                        Ok(Err(_)) | Err(_) => break false,
                    }
                };
                if accepted {
                    ok += 1;
                    lat.push(u64::try_from(t0.elapsed().as_micros()).unwrap_or(u64::MAX));
                    let _ = client.disconnect().await;
                    // Drive the DISCONNECT out, then drop the connection.
                    let _ = tokio::time::timeout(Duration::from_secs(2), async {
                        while let Ok(e) = ev.poll().await {
                            if matches!(e, Event::Outgoing(rumqttc::Outgoing::Disconnect)) {
                                break;
                            }
                        }
                    })
                    .await;
                } else {
                    refused += 1;
                }
            }
            (ok, refused, lat)
        }));
    }
    let started = Instant::now();
    let (mut ok, mut refused, mut lat) = (0, 0, Vec::new());
    for t in tasks {
        let (o, r, l) = t.await?;
        ok += o;
        refused += r;
        lat.extend(l);
    }
    let elapsed = if args.count.is_some() {
        started.elapsed().as_secs_f64()
    } else {
        started.elapsed().as_secs_f64().max(args.seconds)
    };
    lat.sort_unstable();
    Ok(serde_json::json!({
        "mode": "connect", "concurrency": args.concurrency, "seconds": elapsed,
        "connects": ok, "connects_per_s": ok as f64 / elapsed, "refused": refused,
        "connack_p50_ms": percentile(&lat, 0.50) / 1000.0,
        "connack_p99_ms": percentile(&lat, 0.99) / 1000.0,
    }))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let transport = tls(&args)?;
    let report = match args.mode {
        Mode::Throughput => throughput(&args, transport).await?,
        Mode::Connect => connects(&args, transport).await?,
    };
    println!("{report}");
    Ok(())
}

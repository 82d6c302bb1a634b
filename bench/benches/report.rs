//! One run, one table: per-check latency (median, p99) wasm vs native, the
//! ratio, throughput on 1 and 2 threads, cold paths and memory. Prints
//! Markdown for BENCHMARKS.md. Run with `bash bench/run.sh`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mqtt_policy_bench::{Fixture, sdk_connect, sdk_topic, write_sample_chain};
use mqtt_policy_host::{Limits, PolicyEngine, PolicyHost, WasmPolicy, cert};
use mqtt_policy_sdk::Policy as _;
use mqtt_policy_tests::{guests, rss_kib};

struct Latency {
    median: Duration,
    p99: Duration,
}

/// Time each call separately (after a warm-up) and take percentiles.
fn latency(n: usize, mut f: impl FnMut()) -> Latency {
    for _ in 0..n / 10 {
        f();
    }
    let mut samples: Vec<Duration> = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f();
        samples.push(t.elapsed());
    }
    samples.sort_unstable();
    Latency {
        median: samples[n / 2],
        p99: samples[n * 99 / 100],
    }
}

fn us(d: Duration) -> String {
    format!("{:.2} µs", d.as_secs_f64() * 1e6)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1e3)
}

fn row(what: &str, wasm: &Latency, native: Option<&Latency>) {
    match native {
        Some(n) => println!(
            "| {what} | {} | {} | {} | {} | {:.1}× |",
            us(wasm.median),
            us(wasm.p99),
            us(n.median),
            us(n.p99),
            wasm.median.as_secs_f64() / n.median.as_secs_f64().max(1e-12)
        ),
        None => println!(
            "| {what} | {} | {} | – | – | – |",
            us(wasm.median),
            us(wasm.p99)
        ),
    }
}

fn main() -> anyhow::Result<()> {
    let n: usize = std::env::var("BENCH_SAMPLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200_000);
    let engine = PolicyEngine::new()?;
    let f = Fixture::new(engine.clone())?;
    let native_publish = sdk_topic(&f.publish);
    let native_subscribe = sdk_topic(&f.subscribe);
    let native_cert = sdk_connect(&f.connect_cert);
    let native_hs = sdk_connect(&f.connect_hs256);
    let native_es = sdk_connect(&f.connect_es256);

    println!(
        "### Per-check latency on a warm instance ({n} samples each; wasm/native = ratio of medians)\n"
    );
    println!("| check | wasm median | wasm p99 | native median | native p99 | wasm/native |");
    println!("|---|---|---|---|---|---|");
    let timer = latency(n, || {});
    row("(timer overhead, included in every row)", &timer, None);
    let w = latency(n, || {
        drop(black_box(f.topic_wasm.topic_check(black_box(&f.publish))))
    });
    let nat = latency(n, || {
        drop(black_box(
            f.topic_native.topic_check(black_box(&native_publish)),
        ))
    });
    row("topic-check: publish, 3 rules, placeholder", &w, Some(&nat));
    let w = latency(n, || {
        drop(black_box(f.topic_wasm.topic_check(black_box(&f.subscribe))))
    });
    let nat = latency(n, || {
        drop(black_box(
            f.topic_native.topic_check(black_box(&native_subscribe)),
        ))
    });
    row(
        "topic-check: subscribe with wildcard (coverage)",
        &w,
        Some(&nat),
    );
    let w = latency(n, || {
        drop(black_box(
            f.cert_wasm.connect_check(black_box(&f.connect_cert)),
        ))
    });
    let nat = latency(n, || {
        drop(black_box(
            f.cert_native.connect_check(black_box(&native_cert)),
        ))
    });
    row(
        &format!(
            "connect-check: certificate thumbprint ({} B chain)",
            f.chain_bytes()
        ),
        &w,
        Some(&nat),
    );
    let parse = latency(n / 4, || {
        drop(black_box(cert::parse_der_chain(
            f.chain_der.iter().map(Vec::as_slice),
        )))
    });
    row(
        "host: parse the 2-certificate chain (x509 + SHA-1 + SHA-256)",
        &parse,
        None,
    );
    let w = latency(n / 4, || {
        let mut req = f.connect_cert.clone();
        req.certificates =
            cert::parse_der_chain(f.chain_der.iter().map(Vec::as_slice)).unwrap_or_default();
        drop(black_box(f.cert_wasm.connect_check(&req)));
    });
    row("connect-check: certificate, parsing included", &w, None);
    let w = latency(n / 4, || {
        drop(black_box(
            f.jwt_wasm.connect_check(black_box(&f.connect_hs256)),
        ))
    });
    let nat = latency(n / 4, || {
        drop(black_box(f.jwt_native.connect_check(black_box(&native_hs))))
    });
    row("connect-check: JWT HS256", &w, Some(&nat));
    // The same token again on an instance that verified it (the jwt
    // policy's default `remember_verified`): a reconnecting client.
    let mut remembering: serde_json::Value = serde_json::from_str(&f.jwt_config)?;
    remembering["remember_verified"] = true.into();
    let remembered =
        mqtt_policy_bench::wasm_chain(&engine, "jwt", guests::JWT, &remembering.to_string())?;
    anyhow::ensure!(remembered.connect_check(&f.connect_hs256).is_allowed());
    let w = latency(n / 4, || {
        drop(black_box(
            remembered.connect_check(black_box(&f.connect_hs256)),
        ))
    });
    row(
        "connect-check: JWT HS256, token remembered (`remember_verified`, default)",
        &w,
        None,
    );
    let m = (n / 100).max(100);
    let w = latency(m, || {
        drop(black_box(
            f.jwt_wasm.connect_check(black_box(&f.connect_es256)),
        ))
    });
    let nat = latency(m, || {
        drop(black_box(f.jwt_native.connect_check(black_box(&native_es))))
    });
    row(
        &format!("connect-check: JWT ES256, `verify-signature` host import ({m} samples)"),
        &w,
        Some(&nat),
    );
    // The same policy verifying in the guest (built by bench/run.sh with
    // the SDK's `guest-crypto` feature), for what the import saves.
    let in_guest = std::env::var("BENCH_JWT_IN_GUEST").ok();
    if let Some(path) = &in_guest {
        let chain = mqtt_policy_bench::wasm_chain(&engine, "jwt", path, &f.jwt_config)?;
        anyhow::ensure!(chain.connect_check(&f.connect_es256).is_allowed());
        let w = latency(m, || {
            drop(black_box(chain.connect_check(black_box(&f.connect_es256))))
        });
        row(
            &format!("connect-check: JWT ES256, verified in the guest ({m} samples)"),
            &w,
            Some(&nat),
        );
    }

    sessions(&f)?;
    passwords(&engine)?;

    println!("\n### Throughput: topic-check publish, one shared chain (median of 3 runs)\n");
    println!("| threads | checks | wall time | checks/s |");
    println!("|---|---|---|---|");
    for threads in [1usize, 2] {
        let per_thread = 1_000_000;
        let chain = &f.topic_wasm;
        let publish = &f.publish;
        let mut runs: Vec<Duration> = (0..3)
            .map(|_| {
                let started = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(|| {
                            for _ in 0..per_thread {
                                black_box(chain.topic_check(black_box(publish)));
                            }
                        });
                    }
                });
                started.elapsed()
            })
            .collect();
        runs.sort();
        let took = runs[1];
        let total = threads * per_thread;
        println!(
            "| {threads} | {total} | {} | {:.0} |",
            ms(took),
            total as f64 / took.as_secs_f64()
        );
    }

    println!("\n### Cold paths\n");
    println!("| path | median | runs |");
    println!("|---|---|---|");
    let chain_path = write_sample_chain(f.dir.path())?;
    let runs = 5;
    let mut cold = Vec::new();
    let mut warm = Vec::new();
    for i in 0..runs {
        let cache = f.dir.path().join(format!("cache-{i}"));
        let t = Instant::now();
        let host = PolicyHost::builder(&chain_path)
            .engine(engine.clone())
            .disk_cache(&cache)
            .build()?;
        cold.push(t.elapsed());
        anyhow::ensure!(host.status().modules.compiled == 3);
        drop(host);
        let t = Instant::now();
        let host = PolicyHost::builder(&chain_path)
            .engine(engine.clone())
            .disk_cache(&cache)
            .build()?;
        warm.push(t.elapsed());
        anyhow::ensure!(host.status().modules.disk == 3);
    }
    cold.sort();
    warm.sort();
    println!(
        "| start, 3 sample policies, empty disk cache (compile + instantiate + init) | {} | {runs} |",
        ms(cold[runs / 2])
    );
    println!(
        "| start, 3 sample policies, warm disk cache (deserialize + instantiate + init) | {} | {runs} |",
        ms(warm[runs / 2])
    );
    let host = PolicyHost::builder(&chain_path)
        .engine(engine.clone())
        .build()?;
    let mut swaps: Vec<Duration> = (0..20)
        .map(|_| {
            let t = Instant::now();
            let r = host.reload();
            (t.elapsed(), r)
        })
        .filter_map(|(d, r)| r.ok().map(|_| d))
        .collect();
    swaps.sort();
    println!(
        "| reload, 3 unchanged modules (read + hash + instantiate + init + swap) | {} | {} |",
        ms(swaps[swaps.len() / 2]),
        swaps.len()
    );
    let pooled = WasmPolicy::from_file(
        &engine,
        "t",
        guests::TOPIC_LIST.as_ref(),
        mqtt_policy_bench::TOPIC_CONFIG,
        Limits::default(),
    )?;
    let on_demand_engine = PolicyEngine::builder().pooling(false).build()?;
    let on_demand = WasmPolicy::from_file(
        &on_demand_engine,
        "t",
        guests::TOPIC_LIST.as_ref(),
        mqtt_policy_bench::TOPIC_CONFIG,
        Limits::default(),
    )?;
    for (what, p) in [("pooling", &pooled), ("on-demand", &on_demand)] {
        let i = latency(2000, || drop(black_box(p.bench_instantiate(false))));
        let ii = latency(2000, || drop(black_box(p.bench_instantiate(true))));
        println!(
            "| instantiate topic-list from `InstancePre`, {what} allocator | {} | 2000 |",
            us(i.median)
        );
        println!(
            "| instantiate + `init(config)`, {what} allocator | {} | 2000 |",
            us(ii.median)
        );
    }

    println!("\n### Memory (resident set, this process)\n");
    println!("| what | per item |");
    println!("|---|---|");
    let before = rss_kib();
    let mut loaded = Vec::new();
    for i in 0..10 {
        loaded.push(Arc::new(WasmPolicy::from_file(
            &engine,
            &format!("t{i}"),
            guests::TOPIC_LIST.as_ref(),
            mqtt_policy_bench::TOPIC_CONFIG,
            Limits::default(),
        )?));
    }
    let per_policy = (rss_kib().saturating_sub(before)) / 10;
    println!(
        "| loaded topic-list policy (own compiled code + one warm instance) | {per_policy} KiB |"
    );
    let before = rss_kib();
    loaded[0].prewarm(201)?;
    let per_instance = (rss_kib().saturating_sub(before)) / 200;
    println!("| extra warm instance of topic-list (pooling allocator) | {per_instance} KiB |");
    let before = rss_kib();
    let jwt = WasmPolicy::from_file(
        &engine,
        "j",
        guests::JWT.as_ref(),
        r#"{"keys":[{"alg":"HS256","secret":"x"}]}"#,
        Limits::default(),
    )?;
    let jwt_policy = (rss_kib().saturating_sub(before)).max(1);
    jwt.prewarm(101)?;
    let jwt_instance = (rss_kib().saturating_sub(before + jwt_policy)) / 100;
    let size = |p: &str| std::fs::metadata(p).map_or(0, |m| m.len());
    println!(
        "| loaded jwt policy ({} byte module, host-verified signatures) | {jwt_policy} KiB |",
        size(guests::JWT)
    );
    println!("| extra warm instance of jwt | {jwt_instance} KiB |");
    if let Some(path) = &in_guest {
        let before = rss_kib();
        let jwt = WasmPolicy::from_file(
            &engine,
            "jg",
            path.as_ref(),
            r#"{"keys":[{"alg":"HS256","secret":"x"}]}"#,
            Limits::default(),
        )?;
        let policy = (rss_kib().saturating_sub(before)).max(1);
        jwt.prewarm(101)?;
        let instance = (rss_kib().saturating_sub(before + policy)) / 100;
        println!(
            "| loaded jwt policy verifying in the guest ({} byte module) | {policy} KiB |",
            size(path)
        );
        println!("| extra warm instance of it | {instance} KiB |");
    }
    Ok(())
}

/// Topic checks through a session: answered from the verdict cache, and
/// the same with the cache off; one session per thread on 1 and 2 threads.
fn sessions(f: &mqtt_policy_bench::Fixture) -> anyhow::Result<()> {
    use mqtt_policy_host::{
        Chain, ConnectRequest, DefaultVerdict, VerdictCacheConfig, WasmPolicy as W,
    };
    let n = 1_000_000;
    let host = |cache: VerdictCacheConfig| -> anyhow::Result<PolicyHost> {
        let policy = W::from_file(
            &f.engine,
            "topics",
            guests::TOPIC_LIST.as_ref(),
            mqtt_policy_bench::TOPIC_CONFIG,
            Limits::default(),
        )?;
        policy.prewarm(2)?;
        // topic-list has no connect check: the default lets the bench in.
        let chain = Chain::builder()
            .policy("topics", Arc::new(policy))
            .default_verdict(DefaultVerdict::Allow)
            .decision_log_every(0)
            .verdict_cache(cache)
            .build()?;
        Ok(PolicyHost::from_chain(chain))
    };
    let topic = f.publish.topic.clone();
    println!("\n### Sessions: topic checks with and without the verdict cache ({n} per thread)\n");
    println!("| path | median | p99 | 1 thread checks/s | 2 threads checks/s |");
    println!("|---|---|---|---|---|");
    for (what, cache) in [
        (
            "`Session::publish`, answered from the session's cache",
            VerdictCacheConfig::default(),
        ),
        (
            "`Session::publish`, cache off (asks the chain)",
            VerdictCacheConfig::disabled(),
        ),
    ] {
        let host = host(cache)?;
        let connect = || {
            host.connect(ConnectRequest::new("sensor-17"))
                .map_err(|r| anyhow::anyhow!("refused: {:?}", r.decision))
        };
        let session = connect()?;
        anyhow::ensure!(session.publish(&topic, 1, false).allowed());
        let l = latency(n / 5, || {
            drop(black_box(session.publish(black_box(&topic), 1, false)))
        });
        let mut rates = Vec::new();
        for threads in [1usize, 2] {
            let sessions: Vec<_> = (0..threads).map(|_| connect()).collect::<Result<_, _>>()?;
            let started = Instant::now();
            std::thread::scope(|s| {
                for session in &sessions {
                    let topic = &topic;
                    s.spawn(move || {
                        for _ in 0..n {
                            black_box(session.publish(black_box(topic), 1, false));
                        }
                    });
                }
            });
            rates.push((threads * n) as f64 / started.elapsed().as_secs_f64());
        }
        println!(
            "| {what} | {} | {} | {:.0} | {:.0} |",
            us(l.median),
            us(l.p99),
            rates[0],
            rates[1]
        );
    }
    Ok(())
}

/// Connect-checks of the password policy, one user per hash format, wasm
/// through the host against the same policy native, and the connects/s two
/// threads sustain in wasm.
fn passwords(engine: &PolicyEngine) -> anyhow::Result<()> {
    use mqtt_policy_host::{ConnectRequest, Policy as _};
    use password::StoredHash;
    let salt = *b"bench-salt-16byt";
    let lines = [
        (
            "argon2id m=19456 KiB, t=2, p=1 (`mqtt-policy passwd` default)",
            "argon2",
            StoredHash::new_argon2id(b"pw", &salt).map_err(anyhow::Error::msg)?,
        ),
        (
            "`$7$` PBKDF2-SHA512, 101 iterations (`mosquitto_passwd` 2.0 default)",
            "pbkdf2-101",
            StoredHash::new_pbkdf2(b"pw", &salt, 101).map_err(anyhow::Error::msg)?,
        ),
        (
            "`$7$` PBKDF2-SHA512, 210,000 iterations (`mqtt-policy passwd --format pbkdf2`)",
            "pbkdf2-210k",
            StoredHash::new_pbkdf2(b"pw", &salt, 210_000).map_err(anyhow::Error::msg)?,
        ),
    ];
    // A `$6$` line as `mosquitto_passwd -H sha512` writes it (password "secret").
    let sha512_line = "sha512:$6$0DPKm36CW55P2rQ/$wcE9A8qL/BPu3OxM3qJPI25kPKMllrRJBhpOdDY6im1BFC02GGJEAKVK1IwRwDPKEnPaXL7uJB4Z1xKZ6mz1cw==";
    let mut file: Vec<String> = lines.iter().map(|(_, u, h)| format!("{u}:{h}")).collect();
    file.push(sha512_line.to_owned());
    // Every connect hashes: what each format costs. The remembered path
    // (a user's reconnect to an instance that verified them) is the last row.
    let config =
        serde_json::json!({ "password_file": file.join("\n"), "remember_verified": false })
            .to_string();
    let remembering = serde_json::json!({ "password_file": file.join("\n") }).to_string();
    let limits = Limits {
        deadline: Duration::from_millis(250),
        ..Limits::default()
    };
    let module = std::fs::read(guests::PASSWORD)?;
    let load = |config: &str| -> anyhow::Result<WasmPolicy> {
        let policy = WasmPolicy::from_bytes(
            engine,
            "passwords",
            "password.wasm",
            &module,
            config,
            limits,
        )?;
        policy.prewarm(2).map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(policy)
    };
    let hashing = load(&config)?;
    let remembered = load(&remembering)?;
    let native_hashing = <password::PasswordPolicy as mqtt_policy_sdk::Policy>::new(&config)
        .map_err(anyhow::Error::msg)?;
    let native_remembered =
        <password::PasswordPolicy as mqtt_policy_sdk::Policy>::new(&remembering)
            .map_err(anyhow::Error::msg)?;
    println!("\n### Connect-check by password hash format (right password, warm instance)\n");
    println!(
        "| hash | wasm median | wasm p99 | native median | native p99 | wasm/native | wasm connects/s, 2 threads |"
    );
    println!("|---|---|---|---|---|---|---|");
    let mut cases: Vec<(&str, &str, &[u8], bool)> = lines
        .iter()
        .map(|(what, user, _)| (*what, *user, b"pw".as_slice(), false))
        .collect();
    cases.push((
        "`$6$` salted SHA-512 (`mosquitto_passwd -H sha512`, accepted with a warning)",
        "sha512",
        b"secret",
        false,
    ));
    cases.push((
        "argon2id, password remembered (`remember_verified`, default: a reconnect to an instance that verified it)",
        "argon2",
        b"pw",
        true,
    ));
    for (what, user, password, remember) in cases {
        let (wasm, native) = if remember {
            (&remembered, &native_remembered)
        } else {
            (&hashing, &native_hashing)
        };
        let request = ConnectRequest::new("bench")
            .username(user)
            .password(password);
        let verdict = wasm
            .connect_check(&request)
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(
            matches!(verdict, mqtt_policy_host::ConnectVerdict::Allow(_)),
            "{user}: {verdict:?}"
        );
        // About one second of samples per row, whatever the hash costs.
        let once = Instant::now();
        drop(black_box(wasm.connect_check(&request)));
        let samples = (1.0 / once.elapsed().as_secs_f64().max(1e-6)).clamp(20.0, 20_000.0) as usize;
        let w = latency(samples, || drop(black_box(wasm.connect_check(&request))));
        let sdk_request = sdk_connect(&request);
        let nat = latency(samples, || {
            drop(black_box(native.connect_check(&sdk_request)))
        });
        let per_thread = samples.div_ceil(2).max(10);
        let started = Instant::now();
        std::thread::scope(|s| {
            for _ in 0..2 {
                s.spawn(|| {
                    for _ in 0..per_thread {
                        black_box(wasm.connect_check(black_box(&request)).is_ok());
                    }
                });
            }
        });
        let rate = (2 * per_thread) as f64 / started.elapsed().as_secs_f64();
        println!(
            "| {what} | {} | {} | {} | {} | {:.1}× | {rate:.0} |",
            us(w.median),
            us(w.p99),
            us(nat.median),
            us(nat.p99),
            w.median.as_secs_f64() / nat.median.as_secs_f64().max(1e-12)
        );
    }
    Ok(())
}

//! Criterion: per-check latency on a warm instance, wasm through the host
//! against the same policy compiled natively, in one run.

use criterion::{Criterion, criterion_group, criterion_main};
use mqtt_policy_bench::{Fixture, sdk_connect, sdk_topic};
use mqtt_policy_host::{PolicyEngine, cert};
use mqtt_policy_sdk::Policy as _;
use std::hint::black_box;

fn checks(c: &mut Criterion) {
    let engine = match PolicyEngine::new() {
        Ok(e) => e,
        Err(e) => panic!("engine: {e}"),
    };
    let f = match Fixture::new(engine) {
        Ok(f) => f,
        Err(e) => panic!("fixture: {e:#}"),
    };
    let native_publish = sdk_topic(&f.publish);
    let native_subscribe = sdk_topic(&f.subscribe);
    let native_cert = sdk_connect(&f.connect_cert);
    let native_hs = sdk_connect(&f.connect_hs256);
    let native_es = sdk_connect(&f.connect_es256);

    let mut g = c.benchmark_group("topic-check publish");
    g.bench_function("wasm", |b| {
        b.iter(|| f.topic_wasm.topic_check(black_box(&f.publish)))
    });
    g.bench_function("native", |b| {
        b.iter(|| f.topic_native.topic_check(black_box(&native_publish)))
    });
    g.finish();

    let mut g = c.benchmark_group("topic-check subscribe");
    g.bench_function("wasm", |b| {
        b.iter(|| f.topic_wasm.topic_check(black_box(&f.subscribe)))
    });
    g.bench_function("native", |b| {
        b.iter(|| f.topic_native.topic_check(black_box(&native_subscribe)))
    });
    g.finish();

    let mut g = c.benchmark_group("connect-check certificate");
    g.bench_function("wasm", |b| {
        b.iter(|| f.cert_wasm.connect_check(black_box(&f.connect_cert)))
    });
    g.bench_function("wasm incl. parsing", |b| {
        b.iter(|| {
            let mut req = f.connect_cert.clone();
            req.certificates =
                cert::parse_der_chain(f.chain_der.iter().map(Vec::as_slice)).unwrap_or_default();
            f.cert_wasm.connect_check(black_box(&req))
        })
    });
    g.bench_function("native", |b| {
        b.iter(|| f.cert_native.connect_check(black_box(&native_cert)))
    });
    g.finish();

    let mut g = c.benchmark_group("connect-check jwt");
    g.bench_function("HS256 wasm", |b| {
        b.iter(|| f.jwt_wasm.connect_check(black_box(&f.connect_hs256)))
    });
    g.bench_function("HS256 native", |b| {
        b.iter(|| f.jwt_native.connect_check(black_box(&native_hs)))
    });
    g.bench_function("ES256 wasm", |b| {
        b.iter(|| f.jwt_wasm.connect_check(black_box(&f.connect_es256)))
    });
    g.bench_function("ES256 native", |b| {
        b.iter(|| f.jwt_native.connect_check(black_box(&native_es)))
    });
    g.finish();
}

criterion_group!(benches, checks);
criterion_main!(benches);

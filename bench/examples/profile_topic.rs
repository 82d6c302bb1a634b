//! Loop topic-checks for profiling and quick comparisons:
//! `profile_topic [threads]`, under `perf record -D 1500` if you like.
use std::hint::black_box;
use std::time::{Duration, Instant};

use mqtt_policy_bench::Fixture;
use mqtt_policy_host::PolicyEngine;

fn main() -> anyhow::Result<()> {
    let threads: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    let native = std::env::args().nth(2).as_deref() == Some("native");
    let f = Fixture::new(PolicyEngine::new()?)?;
    let sdk_publish = mqtt_policy_bench::sdk_topic(&f.publish);
    eprintln!("ready");
    let started = Instant::now();
    let total: u64 = std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut n = 0u64;
                    while started.elapsed() < Duration::from_secs(4) {
                        for _ in 0..1000 {
                            if native {
                                use mqtt_policy_sdk::Policy as _;
                                black_box(f.topic_native.topic_check(black_box(&sdk_publish)));
                            } else {
                                black_box(f.topic_wasm.topic_check(black_box(&f.publish)));
                            }
                        }
                        n += 1000;
                    }
                    n
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "{threads} threads: {:.0} checks/s, {:.3} µs/check/thread",
        total as f64 / secs,
        secs * 1e6 * threads as f64 / total as f64
    );
    Ok(())
}

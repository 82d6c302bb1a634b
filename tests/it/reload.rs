use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mqtt_policy_host::{Access, ModuleSources, PolicyHost, ReloadOutcome, StepResult};
use mqtt_policy_tests::{guests, toml_str, topic};

const DEBOUNCE: Duration = Duration::from_millis(100);
/// Bound on waiting for a file change to be picked up.
const PATIENCE: Duration = Duration::from_secs(20);

fn chain_toml(publish: &str, module: &str) -> String {
    format!(
        "[[policy]]\nname = \"topics\"\nmodule = {}\n[policy.config]\n[[policy.config.rules]]\npublish = [{}]\n",
        toml_str(module),
        toml_str(publish)
    )
}

fn setup(publish: &str) -> anyhow::Result<(tempfile::TempDir, PathBuf, PolicyHost)> {
    let dir = tempfile::tempdir()?;
    std::fs::copy(guests::TOPIC_LIST, dir.path().join("topics.wasm"))?;
    let path = dir.path().join("chain.toml");
    std::fs::write(&path, chain_toml(publish, "topics.wasm"))?;
    let host = PolicyHost::builder(&path)
        .engine(crate::engine().clone())
        .build()?;
    Ok((dir, path, host))
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) -> anyhow::Result<()> {
    let started = Instant::now();
    while !done() {
        anyhow::ensure!(started.elapsed() < PATIENCE, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

fn publish_allowed(host: &PolicyHost, t: &str) -> bool {
    host.topic_check(&topic("c", Access::Publish, t, &[]))
        .is_allowed()
}

/// Replace a file the way deploy tools do: write elsewhere, rename over it.
fn replace(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[test]
fn swapping_a_config_under_load_loses_no_check() -> anyhow::Result<()> {
    let (_dir, path, host) = setup("other/topic")?;
    let _watcher = host.watch(DEBOUNCE)?;
    assert!(!publish_allowed(&host, "a/b"));
    let swapped = AtomicBool::new(false);
    let stop = AtomicBool::new(false);
    let per_generation = [AtomicU64::new(0), AtomicU64::new(0)];
    std::thread::scope(|s| -> anyhow::Result<()> {
        let workers: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| -> anyhow::Result<u64> {
                    let mut checks = 0;
                    // Bounded: stops when told, or after a million checks.
                    while !stop.load(Ordering::SeqCst) && checks < 1_000_000 {
                        let after_swap = swapped.load(Ordering::SeqCst);
                        let d = host.topic_check(&topic("c", Access::Publish, "a/b", &[]));
                        checks += 1;
                        anyhow::ensure!(
                            d.trace
                                .iter()
                                .all(|s| !matches!(s.result, StepResult::Failed(_))),
                            "a check failed: {d:?}"
                        );
                        match d.generation {
                            0 => anyhow::ensure!(
                                !d.is_allowed() && !after_swap,
                                "old chain: {d:?}, after swap {after_swap}"
                            ),
                            1 => anyhow::ensure!(d.is_allowed(), "new chain must allow: {d:?}"),
                            g => anyhow::bail!("unexpected generation {g}"),
                        }
                        per_generation[d.generation as usize].fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(checks)
                })
            })
            .collect();
        std::thread::sleep(Duration::from_millis(100));
        std::fs::write(&path, chain_toml("a/#", "topics.wasm"))?;
        let waited = wait_for("the watcher's reload", || host.generation() == 1);
        swapped.store(true, Ordering::SeqCst);
        std::thread::sleep(Duration::from_millis(100));
        stop.store(true, Ordering::SeqCst);
        waited?;
        for w in workers {
            let checks = w.join().map_err(|_| anyhow::anyhow!("worker panicked"))??;
            assert!(checks > 0);
        }
        Ok(())
    })?;
    assert!(
        per_generation[0].load(Ordering::Relaxed) > 0,
        "saw the old chain"
    );
    assert!(
        per_generation[1].load(Ordering::Relaxed) > 0,
        "saw the new chain"
    );
    assert!(publish_allowed(&host, "a/b"));
    let status = host.status();
    assert_eq!(status.last_outcome, Some(ReloadOutcome::Loaded(1)));
    assert_eq!(
        status.modules,
        ModuleSources {
            compiled: 0,
            memory: 1,
            disk: 0
        },
        "unchanged module not recompiled"
    );
    Ok(())
}

#[test]
fn broken_modules_keep_the_old_chain_until_fixed() -> anyhow::Result<()> {
    let (dir, _path, host) = setup("a/#")?;
    let _watcher = host.watch(DEBOUNCE)?;
    let module = dir.path().join("topics.wasm");
    let good = std::fs::read(guests::TOPIC_LIST)?;
    let other_world = b"\0asm\x0d\0\x01\0".to_vec();
    let cases: [(&str, Vec<u8>, &str); 3] = [
        (
            "garbage",
            b"this is not wasm".to_vec(),
            "not a WebAssembly component",
        ),
        (
            "truncated",
            good[..good.len() / 3].to_vec(),
            "not a WebAssembly component",
        ),
        (
            "other world",
            other_world,
            "does not implement the mqtt:policy world (0.2.0 or 0.1.0)",
        ),
    ];
    for (generation, (what, bytes, cause)) in (0u64..).zip(cases) {
        let failures = host.status().failures;
        replace(&module, &bytes)?;
        wait_for(what, || host.status().failures > failures)?;
        let status = host.status();
        let error = status.last_error.clone().unwrap_or_default();
        assert_eq!(status.last_outcome, Some(ReloadOutcome::Failed), "{what}");
        assert!(
            error.contains("topics.wasm") && error.contains(cause),
            "{what}: {error}"
        );
        assert_eq!(host.generation(), generation, "{what}: old chain kept");
        assert!(
            publish_allowed(&host, "a/b"),
            "{what}: old chain still answers"
        );
        replace(&module, &good)?;
        wait_for("the fix", || host.generation() == generation + 1)?;
        assert_eq!(host.status().last_error, None);
        assert!(publish_allowed(&host, "a/b"));
    }
    Ok(())
}

#[test]
fn a_file_written_in_two_halves_ends_in_a_working_chain() -> anyhow::Result<()> {
    let (dir, _path, host) = setup("a/#")?;
    let _watcher = host.watch(DEBOUNCE)?;
    let module = dir.path().join("topics.wasm");
    let new = std::fs::read(guests::TOPIC_LIST)?;
    std::fs::write(&module, &new[..new.len() / 2])?;
    std::thread::sleep(Duration::from_millis(10));
    use std::io::Write as _;
    std::fs::OpenOptions::new()
        .append(true)
        .open(&module)?
        .write_all(&new[new.len() / 2..])?;
    wait_for("the completed write", || host.generation() >= 1)?;
    wait_for("quiet", || {
        host.status().last_outcome == Some(ReloadOutcome::Loaded(host.generation()))
    })?;
    assert!(publish_allowed(&host, "a/b"));
    assert_eq!(host.status().last_error, None);
    Ok(())
}

#[test]
fn failed_reloads_of_every_kind_keep_the_running_chain() -> anyhow::Result<()> {
    let (dir, path, host) = setup("a/#")?;
    let cases = [
        (
            "invalid toml",
            "[[policy]\n".to_string(),
            "invalid chain config",
        ),
        (
            "missing module",
            chain_toml("a/#", "absent.wasm"),
            "absent.wasm",
        ),
        (
            "init rejects",
            chain_toml("a/#/b", "topics.wasm"),
            "init rejected its configuration",
        ),
    ];
    for (what, toml, needle) in cases {
        std::fs::write(&path, toml)?;
        let err = host
            .reload()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains(needle), "{what}: {err}");
        assert_eq!(host.status().last_error.as_deref(), Some(err.as_str()));
        assert_eq!(host.generation(), 0);
        assert!(publish_allowed(&host, "a/b"), "{what}");
    }
    std::fs::remove_file(&path)?;
    assert!(host.reload().is_err(), "unreadable chain file");
    assert_eq!(host.status().failures, 4);
    // Reordered and removed entries: the new chain is exactly the new file.
    std::fs::copy(guests::MISBEHAVE, dir.path().join("m.wasm"))?;
    std::fs::write(
        &path,
        format!(
            "{}[[policy]]\nname = \"deny-all\"\nmodule = \"m.wasm\"\n[policy.config]\nmode = \"deny\"\n",
            chain_toml("a/#", "topics.wasm")
        ),
    )?;
    assert_eq!(host.reload()?, 1);
    assert_eq!(host.chain().policy_names(), vec!["topics", "deny-all"]);
    std::fs::write(
        &path,
        "[[policy]]\nname = \"deny-all\"\nmodule = \"m.wasm\"\n[policy.config]\nmode = \"deny\"\n",
    )?;
    assert_eq!(host.reload()?, 2);
    assert_eq!(host.chain().policy_names(), vec!["deny-all"]);
    assert!(!publish_allowed(&host, "a/b"));
    Ok(())
}

#[test]
fn checks_in_flight_finish_on_their_chain() -> anyhow::Result<()> {
    let (_dir, path, host) = setup("x")?;
    let held = host.chain();
    std::fs::write(&path, chain_toml("a/#", "topics.wasm"))?;
    host.reload()?;
    assert!(
        !held
            .topic_check(&topic("c", Access::Publish, "a/b", &[]))
            .is_allowed()
    );
    assert_eq!(held.generation(), 0);
    assert!(publish_allowed(&host, "a/b"));
    Ok(())
}

#[test]
fn the_disk_cache_skips_compilation_on_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let cache = dir.path().join("cache");
    std::fs::copy(guests::TOPIC_LIST, dir.path().join("topics.wasm"))?;
    let path = dir.path().join("chain.toml");
    std::fs::write(&path, chain_toml("a/#", "topics.wasm"))?;
    let start = |what| -> anyhow::Result<PolicyHost> {
        let host = PolicyHost::builder(&path)
            .engine(crate::engine().clone())
            .disk_cache(&cache)
            .build()?;
        assert!(publish_allowed(&host, "a/b"), "{what}");
        Ok(host)
    };
    assert_eq!(
        start("cold")?.status().modules,
        ModuleSources {
            compiled: 1,
            memory: 0,
            disk: 0
        }
    );
    assert_eq!(
        start("warm")?.status().modules,
        ModuleSources {
            compiled: 0,
            memory: 0,
            disk: 1
        }
    );
    // A corrupted entry is a miss, not a crash and not a load.
    for entry in std::fs::read_dir(&cache)? {
        let p = entry?.path();
        let mut bytes = std::fs::read(&p)?;
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0xFF;
        std::fs::write(&p, bytes)?;
    }
    assert_eq!(
        start("corrupt")?.status().modules,
        ModuleSources {
            compiled: 1,
            memory: 0,
            disk: 0
        }
    );
    assert_eq!(start("rewritten")?.status().modules.disk, 1);
    Ok(())
}

/// A chain file that names a module not deployed yet fails to load; the
/// module's arrival is itself a change that retries the reload.
#[test]
fn a_module_deployed_after_its_config_is_picked_up() -> anyhow::Result<()> {
    let (dir, path, host) = setup("a/#")?;
    let _watcher = host.watch(DEBOUNCE)?;
    let failures = host.status().failures;
    std::fs::write(&path, chain_toml("x/#", "later/new.wasm"))?;
    wait_for("the failed reload", || host.status().failures > failures)?;
    assert!(
        host.status()
            .last_error
            .unwrap_or_default()
            .contains("new.wasm")
    );
    std::fs::create_dir(dir.path().join("later"))?;
    // The directory did not exist when the config named it; the next edit of
    // the config re-arms the watches, then the module arrives.
    std::fs::write(&path, chain_toml("x/#", "later/new.wasm"))?;
    std::thread::sleep(DEBOUNCE * 3);
    replace(
        &dir.path().join("later/new.wasm"),
        &std::fs::read(guests::TOPIC_LIST)?,
    )?;
    wait_for("the module's arrival", || host.generation() == 1)?;
    assert!(publish_allowed(&host, "x/y"));
    Ok(())
}

/// `bytes` with a custom section appended: the same component, new bytes
/// (so a new cache key), as a redeployed build would be.
fn with_custom_section(bytes: &[u8], n: u32) -> Vec<u8> {
    let name = b"deploy";
    let payload = n.to_le_bytes();
    let mut out = bytes.to_vec();
    out.push(0); // custom section id
    out.push((1 + name.len() + payload.len()) as u8); // LEB128 size, < 128
    out.push(name.len() as u8);
    out.extend_from_slice(name);
    out.extend_from_slice(&payload);
    out
}

#[test]
fn failed_reloads_do_not_keep_their_compiled_modules() -> anyhow::Result<()> {
    let (dir, path, host) = setup("a/b")?;
    assert_eq!(host.cached_components(), 1);
    let guest = std::fs::read(guests::MISBEHAVE)?;
    let rss_before = mqtt_policy_tests::rss_kib();
    for n in 0..20 {
        // A new module whose init refuses its config: compiled, then failed.
        std::fs::write(dir.path().join("bad.wasm"), with_custom_section(&guest, n))?;
        std::fs::write(
            &path,
            "[[policy]]\nname = \"bad\"\nmodule = \"bad.wasm\"\n[policy.config]\ninit = \"error\"\n",
        )?;
        assert!(host.reload().is_err());
        assert_eq!(
            host.cached_components(),
            1,
            "only the live chain's module stays after failed reload {n}"
        );
    }
    let grown_mib = mqtt_policy_tests::rss_kib().saturating_sub(rss_before) / 1024;
    assert!(
        grown_mib < 64,
        "20 failed reloads grew RSS by {grown_mib} MiB"
    );
    assert!(publish_allowed(&host, "a/b"), "the old chain still serves");
    Ok(())
}

/// A Kubernetes ConfigMap volume: `chain.toml -> ..data/chain.toml`,
/// `..data -> ..2026_a`; a deployment writes `..2026_b` and swaps `..data`.
#[cfg(unix)]
#[test]
fn configmap_symlink_swaps_reload_one_consistent_snapshot() -> anyhow::Result<()> {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir()?;
    let version = |name: &str, publish: &str| -> anyhow::Result<()> {
        let d = dir.path().join(name);
        std::fs::create_dir(&d)?;
        std::fs::copy(guests::TOPIC_LIST, d.join("topics.wasm"))?;
        std::fs::write(d.join("chain.toml"), chain_toml(publish, "topics.wasm"))?;
        Ok(())
    };
    version("..2026_a", "old/topic")?;
    symlink("..2026_a", dir.path().join("..data"))?;
    symlink("..data/chain.toml", dir.path().join("chain.toml"))?;
    symlink("..data/topics.wasm", dir.path().join("topics.wasm"))?;
    let host = PolicyHost::builder(dir.path().join("chain.toml"))
        .engine(crate::engine().clone())
        .build()?;
    let _watcher = host.watch(DEBOUNCE)?;
    assert!(publish_allowed(&host, "old/topic"));

    version("..2026_b", "new/topic")?;
    symlink("..2026_b", dir.path().join("..data_tmp"))?;
    std::fs::rename(dir.path().join("..data_tmp"), dir.path().join("..data"))?;
    std::fs::remove_dir_all(dir.path().join("..2026_a"))?;
    wait_for("the swapped ConfigMap to load", || host.generation() == 1)?;
    assert!(publish_allowed(&host, "new/topic"));
    assert!(!publish_allowed(&host, "old/topic"));
    Ok(())
}

#[test]
fn a_chain_too_big_to_ever_reload_is_refused_with_the_number_to_set() -> anyhow::Result<()> {
    let engine = mqtt_policy_host::PolicyEngine::builder()
        .max_instances(10)
        .build()?;
    let dir = tempfile::tempdir()?;
    let policy = |i: usize| {
        format!(
            "[[policy]]\nname = \"p{i}\"\nmodule = {}\n[policy.config]\n[[policy.config.rules]]\npublish = [\"a\"]\n",
            toml_str(guests::TOPIC_LIST)
        )
    };
    let path = dir.path().join("chain.toml");
    std::fs::write(&path, (0..4).map(policy).collect::<String>())?;
    let err = PolicyHost::builder(&path)
        .engine(engine.clone())
        .build()
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("max_instances(12)"), "{err}");
    std::fs::write(&path, (0..3).map(policy).collect::<String>())?;
    let host = PolicyHost::builder(&path).engine(engine).build()?;
    assert_eq!(host.reload()?, 1, "three policies fit and reload");
    Ok(())
}

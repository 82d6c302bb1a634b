//! Done when: `mqtt-policy new` makes a crate that builds for wasm32-wasip2,
//! passes its own unit tests and passes `mqtt-policy test` on its example
//! cases, with nothing edited by hand.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

fn cargo(dir: &Path, args: &[&str]) -> anyhow::Result<Output> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir).args(args);
    // This test's own build settings must not leak into the scaffold's build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_MANIFEST_DIR",
        "CARGO_MANIFEST_PATH",
    ] {
        cmd.env_remove(var);
    }
    Ok(cmd.output()?)
}

fn ok(what: &str, out: &Output) -> anyhow::Result<String> {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(stdout)
}

#[test]
fn a_new_policy_builds_and_passes_its_tests_as_generated() -> anyhow::Result<()> {
    let started = Instant::now();
    let tmp = tempfile::tempdir()?;
    let dir = tmp.path().join("acme-devices");
    let bin = env!("CARGO_BIN_EXE_mqtt-policy");
    let out = Command::new(bin)
        .args(["new", "acme-devices", "--dir"])
        .arg(&dir)
        .output()?;
    let said = ok("mqtt-policy new", &out)?;
    assert!(
        said.contains("cargo build --release --target wasm32-wasip2"),
        "{said}"
    );

    // Every run shares one build directory under the workspace's target, so
    // the SDK and its dependencies are compiled once, not per run. The
    // scaffold's own `target` is a link to it: its chain file names
    // `target/wasm32-wasip2/release/acme_devices.wasm` and stays untouched.
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/scaffold");
    std::fs::create_dir_all(&shared)?;
    std::os::unix::fs::symlink(shared.canonicalize()?, dir.join("target"))?;

    ok(
        "cargo build --release --target wasm32-wasip2",
        &cargo(&dir, &["build", "--release", "--target", "wasm32-wasip2"])?,
    )?;
    let built = started.elapsed();
    assert!(
        dir.join("target/wasm32-wasip2/release/acme_devices.wasm")
            .is_file()
    );
    ok("cargo test", &cargo(&dir, &["test"])?)?;
    let tested = started.elapsed();

    let cache = tmp.path().join("cache");
    let cache = cache.to_string_lossy();
    let out = Command::new(bin)
        .current_dir(&dir)
        .args(["test", "--cache-dir", &cache, "tests.toml"])
        .output()?;
    let report = ok("mqtt-policy test tests.toml", &out)?;
    assert!(report.ends_with("5 passed, 0 failed\n"), "{report}");
    let out = Command::new(bin)
        .current_dir(&dir)
        .args([
            "check",
            "--cache-dir",
            &cache,
            "--config",
            "policies.toml",
            "requests/allowed.json",
        ])
        .output()?;
    let check: serde_json::Value = serde_json::from_str(&ok("mqtt-policy check", &out)?)?;
    assert_eq!(check["connect"]["decided_by"], "acme-devices");
    eprintln!(
        "scaffold: wasm build {:.1}s, cargo test {:.1}s, total {:.1}s",
        built.as_secs_f64(),
        (tested - built).as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

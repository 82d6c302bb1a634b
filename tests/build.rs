//! Builds every guest (the sample policies and the test guests) from source to
//! `wasm32-wasip2` components, once, into `target/wasm`, and exposes their
//! paths as `GUEST_*` environment constants. No `.wasm` file is checked in.

use std::path::{Path, PathBuf};
use std::process::Command;

const GUESTS: &[(&str, &str, &str)] = &[
    // (package, artifact, constant)
    ("thumbprint-policy", "thumbprint", "GUEST_THUMBPRINT"),
    ("jwt-policy", "jwt", "GUEST_JWT"),
    ("topic-list-policy", "topic_list", "GUEST_TOPIC_LIST"),
    ("password-policy", "password", "GUEST_PASSWORD"),
    ("misbehave-guest", "misbehave", "GUEST_MISBEHAVE"),
    ("legacy-guest", "legacy", "GUEST_LEGACY_V0_1"),
];

fn main() {
    let manifest = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    );
    let root = manifest
        .parent()
        .expect("tests/ sits in the workspace root")
        .to_path_buf();
    let target_dir = root.join("target").join("wasm");
    for dir in ["wit", "guest-sdk", "policies", "tests/guests", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }

    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(&target_dir);
    for (package, _, _) in GUESTS {
        cmd.args(["-p", package]);
    }
    // Flags meant for the host build must not leak into the guest build.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let output = cmd
        .output()
        .expect("cannot run cargo to build the wasm guests");
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let hint =
            if stderr.contains("wasm32-wasip2") && stderr.contains("target may not be installed") {
                "\nhint: install the target with `rustup target add wasm32-wasip2`"
            } else {
                ""
            };
        panic!("building the wasm guests failed:\n{stderr}{hint}");
    }
    for (_, artifact, constant) in GUESTS {
        let path = artifact_path(&target_dir, artifact);
        assert!(
            path.exists(),
            "guest build did not produce {}",
            path.display()
        );
        println!("cargo:rustc-env={constant}={}", path.display());
    }
}

fn artifact_path(target_dir: &Path, artifact: &str) -> PathBuf {
    target_dir
        .join("wasm32-wasip2")
        .join("release")
        .join(format!("{artifact}.wasm"))
}

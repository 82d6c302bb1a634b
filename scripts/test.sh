#!/usr/bin/env bash
# Every test, on a fresh machine: installs what the tests need (the wasm
# target, rustfmt/clippy, openssl), checks formatting and lints, then runs the
# whole workspace's tests. One release build of the world serves all of it.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

rustup target add wasm32-wasip2
rustup component add rustfmt clippy
if ! command -v openssl >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -q
  as_root apt-get install -y -q openssl
fi

cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace

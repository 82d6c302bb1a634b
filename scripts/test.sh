#!/usr/bin/env bash
# Every test, on a fresh machine: installs what the tests need (the wasm
# target, rustfmt/clippy, openssl, mosquitto clients, paho-mqtt, cargo-fuzz), checks formatting and lints, runs the
# whole workspace's tests, then a bounded fuzz run. One release build serves the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

rustup target add wasm32-wasip2
rustup component add rustfmt clippy
missing=()
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v mosquitto_passwd >/dev/null 2>&1 || missing+=(mosquitto)
command -v mosquitto_sub >/dev/null 2>&1 || missing+=(mosquitto-clients)
command -v python3 >/dev/null 2>&1 || missing+=(python3 python3-pip)
command -v mkfifo >/dev/null 2>&1 || missing+=(coreutils)
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -q
  as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The broker's end-to-end tests drive it with paho-mqtt as well as mosquitto_pub/sub.
if ! python3 -c 'import paho.mqtt' >/dev/null 2>&1; then
  python3 -m pip install --user -q 'paho-mqtt>=2,<3' || python3 -m pip install --user -q --break-system-packages 'paho-mqtt>=2,<3'
fi

cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
mkdir -p target
cargo test --release --workspace 2>&1 | tee target/test-output.log

# Bounded fuzzing of certificates, request JSON, JWTs and topic filters
# (longer runs: bash fuzz/run.sh 3600).
bash fuzz/run.sh "${FUZZ_SECONDS:-20}"

# One closing line for the whole run (cargo's own summaries are per binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "all tests: %d passed, %d failed\n", p, f }' target/test-output.log

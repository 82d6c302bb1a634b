#!/usr/bin/env bash
# Every test, on a fresh machine: installs what the tests need (the wasm
# target, rustfmt/clippy, openssl, mosquitto and its clients, RabbitMQ, Python's amqtt 0.12.1 and
# paho-mqtt for the broker's and the webhook's real-broker tests, cargo-fuzz), checks formatting and lints, runs the
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
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
if [ "${#missing[@]}" -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  as_root apt-get update -q
  as_root apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The broker's and the webhook's real-broker tests: amqtt 0.12.1 (with its HTTP plugins' aiohttp and
# sqlalchemy) and paho-mqtt. Debian's own python3 refuses system-wide pip installs.
if ! python3 -c "import amqtt.contrib.http, paho.mqtt.client, sqlalchemy" >/dev/null 2>&1; then
  pip_args=(-q amqtt==0.12.1 aiohttp sqlalchemy 'paho-mqtt>=2,<3')
  python3 -m pip install "${pip_args[@]}" || python3 -m pip install --break-system-packages "${pip_args[@]}"
fi
# With everything installed, a missing broker fails its test instead of skipping it.
export MQTT_POLICY_REQUIRE_BROKERS=1

cargo fmt --all -- --check
cargo clippy --release --workspace --all-targets -- -D warnings
mkdir -p target
# `cargo test` does not (re)build a cdylib for integration tests: the Mosquitto
# plugin's tests load target/release/libmqtt_policy_mosquitto.so, built here.
cargo build --release -p mqtt-policy-mosquitto
cargo test --release --workspace 2>&1 | tee target/test-output.log

# Bounded fuzzing of certificates, request JSON, JWTs and topic filters
# (longer runs: bash fuzz/run.sh 3600).
bash fuzz/run.sh "${FUZZ_SECONDS:-20}"

# One closing line for the whole run (cargo's own summaries are per binary).
awk '/^test result:/ { p += $4; f += $6 } END { printf "all tests: %d passed, %d failed\n", p, f }' target/test-output.log

#!/usr/bin/env bash
# The main job: build the sample policies to wasm components and evaluate the
# sample chain (examples/policies.toml) on each example request. Once the
# embedded broker exists this starts it on loopback instead.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null
cargo build --release --target wasm32-wasip2 --target-dir target/wasm \
  -p thumbprint-policy -p password-policy -p jwt-policy -p topic-list-policy
cargo build --release -p mqtt-policy-cli

for request in examples/requests/*.json; do
  echo "== $request"
  ./target/release/mqtt-policy check --config examples/policies.toml "$request"
done

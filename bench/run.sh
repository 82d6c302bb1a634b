#!/usr/bin/env bash
# Run the benchmarks: the report harness (the tables in BENCHMARKS.md), the
# criterion benches, and with `--broker SECONDS` the broker load runs
# (bench/load/run.sh) after them, so one command gives every table.
# Usage: bash bench/run.sh [--report-only] [--broker SECONDS]
# Release build shared with the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
report_only=false
broker_secs=
while [ $# -gt 0 ]; do
  case "$1" in
    --report-only) report_only=true ;;
    --broker) broker_secs="${2:?--broker needs seconds per measurement}"; shift ;;
    *) echo "unknown argument: $1" >&2; exit 2 ;;
  esac
  shift
done
rustup target add wasm32-wasip2 >/dev/null
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
echo "commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
# The jwt policy once more, verifying signatures inside the guest instead of
# through the host's `verify-signature` import: the report compares the two.
cargo build --release --target wasm32-wasip2 --target-dir target/wasm-guest-crypto \
  -p jwt-policy --features guest-crypto
export BENCH_JWT_IN_GUEST="$PWD/target/wasm-guest-crypto/wasm32-wasip2/release/jwt.wasm"
cargo bench -p mqtt-policy-bench --bench report
if [ "$report_only" = false ]; then
  cargo bench -p mqtt-policy-bench --bench checks -- --warm-up-time 1 --measurement-time 3
fi
if [ -n "$broker_secs" ]; then
  bash bench/load/run.sh "$broker_secs"
fi

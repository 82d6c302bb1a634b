#!/usr/bin/env bash
# Run the benchmarks: the report harness (the tables in BENCHMARKS.md) and the
# criterion benches. Release build shared with the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
cargo bench -p mqtt-policy-bench --bench report
if [ "${1:-}" != "--report-only" ]; then
  cargo bench -p mqtt-policy-bench --bench checks -- --warm-up-time 1 --measurement-time 3
fi

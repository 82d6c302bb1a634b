#!/usr/bin/env bash
# Run the benchmarks: the report harness (the tables in BENCHMARKS.md) and the
# criterion benches. Release build shared with the tests.
set -euo pipefail
cd "$(dirname "$0")/.."
rustup target add wasm32-wasip2 >/dev/null
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -r)"
# The jwt policy once more, verifying signatures inside the guest instead of
# through the host's `verify-signature` import: the report compares the two.
cargo build --release --target wasm32-wasip2 --target-dir target/wasm-guest-crypto \
  -p jwt-policy --features guest-crypto
export BENCH_JWT_IN_GUEST="$PWD/target/wasm-guest-crypto/wasm32-wasip2/release/jwt.wasm"
cargo bench -p mqtt-policy-bench --bench report
if [ "${1:-}" != "--report-only" ]; then
  cargo bench -p mqtt-policy-bench --bench checks -- --warm-up-time 1 --measurement-time 3
fi

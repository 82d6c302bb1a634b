#!/usr/bin/env bash
# Bounded fuzzing of every target: `bash fuzz/run.sh [seconds per target]`
# (default 20; CI runs this). Longer runs: `bash fuzz/run.sh 3600`, and
# FUZZ_SANITIZER=address for AddressSanitizer (slower to build and run).
# New interesting inputs accumulate in fuzz/corpus/<target> (not committed);
# crashes are written to fuzz/artifacts/<target> and fail the run.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-20}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
# cargo fuzz passes nightly-only compiler flags; the stable compiler accepts
# them this way, so no second toolchain is needed.
export RUSTC_BOOTSTRAP=1

# Certificate seeds are made fresh with openssl rather than checked in.
mkdir -p corpus/cert
if [ ! -f corpus/cert/leaf.pem ]; then
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout corpus/cert/key.tmp \
    -out corpus/cert/leaf.pem -days 30 -subj "/CN=fuzz" -addext "subjectAltName=DNS:fuzz.example,IP:127.0.0.1" 2>/dev/null
  rm -f corpus/cert/key.tmp
  openssl x509 -in corpus/cert/leaf.pem -outform DER -out corpus/cert/leaf.der
  cat corpus/cert/leaf.pem corpus/cert/leaf.pem > corpus/cert/chain.pem
fi

for target in topic cert request jwt; do
  mkdir -p "corpus/$target"
  seeds=()
  [ -d "seeds/$target" ] && seeds=("seeds/$target")
  echo "== fuzz $target for ${secs}s"
  log="$(mktemp)"
  status=0
  cargo fuzz run --release --sanitizer "${FUZZ_SANITIZER:-none}" "$target" "corpus/$target" "${seeds[@]}" -- \
    -max_total_time="$secs" -timeout=10 -rss_limit_mb=4096 -max_len=65536 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E "^(Done|stat::number_of_executed_units|stat::peak_rss_mb)" "$log" || true
  if [ "$status" -ne 0 ] || compgen -G "artifacts/$target/*" >/dev/null; then
    # Build errors, panics, hangs (-timeout) and memory blow-ups all end here.
    grep -v "^\s*Compiling" "$log" | tail -40
    echo "fuzz target $target failed (exit $status)"; exit 1
  fi
  rm -f "$log"
done

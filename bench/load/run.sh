#!/usr/bin/env bash
# Broker benchmarks for BENCHMARKS.md ("Broker"): one load generator
# (mqtt-load, rumqttc) against
#   1. mqtt-policy broker with the sample chain,
#   2. the same broker with no authorization (a chain of no policies,
#      default allow: same code path, no policy runs),
#   3. Debian's mosquitto 2.0 with password_file + acl_file on the same rules,
#   4. the same mosquitto with our plugin (adapters/mosquitto) and the sample
#      chain instead of those files,
#   5. mqtt-policy broker with the sample chain and the sessions' verdict
#      cache off (every check asks the chain), for the fan-out comparison.
# Every measurement is repeated in ROUNDS rounds (default 5); within a round
# each scenario runs on all its targets back to back, so slow drift of the
# machine falls on all targets alike; summarize.py reports the median of the rounds (single
# 8 s runs on this 2-core machine vary by ±10 %, as much as the ratios
# being measured).
# Usage: bash bench/load/run.sh [seconds per measurement] [rounds]
set -euo pipefail
cd "$(dirname "$0")/../.."
secs="${1:-8}"
rounds="${2:-5}"
out=target/bench-broker
mkdir -p "$out"

cargo build --release --target wasm32-wasip2 --target-dir target/wasm \
  -p thumbprint-policy -p password-policy -p jwt-policy -p topic-list-policy
cargo build --release -p mqtt-policy-cli -p mqtt-policy-load -p mqtt-policy-mosquitto
load=./target/release/mqtt-load
cli=./target/release/mqtt-policy

if [ ! -f "$out/server.pem" ]; then
  (
    cd "$out"
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 30 -subj "/CN=bench CA" 2>/dev/null
    openssl req -new "${ec[@]}" -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 30 -extfile server.ext 2>/dev/null
    openssl req -new "${ec[@]}" -keyout device-1.key -out device-1.csr -subj "/CN=device-1" 2>/dev/null
    openssl x509 -req -in device-1.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out device-1.pem -days 30 \
      -extfile <(printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n') 2>/dev/null
  )
fi
thumb=$(openssl x509 -in "$out/device-1.pem" -noout -fingerprint -sha256 | cut -d= -f2 | tr -d :)
wasm="$PWD/target/wasm/wasm32-wasip2/release"
cp examples/passwd examples/acl "$out/"
# The sample chain with the bench device on the allow-list.
sed -e "s#\.\./target/wasm/wasm32-wasip2/release#$wasm#" \
    -e "s#^  \"47:29.*#  \"$thumb\",#" \
    -e "/^  \"011B9D/d" \
    examples/policies.toml > "$out/chain.toml"
printf 'default = "allow"\n' > "$out/none.toml"
{ cat "$out/chain.toml"; printf '\n[verdict_cache]\nenabled = false\n'; } > "$out/chain-nocache.toml"
token=$(python3 - <<'PY'
import base64, hashlib, hmac, json, time
def b64(b): return base64.urlsafe_b64encode(b).rstrip(b"=").decode()
h = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
p = b64(json.dumps({"sub": "bench", "iss": "https://idp.example/", "aud": "mqtt",
                    "exp": int(time.time()) + 3600, "topics": ["demo/#"]}).encode())
s = b64(hmac.new(b"example-shared-secret-change-me", f"{h}.{p}".encode(), hashlib.sha256).digest())
print(f"{h}.{p}.{s}")
PY
)

broker_conf() { # chain file, port base
  cat <<CONF
chain = "$1"
cache_dir = "$PWD/$out/cache"
metrics = "127.0.0.1:$(($2 + 116))"
[limits]
max_connections = 20000
max_inflight = 32
max_queued = 100000
[[listener]]
name = "tcp"
transport = "tcp"
address = "127.0.0.1:$2"
[[listener]]
name = "tls"
transport = "tls"
address = "127.0.0.1:$(($2 + 1))"
[listener.tls]
cert = "$PWD/$out/server.pem"
key = "$PWD/$out/server.key"
client_ca = "$PWD/$out/ca.pem"
client_certs = "optional"
CONF
}
broker_conf "$PWD/$out/chain.toml" 21883 > "$out/chain-broker.toml"
broker_conf "$PWD/$out/none.toml" 22883 > "$out/none-broker.toml"
broker_conf "$PWD/$out/chain-nocache.toml" 25883 > "$out/nocache-broker.toml"

# Mosquitto with equivalent rules: the same users ($7$ PBKDF2 for legacy,
# Mosquitto cannot read argon2id so demo is re-hashed), the same acl_file,
# certificate clients by CN.
rm -f "$out/mosq.passwd"
mosquitto_passwd -c -b "$out/mosq.passwd" demo demo-password
grep '^legacy:' examples/passwd >> "$out/mosq.passwd"
cat > "$out/mosq.acl" <<ACL
$(cat examples/acl)

user device-1
topic write devices/device-1/telemetry
topic read devices/device-1/commands/+
ACL
cat > "$out/mosquitto.conf" <<CONF
user $(id -un)
per_listener_settings true
listener 23883 127.0.0.1
allow_anonymous false
password_file $PWD/$out/mosq.passwd
acl_file $PWD/$out/mosq.acl
max_queued_messages 100000
listener 23884 127.0.0.1
allow_anonymous false
cafile $PWD/$out/ca.pem
certfile $PWD/$out/server.pem
keyfile $PWD/$out/server.key
require_certificate true
use_identity_as_username true
acl_file $PWD/$out/mosq.acl
CONF

# Mosquitto with the plugin and the sample chain (chain.toml) instead of its files.
cat > "$out/mosquitto-plugin.conf" <<CONF
user $(id -un)
per_listener_settings false
allow_anonymous false
max_queued_messages 100000
plugin $PWD/target/release/libmqtt_policy_mosquitto.so
plugin_opt_config $PWD/$out/chain.toml
plugin_opt_cache_dir $PWD/$out/cache
plugin_opt_log warn
listener 24883 127.0.0.1
listener 24884 127.0.0.1
cafile $PWD/$out/ca.pem
certfile $PWD/$out/server.pem
keyfile $PWD/$out/server.key
require_certificate true
CONF

pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
"$cli" broker --config "$out/chain-broker.toml" & pids+=($!)
"$cli" broker --config "$out/none-broker.toml" & pids+=($!)
"$cli" broker --config "$out/nocache-broker.toml" & pids+=($!)
mosquitto -c "$out/mosquitto.conf" 2>"$out/mosquitto.log" & pids+=($!)
mosquitto -c "$out/mosquitto-plugin.conf" >"$out/mosquitto-plugin.log" 2>&1 & pids+=($!)
sleep 3

results="$out/results.jsonl"
: > "$results"
measure() { # target, scenario, mqtt-load args...
  local target=$1 scenario=$2; shift 2
  local r
  sleep 3 # let the broker drain what the last measurement left queued
  r=$("$load" "$@" --seconds "$secs")
  echo "{\"target\":\"$target\",\"scenario\":\"$scenario\",\"round\":$round,\"result\":$r}" | tee -a "$results"
}
tls_client=(--cafile "$out/ca.pem" --cert "$out/device-1.pem" --key "$out/device-1.key")
pw=(--username demo --password demo-password --prefix demo/bench)
# One scenario on one target (name:port).
scenario() { # scenario, name, port
  local s=$1 name=$2 port=$3
  case "$s" in
    # As fast as the publishers go (throughput), then at a fixed 4 x 2,500
    # messages/s (latency without an overloaded queue).
    qos0 | qos1)
      measure "$name" "$s" throughput --port "$port" --qos "${s#qos}" --publishers 4 \
        --subscribers 4 "${pw[@]}" ;;
    qos0-fixed | qos1-fixed)
      local q=${s%-fixed}
      measure "$name" "$s" throughput --port "$port" --qos "${q#qos}" --publishers 4 \
        --subscribers 4 "${pw[@]}" --rate 2500 ;;
    # The same publish load through the TLS listener (password user, no
    # client certificate): what TLS termination in the front costs.
    qos0-tls)
      measure "$name" "$s" throughput --port "$port" --cafile "$out/ca.pem" --qos 0 \
        --publishers 4 --subscribers 4 "${pw[@]}" ;;
    connect-password)
      measure "$name" "$s" connect --port "$port" --concurrency 8 \
        --username legacy --password legacy-password ;;
    connect-jwt)
      measure "$name" "$s" connect --port "$port" --concurrency 8 --username JWT \
        --password "$token" ;;
    connect-tls)
      measure "$name" "$s" connect --port "$port" --concurrency 8 "${tls_client[@]}" ;;
    # Fan-out: 32 subscribers on each message, so every publish is followed
    # by 32 receive checks, mostly repeats the sessions' caches answer.
    fanout)
      measure "$name" "$s" throughput --port "$port" --qos 0 --publishers 2 \
        --subscribers 32 "${pw[@]}" ;;
  esac
}
# The targets of each scenario (name:port; TLS listeners are port + 1).
all="chain:21883 none:22883 mosquitto:23883 mosquitto-plugin:24883"
declare -A targets=(
  [qos0]=$all [qos0-fixed]=$all [qos1]=$all [qos1-fixed]=$all [connect-password]=$all
  [qos0-tls]="chain:21884"
  [connect-jwt]="chain:21883 none:22883 mosquitto-plugin:24883"
  [connect-tls]="chain:21884 none:22884 mosquitto:23884 mosquitto-plugin:24884"
  [fanout]="chain:21883 chain-nocache:25883 none:22883 mosquitto:23883 mosquitto-plugin:24883"
)
# Each scenario runs on its targets back to back, seconds apart, so the
# ratios within a round compare measurements the machine's drift barely
# separates; even rounds take the targets in reverse order. Connect loads
# (8 s runs vary by ±7 % on this machine, and by position in the sequence)
# run each target twice per round, there and back (A B B A), and
# summarize.py takes the mean of the two.
reverse() { tr ' ' '\n' <<<"$1" | tac | tr '\n' ' '; }
for round in $(seq "$rounds"); do
  for s in qos0 qos0-fixed qos1 qos1-fixed connect-password connect-jwt connect-tls fanout qos0-tls; do
    list=${targets[$s]}
    if [ $((round % 2)) -eq 0 ]; then
      list=$(reverse "$list")
    fi
    case "$s" in
      connect-*) list="$list $(reverse "$list")" ;;
    esac
    for target in $list; do
      scenario "$s" "${target%%:*}" "${target##*:}"
    done
  done
done

# Which thread ran the chain broker's connect checks over all rounds
# (connect_checks = "auto": the pool only while checks are slow).
checks=$(curl -s "http://127.0.0.1:21999/metrics" || true)
on_worker=$(awk '/^mqtt_policy_broker_connect_checks_total\{thread="worker"\}/ { print $2 }' <<<"$checks")
on_pool=$(awk '/^mqtt_policy_broker_connect_checks_total\{thread="pool"\}/ { print $2 }' <<<"$checks")

# Memory over 100,000 connect/disconnect cycles (password user, 8 at a time)
# against the broker with the sample chain: resident set before, after the
# first 10,000 and after all 100,000, and what the broker still holds.
rss() { awk '/^VmRSS/ { print $2 }' "/proc/${pids[0]}/status"; }
before=$(rss)
"$load" connect --port 21883 --concurrency 8 --username legacy --password legacy-password \
  --count 10000 --seconds 600 > "$out/rss-10k.json"
after_10k=$(rss)
"$load" connect --port 21883 --concurrency 8 --username legacy --password legacy-password \
  --count 90000 --seconds 1800 > "$out/rss-100k.json"
sleep 2
after_100k=$(rss)
metrics=$(curl -s "http://127.0.0.1:21999/metrics" || true)
open=$(awk '/^mqtt_policy_broker_connections / { print $2 }' <<<"$metrics")
sessions=$(awk '/^mqtt_policy_broker_sessions / { print $2 }' <<<"$metrics")
echo "{\"target\":\"chain\",\"scenario\":\"rss\",\"round\":1,\"result\":{\"mode\":\"rss\",\"cycles\":100000,\"rss_kib_before\":$before,\"rss_kib_after_10k\":$after_10k,\"rss_kib_after_100k\":$after_100k,\"open_connections_after\":\"${open}\",\"sessions_after\":\"${sessions}\",\"connect_checks_worker\":\"${on_worker}\",\"connect_checks_pool\":\"${on_pool}\"}}" | tee -a "$results"
echo "results in $results"
python3 bench/load/summarize.py "$results"

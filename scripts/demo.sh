#!/usr/bin/env bash
# The main job: build the sample policies to wasm components and the CLI,
# make throwaway demo TLS material in target/demo/ on first run (a CA, a
# server certificate for 127.0.0.1 and one client certificate; nothing
# secret is in the repository), then run `mqtt-policy broker` on loopback
# with the sample chain (examples/broker.toml) until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target add wasm32-wasip2 >/dev/null
cargo build --release --target wasm32-wasip2 --target-dir target/wasm \
  -p thumbprint-policy -p password-policy -p jwt-policy -p topic-list-policy
cargo build --release -p mqtt-policy-cli

demo=target/demo
mkdir -p "$demo"
if [ ! -f "$demo/server.pem" ]; then
  command -v openssl >/dev/null || { echo "demo.sh: needs openssl (apt-get install openssl)" >&2; exit 1; }
  (
    cd "$demo"
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.pem -days 30 -subj "/CN=mqtt-policy demo CA" 2>/dev/null
    openssl req -new "${ec[@]}" -keyout server.key -out server.csr -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > server.ext
    openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem \
      -days 30 -extfile server.ext 2>/dev/null
    openssl req -new "${ec[@]}" -keyout device.key -out device.csr -subj "/CN=demo-device" 2>/dev/null
    openssl x509 -req -in device.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out device.pem -days 30 \
      -extfile <(printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n') 2>/dev/null
    chmod 600 ./*.key
  )
  echo "demo TLS material written to $demo/ (CA, server and client certificates, 30 days)"
fi

cat <<MSG

mqtt-policy broker: MQTT on 127.0.0.1:1883, MQTT/TLS on 127.0.0.1:8883, WebSocket on 127.0.0.1:8080,
metrics on http://127.0.0.1:9464/metrics. Every CONNECT, SUBSCRIBE, PUBLISH and delivery is
decided by examples/policies.toml (edit it, or examples/acl, while clients stay connected).
Demo users (examples/passwd): demo / demo-password, legacy / legacy-password.

  mosquitto_sub -h 127.0.0.1 -p 1883 -V mqttv5 -u demo -P demo-password -t 'demo/#' -t 'public/#' -v
  mosquitto_pub -h 127.0.0.1 -p 1883 -V mqttv5 -u demo -P demo-password -t demo/hello -m hi -q 1
  mosquitto_pub -h 127.0.0.1 -p 1883 -V mqttv5 -u legacy -P legacy-password -t demo/hello -m no -q 1 -d   # PUBACK RC:135
  mosquitto_sub -h 127.0.0.1 -p 1883 -V mqttv5 -u demo -P wrong -t '#' -d                              # CONNACK 134
  mosquitto_sub -h 127.0.0.1 -p 8883 -V mqttv5 --cafile $demo/ca.pem -u demo -P demo-password -t 'demo/#' -v
  # The client certificate $demo/device.pem is not on the sample allow-list (the certs policy denies it):
  mosquitto_pub -h 127.0.0.1 -p 8883 --cafile $demo/ca.pem --cert $demo/device.pem --key $demo/device.key -t x -m x -d

Stop with Ctrl-C. Logs of every decision: RUST_LOG=info bash scripts/demo.sh
MSG

exec ./target/release/mqtt-policy --log "${RUST_LOG:-warn,mqtt_policy_broker=info}" broker --config examples/broker.toml

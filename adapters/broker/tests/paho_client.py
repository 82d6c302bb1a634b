#!/usr/bin/env python3
"""A paho-mqtt client for the broker's end-to-end tests.

Connects, subscribes to every --sub filter in one SUBSCRIBE, publishes every
--pub, collects messages for --wait seconds, and prints one JSON object per
event on stdout (connack, suback, puback, message, done). Exits 0 unless
paho itself fails; refusals are events, not errors.
"""
import argparse
import json
import ssl
import sys
import threading
import time

import paho.mqtt.client as mqtt

ap = argparse.ArgumentParser()
ap.add_argument("--port", type=int, required=True)
ap.add_argument("--version", default="5", choices=["3", "4", "5"])
ap.add_argument("--id", default="")
ap.add_argument("-u", "--username")
ap.add_argument("-P", "--password")
ap.add_argument("--cafile")
ap.add_argument("--cert")
ap.add_argument("--key")
ap.add_argument("--transport", default="tcp", choices=["tcp", "websockets"])
ap.add_argument("--sub", action="append", default=[], help="FILTER:QOS")
ap.add_argument("--pub", action="append", default=[], help="TOPIC:QOS:PAYLOAD[:retain]")
ap.add_argument("--will", help="TOPIC (QoS 0, payload 'gone')")
ap.add_argument("--wait", type=float, default=0.5, help="seconds to collect messages")
ap.add_argument("--abrupt", action="store_true", help="drop the socket instead of DISCONNECT")
args = ap.parse_args()

PROTO = {"3": mqtt.MQTTv31, "4": mqtt.MQTTv311, "5": mqtt.MQTTv5}[args.version]
out_lock = threading.Lock()


def emit(**event):
    with out_lock:
        print(json.dumps(event), flush=True)


connected = threading.Event()
subscribed = threading.Event()
acks = {}
acked = threading.Condition()
state = {"connack": None}

client = mqtt.Client(
    mqtt.CallbackAPIVersion.VERSION2,
    client_id=args.id,
    protocol=PROTO,
    transport=args.transport,
    clean_session=None if PROTO == mqtt.MQTTv5 else True,
)
if args.transport == "websockets":
    client.ws_set_options(path="/mqtt")
if args.username is not None:
    client.username_pw_set(args.username, args.password)
if args.cafile:
    ctx = ssl.create_default_context(cafile=args.cafile)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    client.tls_set_context(ctx)
if args.will:
    client.will_set(args.will, b"gone", qos=0)


def on_connect(c, userdata, flags, reason_code, properties):
    state["connack"] = reason_code.value
    emit(event="connack", code=reason_code.value)
    connected.set()


def on_subscribe(c, userdata, mid, reason_codes, properties):
    emit(event="suback", codes=[rc.value for rc in reason_codes])
    subscribed.set()


def on_publish(c, userdata, mid, reason_code, properties):
    with acked:
        acks[mid] = reason_code.value
        acked.notify_all()


def on_message(c, userdata, msg):
    emit(event="message", topic=msg.topic, payload=msg.payload.decode(errors="replace"),
         retain=bool(msg.retain), qos=msg.qos)


def on_disconnect(c, userdata, flags, reason_code, properties):
    connected.set()


client.on_connect = on_connect
client.on_subscribe = on_subscribe
client.on_publish = on_publish
client.on_message = on_message
client.on_disconnect = on_disconnect

try:
    client.connect("127.0.0.1", args.port, keepalive=30)
except Exception as e:  # refused at TLS, reset: an event for the test
    emit(event="error", error=str(e))
    sys.exit(0)
client.loop_start()
if not connected.wait(10) or state["connack"] != 0:
    if state["connack"] is None:
        emit(event="error", error="no CONNACK")
    client.loop_stop()
    sys.exit(0)

if args.sub:
    filters = []
    for s in args.sub:
        f, q = s.rsplit(":", 1)
        filters.append((f, int(q)))
    client.subscribe(filters)
    if not subscribed.wait(10):
        emit(event="error", error="no SUBACK")

for p in args.pub:
    parts = p.split(":")
    topic, qos, payload = parts[0], int(parts[1]), parts[2]
    retain = len(parts) > 3 and parts[3] == "retain"
    info = client.publish(topic, payload.encode(), qos=qos, retain=retain)
    if qos > 0:
        with acked:
            acked.wait_for(lambda: info.mid in acks, timeout=10)
        emit(event="puback", topic=topic, code=acks.get(info.mid))

time.sleep(args.wait)
if args.abrupt:
    sock = client.socket()
    client.loop_stop()
    if sock is not None:
        sock.close()
else:
    client.disconnect()
    client.loop_stop()
emit(event="done")

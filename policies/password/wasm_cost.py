"""CPU cost of the password policy's connect check inside wasm.

Loads the built component with wasmtime-py (Wasmtime, Cranelift, the
component model, a 32 MiB memory cap like the host's default), inits it with
a one-user config per hash format (the fixtures of src/tests.rs), and calls
connect-check in a loop, measuring this thread's CPU time. The host crate is
not needed; numbers include Python's call overhead, which is measured with a
check that defers at once and subtracted.

    cargo build --release --target wasm32-wasip2 --target-dir target/wasm -p password-policy
    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install wasmtime
    /tmp/venv/bin/python policies/password/wasm_cost.py target/wasm/wasm32-wasip2/release/password.wasm
"""
import json, os, sys, time
import wasmtime
from wasmtime import component as c

WASM = sys.argv[1]
CASES = [
    ("$7$ 101 iterations (mosquitto_passwd 2.0 default)",
     "$7$101$UV7zaRE+yBWG0jyB$iWAh7Q/Bbn2nekP9zodtStNpw0+L080GjdD+t+6iz9naNmEpweHts7++/1zPYCFHqF4rjspVaq1trRP3vNHtrA=="),
    ("$7$ 210000 iterations (Mosquitto 2.1 default)",
     "$7$210000$Eeafk2ziKNNHQu3S$7CsjQsnMMUdBRloMQEC8fL2w+od833mJxuSlKxHTNhXRiBQmaqN2WFY28vuRwfzRY1mnIhujl20KS8nv8pXFFw=="),
    ("$6$ single SHA-512",
     "$6$0DPKm36CW55P2rQ/$wcE9A8qL/BPu3OxM3qJPI25kPKMllrRJBhpOdDY6im1BFC02GGJEAKVK1IwRwDPKEnPaXL7uJB4Z1xKZ6mz1cw=="),
    ("argon2id m=19456 t=2 p=1 (OWASP minimum; recommended)",
     "$argon2id$v=19$m=19456,t=2,p=1$c2FsdC1mb3ItZXJpbi0x$xk8ICEXSKFxUx+0SsZ2Aj7XvCAk6XzMRacwHmlPWTLM"),
    ("argon2id m=1024 t=1 p=1",
     "$argon2id$v=19$m=1024,t=1,p=1$c2FsdC1zbWFsbC0wMDAx$2+8d2lAakchw+GxhfMbWnrAHFhcplLO3gbE3qgF9jMg"),
    ("argon2id m=24576 t=5 p=1 (the most the bounds allow)",
     "$argon2id$v=19$m=24576,t=5,p=1$c2FsdC1mb3ItbWF4LTAx$MaYQmVZ+Rw5Xod9Zjw4Pv8c6NuztjG3eazG/V5r/waI"),
]

engine = wasmtime.Engine()
comp = c.Component.from_file(engine, WASM)

def instance():
    store = wasmtime.Store(engine)
    store.set_wasi(wasmtime.WasiConfig())
    # The host's default per-instance memory cap.
    store.set_limits(memory_size=32 << 20)
    linker = c.Linker(engine)
    linker.add_wasip2()
    with linker.root() as root:
        with root.add_instance("mqtt:policy/host@0.1.0") as host:
            host.add_func("log", lambda store, level, msg, fields: None)
            host.add_func("now-unix-ms", lambda store: int(time.time() * 1000))
    inst = linker.instantiate(store, comp)
    return store, inst

def request(password, username="u"):
    r = c.Record()
    fields = {"client-id": "bench", "username": username, "password": password,
              "protocol-version": 4, "clean-start": True, "keep-alive": 60,
              "peer-address": None, "listener": None, "user-properties": [],
              "certificates": []}
    for k, v in fields.items():
        setattr(r, k, v)
    return r

def thread_cpu():
    return time.thread_time()

def timed(store, check, req, want):
    runs = 0
    wall = time.monotonic(); cpu = thread_cpu()
    while runs < 5 or (time.monotonic() - wall < 3.0 and runs < 20000):
        v = check(store, req)
        check.post_return(store)
        assert v.tag == want, (v.tag, v.payload)
        runs += 1
    return (thread_cpu() - cpu) / runs, runs

overhead = None
for name, hash_text in CASES:
    store, inst = instance()
    init = inst.get_func(store, "init")
    check = inst.get_func(store, "connect-check")
    res = init(store, json.dumps({"users": [{"username": "u", "hash": hash_text}]}))
    init.post_return(store)
    if overhead is None:
        # An unknown user defers at once: what Python and the call cost.
        overhead, _ = timed(store, check, request(b"secret", "nobody"), "defer")
        print(f"call overhead (unknown user, defer): {overhead*1e3:.3f} ms")
    each, runs = timed(store, check, request(b"secret"), "allow")
    net = max(each - overhead, 1e-9)
    print(f"{name}: {each*1e3:.3f} ms CPU per check in wasm ({net*1e3:.3f} ms less the call), "
          f"{1/net:.0f} checks/s per core ({runs} runs)")

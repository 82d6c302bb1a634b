#!/usr/bin/env python3
"""Summarize bench/load/run.sh results (JSON lines) as the BENCHMARKS.md table.

Each (target, scenario) was measured once per round (connect loads twice,
there and back, and averaged); the table shows the median over the rounds
and, for the headline rates, the range. Ratios compare
the embedded broker with the sample chain against the same broker with no
authorization, and mosquitto + our plugin against mosquitto's own
password_file + acl_file. Each ratio cell gives the ratio of the medians in
bold, then the ratio within each round (the two targets of a round ran
minutes apart, so drift of the machine falls on both) and their median.

Usage: python3 bench/load/summarize.py target/bench-broker/results.jsonl
"""

import json
import statistics
import sys
from collections import defaultdict

SCENARIOS = [
    ("qos0", "QoS 0 saturated (4 pub, 4 sub): deliveries/s", "delivered_per_s", "latency"),
    ("qos1", "QoS 1 saturated: deliveries/s", "delivered_per_s", "latency"),
    ("qos0-fixed", "QoS 0 fixed 10k/s: deliveries/s", "delivered_per_s", "latency"),
    ("qos1-fixed", "QoS 1 fixed 10k/s: deliveries/s", "delivered_per_s", "latency"),
    ("fanout", "fan-out, QoS 0 saturated, 2 pub, 32 sub: deliveries/s", "delivered_per_s", None),
    ("connect-password", "connects/s, password (`legacy`, `$7$` PBKDF2)", "connects_per_s", "connack"),
    ("connect-jwt", "connects/s, JWT HS256 (one token: each instance verifies it once, then remembers it)", "connects_per_s", "connack"),
    ("connect-tls", "connects/s, TLS client certificate", "connects_per_s", "connack"),
    ("qos0-tls", "QoS 0 saturated through the TLS listener: deliveries/s", "delivered_per_s", "latency"),
]
TARGETS = ["chain", "none", "mosquitto-plugin", "mosquitto"]


def load(path):
    runs = defaultdict(list)
    rss = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line.startswith("{"):
                continue
            r = json.loads(line)
            if r.get("scenario") == "rss":
                rss = r["result"]
            elif "scenario" in r:
                result = dict(r["result"])
                result["_round"] = r.get("round")
                runs[(r["target"], r["scenario"])].append(result)
    return {key: per_round(results) for key, results in runs.items()}, rss


def per_round(results):
    """One result per round: the mean of a round's measurements."""
    rounds = defaultdict(list)
    for r in results:
        rounds[r["_round"]].append(r)
    merged = []
    for round_results in rounds.values():
        first = dict(round_results[0])
        for key, value in first.items():
            values = [r.get(key) for r in round_results]
            if key != "_round" and all(isinstance(v, (int, float)) for v in values):
                first[key] = statistics.mean(values)
        merged.append(first)
    return merged


def median(runs, key):
    values = [r[key] for r in runs if isinstance(r.get(key), (int, float))]
    return statistics.median(values) if values else None


def rate(runs, key):
    m = median(runs, key)
    if m is None:
        return "–"
    values = [r[key] for r in runs]
    if len(values) > 1:
        return f"{m:,.0f} ({min(values):,.0f}–{max(values):,.0f})"
    return f"{m:,.0f}"


def ratio(a, b):
    if a is None or b in (None, 0):
        return ""
    return f"**{100 * a / b:.0f} %**"


def paired(runs_a, runs_b, key):
    """Ratio of medians, then the per-round ratios and their median."""
    head = ratio(median(runs_a, key), median(runs_b, key))
    b_by_round = {r["_round"]: r.get(key) for r in runs_b}
    per_round = [
        100 * r[key] / b_by_round[r["_round"]]
        for r in runs_a
        if isinstance(r.get(key), (int, float)) and b_by_round.get(r["_round"])
    ]
    if len(per_round) < 2:
        return head
    rounds = ", ".join(f"{p:.0f}" for p in per_round)
    return f"{head} (rounds {rounds}; median {statistics.median(per_round):.0f} %)"


def latency(runs, kind):
    p50 = median(runs, f"{kind}_p50_ms")
    p99 = median(runs, f"{kind}_p99_ms")
    if p50 is None or p99 is None:
        return ""
    if p50 >= 1000:
        return f"{p50 / 1000:.1f} / {p99 / 1000:.1f} s"
    return f"{p50:.2f} / {p99:.2f} ms"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    runs, rss = load(sys.argv[1])
    rounds = max((len(v) for v in runs.values()), default=0)
    print(f"Median of {rounds} rounds (range in brackets).\n")
    print("| load | chain | none | chain / none | plugin | mosquitto | plugin / mosquitto |")
    print("|---|---|---|---|---|---|---|")
    for scenario, title, key, lat in SCENARIOS:
        got = {t: runs.get((t, scenario), []) for t in TARGETS}
        if not any(got.values()):
            continue
        print(
            f"| {title} | {rate(got['chain'], key)} | {rate(got['none'], key)} "
            f"| {paired(got['chain'], got['none'], key)} | {rate(got['mosquitto-plugin'], key)} "
            f"| {rate(got['mosquitto'], key)} "
            f"| {paired(got['mosquitto-plugin'], got['mosquitto'], key)} |"
        )
        if lat:
            cells = [latency(got[t], lat) for t in TARGETS]
            print(
                f"| — p50 / p99 {'CONNACK' if lat == 'connack' else 'latency'} | {cells[0]} "
                f"| {cells[1]} | | {cells[2]} | {cells[3]} | |"
            )
        if scenario == "fanout":
            nocache = runs.get(("chain-nocache", "fanout"), [])
            if nocache:
                print(
                    f"| — the chain broker with the cache off | {rate(nocache, key)} | "
                    f"| {paired(nocache, got['none'], key)} | | | |"
                )
    if rss:
        print(
            f"\n{rss['cycles']:,} connect/disconnect cycles: resident set "
            f"{rss['rss_kib_before']:,} KiB before, {rss['rss_kib_after_10k']:,} KiB after "
            f"10,000, {rss['rss_kib_after_100k']:,} KiB after all; "
            f"{rss['open_connections_after']} connections and {rss['sessions_after']} "
            f"sessions left."
        )
    if rss and "connect_checks_pool" in rss:
        print(
            f"\nThe chain broker's connect checks over all rounds: "
            f"{rss['connect_checks_worker']} on async workers, "
            f"{rss['connect_checks_pool']} on the blocking pool."
        )


if __name__ == "__main__":
    main()

"""Summarise bench/compare results: medians over rounds, ratios to nginx and
to the sink reached directly.
usage: report.py RESULTS.tsv PINNED DURATION ROUNDS CONNS CPUS IDLE_RSS_KIB [GRPC_CONNSxSTREAMS [LATENCY.tsv]]

A case is "<spans>|<encoding>"; the encoding "grpc" marks the OTLP/gRPC rows,
whose nginx baseline is the target "nginx grpc_pass"."""
import csv
import statistics
import sys
from collections import OrderedDict

path, pinned, duration, rounds, conns, cpus, idle_rss = sys.argv[1:8]
grpc_load = sys.argv[8] if len(sys.argv) > 8 else ""
latency_path = sys.argv[9] if len(sys.argv) > 9 else ""
rows = list(csv.DictReader(open(path), delimiter="\t"))
groups = OrderedDict()
for r in rows:
    groups.setdefault((r["case"], r["target"]), []).append(r)


def med(rs, k):
    return statistics.median(float(r[k]) for r in rs)


summary = OrderedDict()
for (case, target), rs in groups.items():
    summary[(case, target)] = {
        "req_s": med(rs, "req_s"), "p50": med(rs, "p50_us"), "p99": med(rs, "p99_us"),
        "cpu": med(rs, "cpu_us"), "rss": max(float(r["rss_kib"]) for r in rs),
        "errors": sum(int(r["errors"]) for r in rs),
        "cancelled": sum(int(r.get("cancelled") or 0) for r in rs),
    }

grpc_note = (f"; OTLP/gRPC: h2load, {grpc_load} (connections × streams), one token, "
             f"p50/p99 from its per-call log" if grpc_load else "")
print(f"\nbench/compare: {rounds} interleaved round(s) of {duration} s, {conns} connections (wrk)"
      f"{grpc_note}; {cpus} CPUs, pinned: {pinned} (load + sink on core 0, the proxy on core 1); "
      f"medians.\n")


def is_nginx(target):
    return target.startswith("nginx")


def label(enc):
    return "OTLP/gRPC" if enc == "grpc" else enc


print("| batch | target | req/s | p50 | p99 | CPU µs/req | RSS MiB | errors | vs nginx | vs direct |")
print("|---|---|---|---|---|---|---|---|---|---|")
for (case, target), s in summary.items():
    spans, enc = case.split("|")
    direct = summary.get((case, "direct"))
    nginx = next((v for (c, t), v in summary.items() if c == case and is_nginx(t)), None)
    vs_n = f"{s['req_s'] / nginx['req_s']:.2f}×" if nginx and not is_nginx(target) and target != "direct" else ""
    vs_d = f"{s['req_s'] / direct['req_s']:.2f}×" if direct and target != "direct" else ""
    cpu = "" if target == "direct" else f"{s['cpu']:.1f}"
    print(f"| {spans} spans, {label(enc)} | {target} | {s['req_s']:,.0f} | {s['p50'] / 1000:.2f} ms | "
          f"{s['p99'] / 1000:.2f} ms | {cpu} | {s['rss'] / 1024:.1f} | {s['errors']} | {vs_n} | {vs_d} |")

# CPU growth from the smallest to the largest batch, per target and encoding.
encs = list(OrderedDict.fromkeys(c.split("|")[1] for c, _ in summary))
span_counts = sorted({int(c.split("|")[0]) for c, _ in summary})
if len(span_counts) > 1:
    lo, hi = span_counts[0], span_counts[-1]
    print(f"\nCPU per request growth from {lo} to {hi} spans (lower is better):\n")
    for enc in encs:
        parts = []
        for target in OrderedDict.fromkeys(t for c, t in summary if t != "direct" and c.endswith(f"|{enc}")):
            a, b = summary.get((f"{lo}|{enc}", target)), summary.get((f"{hi}|{enc}", target))
            if a and b and a["cpu"] > 0:
                parts.append(f"{target} {b['cpu'] / a['cpu']:.1f}×")
        print(f"- {label(enc)}: " + ", ".join(parts))
floor = [(c, s, summary.get((c, "bare hyper"))) for (c, t), s in summary.items() if t == "spangate (1 token)"]
floor = [(c, s, f) for c, s, f in floor if f]
if floor:
    print("\nspangate's own work: CPU per request above the bare hyper pass-through (the same HTTP stack "
          "with no token, policy, scan or audit), 1 token:\n")
    for case, s, f in floor:
        spans, enc = case.split("|")
        print(f"- {spans} spans, {label(enc)}: {s['cpu']:.1f} − {f['cpu']:.1f} = {s['cpu'] - f['cpu']:.1f} µs "
              f"(bare hyper at {f['req_s'] / s['req_s']:.2f}× spangate's req/s)")
cancelled = [(c, t, s["cancelled"]) for (c, t), s in summary.items() if s["cancelled"]]
if cancelled:
    print("\nCalls h2load cancelled mid-upload when a round's time was up (spangate's audit: "
          "CANCELLED, body_aborted; not errors, and invisible on the nginx rows):\n")
    for case, target, n in cancelled:
        spans, enc = case.split("|")
        print(f"- {spans} spans, {label(enc)}, {target}: {n}")
print(f"\nspangate idle RSS (after start and one request): {int(idle_rss) / 1024:.1f} MiB")

# Latency at a fixed rate: half of spangate's median maximum from the rounds.
lat_rows = list(csv.DictReader(open(latency_path), delimiter="\t")) if latency_path else []
if lat_rows:
    print(f"\nLatency at half of spangate's maximum rate (h2load over HTTP/1.1, {conns} connections "
          f"opened 1 ms apart, {duration} s per target, one token; the rate is offered to each target "
          f"in turn):\n")
    print("| batch | target | offered req/s | served req/s | p50 | p99 | errors | added p99 over direct |")
    print("|---|---|---|---|---|---|---|---|")
    direct_p99 = {r["case"]: float(r["p99_us"]) for r in lat_rows if r["target"] == "direct"}
    for r in lat_rows:
        spans, enc = r["case"].split("|")
        d = direct_p99.get(r["case"])
        added = f"{(float(r['p99_us']) - d) / 1000:+.2f} ms" if d is not None and r["target"] != "direct" else ""
        print(f"| {spans} spans, {label(enc)} | {r['target']} | {int(r['rate']):,} | {int(r['req_s']):,} | "
              f"{float(r['p50_us']) / 1000:.2f} ms | {float(r['p99_us']) / 1000:.2f} ms | {r['errors']} | {added} |")

#!/usr/bin/env python3
"""Hostile-connection floods against a running spangate, with legitimate
requests in parallel. Standard library only; everything on loopback.

Each phase opens the attack connections, keeps them for --hold seconds while
--workers legitimate clients each send OTLP/JSON batches (one new HTTP/1.1
connection per request, 5 s timeout), then reports the legitimate success
rate and latency, and how many attack connections the server closed.

  python3 scripts/attack.py --target 127.0.0.1:14318 --idp http://127.0.0.1:19400 \
      --sockets 600 --hold 15
"""
import argparse
import asyncio
import json
import statistics
import time
import urllib.parse
import urllib.request

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind, flags, stream, payload=b""):
    n = len(payload)
    return bytes([n >> 16 & 255, n >> 8 & 255, n & 255, kind, flags]) + stream.to_bytes(4, "big") + payload


def batch(service="checkout"):
    return json.dumps({"resourceSpans": [{
        "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]},
        "scopeSpans": [{"scope": {"name": "attack"}, "spans": [{
            "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c10000",
            "name": "GET /", "kind": 2, "startTimeUnixNano": "1700000000000000000",
            "endTimeUnixNano": "1700000000100000000"}]}]}]}).encode()


def token(idp, identity="edge-prod"):
    data = urllib.parse.urlencode({"identity": identity}).encode()
    with urllib.request.urlopen(f"{idp}/token", data=data, timeout=10) as r:
        return json.load(r)["access_token"]


async def legit_one(host, port, tok, body):
    req = (f"POST /v1/traces HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {tok}\r\n"
           f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode() + body
    t0 = time.monotonic()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
        try:
            w.write(req)
            await w.drain()
            line = await asyncio.wait_for(r.readline(), 5)
        finally:
            w.close()
        ok = line.split(b" ")[1:2] == [b"200"]
    except (OSError, asyncio.TimeoutError, IndexError):
        ok = False
    return ok, time.monotonic() - t0


async def legit_load(host, port, tok, seconds, workers):
    body = batch()
    results = []
    end = time.monotonic() + seconds

    async def worker():
        while time.monotonic() < end:
            results.append(await legit_one(host, port, tok, body))
            await asyncio.sleep(0.05)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return results


async def hold(host, port, n, kind):
    """Open n attack connections of `kind`; return (writers, closed-counter task list)."""
    conns = []
    for _ in range(n):
        try:
            r, w = await asyncio.open_connection(host, port)
        except OSError:
            continue
        if kind == "partial_preface":
            w.write(PREFACE[:10])
        elif kind == "idle_h2":
            # Preface, SETTINGS, one request (GET /healthz), SETTINGS ACK;
            # then idle, answering PINGs.
            hdr = bytes([0x82, 0x86, 0x44, 8]) + b"/healthz" + bytes([0x41, 1]) + b"x"
            w.write(PREFACE + frame(4, 0, 0) + frame(1, 5, 1, hdr) + frame(4, 1, 0))
        elif kind == "slowloris":
            w.write(b"POST /v1/traces HTTP/1.1\r\nHost: x\r\n")
        conns.append((r, w))
    return conns


async def watch(conns, kind, seconds):
    """Keep the attack going for `seconds`; count connections the server closed."""
    closed = 0

    async def one(r, w):
        nonlocal closed
        end = time.monotonic() + seconds
        buf = b""
        try:
            while time.monotonic() < end:
                if kind == "slowloris":
                    w.write(b"X-a: b\r\n")
                    await w.drain()
                try:
                    data = await asyncio.wait_for(r.read(4096), 1.0)
                except asyncio.TimeoutError:
                    continue
                if not data:
                    closed += 1
                    return
                if kind == "idle_h2":
                    buf += data
                    while len(buf) >= 9:
                        n = int.from_bytes(buf[:3], "big")
                        if len(buf) < 9 + n:
                            break
                        t, flags, payload = buf[3], buf[4], buf[9:9 + n]
                        if t == 6 and not flags & 1:  # PING: answer it
                            w.write(frame(6, 1, 0, payload))
                        buf = buf[9 + n:]
        except OSError:
            closed += 1

    await asyncio.gather(*(one(r, w) for r, w in conns))
    for _, w in conns:
        w.close()
    return closed


def report(name, results, attack_n, closed):
    ok = [d for s, d in results if s]
    rate = 100.0 * len(ok) / max(1, len(results))
    lat = sorted(d * 1000 for _, d in results)
    p50 = statistics.median(lat) if lat else float("nan")
    p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else float("nan")
    print(f"| {name} | {attack_n} | {closed} | {len(results)} | {rate:.1f}% | {p50:.1f} | {p99:.1f} |", flush=True)


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", default="127.0.0.1:14318")
    ap.add_argument("--idp", default="http://127.0.0.1:19400")
    ap.add_argument("--sockets", type=int, default=600)
    ap.add_argument("--hold", type=float, default=15)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--phases", default="baseline,silent,partial_preface,idle_h2,slowloris")
    a = ap.parse_args()
    host, port = a.target.rsplit(":", 1)
    port = int(port)
    tok = token(a.idp)
    print("| attack | attack connections | closed by server | legit requests | legit success | p50 ms | p99 ms |")
    print("|---|---|---|---|---|---|---|")
    for phase in a.phases.split(","):
        if phase == "baseline":
            res = await legit_load(host, port, tok, a.hold, a.workers)
            report("none (baseline)", res, 0, 0)
            continue
        conns = await hold(host, port, a.sockets, phase)
        legit, closed = await asyncio.gather(
            legit_load(host, port, tok, a.hold, a.workers), watch(conns, phase, a.hold))
        report(phase, legit, len(conns), closed)
        await asyncio.sleep(1)


asyncio.run(main())

"""Write OTLP trace export bodies for bench/compare: protobuf (through the
official opentelemetry-proto package) and OTLP/JSON, for each span count.

usage: gen_bodies.py DIR SPANS...   -> DIR/traces-<n>.pb, DIR/traces-<n>.json, DIR/traces-<n>.grpc

The .grpc file is the protobuf body as one gRPC message (a 0 compression flag and
the length as a big-endian u32, then the bytes): the request body of a unary
TraceService/Export call.
"""
import json
import os
import struct
import sys

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

START = 1_700_000_000_000_000_000


def attrs(i):
    # Typical HTTP server span: 8 attributes, one event.
    return [
        ("http.request.method", "GET"),
        ("url.path", f"/api/items/{i}"),
        ("http.route", "/api/items/:id"),
        ("server.address", "bench.example.com"),
        ("user_agent.original", "Mozilla/5.0 (bench)"),
        ("network.protocol.version", "1.1"),
        ("http.response.status_code", "200"),
        ("vercel.region", "iad1"),
    ]


def body(n):
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    for k, v in [("service.name", "bench"), ("telemetry.sdk.language", "nodejs")]:
        rs.resource.attributes.append(KeyValue(key=k, value=AnyValue(string_value=v)))
    ss = rs.scope_spans.add()
    ss.scope.name = "bench"
    jspans = []
    for i in range(n):
        trace_id = os.urandom(16)
        span_id = os.urandom(8)
        s = ss.spans.add()
        s.trace_id, s.span_id = trace_id, span_id
        s.name = f"GET /api/items/{i}"
        s.kind = Span.SPAN_KIND_SERVER
        s.start_time_unix_nano = START + i * 1000
        s.end_time_unix_nano = START + i * 1000 + 250_000
        for k, v in attrs(i):
            s.attributes.append(KeyValue(key=k, value=AnyValue(string_value=v)))
        ev = s.events.add()
        ev.name = "cache.miss"
        ev.time_unix_nano = START + i * 1000 + 10
        jspans.append({
            "traceId": trace_id.hex(), "spanId": span_id.hex(), "name": s.name, "kind": 2,
            "startTimeUnixNano": str(s.start_time_unix_nano), "endTimeUnixNano": str(s.end_time_unix_nano),
            "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attrs(i)],
            "events": [{"name": "cache.miss", "timeUnixNano": str(ev.time_unix_nano)}],
        })
    j = {"resourceSpans": [{
        "resource": {"attributes": [
            {"key": "service.name", "value": {"stringValue": "bench"}},
            {"key": "telemetry.sdk.language", "value": {"stringValue": "nodejs"}}]},
        "scopeSpans": [{"scope": {"name": "bench"}, "spans": jspans}]}]}
    return req.SerializeToString(), json.dumps(j, separators=(",", ":")).encode()


def main():
    out = sys.argv[1]
    for n in map(int, sys.argv[2:]):
        pb, js = body(n)
        with open(f"{out}/traces-{n}.pb", "wb") as f:
            f.write(pb)
        with open(f"{out}/traces-{n}.json", "wb") as f:
            f.write(js)
        with open(f"{out}/traces-{n}.grpc", "wb") as f:
            f.write(struct.pack(">BI", 0, len(pb)) + pb)


if __name__ == "__main__":
    main()

"""A recording OTLP/HTTP upstream, independent of spangate's own code.

Standard-library http.server on 127.0.0.1 (port 0 unless given). Each POST is
appended to a JSONL file as one object:

  {"seq", "path", "headers" (lower-cased names), "content_type",
   "content_encoding", "bytes", "decode_error", "resources": [
      {"attributes": {key: value}, "spans": [{"name", "trace_id", "span_id",
       "attributes": {...}}]}]}

Protobuf bodies are decoded with the OpenTelemetry protobuf definitions
(`opentelemetry-proto`, Google's protobuf runtime); JSON bodies with the OTLP
JSON mapping (hex trace/span ids, camelCase). gzip bodies are gunzipped first.
The answer is 200 with an empty ExportTraceServiceResponse in the request's
content type (zero bytes for protobuf, `{}` for JSON).

Access tokens, like Lightstep: with `--allow FILE`, the `lightstep-access-token`
header must be one of the tokens listed in FILE, a JSON document
`{"generation": N, "tokens": ["...", ...]}` that the test rewrites (atomically,
by rename) to create and revoke tokens while traffic flows. The file is read
on every request, so a change applies to the next request. A missing or
unknown token is answered 401 (and recorded, with `"status": 401`). Each
record also carries `status`, `allowed`, `allow_generation` and `token_fp`
(the first 12 hex digits of the token's SHA-256, or null).

Usage: python recorder.py OUT.jsonl [--port N] [--allow FILE]
(prints `LISTENING <port>` when ready)
"""

import argparse
import base64
import gzip
import hashlib
import hmac
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
    ExportMetricsServiceRequest,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

MAX_BODY = 64 * 1024 * 1024
LOCK = threading.Lock()
SEQ = [0]


def any_value_pb(v):
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [any_value_pb(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: any_value_pb(kv.value) for kv in v.kvlist_value.values}
    if kind == "bytes_value":
        return base64.b64encode(v.bytes_value).decode()
    return getattr(v, kind)


def attrs_pb(kvs):
    return {kv.key: any_value_pb(kv.value) for kv in kvs}


def signal_of(path):
    """The signal of an upstream path: /v1/metrics and /v1/logs, else traces."""
    if path.endswith("/v1/metrics"):
        return "metrics"
    if path.endswith("/v1/logs"):
        return "logs"
    return "traces"


def decode_protobuf(body, path):
    """Resources of a protobuf body; `items` are span names, metric names or
    log bodies (string form)."""
    sig = signal_of(path)
    if sig == "metrics":
        req = ExportMetricsServiceRequest()
        req.ParseFromString(body)
        return [
            {
                "attributes": attrs_pb(rm.resource.attributes),
                "spans": [],
                "items": [m.name for sm in rm.scope_metrics for m in sm.metrics],
            }
            for rm in req.resource_metrics
        ]
    if sig == "logs":
        req = ExportLogsServiceRequest()
        req.ParseFromString(body)
        return [
            {
                "attributes": attrs_pb(rl.resource.attributes),
                "spans": [],
                "items": [str(any_value_pb(r.body)) for sl in rl.scope_logs for r in sl.log_records],
            }
            for rl in req.resource_logs
        ]
    req = ExportTraceServiceRequest()
    req.ParseFromString(body)
    out = []
    for rs in req.resource_spans:
        spans = []
        for ss in rs.scope_spans:
            for s in ss.spans:
                spans.append(
                    {
                        "name": s.name,
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "attributes": attrs_pb(s.attributes),
                    }
                )
        out.append(
            {
                "attributes": attrs_pb(rs.resource.attributes),
                "spans": spans,
                "items": [s["name"] for s in spans],
            }
        )
    return out


def any_value_json(v):
    if not isinstance(v, dict) or not v:
        return None
    (kind, val), *_ = v.items()
    if kind == "arrayValue":
        return [any_value_json(x) for x in (val or {}).get("values", [])]
    if kind == "kvlistValue":
        return {kv["key"]: any_value_json(kv.get("value")) for kv in (val or {}).get("values", [])}
    if kind == "intValue":
        return int(val)
    return val


def attrs_json(kvs):
    return {kv["key"]: any_value_json(kv.get("value")) for kv in (kvs or [])}


def decode_json(body, path):
    doc = json.loads(body)
    sig = signal_of(path)
    if sig == "metrics":
        return [
            {
                "attributes": attrs_json((rm.get("resource") or {}).get("attributes")),
                "spans": [],
                "items": [
                    m.get("name", "")
                    for sm in rm.get("scopeMetrics", []) or []
                    for m in sm.get("metrics", []) or []
                ],
            }
            for rm in doc.get("resourceMetrics", []) or []
        ]
    if sig == "logs":
        return [
            {
                "attributes": attrs_json((rl.get("resource") or {}).get("attributes")),
                "spans": [],
                "items": [
                    str(any_value_json(r.get("body")))
                    for sl in rl.get("scopeLogs", []) or []
                    for r in sl.get("logRecords", []) or []
                ],
            }
            for rl in doc.get("resourceLogs", []) or []
        ]
    out = []
    for rs in doc.get("resourceSpans", []) or []:
        spans = []
        for ss in rs.get("scopeSpans", []) or []:
            for s in ss.get("spans", []) or []:
                spans.append(
                    {
                        "name": s.get("name", ""),
                        "trace_id": (s.get("traceId") or "").lower(),
                        "span_id": (s.get("spanId") or "").lower(),
                        "attributes": attrs_json(s.get("attributes")),
                    }
                )
        out.append(
            {
                "attributes": attrs_json((rs.get("resource") or {}).get("attributes")),
                "spans": spans,
                "items": [s["name"] for s in spans],
            }
        )
    return out


def read_allow_list(path):
    """(generation, tokens) from the allow-list file; (None, []) when unreadable."""
    try:
        with open(path, "r", encoding="utf-8") as f:
            doc = json.load(f)
        return doc.get("generation"), [t for t in doc.get("tokens", []) if isinstance(t, str)]
    except (OSError, ValueError, AttributeError):
        return None, []


def token_allowed(token, tokens):
    """Constant-time membership test (every entry compared)."""
    if token is None:
        return False
    found = False
    for t in tokens:
        found |= hmac.compare_digest(token.encode(), t.encode())
    return found


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    out_path = None
    allow_path = None

    def log_message(self, fmt, *args):  # quiet: the JSONL file is the record
        pass

    def read_body(self):
        """The request body, Content-Length or chunked; None when over MAX_BODY."""
        if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
            chunks, total = [], 0
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    break
                total += size
                if total > MAX_BODY:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline()  # CRLF after each chunk
            return b"".join(chunks)
        length = int(self.headers.get("content-length") or 0)
        if length > MAX_BODY:
            return None
        return self.rfile.read(length)

    def do_POST(self):
        raw = self.read_body()
        if raw is None:
            self.close_connection = True
            self.send_error(413)
            return
        ctype = (self.headers.get("content-type") or "").split(";")[0].strip().lower()
        cenc = (self.headers.get("content-encoding") or "").strip().lower()
        record = {
            "path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "content_type": ctype,
            "content_encoding": cenc or None,
            "bytes": len(raw),
            "decode_error": None,
            "resources": [],
        }
        try:
            body = gzip.decompress(raw) if cenc == "gzip" else raw
            if ctype == "application/json":
                record["resources"] = decode_json(body, self.path)
            else:
                record["resources"] = decode_protobuf(body, self.path)
        except Exception as e:  # recorded, asserted on by the test
            record["decode_error"] = f"{type(e).__name__}: {e}"
        token = self.headers.get("lightstep-access-token")
        record["token_fp"] = hashlib.sha256(token.encode()).hexdigest()[:12] if token else None
        if self.allow_path:
            generation, tokens = read_allow_list(self.allow_path)
            allowed = token_allowed(token, tokens)
        else:
            generation, allowed = None, True
        record["allow_generation"] = generation
        record["allowed"] = allowed
        record["status"] = 200 if allowed else 401
        with LOCK:
            SEQ[0] += 1
            record["seq"] = SEQ[0]
            with open(self.out_path, "a", encoding="utf-8") as f:
                f.write(json.dumps(record, sort_keys=True) + "\n")
        if not allowed:
            answer = b'{"message":"invalid or revoked access token"}'
            self.send_response(401)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            return
        answer = b"{}" if ctype == "application/json" else b""
        self.send_response(200)
        self.send_header("content-type", ctype or "application/x-protobuf")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)


def main():
    parser = argparse.ArgumentParser(description="recording OTLP/HTTP upstream")
    parser.add_argument("out", help="JSONL file to append records to")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--allow", help="allow-list file of valid access tokens")
    args = parser.parse_args()
    Handler.out_path = args.out
    Handler.allow_path = args.allow
    server = ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    server.daemon_threads = True
    print(f"LISTENING {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()

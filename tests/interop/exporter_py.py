"""The OpenTelemetry Python SDK exporting through spangate:
TracerProvider + BatchSpanProcessor with the stock OTLP/HTTP protobuf exporter
(`opentelemetry-exporter-otlp-proto-http`), optionally gzip-compressed.

Input: env INTEROP_EXPORT = JSON {endpoint, token (optional), gzip: bool,
       resource: {attributes}, spans: [names], span_attributes: {...}}
Output: one line `RESULT {"results": [{"result": "SUCCESS"|"FAILURE", "spans": n}]}`;
exit 0 only when every export succeeded.

Token renewal (`"renew": {"token_url", "client_id", "client_secret",
"params": {...}}`): no fixed token; the exporter is given a requests.Session
whose auth fetches an access token with the client_credentials grant and
fetches a new one shortly before it expires (the documented way to renew a
token with this exporter). RESULT then also carries `"tokens"`: how many
tokens were fetched.

Loop mode (`"loop": {"stop_file": PATH, "max_seconds": S, "interval_ms": MS}`):
keep exporting, one span per export (named `<first span name> <i>`), each
flushed at once, until STOP_FILE exists or S seconds have passed; prints
`LOOPING` after the first export, then the same RESULT line (one result per
export).
"""

import json
import os
import sys
import time

import requests

from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SpanExporter,
    SpanExportResult,
)


class Recording(SpanExporter):
    """Delegates to the real exporter and keeps each export's result."""

    def __init__(self, inner):
        self.inner = inner
        self.results = []

    def export(self, spans):
        result = self.inner.export(spans)
        ids = [
            {
                "name": s.name,
                "trace_id": format(s.context.trace_id, "032x"),
                "span_id": format(s.context.span_id, "016x"),
            }
            for s in spans
        ]
        self.results.append({"result": result.name, "spans": len(spans), "ids": ids})
        return result

    def shutdown(self):
        self.inner.shutdown()

    def force_flush(self, timeout_millis=30000):
        return True


class ClientCredentialsAuth(requests.auth.AuthBase):
    """Bearer auth from an OAuth2 client_credentials token, renewed `margin`
    seconds before it expires. Set as `session.auth`, it runs on every export
    request, so the exporter always sends a live token."""

    def __init__(self, token_url, client_id, client_secret, params, margin=1.0):
        self.token_url = token_url
        self.client_id = client_id
        self.client_secret = client_secret
        self.params = params
        self.margin = margin
        self.value = None
        self.expires_at = 0.0
        self.fetched = 0
        self.http = requests.Session()

    def token(self):
        if self.value is None or time.monotonic() >= self.expires_at - self.margin:
            resp = self.http.post(
                self.token_url,
                data={"grant_type": "client_credentials", **self.params},
                auth=(self.client_id, self.client_secret),
                timeout=10,
            )
            resp.raise_for_status()
            body = resp.json()
            self.value = body["access_token"]
            self.expires_at = time.monotonic() + float(body.get("expires_in", 60))
            self.fetched += 1
        return self.value

    def __call__(self, request):
        request.headers["Authorization"] = f"Bearer {self.token()}"
        return request


def main():
    spec = json.loads(os.environ.get("INTEROP_EXPORT", "{}"))
    headers = {"Authorization": f"Bearer {spec['token']}"} if spec.get("token") else {}
    session = None
    auth = None
    renew = spec.get("renew")
    if renew:
        auth = ClientCredentialsAuth(
            renew["token_url"], renew["client_id"], renew["client_secret"], renew.get("params", {})
        )
        session = requests.Session()
        session.auth = auth
    inner = OTLPSpanExporter(
        endpoint=spec["endpoint"],
        headers=headers,
        timeout=10,
        compression=Compression.Gzip if spec.get("gzip") else Compression.NoCompression,
        session=session,
    )
    exporter = Recording(inner)
    provider = TracerProvider(resource=Resource.create(spec.get("resource", {})))
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=60000))
    tracer = provider.get_tracer("spangate-interop", "1.0.0")
    names = spec.get("spans") or ["interop span"]
    attrs = spec.get("span_attributes") or {}
    loop = spec.get("loop")
    if loop:
        flushed = export_loop(provider, tracer, names[0], attrs, loop)
    else:
        with tracer.start_as_current_span(names[0], attributes=attrs):
            for name in names[1:]:
                with tracer.start_as_current_span(name, attributes=attrs):
                    pass
        flushed = provider.force_flush(timeout_millis=20000)
    provider.shutdown()
    out = {"results": exporter.results, "flushed": flushed}
    if auth is not None:
        out["tokens"] = auth.fetched
    print("RESULT " + json.dumps(out), flush=True)
    ok = exporter.results and all(r["result"] == "SUCCESS" for r in exporter.results)
    sys.exit(0 if ok else 1)


def export_loop(provider, tracer, name, attrs, loop):
    """Export one span at a time until the stop file appears (bounded in time)."""
    stop_file = loop["stop_file"]
    deadline = time.monotonic() + float(loop.get("max_seconds", 30))
    interval = float(loop.get("interval_ms", 50)) / 1000
    flushed = True
    i = 0
    while not os.path.exists(stop_file) and time.monotonic() < deadline:
        with tracer.start_as_current_span(f"{name} {i}", attributes=attrs):
            pass
        flushed = provider.force_flush(timeout_millis=20000) and flushed
        if i == 0:
            print("LOOPING", flush=True)
        i += 1
        time.sleep(interval)
    return flushed


if __name__ == "__main__":
    main()

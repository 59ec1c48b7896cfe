"""The OpenTelemetry Python SDK exporting one signal through spangate, configured
only by the standard OTEL_* environment variables: the exporter is the stock
one for OTEL_EXPORTER_OTLP_PROTOCOL (`grpc`: opentelemetry-exporter-otlp-proto-grpc,
`http/protobuf`: opentelemetry-exporter-otlp-proto-http, `http/json`:
opentelemetry-exporter-otlp-json-http), constructed without arguments, so its
endpoint, headers (the bearer token), timeout and compression all come from
OTEL_EXPORTER_OTLP_*; the resource from OTEL_SERVICE_NAME and
OTEL_RESOURCE_ATTRIBUTES.

Input: env INTEROP_SIGNAL (traces | metrics | logs), INTEROP_ITEMS (comma-separated
names: span names, counter names or log bodies; one export each, in order).
Output: one line `RESULT {"results": ["SUCCESS"|"FAILURE", ...]}`, one per export;
exit 0 only when every export succeeded.
"""

import json
import os
import sys

from opentelemetry.sdk.resources import Resource

PROTOCOL = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
SIGNAL = os.environ.get("INTEROP_SIGNAL", "traces")
ITEMS = [n for n in os.environ.get("INTEROP_ITEMS", "interop item").split(",") if n]


def exporter_class():
    if PROTOCOL == "grpc":
        if SIGNAL == "traces":
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as E
        elif SIGNAL == "metrics":
            from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter as E
        else:
            from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter as E
    elif PROTOCOL == "http/json":
        if SIGNAL == "traces":
            from opentelemetry.exporter.otlp.json.http.trace_exporter import OTLPSpanExporter as E
        elif SIGNAL == "metrics":
            from opentelemetry.exporter.otlp.json.http.metric_exporter import OTLPMetricExporter as E
        else:
            from opentelemetry.exporter.otlp.json.http._log_exporter import OTLPLogExporter as E
    else:
        if SIGNAL == "traces":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter as E
        elif SIGNAL == "metrics":
            from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter as E
        else:
            from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter as E
    return E


class Recording:
    """Wraps the real exporter's export() and keeps each result's name."""

    def __init__(self, inner):
        self.inner = inner
        self.results = []
        real = inner.export

        def export(batch, *args, **kwargs):
            result = real(batch, *args, **kwargs)
            self.results.append(result.name)
            return result

        inner.export = export


def main():
    resource = Resource.create({})
    inner = exporter_class()()
    rec = Recording(inner)
    if SIGNAL == "traces":
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor

        provider = TracerProvider(resource=resource)
        provider.add_span_processor(SimpleSpanProcessor(inner))
        tracer = provider.get_tracer("spangate-interop")
        for name in ITEMS:
            with tracer.start_as_current_span(name):
                pass
        provider.shutdown()
    elif SIGNAL == "metrics":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader

        # Delta temporality is not needed: one collection per item, then no
        # more (shutdown exports nothing new as the reader is manual-timed).
        reader = PeriodicExportingMetricReader(inner, export_interval_millis=3_600_000)
        provider = MeterProvider(resource=resource, metric_readers=[reader])
        meter = provider.get_meter("spangate-interop")
        for name in ITEMS:
            meter.create_counter(name).add(1)
            provider.force_flush(timeout_millis=20_000)
        provider.shutdown()
    else:
        from opentelemetry.sdk._logs import LoggerProvider
        from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor

        provider = LoggerProvider(resource=resource)
        provider.add_log_record_processor(SimpleLogRecordProcessor(inner))
        logger = provider.get_logger("spangate-interop")
        for name in ITEMS:
            logger.emit(body=name, severity_text="INFO")
        provider.shutdown()
    print("RESULT " + json.dumps({"results": rec.results}), flush=True)
    ok = rec.results and all(r == "SUCCESS" for r in rec.results)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

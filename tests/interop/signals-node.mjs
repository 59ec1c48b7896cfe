// The OpenTelemetry JS SDK exporting one signal through spangate, configured
// only by the standard OTEL_* environment variables: the exporter is the stock
// one for OTEL_EXPORTER_OTLP_PROTOCOL (`grpc`: @opentelemetry/exporter-*-otlp-grpc,
// `http/protobuf`: -proto, `http/json`: -http), constructed without options,
// so its endpoint and headers (the bearer token) come from OTEL_EXPORTER_OTLP_*;
// the resource from OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES (the SDK's
// environment detector).
//
// Input: env INTEROP_SIGNAL (traces | metrics | logs), INTEROP_ITEMS
// (comma-separated span names, counter names or log bodies; one export each).
// Output: one line `RESULT {"results":[{"code":0|1,"error":...}]}`, one per
// export; exit 0 only when every export succeeded.

import { ExportResultCode } from '@opentelemetry/core';
import { detectResources, envDetector } from '@opentelemetry/resources';
import { BasicTracerProvider, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { LoggerProvider, SimpleLogRecordProcessor } from '@opentelemetry/sdk-logs';
import * as traceGrpc from '@opentelemetry/exporter-trace-otlp-grpc';
import * as traceProto from '@opentelemetry/exporter-trace-otlp-proto';
import * as traceJson from '@opentelemetry/exporter-trace-otlp-http';
import * as metricsGrpc from '@opentelemetry/exporter-metrics-otlp-grpc';
import * as metricsProto from '@opentelemetry/exporter-metrics-otlp-proto';
import * as metricsJson from '@opentelemetry/exporter-metrics-otlp-http';
import * as logsGrpc from '@opentelemetry/exporter-logs-otlp-grpc';
import * as logsProto from '@opentelemetry/exporter-logs-otlp-proto';
import * as logsJson from '@opentelemetry/exporter-logs-otlp-http';

const protocol = process.env.OTEL_EXPORTER_OTLP_PROTOCOL || 'http/protobuf';
const signal = process.env.INTEROP_SIGNAL || 'traces';
const items = (process.env.INTEROP_ITEMS || 'interop item').split(',').filter(Boolean);

const modules = {
  traces: { grpc: traceGrpc, 'http/protobuf': traceProto, 'http/json': traceJson },
  metrics: { grpc: metricsGrpc, 'http/protobuf': metricsProto, 'http/json': metricsJson },
  logs: { grpc: logsGrpc, 'http/protobuf': logsProto, 'http/json': logsJson },
};
const className = { traces: 'OTLPTraceExporter', metrics: 'OTLPMetricExporter', logs: 'OTLPLogExporter' }[signal];
const Exporter = modules[signal][protocol][className];
const exporter = new Exporter();

const results = [];
const realExport = exporter.export.bind(exporter);
exporter.export = (batch, done) => realExport(batch, (result) => {
  results.push({ code: result.code, error: result.error ? String(result.error.message || result.error) : null });
  done(result);
});

const timer = setTimeout(() => {
  console.log(`RESULT ${JSON.stringify({ results, timeout: true })}`);
  process.exit(3);
}, 25_000);

const resource = detectResources({ detectors: [envDetector] });
if (signal === 'traces') {
  const provider = new BasicTracerProvider({ resource, spanProcessors: [new SimpleSpanProcessor(exporter)] });
  const tracer = provider.getTracer('spangate-interop');
  for (const name of items) {
    tracer.startSpan(name).end();
    await provider.forceFlush().catch(() => {});
  }
  await provider.shutdown().catch(() => {});
} else if (signal === 'metrics') {
  const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 3_600_000 });
  const provider = new MeterProvider({ resource, readers: [reader] });
  const meter = provider.getMeter('spangate-interop');
  for (const name of items) {
    meter.createCounter(name).add(1);
    await provider.forceFlush().catch(() => {});
  }
  await provider.shutdown().catch(() => {});
} else {
  const provider = new LoggerProvider({ resource, processors: [new SimpleLogRecordProcessor({ exporter })] });
  const logger = provider.getLogger('spangate-interop');
  for (const name of items) {
    logger.emit({ body: name, severityText: 'INFO' });
    await provider.forceFlush().catch(() => {});
  }
  await provider.shutdown().catch(() => {});
}
clearTimeout(timer);
console.log(`RESULT ${JSON.stringify({ results })}`);
const ok = results.length > 0 && results.every((r) => r.code === ExportResultCode.SUCCESS);
process.exit(ok ? 0 : 1);

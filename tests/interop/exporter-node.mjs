// The OpenTelemetry JS SDK exporting through spangate: sdk-trace-base's
// BasicTracerProvider + BatchSpanProcessor with the stock OTLP/HTTP exporters
// (`@opentelemetry/exporter-trace-otlp-http` for JSON,
// `@opentelemetry/exporter-trace-otlp-proto` for protobuf).
//
// Input: env INTEROP_EXPORT = JSON {
//   endpoint, token (optional), protocol: "json" | "proto",
//   resource: { attributes }, spans: [span names], span_attributes: {...} }
// Output: one line `RESULT {"results":[{"code":0|1,"error":...,"status":...}]}`.
// The exporter's result callback is what the SDK itself sees: SUCCESS (0) or
// FAILED (1, with the HTTP status for a refused request).

import { ExportResultCode } from '@opentelemetry/core';
import { OTLPTraceExporter as OTLPJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OTLPProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';

const input = JSON.parse(process.env.INTEROP_EXPORT || '{}');
const headers = input.token ? { Authorization: `Bearer ${input.token}` } : {};
const Exporter = input.protocol === 'proto' ? OTLPProtoExporter : OTLPJsonExporter;
const inner = new Exporter({ url: input.endpoint, headers, timeoutMillis: 10_000 });

// Delegates to the real exporter and keeps each export's result.
const results = [];
const recording = {
  export(spans, done) {
    inner.export(spans, (result) => {
      results.push({
        code: result.code,
        error: result.error ? String(result.error.message || result.error) : null,
        status: result.error?.code ?? null,
        spans: spans.length,
        ids: spans.map((s) => ({ name: s.name, trace_id: s.spanContext().traceId, span_id: s.spanContext().spanId })),
      });
      done(result);
    });
  },
  shutdown: () => inner.shutdown(),
  forceFlush: () => inner.forceFlush?.() ?? Promise.resolve(),
};

const provider = new BasicTracerProvider({
  resource: resourceFromAttributes(input.resource || {}),
  spanProcessors: [
    new BatchSpanProcessor(recording, { maxExportBatchSize: 512, scheduledDelayMillis: 60_000 }),
  ],
});
const tracer = provider.getTracer('spangate-interop', '1.0.0');

const names = input.spans || ['interop span'];
const root = tracer.startSpan(names[0], { attributes: input.span_attributes || {} });
for (const name of names.slice(1)) {
  const ctxSpan = tracer.startSpan(name, { attributes: input.span_attributes || {} });
  ctxSpan.end();
}
root.end();

const timer = setTimeout(() => {
  console.log(`RESULT ${JSON.stringify({ results, timeout: true })}`);
  process.exit(3);
}, 20_000);
// A failed export also rejects the flush; the result callback above has
// already recorded what the exporter reported.
let flushError = null;
try {
  await provider.forceFlush();
} catch (e) {
  flushError = String(e?.message || e);
}
await provider.shutdown().catch(() => {});
clearTimeout(timer);
console.log(`RESULT ${JSON.stringify({ results, flushError })}`);
const ok = results.length > 0 && results.every((r) => r.code === ExportResultCode.SUCCESS);
process.exit(ok ? 0 : 1);

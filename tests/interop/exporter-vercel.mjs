// @vercel/otel exporting through spangate, the way a Vercel project's
// `instrumentation.ts` does it: `registerOTel({ serviceName, attributes,
// traceExporter })` with @vercel/otel's own fetch-based exporters
// (`OTLPHttpJsonTraceExporter` / `OTLPHttpProtoTraceExporter`), run in plain
// Node (its "node" export). Spans come from the global tracer, then the
// global provider is flushed.
//
// @vercel/otel never retries and never reads the HTTP status: its export
// result is SUCCESS for any answer. The harness therefore asserts on what the
// upstream received and on spangate's audit lines, not on this result.
//
// Input: env INTEROP_EXPORT = JSON {endpoint, token (optional), protocol,
//        service, attributes: {...}, spans: [names]}
// Output: one line `RESULT {"results":[{"code":0|1,"error":...}]}`.

import { trace } from '@opentelemetry/api';
import {
  OTLPHttpJsonTraceExporter,
  OTLPHttpProtoTraceExporter,
  registerOTel,
} from '@vercel/otel';

const input = JSON.parse(process.env.INTEROP_EXPORT || '{}');
const headers = input.token ? { Authorization: `Bearer ${input.token}` } : {};
const Exporter = input.protocol === 'proto' ? OTLPHttpProtoTraceExporter : OTLPHttpJsonTraceExporter;
const inner = new Exporter({ url: input.endpoint, headers });

const results = [];
const recording = {
  export(spans, done) {
    inner.export(spans, (result) => {
      results.push({
        code: result.code,
        error: result.error ? String(result.error.message || result.error) : null,
        spans: spans.length,
        ids: spans.map((s) => ({ name: s.name, trace_id: s.spanContext().traceId, span_id: s.spanContext().spanId })),
      });
      done(result);
    });
  },
  shutdown: () => inner.shutdown(),
  forceFlush: () => inner.forceFlush(),
};

registerOTel({
  serviceName: input.service,
  attributes: input.attributes || {},
  traceExporter: recording,
  instrumentations: [],
});

const tracer = trace.getTracer('spangate-interop-vercel', '1.0.0');
for (const name of input.spans || ['vercel span']) {
  tracer.startSpan(name).end();
}

const timer = setTimeout(() => {
  console.log(`RESULT ${JSON.stringify({ results, timeout: true })}`);
  process.exit(3);
}, 20_000);
const provider = trace.getTracerProvider();
const real = typeof provider.getDelegate === 'function' ? provider.getDelegate() : provider;
if (typeof real.forceFlush !== 'function') {
  console.log(`RESULT ${JSON.stringify({ results, error: 'no global provider registered by registerOTel' })}`);
  process.exit(4);
}
let flushError = null;
try {
  await real.forceFlush();
} catch (e) {
  flushError = String(e?.message || e);
}
clearTimeout(timer);
console.log(`RESULT ${JSON.stringify({ results, flushError })}`);
process.exit(results.length > 0 && results.every((r) => r.code === 0) ? 0 : 1);

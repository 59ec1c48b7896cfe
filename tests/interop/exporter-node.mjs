// The OpenTelemetry JS SDK exporting through spangate: sdk-trace-base's
// BasicTracerProvider + BatchSpanProcessor with the stock OTLP/HTTP exporters
// (`@opentelemetry/exporter-trace-otlp-http` for JSON,
// `@opentelemetry/exporter-trace-otlp-proto` for protobuf).
//
// Input: env INTEROP_EXPORT = JSON {
//   endpoint, token (optional), protocol: "json" | "proto",
//   resource: { attributes }, spans: [span names], span_attributes: {...} }
// Output: one line `RESULT {"results":[{"code":0|1,"error":...,"status":...}]}`.
//
// Token renewal: `renew: { token_url, client_id, client_secret, params }`
// instead of `token`: `headers` is an async function (the exporter calls it
// for every export request) returning a client_credentials access token,
// fetched again shortly before it expires; with `loop: { seconds,
// interval_ms }` the exporter keeps exporting one span at a time. RESULT
// then also carries `tokens` (how many were fetched).
// The exporter's result callback is what the SDK itself sees: SUCCESS (0) or
// FAILED (1, with the HTTP status for a refused request).

import { ExportResultCode } from '@opentelemetry/core';
import { OTLPTraceExporter as OTLPJsonExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { OTLPTraceExporter as OTLPProtoExporter } from '@opentelemetry/exporter-trace-otlp-proto';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor } from '@opentelemetry/sdk-trace-base';

const input = JSON.parse(process.env.INTEROP_EXPORT || '{}');

// A client_credentials token, renewed one second before it expires.
let tokensFetched = 0;
let current = null;
async function renewedToken(r) {
  if (!current || Date.now() >= current.expiresAt - 1000) {
    const basic = Buffer.from(`${r.client_id}:${r.client_secret}`).toString('base64');
    const resp = await fetch(r.token_url, {
      method: 'POST',
      headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ grant_type: 'client_credentials', ...(r.params || {}) }),
      signal: AbortSignal.timeout(10_000),
    });
    const body = await resp.json();
    if (!resp.ok) throw new Error(`token endpoint: HTTP ${resp.status}`);
    current = { value: body.access_token, expiresAt: Date.now() + (body.expires_in ?? 60) * 1000 };
    tokensFetched += 1;
  }
  return current.value;
}

const headers = input.renew
  ? async () => ({ Authorization: `Bearer ${await renewedToken(input.renew)}` })
  : (input.token ? { Authorization: `Bearer ${input.token}` } : {});
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
const loopMs = (input.loop?.seconds ?? 0) * 1000;
const timer = setTimeout(() => {
  console.log(`RESULT ${JSON.stringify({ results, timeout: true, tokens: tokensFetched })}`);
  process.exit(3);
}, 20_000 + loopMs);
if (input.loop) {
  // One span per export, flushed at once, until the time is up.
  const until = Date.now() + loopMs;
  for (let i = 0; Date.now() < until; i += 1) {
    tracer.startSpan(`${names[0]} ${i}`, { attributes: input.span_attributes || {} }).end();
    await provider.forceFlush().catch(() => {});
    await new Promise((r) => { setTimeout(r, input.loop.interval_ms ?? 100); });
  }
} else {
  const root = tracer.startSpan(names[0], { attributes: input.span_attributes || {} });
  for (const name of names.slice(1)) {
    const ctxSpan = tracer.startSpan(name, { attributes: input.span_attributes || {} });
    ctxSpan.end();
  }
  root.end();
}
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
console.log(`RESULT ${JSON.stringify({ results, flushError, tokens: tokensFetched })}`);
const ok = results.length > 0 && results.every((r) => r.code === ExportResultCode.SUCCESS);
process.exit(ok ? 0 : 1);

// The exporter in Node against the real spangate binary: an allowed batch
// (arrives upstream), a denied one (the error surfaces), a rate-limited one
// (429, retried after Retry-After, delivered) and an IdP outage (503,
// retried, delivered).

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';

import { ExportResultCode } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';

import { VercelOtlpTraceExporter } from '../dist/index.js';
import { LIGHTSTEP_TOKEN, startStack, until } from './harness.mjs';

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.stop();
});

/** Real spans from a real SDK provider, ended and collected. */
function makeSpans(service, names, attributes = {}) {
  const ended = [];
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': service, ...attributes }),
    spanProcessors: [{
      onStart() {},
      onEnd(span) {
        ended.push(span);
      },
      forceFlush: async () => {},
      shutdown: async () => {},
    }],
  });
  const tracer = provider.getTracer('vercel-exporter-test');
  for (const n of names) tracer.startSpan(n).end();
  return ended;
}

/** A fetch that records each status spangate answered, with a hook per answer. */
function recordingFetch(onAnswer = () => {}) {
  const statuses = [];
  const f = async (url, init) => {
    const res = await fetch(url, init);
    statuses.push(res.status);
    onAnswer(res);
    return res;
  };
  return { fetch: f, statuses };
}

function exportOnce(exporter, spans) {
  return new Promise((resolve) => exporter.export(spans, resolve));
}

test('an allowed batch arrives upstream with the injected credential and stamped project', async () => {
  for (const protocol of ['protobuf', 'json']) {
    const before = stack.recorder.received.length;
    const token = stack.idp.mint();
    const exporter = new VercelOtlpTraceExporter({
      url: stack.spangate.url,
      protocol,
      requestHeaders: () => new Headers({ 'x-vercel-oidc-token': token }),
      oidcToken: false,
      env: {},
    });
    const result = await exportOnce(exporter, makeSpans('checkout', ['GET /', 'GET /cart']));
    assert.equal(result.code, ExportResultCode.SUCCESS, String(result.error));
    assert.equal(stack.recorder.received.length, before + 1);
    const got = stack.recorder.received.at(-1);
    assert.equal(got.headers['lightstep-access-token'], LIGHTSTEP_TOKEN);
    assert.equal(got.headers.authorization, undefined, 'the OIDC token never reaches the upstream');
    assert.match(got.headers['content-type'], protocol === 'json' ? /json/ : /protobuf/);
    const text = got.body.toString('latin1');
    assert.ok(text.includes('prj_checkout'), 'spangate stamped the verified project id');
    assert.ok(text.includes('GET /cart'));
  }
});

test('a denied batch surfaces as FAILED with the status, through onError', async () => {
  const before = stack.recorder.received.length;
  const errors = [];
  // environment "development" is not in the binding's list: 403.
  const token = stack.idp.mint({ environment: 'development' });
  const exporter = new VercelOtlpTraceExporter({
    url: stack.spangate.url,
    requestHeaders: () => ({ 'x-vercel-oidc-token': token }),
    oidcToken: false,
    env: {},
    onError: (e) => errors.push(e),
  });
  const result = await exportOnce(exporter, makeSpans('checkout', ['denied span']));
  assert.equal(result.code, ExportResultCode.FAILED);
  assert.equal(result.error.name, 'ExportError');
  assert.equal(result.error.status, 403);
  assert.equal(result.error.attempts, 1, 'a 403 is not retried');
  assert.match(result.error.message, /spangate answered 403/);
  assert.ok(result.error.requestId, 'the x-request-id to find the audit line');
  assert.deepEqual(errors, [result.error]);
  assert.equal(stack.recorder.received.length, before);
  const line = await stack.spangate.findAudit((l) => l.request_id === result.error.requestId);
  assert.equal(line?.decision, 'deny');

  // No token at all: a clear error before any request.
  const none = new VercelOtlpTraceExporter({ url: stack.spangate.url, requestHeaders: () => undefined, oidcToken: false, env: {} });
  const r2 = await exportOnce(none, makeSpans('checkout', ['x']));
  assert.equal(r2.code, ExportResultCode.FAILED);
  assert.match(r2.error.message, /no usable Vercel OIDC token/);
});

test('a rate-limited batch is retried after Retry-After and delivered', async () => {
  const token = stack.idp.mint({ project: 'limited', projectId: 'prj_limited' });
  const before = stack.recorder.received.length;
  const rec = recordingFetch();
  const exporter = new VercelOtlpTraceExporter({
    url: stack.spangate.url,
    requestHeaders: () => ({ 'x-vercel-oidc-token': token }),
    oidcToken: false,
    env: {},
    fetch: rec.fetch,
    deadlineMillis: 20_000,
  });
  // The binding allows one batch per second: back-to-back batches meet a
  // 429 (bounded: at most five tries to see one).
  let exports = 0;
  for (; exports < 5 && !rec.statuses.includes(429); exports++) {
    const result = await exportOnce(exporter, makeSpans('limited', [`burst ${exports}`]));
    assert.equal(result.code, ExportResultCode.SUCCESS, String(result.error));
  }
  assert.ok(rec.statuses.includes(429), `statuses ${rec.statuses}`);
  const i = rec.statuses.indexOf(429);
  assert.equal(rec.statuses.at(-1), 200, `the 429 was followed by a delivery: ${rec.statuses}`);
  assert.ok(i < rec.statuses.length - 1);
  assert.equal(stack.recorder.received.length, before + exports, 'every batch arrived exactly once');
  assert.ok(
    await stack.spangate.findAudit((l) => l.reason === 'rate_limited' || l.status === 429),
    'spangate audited the 429',
  );
});

test('an IdP outage (503) is retried and the batch delivered when the IdP is back', async () => {
  const before = stack.recorder.received.length;
  assert.equal(stack.idpBeta.state.available, false, 'team beta\'s IdP starts down');
  const token = stack.idpBeta.mint({ project: 'docs', projectId: 'prj_docs' });
  const rec = recordingFetch((res) => {
    // The first 503 is spangate saying it cannot verify: bring the IdP back.
    if (res.status === 503) stack.idpBeta.setAvailable(true);
  });
  const exporter = new VercelOtlpTraceExporter({
    url: stack.spangate.url,
    requestHeaders: () => ({ 'x-vercel-oidc-token': token }),
    oidcToken: false,
    env: {},
    fetch: rec.fetch,
    deadlineMillis: 25_000,
    maxBackoffMillis: 1_000,
  });
  const result = await exportOnce(exporter, makeSpans('docs', ['during outage']));
  assert.equal(result.code, ExportResultCode.SUCCESS, `${result.error} statuses ${rec.statuses}`);
  assert.equal(rec.statuses[0], 503, `statuses ${rec.statuses}`);
  assert.equal(rec.statuses.at(-1), 200);
  assert.equal(stack.recorder.received.length, before + 1);
  assert.ok(
    await stack.spangate.findAudit((l) => l.reason === 'provider_unavailable'),
    'spangate audited provider_unavailable',
  );
});

test('a token is looked up per export: request header, then provider, then env; expired ones skipped', async () => {
  // Distinct tokens for the same project (a unique jti each).
  const fresh = (source) => stack.idp.mint({ jti: `${source}-${randomUUID()}` });
  const expired = stack.idp.mint({ ttlSeconds: -120 });
  const seen = [];
  const capture = async (url, init) => {
    seen.push(init.headers.authorization);
    return fetch(url, init);
  };
  let headerToken = fresh('header');
  let providerCalls = 0;
  const providerToken = fresh('provider');
  const exporter = new VercelOtlpTraceExporter({
    url: stack.spangate.url,
    requestHeaders: () => ({ 'x-vercel-oidc-token': headerToken }),
    oidcToken: () => {
      providerCalls += 1;
      return providerToken;
    },
    env: { VERCEL_OIDC_TOKEN: fresh('env') },
    fetch: capture,
  });
  const spans = makeSpans('checkout', ['order']);
  assert.equal((await exportOnce(exporter, spans)).code, ExportResultCode.SUCCESS);
  assert.equal(seen.at(-1), `Bearer ${headerToken}`);
  assert.equal(providerCalls, 0);
  headerToken = expired;
  assert.equal((await exportOnce(exporter, spans)).code, ExportResultCode.SUCCESS);
  assert.equal(seen.at(-1), `Bearer ${providerToken}`);
  assert.equal((await exportOnce(exporter, spans)).code, ExportResultCode.SUCCESS);
  assert.equal(providerCalls, 1, 'the provider token is cached until it expires');

  const envToken = fresh('env-only');
  const envOnly = new VercelOtlpTraceExporter({
    url: stack.spangate.url,
    requestHeaders: () => ({ 'x-vercel-oidc-token': expired }),
    oidcToken: false,
    env: { VERCEL_OIDC_TOKEN: envToken },
    fetch: capture,
  });
  assert.equal((await exportOnce(envOnly, spans)).code, ExportResultCode.SUCCESS);
  assert.equal(seen.at(-1), `Bearer ${envToken}`);
});

test('export() returns before the network and the send runs inside waitUntil', async () => {
  const token = stack.idp.mint();
  const handed = [];
  let release;
  const gate = new Promise((r) => {
    release = r;
  });
  const exporter = new VercelOtlpTraceExporter({
    url: stack.spangate.url,
    requestHeaders: () => ({ 'x-vercel-oidc-token': token }),
    oidcToken: false,
    env: {},
    waitUntil: (p) => handed.push(p),
    // Hold the request until the test lets it go.
    fetch: async (url, init) => {
      await gate;
      return fetch(url, init);
    },
  });
  let result;
  const returned = exporter.export(makeSpans('checkout', ['non-blocking']), (r) => {
    result = r;
  });
  assert.equal(returned, undefined);
  assert.equal(result, undefined, 'no result while the request is held');
  assert.equal(handed.length, 1, 'the send was handed to waitUntil');
  release();
  await handed[0];
  assert.equal(result?.code, ExportResultCode.SUCCESS);
  await until('forceFlush to settle', async () => {
    await exporter.forceFlush();
    return true;
  });
});

// The exporter's own logic with a scripted fetch (no network): Retry-After
// parsing, the OTLP error message, the deadline, the 401 token refresh.

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { ExportResultCode } from '@opentelemetry/core';

import { VercelOtlpTraceExporter, retryAfterMillis, statusMessage, tokenExpiry } from '../dist/index.js';

const jwt = (payload) => `e30.${Buffer.from(JSON.stringify(payload)).toString('base64url')}.sig`;
const exportOnce = (exporter, spans = []) => new Promise((resolve) => exporter.export(spans, resolve));

test('Retry-After: delta seconds and HTTP dates', () => {
  assert.equal(retryAfterMillis('3', 0), 3000);
  assert.equal(retryAfterMillis(null, 0), undefined);
  assert.equal(retryAfterMillis('soon', 0), undefined);
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(retryAfterMillis('Thu, 01 Jan 2026 00:00:02 GMT', now), 2000);
});

test('the message of an OTLP Status body, protobuf and JSON', () => {
  // google.rpc.Status { code: 7, message: "denied" }
  const pb = Uint8Array.from([0x08, 0x07, 0x12, 0x06, ...Buffer.from('denied')]);
  assert.equal(statusMessage(pb, 'application/x-protobuf'), 'denied');
  assert.equal(statusMessage(Buffer.from('{"code":7,"message":"nope"}'), 'application/json'), 'nope');
  assert.equal(statusMessage(Uint8Array.from([0x12, 0x50]), 'application/x-protobuf'), undefined, 'truncated');
});

test('exp is decoded without verification', () => {
  assert.equal(tokenExpiry(jwt({ exp: 123 })), 123);
  assert.equal(tokenExpiry('not.a.jwt'), undefined);
  assert.equal(tokenExpiry('abc'), undefined);
});

test('retries stop at the deadline with a retryable error', async () => {
  let calls = 0;
  const errors = [];
  const exporter = new VercelOtlpTraceExporter({
    url: 'http://127.0.0.1:9/v1/traces',
    requestHeaders: () => ({ 'x-vercel-oidc-token': jwt({ exp: Date.now() / 1000 + 600 }) }),
    oidcToken: false,
    env: {},
    deadlineMillis: 300,
    onError: (e) => errors.push(e),
    fetch: async () => {
      calls += 1;
      return new Response('', { status: 503, headers: { 'retry-after': '5' } });
    },
  });
  const r = await exportOnce(exporter);
  assert.equal(r.code, ExportResultCode.FAILED);
  assert.equal(r.error.retryable, true);
  assert.equal(r.error.status, 503);
  assert.equal(calls, 1, 'a Retry-After past the deadline is not waited for');
  assert.equal(errors.length, 1);
});

test('a 401 looks the token up again once (expired cached provider token)', async () => {
  const tokens = [jwt({ exp: Date.now() / 1000 + 600, n: 1 }), jwt({ exp: Date.now() / 1000 + 600, n: 2 })];
  const sent = [];
  const exporter = new VercelOtlpTraceExporter({
    url: 'http://127.0.0.1:9/v1/traces',
    requestHeaders: () => undefined,
    oidcToken: () => tokens.shift(),
    env: {},
    fetch: async (_url, init) => {
      sent.push(init.headers.authorization);
      return new Response('', { status: sent.length === 1 ? 401 : 200 });
    },
  });
  const r = await exportOnce(exporter);
  assert.equal(r.code, ExportResultCode.SUCCESS);
  assert.equal(sent.length, 2);
  assert.notEqual(sent[0], sent[1]);
});

test('configuration errors are refused up front', () => {
  assert.throws(() => new VercelOtlpTraceExporter({}), /url is required/);
  assert.throws(
    () => new VercelOtlpTraceExporter({ url: 'http://x', headers: { Authorization: 'Bearer static' } }),
    /must not set authorization/,
  );
});

test('after shutdown, exports fail without a request', async () => {
  let calls = 0;
  const exporter = new VercelOtlpTraceExporter({ url: 'http://127.0.0.1:9', fetch: async () => { calls += 1; return new Response(''); } });
  await exporter.shutdown();
  const r = await exportOnce(exporter);
  assert.equal(r.code, ExportResultCode.FAILED);
  assert.equal(calls, 0);
});

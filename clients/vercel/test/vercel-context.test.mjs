// The defaults a Vercel function gets without passing anything: the token
// and waitUntil from Vercel's request context, and the token from the real
// @vercel/oidc package (getVercelOidcToken) when there is no request header,
// through the real spangate binary.

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, test } from 'node:test';

import { ExportResultCode } from '@opentelemetry/core';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider } from '@opentelemetry/sdk-trace-base';

import { VercelOtlpTraceExporter } from '../dist/index.js';
import { startStack } from './harness.mjs';

const CONTEXT = Symbol.for('@vercel/request-context');
let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  delete globalThis[CONTEXT];
  await stack?.stop();
});

function spans() {
  const ended = [];
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({ 'service.name': 'checkout' }),
    spanProcessors: [{ onStart() {}, onEnd: (s) => ended.push(s), forceFlush: async () => {}, shutdown: async () => {} }],
  });
  provider.getTracer('t').startSpan('GET /').end();
  return ended;
}

function capturing() {
  const sent = [];
  return {
    sent,
    fetch: async (url, init) => {
      sent.push(init.headers.authorization);
      return fetch(url, init);
    },
  };
}

test('token and waitUntil come from Vercel\'s request context by default', async () => {
  const token = stack.idp.mint({ jti: randomUUID() });
  const handed = [];
  globalThis[CONTEXT] = { get: () => ({ headers: { 'x-vercel-oidc-token': token }, waitUntil: (p) => handed.push(p) }) };
  const cap = capturing();
  const exporter = new VercelOtlpTraceExporter({ url: stack.spangate.url, oidcToken: false, env: {}, fetch: cap.fetch });
  const result = await new Promise((resolve) => exporter.export(spans(), resolve));
  assert.equal(result.code, ExportResultCode.SUCCESS, String(result.error));
  assert.deepEqual(cap.sent, [`Bearer ${token}`]);
  assert.equal(handed.length, 1, 'the send went to the context\'s waitUntil');
  delete globalThis[CONTEXT];
});

test('without a request header, @vercel/oidc\'s getVercelOidcToken supplies the token', async () => {
  const token = stack.idp.mint({ jti: randomUUID() });
  process.env.VERCEL_OIDC_TOKEN = token; // where @vercel/oidc reads it outside a request
  const cap = capturing();
  const exporter = new VercelOtlpTraceExporter({
    url: stack.spangate.url,
    requestHeaders: () => undefined,
    env: {}, // the exporter's own environment step finds nothing: the token is @vercel/oidc's
    fetch: cap.fetch,
  });
  const result = await new Promise((resolve) => exporter.export(spans(), resolve));
  assert.equal(result.code, ExportResultCode.SUCCESS, String(result.error));
  assert.deepEqual(cap.sent, [`Bearer ${token}`]);
  delete process.env.VERCEL_OIDC_TOKEN;
});

// The exporter as the traceExporter of @vercel/otel's registerOTel, the way a
// project's instrumentation.ts uses it, through the real spangate: the
// resource @vercel/otel builds from the deployment's environment
// (vercel.project_id, deployment.id, vcs.ref.head.revision, ...) arrives
// upstream with its deployment ids kept, because the project is the token's,
// and spangate lists the deployment in /admin/v1/deployments.

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { trace } from '@opentelemetry/api';

import { VercelOtlpTraceExporter } from '../dist/index.js';
import { ADMIN_TOKEN, startStack, until } from './harness.mjs';

let stack;
before(async () => {
  stack = await startStack();
});
after(async () => {
  await stack?.stop();
});

test('registerOTel({ traceExporter }) delivers with trusted deployment ids', async () => {
  // What Vercel sets in a deployment's environment.
  Object.assign(process.env, {
    VERCEL_ENV: 'production',
    VERCEL_PROJECT_ID: 'prj_checkout',
    VERCEL_DEPLOYMENT_ID: 'dpl_7Hx2kVq',
    VERCEL_GIT_COMMIT_SHA: '3b1f0c9e2d',
    VERCEL_OIDC_TOKEN: stack.idp.mint(),
  });
  const { registerOTel } = await import('@vercel/otel');
  const errors = [];
  const exporter = new VercelOtlpTraceExporter({
    url: stack.spangate.url,
    oidcToken: false,
    onError: (e) => errors.push(e),
  });
  registerOTel({ serviceName: 'checkout', traceExporter: exporter, instrumentations: [] });
  const tracer = trace.getTracer('vercel-otel-test');
  tracer.startSpan('GET /products').end();
  const provider = trace.getTracerProvider();
  const real = typeof provider.getDelegate === 'function' ? provider.getDelegate() : provider;
  await real.forceFlush();
  await exporter.forceFlush();
  assert.deepEqual(errors, []);
  await until('the batch upstream', () => stack.recorder.received.length >= 1);
  const body = stack.recorder.received.at(-1).body.toString('latin1');
  assert.ok(body.includes('GET /products'));
  assert.ok(body.includes('deployment.id') && body.includes('dpl_7Hx2kVq'), 'deployment id kept');
  assert.ok(body.includes('vcs.ref.head.revision') && body.includes('3b1f0c9e2d'), 'commit kept');

  const res = await fetch(`${stack.spangate.admin}/admin/v1/deployments/prj_checkout`, {
    headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
  });
  assert.equal(res.status, 200);
  const v = await res.json();
  const d = v.projects[0].deployments[0];
  assert.equal(d.deployment, 'dpl_7Hx2kVq');
  assert.equal(d.revision, '3b1f0c9e2d');
  assert.equal(d.batches, 1);
  assert.equal(d.spans, 1);
});

// The exporter inside Vercel's Edge Runtime emulator (`edge-runtime`): the
// function answers without waiting for the export (the request is held at a
// gate until the test has the response), the export finishes inside
// waitUntil, and a transient 503 (IdP outage) is retried to delivery, all
// through the real spangate binary.

import assert from 'node:assert/strict';
import http from 'node:http';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';

import { ExportResultCode } from '@opentelemetry/core';
import * as esbuild from 'esbuild';
import { EdgeRuntime, runServer } from 'edge-runtime';

import { startStack, until } from './harness.mjs';

const HERE = dirname(fileURLToPath(import.meta.url));
/** Values from the VM's realm, as plain host values (prototypes differ across realms). */
const plain = (v) => JSON.parse(JSON.stringify(v));

/** A pass-through to spangate that holds each request until released. */
async function startGate(target) {
  const state = { arrived: 0, answered: 0, statuses: [], open: false, waiters: [], onAnswer: () => {} };
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      state.arrived += 1;
      if (!state.open) await new Promise((r) => state.waiters.push(r));
      const up = await fetch(target, {
        method: 'POST',
        headers: { authorization: req.headers.authorization, 'content-type': req.headers['content-type'] },
        body: Buffer.concat(chunks),
      });
      const body = Buffer.from(await up.arrayBuffer());
      state.statuses.push(up.status);
      state.onAnswer(up.status);
      const headers = { 'content-type': up.headers.get('content-type') || 'application/x-protobuf' };
      if (up.headers.get('retry-after')) headers['retry-after'] = up.headers.get('retry-after');
      res.writeHead(up.status, headers).end(body);
      state.answered += 1;
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}/v1/traces`,
    state,
    open() {
      state.open = true;
      for (const w of state.waiters.splice(0)) w();
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

let stack;
let gate;
let edge;
let runtime;
before(async () => {
  stack = await startStack();
  gate = await startGate(stack.spangate.url);
  const bundle = await esbuild.build({
    entryPoints: [join(HERE, 'fixtures', 'edge-function.js')],
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    conditions: ['edge-light', 'worker', 'browser'],
    define: { SPANGATE_URL: JSON.stringify(gate.url) },
    logLevel: 'silent',
  });
  runtime = new EdgeRuntime({ initialCode: bundle.outputFiles[0].text });
  edge = await runServer({ runtime, port: 0, host: '127.0.0.1' });
});
after(async () => {
  await edge?.close();
  await gate?.close();
  await stack?.stop();
});

test('the edge function answers before the export and the batch arrives inside waitUntil', async () => {
  const before = stack.recorder.received.length;
  const token = stack.idp.mint();
  const res = await fetch(edge.url, { headers: { 'x-vercel-oidc-token': token } });
  assert.equal(await res.text(), 'hello from the edge');
  // The response is in hand while no export request has been answered.
  assert.equal(gate.state.answered, 0, 'the response did not wait for the export');
  await until('the export request to reach the gate', () => gate.state.arrived >= 1);
  assert.equal(runtime.context.__results.length, 0, 'no export result yet');
  gate.open();
  await edge.waitUntil();
  assert.deepEqual(plain(runtime.context.__results), [{ code: ExportResultCode.SUCCESS, status: null, message: null }]);
  assert.equal(stack.recorder.received.length, before + 1);
  assert.ok(stack.recorder.received.at(-1).body.toString('latin1').includes('GET /api/hello'));
});

test('a transient 503 (IdP outage) inside the edge runtime is retried, not lost', async () => {
  runtime.context.__results.length = 0;
  const before = stack.recorder.received.length;
  const from = gate.state.statuses.length;
  gate.state.onAnswer = (status) => {
    if (status === 503) stack.idpBeta.setAvailable(true);
  };
  const token = stack.idpBeta.mint({ project: 'checkout', projectId: 'prj_checkout' });
  const res = await fetch(edge.url, { headers: { 'x-vercel-oidc-token': token } });
  assert.equal(res.status, 200);
  await edge.waitUntil();
  const statuses = gate.state.statuses.slice(from);
  assert.equal(statuses[0], 503, `statuses ${statuses}`);
  assert.equal(statuses.at(-1), 200, `statuses ${statuses}`);
  assert.deepEqual(plain(runtime.context.__results.map((r) => r.code)), [ExportResultCode.SUCCESS]);
  assert.equal(stack.recorder.received.length, before + 1);
});

test('a denied export surfaces its status inside the edge runtime', async () => {
  runtime.context.__results.length = 0;
  const token = stack.idp.mint({ environment: 'development' });
  const res = await fetch(edge.url, { headers: { 'x-vercel-oidc-token': token } });
  assert.equal(res.status, 200, 'the function still answers');
  await edge.waitUntil();
  assert.equal(runtime.context.__results.length, 1);
  const [r] = runtime.context.__results;
  assert.equal(r.code, ExportResultCode.FAILED);
  assert.equal(r.status, 403);
  assert.match(r.message, /spangate answered 403/);
});

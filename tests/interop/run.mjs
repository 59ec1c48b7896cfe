// spangate interop run: spangate (the real binary, configured from a file
// shaped like deploy/spangate.yaml) between real, independent peers:
//
//   node-oidc-provider (idp.mjs) ──tokens──▶ exporters ──OTLP──▶ spangate ──▶ recorder.py
//   exporters: OpenTelemetry JS (JSON + protobuf), OpenTelemetry Python
//              (protobuf, plain and gzip), @vercel/otel (JSON + protobuf)
//
// Every check is named; the last line printed is `N passed, M failed`.
// Exit status: 0 only when every check passed.
//
// Environment: SPANGATE_BIN (default ../../target/debug/spangate),
// INTEROP_PYTHON (python with requirements.txt installed; default python3),
// INTEROP_KEEP=1 keeps the work directory.

import { spawn } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, '..', '..');
const SPANGATE = process.env.SPANGATE_BIN || join(ROOT, 'target', 'debug', 'spangate');
const PYTHON = process.env.INTEROP_PYTHON || 'python3';
const WORK = mkdtempSync(join(tmpdir(), 'spangate-interop-'));
const STARTED = Date.now();
/** Hard cap of the whole run. */
const RUN_DEADLINE_MS = 6 * 60 * 1000;

const AUDIENCE = 'https://spangate.interop.test';
const OTHER_AUDIENCE = 'https://other-api.interop.test';
const LIGHTSTEP_TOKEN = `ls-interop-${randomBytes(12).toString('hex')}`;

// Machine clients of the IdP and the claims the IdP puts in their tokens.
const CLIENTS = {
  'edge-prod': { owner_id: 'team_interop', project: 'checkout', project_id: 'prj_checkout', environment: 'production' },
  'edge-preview': { owner_id: 'team_interop', project: 'cart', project_id: 'prj_cart', environment: 'preview' },
  'edge-dev': { owner_id: 'team_interop', project: 'checkout', project_id: 'prj_checkout', environment: 'development' },
  'contractor-7': { owner_id: 'team_interop', project: 'checkout', project_id: 'prj_checkout', environment: 'production' },
};
const SECRETS = Object.fromEntries(Object.keys(CLIENTS).map((c) => [c, randomBytes(24).toString('base64url')]));

// ───────────────────────────── output ─────────────────────────────

let passed = 0;
let failed = 0;
const failures = [];
function check(name, ok, detail = '') {
  if (ok) {
    passed += 1;
    console.log(`  ok    ${name}`);
  } else {
    failed += 1;
    failures.push(`${name}${detail ? `: ${detail}` : ''}`);
    console.log(`  FAIL  ${name}${detail ? `\n        ${detail}` : ''}`);
  }
  return ok;
}
function section(title) {
  const secs = ((Date.now() - STARTED) / 1000).toFixed(1);
  console.log(`\n== ${title}  (t=${secs}s)`);
}
const short = (v) => {
  const s = typeof v === 'string' ? v : JSON.stringify(v);
  return s && s.length > 400 ? `${s.slice(0, 400)}…` : s;
};

// ───────────────────────────── processes ─────────────────────────────

const children = new Set();
let fatal = null;

/** Start a child; stdout lines are kept (and mirrored to a log file), stderr goes to a file. */
function start(name, cmd, args, { env = {}, cwd = HERE } = {}) {
  const outLog = join(WORK, `${name}.stdout.log`);
  const errLog = join(WORK, `${name}.stderr.log`);
  const child = spawn(cmd, args, {
    cwd,
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines = [];
  const waiters = [];
  const out = createWriteStream(outLog, { flags: 'a' });
  const err = createWriteStream(errLog, { flags: 'a' });
  let buf = '';
  child.stdout.on('data', (d) => {
    out.write(d);
    buf += d.toString();
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      lines.push(line);
      for (const w of [...waiters]) w(line);
    }
  });
  child.stderr.on('data', (d) => err.write(d));
  const proc = {
    name,
    child,
    lines,
    errLog,
    exited: null,
    /** Wait for a stdout line matching `re` (bounded). */
    waitLine(re, timeoutMs) {
      const found = lines.find((l) => re.test(l));
      if (found) return Promise.resolve(found);
      return new Promise((res, rej) => {
        const timer = setTimeout(() => {
          waiters.splice(waiters.indexOf(onLine), 1);
          rej(new Error(`${name}: no line matching ${re} within ${timeoutMs} ms`));
        }, timeoutMs);
        const onLine = (line) => {
          if (re.test(line)) {
            clearTimeout(timer);
            waiters.splice(waiters.indexOf(onLine), 1);
            res(line);
          }
        };
        waiters.push(onLine);
        child.once('exit', (code, sig) => {
          clearTimeout(timer);
          rej(new Error(`${name} exited (code ${code}, signal ${sig}) before printing ${re}`));
        });
      });
    },
    async stop() {
      if (proc.exited) return;
      child.kill('SIGTERM');
      const gone = await Promise.race([proc.done, sleep(5000).then(() => false)]);
      if (gone === false && !proc.exited) {
        child.kill('SIGKILL');
        await proc.done;
      }
    },
  };
  proc.done = new Promise((res) => {
    child.once('exit', (code, signal) => {
      proc.exited = { code, signal };
      children.delete(proc);
      out.end();
      err.end();
      res(true);
    });
  });
  children.add(proc);
  return proc;
}

/** Run a short-lived child to completion (bounded); returns {code, stdout, stderr}. */
function run(cmd, args, { env = {}, timeoutMs = 30_000 } = {}) {
  return new Promise((res) => {
    const child = spawn(cmd, args, { cwd: HERE, env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      res({ code, signal, stdout, stderr });
    });
  });
}

async function killAll() {
  await Promise.all([...children].map((p) => p.stop().catch(() => {})));
}
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    fatal = new Error(`interrupted by ${sig}`);
    finish();
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Poll `fn` until it returns a truthy value; bounded in time. */
async function until(what, fn, { timeoutMs = 10_000, intervalMs = 200 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try {
      last = await fn();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what} (last: ${short(last?.message ?? last)})`);
    }
    await sleep(intervalMs);
  }
}

function tail(file, n = 50) {
  if (!existsSync(file)) return '(no file)';
  const lines = readFileSync(file, 'utf8').split('\n');
  return lines.slice(Math.max(0, lines.length - n - 1)).join('\n');
}

// ───────────────────────────── keys and the IdP ─────────────────────────────

function newSigningKey(label) {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = privateKey.export({ format: 'jwk' });
  return { ...jwk, kid: `${label}-${randomBytes(4).toString('hex')}`, alg: 'RS256', use: 'sig' };
}

let idp = null;
let idpPort = 0;
let issuer = '';

async function startIdp(keys) {
  const jwksFile = join(WORK, 'idp-jwks.json');
  writeFileSync(jwksFile, JSON.stringify({ keys }), { mode: 0o600 });
  const cfgFile = join(WORK, 'idp-config.json');
  writeFileSync(cfgFile, JSON.stringify({
    port: idpPort,
    jwks_file: jwksFile,
    resources: [AUDIENCE, OTHER_AUDIENCE],
    cookie_key: randomBytes(16).toString('hex'),
    clients: Object.entries(CLIENTS).map(([id, claims]) => ({ client_id: id, client_secret: SECRETS[id], claims })),
  }), { mode: 0o600 });
  idp = start('idp', process.execPath, [join(HERE, 'idp.mjs'), cfgFile]);
  const line = await idp.waitLine(/^LISTENING /, 15_000);
  issuer = line.split(' ')[1].trim();
  idpPort = Number(new URL(issuer).port);
}

async function restartIdp(keys) {
  await idp.stop();
  // Same port, same issuer: a redeploy of the IdP with a new key file.
  await until('the IdP to come back on its port', async () => {
    try {
      await startIdp(keys);
      return true;
    } catch (e) {
      if (idp && !idp.exited) await idp.stop();
      throw e;
    }
  }, { timeoutMs: 15_000, intervalMs: 300 });
}

async function token(clientId, resource = AUDIENCE) {
  const basic = Buffer.from(`${clientId}:${SECRETS[clientId]}`).toString('base64');
  const resp = await fetch(`${issuer}/token`, {
    method: 'POST',
    headers: { authorization: `Basic ${basic}`, 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource, scope: 'traces:write' }),
    signal: AbortSignal.timeout(10_000),
  });
  const body = await resp.json();
  if (!resp.ok || !body.access_token) {
    throw new Error(`token for ${clientId}: HTTP ${resp.status} ${short(body)}`);
  }
  issuedTokens.push(body.access_token);
  return body.access_token;
}
const issuedTokens = [];

function jwtParts(jwt) {
  const [h, p] = jwt.split('.');
  return {
    header: JSON.parse(Buffer.from(h, 'base64url').toString()),
    payload: JSON.parse(Buffer.from(p, 'base64url').toString()),
  };
}
const fingerprint = (s) => createHash('sha256').update(s).digest('hex').slice(0, 12);

// ───────────────────────────── recorder, audit ─────────────────────────────

let recorder = null;
const recordFile = join(WORK, 'upstream.jsonl');
const auditFile = join(WORK, 'audit.jsonl');

function readJsonl(file) {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}
const upstreamRecords = () => readJsonl(recordFile);
const auditLines = () => readJsonl(auditFile).filter((l) => l.kind === 'otlp');

/** Run `fn`, returning what reached the upstream and the audit log meanwhile. */
async function observe(fn) {
  const up0 = upstreamRecords().length;
  const au0 = auditLines().length;
  // No wait needed afterwards: the recorder appends its line before it
  // answers, and spangate writes the audit line before it answers the client.
  const result = await fn();
  return { result, upstream: upstreamRecords().slice(up0), audit: auditLines().slice(au0) };
}

// ───────────────────────────── spangate ─────────────────────────────

let spangate = null;
let otlpUrl = '';

function spangateConfig(recorderPort) {
  // The shape of deploy/spangate.yaml (docs/core.md "Process configuration"),
  // with loopback listeners on ephemeral ports and test-speed key timing.
  return `# spangate process config for the interop run (see deploy/spangate.yaml).
server:
  listen: 127.0.0.1:0
  max_body: 16MiB
  header_timeout: 10s
  request_timeout: 30s
admin:
  listen: 127.0.0.1:0
providers:
  interop:
    issuer: ${issuer}
    audiences: [${AUDIENCE}]
    require_typ: at+jwt
    # Test timing: refresh the JWKS every 1-2 s (the IdP sends no max-age),
    # refetch at most once a second for an unknown kid, retry fast.
    jwks_refresh_min: 1s
    jwks_refresh_max: 2s
    unknown_kid_refetch_interval: 1s
    retry_initial: 200ms
    retry_max: 1s
upstreams:
  lightstep:
    url: http://127.0.0.1:${recorderPort}/traces/otlp/v0.9
    credential_header: lightstep-access-token
    timeout: 5s
secrets:
  bootstrap:
    lightstep-prod: { env: LIGHTSTEP_ACCESS_TOKEN }
policies: ${join(HERE, 'policies')}
audit:
  file: ${auditFile}
`;
}

async function startSpangate(recorderPort) {
  const cfgFile = join(WORK, 'spangate.yaml');
  writeFileSync(cfgFile, spangateConfig(recorderPort));
  spangate = start('spangate', SPANGATE, ['--log-format', 'json', 'serve', '--config', cfgFile], {
    env: { LIGHTSTEP_ACCESS_TOKEN: LIGHTSTEP_TOKEN, SPANGATE_LOG: 'info' },
  });
  // Logs go to stderr as JSON; find the "listening" line there.
  const line = await until('spangate to log its listening addresses', () => {
    if (spangate.exited) throw new Error(`spangate exited: ${JSON.stringify(spangate.exited)}`);
    const text = existsSync(spangate.errLog) ? readFileSync(spangate.errLog, 'utf8') : '';
    return text.split('\n').find((l) => l.includes('spangate listening'));
  }, { timeoutMs: 20_000, intervalMs: 100 });
  const fields = JSON.parse(line).fields || {};
  otlpUrl = `http://${fields.otlp}/v1/traces`;
  return fields;
}

/** A small OTLP/JSON batch, for probes and polling (exporters do the real work). */
function otlpJson(service, spanName) {
  const now = BigInt(Date.now()) * 1_000_000n;
  return JSON.stringify({
    resourceSpans: [{
      resource: { attributes: [{ key: 'service.name', value: { stringValue: service } }] },
      scopeSpans: [{
        spans: [{
          traceId: randomBytes(16).toString('hex'),
          spanId: randomBytes(8).toString('hex'),
          name: spanName,
          kind: 2,
          startTimeUnixNano: String(now),
          endTimeUnixNano: String(now + 1_000_000n),
        }],
      }],
    }],
  });
}

async function post(url, bearer, body) {
  const headers = { 'content-type': 'application/json' };
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  const resp = await fetch(url, { method: 'POST', headers, body, signal: AbortSignal.timeout(10_000) });
  await resp.arrayBuffer();
  return resp;
}

// ───────────────────────────── exporters ─────────────────────────────

async function exporter(kind, spec) {
  const env = { INTEROP_EXPORT: JSON.stringify(spec), OTEL_LOG_LEVEL: 'error' };
  let r;
  if (kind === 'node') r = await run(process.execPath, [join(HERE, 'exporter-node.mjs')], { env });
  else if (kind === 'vercel') r = await run(process.execPath, [join(HERE, 'exporter-vercel.mjs')], { env });
  else r = await run(PYTHON, [join(HERE, 'exporter_py.py')], { env });
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  const parsed = line ? JSON.parse(line.slice(7)) : null;
  return { ...r, parsed, results: parsed?.results ?? [] };
}
const nodeOk = (r) => r.results.length > 0 && r.results.every((x) => x.code === 0);
const pyOk = (r) => r.results.length > 0 && r.results.every((x) => x.result === 'SUCCESS');

const allResources = (records) => records.flatMap((r) => r.resources);
const spanNames = (records) => allResources(records).flatMap((r) => r.spans.map((s) => s.name)).sort();

/** The common checks of an allowed export. */
function checkAllowed(label, obs, { clientId, tok, service, spans, contentType, gzip = false, spoofed = true }) {
  // Span identities the exporter reported (its own view of what it sent).
  const exported = obs.result?.results?.flatMap?.((r) => r.ids || []);
  const { upstream, audit } = obs;
  check(`${label}: exactly one request reached the upstream`, upstream.length === 1, `got ${upstream.length}`);
  const rec = upstream[0];
  if (!rec) return;
  check(`${label}: upstream path is the configured /traces/otlp/v0.9`, rec.path === '/traces/otlp/v0.9', rec.path);
  check(`${label}: upstream content type is ${contentType}`, rec.content_type === contentType, rec.content_type);
  if (gzip) check(`${label}: body stays gzip-encoded upstream`, rec.content_encoding === 'gzip', String(rec.content_encoding));
  check(`${label}: upstream body decodes (independent decoder)`, rec.decode_error === null, rec.decode_error);
  check(
    `${label}: injected lightstep-access-token is the configured credential`,
    rec.headers['lightstep-access-token'] === LIGHTSTEP_TOKEN,
    rec.headers['lightstep-access-token'] ? `fingerprint ${fingerprint(rec.headers['lightstep-access-token'])}` : 'header missing',
  );
  check(`${label}: client Authorization is not forwarded`, !('authorization' in rec.headers), 'authorization header reached the upstream');
  const got = spanNames([rec]);
  check(`${label}: all ${spans.length} spans arrive with their names`, JSON.stringify(got) === JSON.stringify([...spans].sort()), `got ${short(got)}`);
  if (exported) {
    const key = (x) => `${x.name}/${x.trace_id}/${x.span_id}`;
    const sent = exported.map(key).sort();
    const arrived = rec.resources.flatMap((r) => r.spans).map(key).sort();
    check(`${label}: trace and span ids arrive as the SDK created them`, JSON.stringify(sent) === JSON.stringify(arrived),
      `sent ${short(sent)} arrived ${short(arrived)}`);
  }
  const res = rec.resources;
  check(
    `${label}: service.name intact (${service})`,
    res.length > 0 && res.every((r) => r.attributes['service.name'] === service),
    short(res.map((r) => r.attributes['service.name'])),
  );
  const claims = CLIENTS[clientId];
  const a = res[0]?.attributes || {};
  check(
    `${label}: verified identity stamped (deployment.environment.name, vercel.project_id, spangate.subject)`,
    a['deployment.environment.name'] === claims.environment && a['vercel.project_id'] === claims.project_id
      && a['spangate.subject'] === clientId,
    short({ env: a['deployment.environment.name'], project_id: a['vercel.project_id'], subject: a['spangate.subject'] }),
  );
  if (spoofed) {
    check(
      `${label}: protected attribute enduser.id sent by the client is stripped`,
      res.every((r) => !('enduser.id' in r.attributes)),
      `enduser.id=${short(a['enduser.id'])} reached the upstream (policy protected_attributes lists enduser.id)`,
    );
    check(
      `${label}: client-sent spangate.* attribute is stripped`,
      res.every((r) => !('spangate.spoofed' in r.attributes)),
      `spangate.spoofed=${short(a['spangate.spoofed'])} reached the upstream (policy protected_attributes lists "spangate.")`,
    );
  }
  check(`${label}: one audit line`, audit.length === 1, `got ${audit.length}`);
  const l = audit[0];
  if (!l) return;
  check(
    `${label}: audit says allow by binding[interop-edge], status 200`,
    l.decision === 'allow' && l.rule === 'binding[interop-edge]' && l.reason === 'allowed' && l.status === 200,
    short(l),
  );
  check(
    `${label}: audit names the identity, spans, services, credential and upstream`,
    l.provider === 'interop' && l.subject === clientId && l.spans === spans.length
      && JSON.stringify(l.services) === JSON.stringify([service]) && l.credential === 'lightstep-prod'
      && l.upstream === 'lightstep' && l.upstream_status === 200,
    short(l),
  );
  check(`${label}: audit token_fp is the token's fingerprint`, l.token_fp === fingerprint(tok), `${l.token_fp} vs ${fingerprint(tok)}`);
}

/** The common checks of a refused export. */
function checkRefused(label, obs, { status, reasons, rule }) {
  const { upstream, audit } = obs;
  check(`${label}: nothing reached the upstream`, upstream.length === 0, `${upstream.length} request(s) arrived`);
  check(`${label}: one audit line`, audit.length === 1, `got ${audit.length}`);
  const l = audit[0];
  if (!l) return;
  check(
    `${label}: audit says deny, status ${status}, reason ${reasons.join('|')}${rule ? `, rule ${rule}` : ''}`,
    l.decision === 'deny' && l.status === status && reasons.includes(l.reason) && (!rule || l.rule === rule),
    short(l),
  );
}

// ───────────────────────────── the run ─────────────────────────────

async function main() {
  console.log(`spangate interop run; work dir ${WORK}`);
  console.log(`spangate: ${SPANGATE}; node ${process.version}; python: ${PYTHON}`);
  if (!existsSync(SPANGATE)) throw new Error(`spangate binary not found at ${SPANGATE} (cargo build --locked)`);

  section('peers: recording upstream (Python http.server) and node-oidc-provider');
  recorder = start('recorder', PYTHON, [join(HERE, 'recorder.py'), recordFile]);
  const recPort = Number((await recorder.waitLine(/^LISTENING /, 15_000)).split(' ')[1]);
  const k1 = newSigningKey('k1');
  await startIdp([k1]);
  console.log(`  recorder on 127.0.0.1:${recPort}; IdP issuer ${issuer}`);

  const disco = await (await fetch(`${issuer}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(5000) })).json();
  check('IdP: discovery document names the issuer and a jwks_uri', disco.issuer === issuer && typeof disco.jwks_uri === 'string', short(disco));
  const t1 = await token('edge-prod');
  const { header: h1, payload: p1 } = jwtParts(t1);
  check('IdP: access token is an RFC 9068 JWT (typ at+jwt, RS256, kid of the first key)', h1.typ === 'at+jwt' && h1.alg === 'RS256' && h1.kid === k1.kid, short(h1));
  check(
    'IdP: access token carries aud = resource, sub = client id, and the extra claims',
    p1.aud === AUDIENCE && p1.sub === 'edge-prod' && p1.iss === issuer && p1.project === 'checkout' && p1.environment === 'production',
    short(p1),
  );

  section('spangate serve --config (deploy/spangate.yaml shape)');
  const addrs = await startSpangate(recPort);
  console.log(`  spangate otlp ${addrs.otlp}, admin ${addrs.admin}`);
  const spangatePid = spangate.child.pid;
  // Ready = keys fetched: an authenticated probe of an unknown path gets 404
  // (while the provider has no keys it gets 503 provider_unavailable).
  await until('spangate to fetch the IdP keys (probe answers 404)', async () => {
    const resp = await post(otlpUrl.replace('/v1/traces', '/interop-ready-probe'), t1, '{}');
    return resp.status === 404;
  }, { timeoutMs: 20_000, intervalMs: 200 });
  check('spangate: discovered the IdP and fetched its JWKS', true);

  section('allowed: the README walk-through batch (curl-equivalent POST, OTLP/JSON)');
  {
    // The body of the README's curl example, verbatim.
    const readmeBody = '{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"checkout"}}]},'
      + '"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",'
      + '"name":"GET /","kind":2,"startTimeUnixNano":"1700000000000000000","endTimeUnixNano":"1700000000100000000"}]}]}]}';
    let text = '';
    const obs = await observe(async () => {
      const resp = await fetch(otlpUrl, {
        method: 'POST',
        headers: { authorization: `Bearer ${t1}`, 'content-type': 'application/json' },
        body: readmeBody,
        signal: AbortSignal.timeout(10_000),
      });
      text = await resp.text();
      return resp;
    });
    const resp = obs.result;
    let parsed = null;
    try { parsed = JSON.parse(text); } catch { /* checked below */ }
    check('README batch: 200 with an OTLP/JSON body in the request\'s content type',
      resp.status === 200 && (resp.headers.get('content-type') || '').startsWith('application/json') && parsed !== null
      && typeof parsed === 'object', `${resp.status} ${resp.headers.get('content-type')} ${short(text)}`);
    check('README batch: x-request-id answers match the audit line', resp.headers.get('x-request-id') === obs.audit[0]?.request_id,
      `${resp.headers.get('x-request-id')} vs ${obs.audit[0]?.request_id}`);
    checkAllowed('README batch', obs, { clientId: 'edge-prod', tok: t1, service: 'checkout', spans: ['GET /'], contentType: 'application/json', spoofed: false });
    const span = obs.upstream[0]?.resources[0]?.spans[0];
    check('README batch: trace and span ids arrive unchanged', span?.trace_id === '5b8efff798038103d269b633813fc60c' && span?.span_id === 'eee19b7ec3c1b174', short(span));
  }

  const spoof = { 'deployment.environment.name': 'spoofed-env', 'enduser.id': 'spoofed-user', 'spangate.spoofed': 'yes' };

  section('allowed: OpenTelemetry JS SDK, OTLP/HTTP JSON (@opentelemetry/exporter-trace-otlp-http)');
  {
    const spans = ['GET /cart', 'db.query', 'render'];
    const obs = await observe(() => exporter('node', {
      endpoint: otlpUrl, token: t1, protocol: 'json',
      resource: { 'service.name': 'checkout', ...spoof }, spans,
    }));
    check('node json: export result is SUCCESS', nodeOk(obs.result), short(obs.result.parsed ?? obs.result.stderr));
    checkAllowed('node json', obs, { clientId: 'edge-prod', tok: t1, service: 'checkout', spans, contentType: 'application/json' });
  }

  section('allowed: OpenTelemetry JS SDK, OTLP/HTTP protobuf (@opentelemetry/exporter-trace-otlp-proto)');
  {
    const spans = ['POST /pay', 'stripe.charge'];
    const obs = await observe(() => exporter('node', {
      endpoint: otlpUrl, token: t1, protocol: 'proto',
      resource: { 'service.name': 'checkout-api', ...spoof }, spans,
    }));
    check('node proto: export result is SUCCESS', nodeOk(obs.result), short(obs.result.parsed ?? obs.result.stderr));
    checkAllowed('node proto', obs, { clientId: 'edge-prod', tok: t1, service: 'checkout-api', spans, contentType: 'application/x-protobuf' });
  }

  const tPreview = await token('edge-preview');
  section('allowed: OpenTelemetry Python SDK, OTLP/HTTP protobuf (opentelemetry-exporter-otlp-proto-http)');
  {
    const spans = ['GET /items', 'cache.lookup'];
    const obs = await observe(() => exporter('python', {
      endpoint: otlpUrl, token: tPreview, gzip: false,
      resource: { 'service.name': 'cart', ...spoof }, spans,
    }));
    check('python proto: export result is SUCCESS', pyOk(obs.result), short(obs.result.parsed ?? obs.result.stderr));
    checkAllowed('python proto', obs, { clientId: 'edge-preview', tok: tPreview, service: 'cart', spans, contentType: 'application/x-protobuf' });
  }

  section('allowed: OpenTelemetry Python SDK, OTLP/HTTP protobuf + gzip (Compression.Gzip)');
  {
    const spans = ['consume order', 'ack'];
    const obs = await observe(() => exporter('python', {
      endpoint: otlpUrl, token: tPreview, gzip: true,
      resource: { 'service.name': 'cart-worker', ...spoof }, spans,
    }));
    check('python gzip: export result is SUCCESS', pyOk(obs.result), short(obs.result.parsed ?? obs.result.stderr));
    checkAllowed('python gzip', obs, { clientId: 'edge-preview', tok: tPreview, service: 'cart-worker', spans, contentType: 'application/x-protobuf', gzip: true });
  }

  for (const protocol of ['json', 'proto']) {
    const ct = protocol === 'json' ? 'application/json' : 'application/x-protobuf';
    const cls = protocol === 'json' ? 'OTLPHttpJsonTraceExporter' : 'OTLPHttpProtoTraceExporter';
    section(`allowed: @vercel/otel registerOTel + ${cls}`);
    const spans = [`edge ${protocol} GET /`, `edge ${protocol} fetch`];
    const service = `checkout-edge-${protocol}`;
    const obs = await observe(() => exporter('vercel', {
      endpoint: otlpUrl, token: t1, protocol, service, attributes: spoof, spans,
    }));
    check(`vercel ${protocol}: exporter ran and flushed`, obs.result.code !== null && obs.result.results.length > 0, short(obs.result.parsed ?? obs.result.stderr));
    checkAllowed(`vercel ${protocol}`, obs, { clientId: 'edge-prod', tok: t1, service, spans, contentType: ct });
  }

  section('refused: identity whose claims match no binding (environment: development)');
  const tDev = await token('edge-dev');
  {
    const obs = await observe(() => exporter('node', {
      endpoint: otlpUrl, token: tDev, protocol: 'json', resource: { 'service.name': 'checkout' }, spans: ['dev span'],
    }));
    const r = obs.result.results[0];
    check('no binding (node): exporter sees FAILED with HTTP 403', r && r.code === 1 && r.status === 403, short(obs.result.parsed ?? obs.result.stderr));
    checkRefused('no binding (node)', obs, { status: 403, reasons: ['no_match'], rule: 'default-deny' });
  }
  {
    const obs = await observe(() => exporter('python', {
      endpoint: otlpUrl, token: tDev, resource: { 'service.name': 'checkout' }, spans: ['dev span'],
    }));
    check('no binding (python): exporter result is FAILURE', obs.result.results.length > 0 && !pyOk(obs.result), short(obs.result.parsed ?? obs.result.stderr));
    checkRefused('no binding (python)', obs, { status: 403, reasons: ['no_match'], rule: 'default-deny' });
  }
  {
    const obs = await observe(() => exporter('vercel', {
      endpoint: otlpUrl, token: tDev, protocol: 'json', service: 'checkout', spans: ['dev edge span'],
    }));
    // @vercel/otel reports SUCCESS whatever the status: the audit line is
    // the only place this refusal is visible.
    check('no binding (vercel): exporter ran (it reports success for any status)', obs.result.results.length > 0, short(obs.result.parsed ?? obs.result.stderr));
    checkRefused('no binding (vercel)', obs, { status: 403, reasons: ['no_match'], rule: 'default-deny' });
  }

  section('refused: explicit deny rule (sub contractor-*) wins over the matching binding');
  {
    const tCon = await token('contractor-7');
    const obs = await observe(() => exporter('python', {
      endpoint: otlpUrl, token: tCon, gzip: true, resource: { 'service.name': 'checkout' }, spans: ['contractor span'],
    }));
    check('explicit deny (python gzip): exporter result is FAILURE', obs.result.results.length > 0 && !pyOk(obs.result), short(obs.result.parsed ?? obs.result.stderr));
    checkRefused('explicit deny (python gzip)', obs, { status: 403, reasons: ['explicit_deny'], rule: 'deny[contractors]' });
  }

  section('refused: allowed identity, service.name outside its project');
  {
    const obs = await observe(() => exporter('node', {
      endpoint: otlpUrl, token: t1, protocol: 'proto', resource: { 'service.name': 'billing' }, spans: ['not mine'],
    }));
    const r = obs.result.results[0];
    check('wrong service (node proto): exporter sees FAILED with HTTP 403', r && r.code === 1 && r.status === 403, short(obs.result.parsed ?? obs.result.stderr));
    checkRefused('wrong service (node proto)', obs, { status: 403, reasons: ['service_not_allowed'], rule: 'binding[interop-edge]' });
  }

  section('refused: token issued for another audience (resource indicator)');
  {
    const tOther = await token('edge-prod', OTHER_AUDIENCE);
    check('IdP: other-audience token has aud = the other resource', jwtParts(tOther).payload.aud === OTHER_AUDIENCE);
    const obs = await observe(() => exporter('node', {
      endpoint: otlpUrl, token: tOther, protocol: 'proto', resource: { 'service.name': 'checkout' }, spans: ['wrong aud'],
    }));
    const r = obs.result.results[0];
    check('wrong audience (node proto): exporter sees FAILED with HTTP 401', r && r.code === 1 && r.status === 401, short(obs.result.parsed ?? obs.result.stderr));
    checkRefused('wrong audience (node proto)', obs, { status: 401, reasons: ['bad_audience'] });
  }

  section('refused: no token at all');
  {
    const obs = await observe(() => exporter('node', {
      endpoint: otlpUrl, protocol: 'json', resource: { 'service.name': 'checkout' }, spans: ['anonymous'],
    }));
    const r = obs.result.results[0];
    check('no token (node json): exporter sees FAILED with HTTP 401', r && r.code === 1 && r.status === 401, short(obs.result.parsed ?? obs.result.stderr));
    checkRefused('no token (node json)', obs, { status: 401, reasons: ['missing'] });
    const resp = await post(otlpUrl, null, otlpJson('checkout', 'anonymous raw'));
    const www = resp.headers.get('www-authenticate') || '';
    check('no token (raw POST): 401 with a Bearer WWW-Authenticate challenge', resp.status === 401 && /^Bearer\b/.test(www), `${resp.status} ${www}`);
  }

  section('refused: token with altered claims (signature no longer matches)');
  {
    const [h, , s] = tDev.split('.');
    const forged = { ...jwtParts(tDev).payload, environment: 'production' };
    const tampered = `${h}.${Buffer.from(JSON.stringify(forged)).toString('base64url')}.${s}`;
    const obs = await observe(() => exporter('python', {
      endpoint: otlpUrl, token: tampered, resource: { 'service.name': 'checkout' }, spans: ['tampered'],
    }));
    check('tampered token (python): exporter result is FAILURE', obs.result.results.length > 0 && !pyOk(obs.result), short(obs.result.parsed ?? obs.result.stderr));
    checkRefused('tampered token (python)', obs, { status: 401, reasons: ['bad_signature'] });
  }

  section('IdP key rotation while spangate runs');
  {
    const k2 = newSigningKey('k2');
    // Phase 2: new key first (signs), old key still published.
    await restartIdp([k2, k1]);
    const t2 = await token('edge-prod');
    check('IdP (restarted with [k2, k1]): new tokens are signed with k2', jwtParts(t2).header.kid === k2.kid, short(jwtParts(t2).header));
    // spangate learns k2 on demand (unknown kid → one JWKS refetch); bounded poll.
    const t0 = Date.now();
    let obs;
    await until('a k2 token to be accepted', async () => {
      obs = await observe(() => exporter('node', {
        endpoint: otlpUrl, token: t2, protocol: 'proto', resource: { 'service.name': 'checkout' }, spans: ['after rotation'],
      }));
      return nodeOk(obs.result);
    }, { timeoutMs: 15_000, intervalMs: 250 });
    console.log(`  k2 token accepted ${Date.now() - t0} ms after the IdP came back`);
    checkAllowed('rotation k2 token', obs, { clientId: 'edge-prod', tok: t2, service: 'checkout', spans: ['after rotation'], contentType: 'application/x-protobuf', spoofed: false });
    {
      const o = await observe(() => exporter('node', {
        endpoint: otlpUrl, token: t1, protocol: 'json', resource: { 'service.name': 'checkout' }, spans: ['old key, still published'],
      }));
      check('rotation: a k1 token is still accepted while k1 is published', nodeOk(o.result) && o.upstream.length === 1, short(o.result.parsed));
    }

    // IdP outage: spangate keeps serving with the last good keys.
    await idp.stop();
    const refreshFailures = () => readFileSync(spangate.errLog, 'utf8').split('\n')
      .filter((l) => l.includes('JWKS refresh failed')).length;
    const before = refreshFailures();
    try {
      await until('spangate to log a failed JWKS refresh while the IdP is down', () => refreshFailures() > before, { timeoutMs: 10_000, intervalMs: 200 });
      check('IdP outage: spangate notices (a failed JWKS refresh is logged)', true);
    } catch (e) {
      check('IdP outage: spangate notices (a failed JWKS refresh is logged)', false, e.message);
    }
    {
      const o = await observe(() => exporter('python', {
        endpoint: otlpUrl, token: t2, gzip: true, resource: { 'service.name': 'checkout' }, spans: ['during IdP outage'],
      }));
      check('IdP outage: tokens signed by known keys are still accepted (last good keys)', pyOk(o.result) && o.upstream.length === 1, short(o.result.parsed ?? o.result.stderr));
    }

    // Phase 3: old key unpublished.
    await restartIdp([k2]);
    const jwks = await (await fetch(`${issuer}/jwks`, { signal: AbortSignal.timeout(5000) })).json();
    check('IdP (restarted with [k2]): JWKS publishes k2 only', jwks.keys.length === 1 && jwks.keys[0].kid === k2.kid, short(jwks.keys.map((k) => k.kid)));
    const t3 = await token('edge-prod');
    {
      const o = await observe(() => exporter('python', {
        endpoint: otlpUrl, token: t3, resource: { 'service.name': 'checkout' }, spans: ['after unpublish'],
      }));
      check('rotation: a fresh k2 token is accepted after k1 is unpublished', pyOk(o.result) && o.upstream.length === 1, short(o.result.parsed ?? o.result.stderr));
    }
    // spangate's periodic refresh (jwks_refresh_max: 2s) drops k1; poll, bounded.
    const t4 = Date.now();
    let lastStatus = 0;
    let refusedAudit = null;
    try {
      await until('the k1 token to be refused', async () => {
        const o = await observe(() => post(otlpUrl, t1, otlpJson('checkout', 'old key poll')));
        lastStatus = o.result.status;
        if (lastStatus === 401) {
          refusedAudit = o;
          return true;
        }
        return false;
      }, { timeoutMs: 20_000, intervalMs: 300 });
      console.log(`  k1 token refused ${Date.now() - t4} ms after the IdP unpublished k1`);
    } catch (e) {
      check('rotation: a k1 token is refused once k1 is unpublished', false, `${e.message}; last status ${lastStatus}`);
    }
    if (refusedAudit) {
      checkRefused('rotation: k1 token after unpublish (raw POST)', refusedAudit, { status: 401, reasons: ['unknown_key', 'bad_signature'] });
      const o = await observe(() => exporter('node', {
        endpoint: otlpUrl, token: t1, protocol: 'proto', resource: { 'service.name': 'checkout' }, spans: ['old key after unpublish'],
      }));
      const r = o.result.results[0];
      check('rotation: exporter with the k1 token sees FAILED with HTTP 401', r && r.code === 1 && r.status === 401, short(o.result.parsed ?? o.result.stderr));
      checkRefused('rotation: k1 token after unpublish (node proto)', o, { status: 401, reasons: ['unknown_key', 'bad_signature'] });
    }
    {
      const o = await observe(() => exporter('node', {
        endpoint: otlpUrl, token: t2, protocol: 'json', resource: { 'service.name': 'checkout' }, spans: ['k2 still fine'],
      }));
      check('rotation: k2 tokens keep working', nodeOk(o.result) && o.upstream.length === 1, short(o.result.parsed));
    }
    check('rotation: spangate was never restarted (same process throughout)', spangate.child.pid === spangatePid && !spangate.exited, JSON.stringify(spangate.exited));
  }

  section('rotation of the Lightstep credential under load (admin API)');
  console.log('  skipped: the admin API in this tree serves only /healthz and /metrics (src/admin.rs is a skeleton; no rotate endpoint)');

  section('hygiene');
  {
    const auditText = readFileSync(auditFile, 'utf8');
    const logText = readFileSync(spangate.errLog, 'utf8');
    const secrets = [LIGHTSTEP_TOKEN, ...issuedTokens, ...Object.values(SECRETS)];
    const leakedAudit = secrets.filter((s) => auditText.includes(s)).length;
    const leakedLog = secrets.filter((s) => logText.includes(s)).length;
    check(`no token or credential value in the audit file (${secrets.length} values checked)`, leakedAudit === 0, `${leakedAudit} value(s) found`);
    check('no token or credential value in spangate\'s log', leakedLog === 0, `${leakedLog} value(s) found`);
    check('spangate log has no panic', !/panicked/.test(logText), 'a panic is in the log');
    const lines = auditLines();
    check('every audit line is complete (request_id, status, reason, decision)', lines.length > 0
      && lines.every((l) => l.request_id && l.status && l.reason && l.decision), `${lines.length} lines`);
  }
}

const deadline = setTimeout(() => {
  fatal = new Error(`run exceeded ${RUN_DEADLINE_MS / 1000}s`);
  finish();
}, RUN_DEADLINE_MS);

let finishing = false;
async function finish() {
  if (finishing) return;
  finishing = true;
  clearTimeout(deadline);
  if (fatal) {
    failed += 1;
    failures.push(`harness: ${fatal.message}`);
    console.log(`\n  FAIL  harness: ${fatal.stack || fatal.message}`);
  }
  if (failed > 0 && spangate) {
    console.log('\n---- last 50 lines of spangate stderr ----');
    console.log(tail(spangate.errLog, 50));
    console.log('---- last 20 lines of the IdP stderr ----');
    console.log(tail(join(WORK, 'idp.stderr.log'), 20));
  }
  await killAll();
  console.log(`\n== summary (${((Date.now() - STARTED) / 1000).toFixed(1)}s)`);
  for (const f of failures) console.log(`  failed: ${f}`);
  if (failed === 0 && !process.env.INTEROP_KEEP) {
    rmSync(WORK, { recursive: true, force: true });
  } else {
    console.log(`  work dir kept: ${WORK}`);
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

main().catch((e) => { fatal = e; }).finally(finish);

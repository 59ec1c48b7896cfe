// spangate interop run: spangate (the real binary, configured from a file
// shaped like deploy/spangate.yaml) between real, independent peers:
//
//   node-oidc-provider (idp.mjs) ──tokens──▶ exporters ──OTLP──▶ spangate ──▶ recorder.py
//   exporters: OpenTelemetry JS (JSON + protobuf), OpenTelemetry Python
//              (protobuf, plain and gzip), @vercel/otel (JSON + protobuf)
//
// Plus the Lightstep credential's life cycle: rotations through the CLI (an
// OIDC admin identity) and the admin HTTP API (the bootstrap token) while a
// raw OTLP/protobuf load and the Python exporter keep sending, a restart on
// the persistent secrets store in between, and refused rotations/callers.
//
// And the upstream spool: a second spangate whose upstream has `spool` on,
// through a real outage of its recording upstream (process stopped, then
// restarted on the same port), a token the upstream does not accept yet, and
// a revoked token fixed by a rotation: the exporters see success, the batches
// arrive once the upstream takes them, each with one `kind: spool` audit line.
//
// And every signal over every protocol: the JS and Python SDKs, configured only
// by OTEL_EXPORTER_OTLP_* (signals-node.mjs, signals_py.py), send traces,
// metrics and logs over grpc (server.grpc_listen), http/protobuf and http/json;
// hostile tokens over gRPC; a rate-limited gRPC client that backs off on
// RetryInfo. INTEROP_ONLY=signals runs only those sections.
//
// Every check is named; the last line printed is `N passed, M failed`.
// Exit status: 0 only when every check passed.
//
// Environment: SPANGATE_BIN (default ../../target/debug/spangate),
// INTEROP_PYTHON (python with requirements.txt installed; default python3),
// INTEROP_KEEP=1 keeps the work directory.

import { spawn } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes } from 'node:crypto';
import {
  createWriteStream, existsSync, mkdtempSync, readFileSync, renameSync, rmSync, statSync, writeFileSync,
} from 'node:fs';
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
const RUN_DEADLINE_MS = 5 * 60 * 1000;

const AUDIENCE = 'https://spangate.interop.test';
const OTHER_AUDIENCE = 'https://other-api.interop.test';
const LIGHTSTEP_TOKEN = `ls-interop-${randomBytes(12).toString('hex')}`;

// Machine clients of the IdP and the claims the IdP puts in their tokens.
const CLIENTS = {
  'edge-prod': { owner_id: 'team_interop', project: 'checkout', project_id: 'prj_checkout', environment: 'production' },
  'edge-preview': { owner_id: 'team_interop', project: 'cart', project_id: 'prj_cart', environment: 'preview' },
  'edge-dev': { owner_id: 'team_interop', project: 'checkout', project_id: 'prj_checkout', environment: 'development' },
  'contractor-7': { owner_id: 'team_interop', project: 'checkout', project_id: 'prj_checkout', environment: 'production' },
  // An operator identity: policies/admin.yaml grants it admin permissions
  // (no publish binding matches it: no environment claim).
  'ops-admin': { owner_id: 'team_interop', groups: ['platform-admins'] },
  // A publisher with a tight request rate (policies/interop.yaml, interop-limited):
  // the gRPC back-off check (grpcSignals()).
  'edge-limited': { owner_id: 'team_interop', project: 'checkout', project_id: 'prj_checkout', environment: 'canary' },
  // Long-running exporters renewing short-lived tokens (tokenRenewal()).
  'edge-renew': { owner_id: 'team_interop', project: 'checkout', project_id: 'prj_checkout', environment: 'production' },
};
/** Access token lifetime per client, seconds (the IdP's default is 600). */
const RENEW_TTL = 3;
const CLIENT_TTL = { 'edge-renew': RENEW_TTL };
const SECRETS = Object.fromEntries(Object.keys(CLIENTS).map((c) => [c, randomBytes(24).toString('base64url')]));
/** The bootstrap admin token; spangate's config holds only its SHA-256. */
const ADMIN_BOOTSTRAP_TOKEN = `sgadm-${randomBytes(24).toString('hex')}`;
/** Every Lightstep token value the run creates (the hygiene checks scan for them). */
const lightstepValues = [LIGHTSTEP_TOKEN];
function newLightstepToken() {
  const v = `ls-interop-${randomBytes(12).toString('hex')}`;
  lightstepValues.push(v);
  return v;
}

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
    clients: Object.entries(CLIENTS).map(([id, claims]) => ({
      client_id: id, client_secret: SECRETS[id], claims, access_token_ttl: CLIENT_TTL[id],
    })),
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
/** The recorder's allow-list of valid Lightstep tokens (read on every request). */
const allowFile = join(WORK, 'upstream-allow.json');
let allowGeneration = 0;

/** Replace the set of tokens the upstream accepts (atomic rename: never half-read). */
function allowTokens(tokens) {
  allowGeneration += 1;
  const tmp = `${allowFile}.tmp`;
  writeFileSync(tmp, JSON.stringify({ generation: allowGeneration, tokens }), { mode: 0o600 });
  renameSync(tmp, allowFile);
  return allowGeneration;
}

function readJsonl(file) {
  if (!existsSync(file)) return [];
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}
const upstreamRecords = () => readJsonl(recordFile);
const auditLines = () => readJsonl(auditFile).filter((l) => l.kind === 'otlp');
const adminAuditLines = () => readJsonl(auditFile).filter((l) => l.kind === 'admin');

/**
 * spangate's audit writer thread writes a request's line just after the
 * request is answered (off the request path): wait until the audit file has
 * stopped growing, bounded at 2 s.
 */
async function auditSettled(file = auditFile) {
  let size = -1;
  for (let i = 0; i < 80; i++) {
    const now = existsSync(file) ? statSync(file).size : 0;
    if (now === size) return;
    size = now;
    await sleep(25);
  }
}

/** Run `fn`, returning what reached the upstream and the audit log meanwhile. */
async function observe(fn) {
  await auditSettled();
  const up0 = upstreamRecords().length;
  const au0 = auditLines().length;
  // The recorder appends its line before it answers; spangate's audit line
  // follows its answer, so wait for the audit file to settle.
  const result = await fn();
  await auditSettled();
  return { result, upstream: upstreamRecords().slice(up0), audit: auditLines().slice(au0) };
}

// ───────────────────────────── spangate ─────────────────────────────

let spangate = null;
let otlpUrl = '';
let otlpBase = '';
let grpcUrl = '';
let adminUrl = '';
const secretsStore = join(WORK, 'state', 'secrets.json');
const sha256hex = (s) => createHash('sha256').update(s).digest('hex');

/**
 * The metrics and logs upstreams of policies/endpoints.yaml (same recorder).
 * Without a preset an upstream's `url` is its traces target, so each names
 * its signal's path (spangate refuses an endpoint its upstream cannot take).
 */
function signalUpstreams(port) {
  return ['metrics', 'logs'].map((sig) => `  lightstep-${sig}:
    url: http://127.0.0.1:${port}/v1/${sig}
    paths: { ${sig}: /v1/${sig} }
    credential_header: lightstep-access-token
    timeout: 5s
`).join('');
}

function spangateConfig(recorderPort) {
  // The shape of deploy/spangate.yaml (docs/configuration.md),
  // with loopback listeners on ephemeral ports and test-speed key timing.
  return `# spangate process config for the interop run (see deploy/spangate.yaml).
server:
  listen: 127.0.0.1:0
  grpc_listen: 127.0.0.1:0
  max_body: 16MiB
  header_timeout: 10s
  request_timeout: 30s
admin:
  listen: 127.0.0.1:0
  # printf %s "$TOKEN" | sha256sum  (the token itself is never in the config)
  bootstrap_token_sha256: ${sha256hex(ADMIN_BOOTSTRAP_TOKEN)}
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
    # Test timing: the renewal run's ${RENEW_TTL}-second tokens expire for real
    # (the default leeway is 30s).
    leeway: 1s
upstreams:
  lightstep:
    url: http://127.0.0.1:${recorderPort}/traces/otlp/v0.9
    credential_header: lightstep-access-token
    timeout: 5s
${signalUpstreams(recorderPort)}secrets:
  # Persistent store: rotations survive a restart. The directory does not
  # exist before the first start (spangate creates it, mode 0700).
  store: ${secretsStore}
  bootstrap:
    lightstep-prod: { env: LIGHTSTEP_ACCESS_TOKEN }
policies: ${join(HERE, 'policies')}
audit:
  file: ${auditFile}
`;
}

/** Start spangate (again, on a restart: same config, same environment, same log files). */
async function startSpangate(recorderPort) {
  const cfgFile = join(WORK, 'spangate.yaml');
  writeFileSync(cfgFile, spangateConfig(recorderPort));
  // On a restart the log file already holds the previous process's lines.
  const errLog = join(WORK, 'spangate.stderr.log');
  const logFrom = existsSync(errLog) ? statSync(errLog).size : 0;
  spangate = start('spangate', SPANGATE, ['--log-format', 'json', 'serve', '--config', cfgFile], {
    env: { LIGHTSTEP_ACCESS_TOKEN: LIGHTSTEP_TOKEN, SPANGATE_LOG: 'info' },
  });
  spangate.logFrom = logFrom;
  // Logs go to stderr as JSON; find the "listening" line there.
  const line = await until('spangate to log its listening addresses', () => {
    if (spangate.exited) throw new Error(`spangate exited: ${JSON.stringify(spangate.exited)}`);
    return spangateLog().split('\n').find((l) => l.includes('spangate listening'));
  }, { timeoutMs: 20_000, intervalMs: 100 });
  const fields = JSON.parse(line).fields || {};
  otlpUrl = `http://${fields.otlp}/v1/traces`;
  otlpBase = `http://${fields.otlp}`;
  grpcUrl = `http://${fields.otlp_grpc}`;
  adminUrl = `http://${fields.admin}`;
  return fields;
}

/** What the running spangate process has logged (not its predecessors). */
function spangateLog() {
  if (!existsSync(spangate.errLog)) return '';
  return readFileSync(spangate.errLog).subarray(spangate.logFrom || 0).toString('utf8');
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

// ───────────────────────────── exporter token renewal ─────────────────────────────

/** Seconds each renewing exporter keeps exporting (several token lifetimes). */
const RENEW_RUN_SECONDS = 3 * RENEW_TTL + 1;

async function tokenRenewal() {
  section(`exporter token renewal: ${RENEW_TTL}-second tokens, exporters running ${RENEW_RUN_SECONDS} s (docs/exporters.md)`);
  // Control: a fixed token stops working once it expires (what every
  // exporter with OTEL_EXPORTER_OTLP_HEADERS meets after the token's lifetime).
  const fixed = await token('edge-renew');
  const exp = jwtParts(fixed).payload.exp;
  check(`the IdP issues edge-renew tokens that live ${RENEW_TTL} s`, exp - jwtParts(fixed).payload.iat === RENEW_TTL, short(jwtParts(fixed).payload));
  let expired = null;
  try {
    await until('the fixed token to be refused as expired', async () => {
      const o = await observe(() => post(otlpUrl, fixed, otlpJson('checkout', 'fixed token')));
      if (o.result.status === 401) {
        expired = o;
        return true;
      }
      return false;
    }, { timeoutMs: (RENEW_TTL + 5) * 1000, intervalMs: 250 });
  } catch (e) {
    check('a fixed token is refused once it expires', false, e.message);
  }
  if (expired) checkRefused('a fixed token after it expired', expired, { status: 401, reasons: ['expired'] });

  const renew = {
    token_url: `${issuer}/token`,
    client_id: 'edge-renew',
    client_secret: SECRETS['edge-renew'],
    params: { resource: AUDIENCE, scope: 'traces:write' },
  };
  const cases = [
    ['python', 'OpenTelemetry Python: OTLPSpanExporter(session=) whose requests auth renews the token', {
      endpoint: otlpUrl, renew, resource: { 'service.name': 'checkout' }, spans: ['py renewal'],
      loop: { stop_file: join(WORK, 'never'), max_seconds: RENEW_RUN_SECONDS, interval_ms: 200 },
    }],
    ['node', 'OpenTelemetry JS: OTLPTraceExporter({ headers: async () => ... }) renewing the token', {
      endpoint: otlpUrl, renew, protocol: 'proto', resource: { 'service.name': 'checkout' }, spans: ['node renewal'],
      loop: { seconds: RENEW_RUN_SECONDS, interval_ms: 200 },
    }],
  ];
  for (const [kind, label, spec] of cases) {
    const o = await observe(() => exporter(kind, spec));
    const results = o.result.results;
    const ok = kind === 'node' ? nodeOk(o.result) : pyOk(o.result);
    const exports = results.length;
    check(`${label}: every export succeeded (${exports} exports)`, ok && exports >= RENEW_RUN_SECONDS, short(o.result.parsed ?? o.result.stderr));
    const tokens = o.result.parsed?.tokens ?? 0;
    check(`${label}: renewed its token (${tokens} tokens over ${RENEW_RUN_SECONDS} s of ${RENEW_TTL}-second tokens)`,
      tokens >= 3, `tokens fetched: ${tokens}`);
    const fps = new Set(o.audit.map((l) => l.token_fp));
    check(`${label}: spangate saw ${fps.size} different tokens, every request allowed`,
      fps.size >= 3 && o.audit.length === exports && o.audit.every((l) => l.decision === 'allow' && l.status === 200),
      short(o.audit.map((l) => [l.status, l.reason, l.token_fp])));
    const prefix = spec.spans[0];
    const arrived = spanNames(o.upstream).filter((n) => n.startsWith(prefix)).length;
    check(`${label}: all ${exports} spans reached the upstream`, arrived === exports, `${arrived} arrived`);
  }
}

// ───────────────────────────── credential rotation ─────────────────────────────

/** Every CLI output and admin API response body (scanned for values in hygiene). */
const adminTranscript = [];

/** Call the admin HTTP API directly (curl-equivalent). */
async function adminCall(method, path, { bearer, body } = {}) {
  const headers = { accept: 'application/json' };
  if (bearer) headers.authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const resp = await fetch(`${adminUrl}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  const text = await resp.text();
  adminTranscript.push(text);
  let json = null;
  try { json = JSON.parse(text); } catch { /* checked by callers */ }
  return { status: resp.status, headers: resp.headers, text, json };
}

/** Run the spangate CLI against the running admin API; the token comes from SPANGATE_ADMIN_TOKEN. */
async function cli(args, adminToken) {
  const r = await run(SPANGATE, [...args, '--admin', adminUrl], {
    env: { SPANGATE_ADMIN_TOKEN: adminToken || '' },
    timeoutMs: 60_000,
  });
  adminTranscript.push(r.stdout, r.stderr);
  return r;
}

/** Write a new credential value to a 0600 file for `--value-file` (with a trailing newline). */
function valueFile(value) {
  const f = join(WORK, `new-token-${randomBytes(4).toString('hex')}`);
  writeFileSync(f, `${value}\n`, { mode: 0o600 });
  return f;
}

/** `spangate secrets list` → {current, fingerprint, previous} of lightstep-prod. */
function parseList(stdout) {
  const line = stdout.split('\n').find((l) => l.startsWith('lightstep-prod '));
  if (!line) return null;
  const [, current, fp, previous] = line.trim().split(/\s+/);
  return { current, fingerprint: fp, previous, line };
}

// Minimal protobuf writer for an OTLP ExportTraceServiceRequest (the raw
// load: status codes are exactly what an exporter would get).
function pbVarint(n) {
  let v = BigInt(n);
  const out = [];
  while (v >= 0x80n) {
    out.push(Number(v & 0x7fn) | 0x80);
    v >>= 7n;
  }
  out.push(Number(v));
  return Buffer.from(out);
}
const pbLen = (field, buf) => Buffer.concat([pbVarint((field << 3) | 2), pbVarint(buf.length), buf]);
const pbStr = (field, s) => pbLen(field, Buffer.from(s, 'utf8'));
const pbU64 = (field, v) => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64LE(v);
  return Buffer.concat([pbVarint((field << 3) | 1), b]);
};
const pbInt = (field, v) => Buffer.concat([pbVarint(field << 3), pbVarint(v)]);

function otlpProto(service, spanName) {
  const traceId = randomBytes(16);
  const spanId = randomBytes(8);
  const now = BigInt(Date.now()) * 1_000_000n;
  const span = Buffer.concat([
    pbLen(1, traceId), pbLen(2, spanId), pbStr(5, spanName), pbInt(6, 2), pbU64(7, now), pbU64(8, now + 1_000_000n),
  ]);
  const attr = pbLen(1, Buffer.concat([pbStr(1, 'service.name'), pbLen(2, pbStr(1, service))]));
  const resourceSpans = Buffer.concat([pbLen(1, attr), pbLen(2, pbLen(2, span))]);
  return { body: pbLen(1, resourceSpans), traceId: traceId.toString('hex'), spanId: spanId.toString('hex') };
}

/**
 * Continuous raw OTLP/protobuf load: `workers` loops, each POSTing one batch,
 * then pausing `pauseMs`. Every response status is counted. Bounded by maxMs.
 */
function startLoad(label, tok, service, { workers = 2, pauseMs = 20, maxMs = 60_000 } = {}) {
  const stats = { statuses: {}, errors: [], requests: [] };
  const deadline = Date.now() + maxMs;
  let stopping = false;
  const worker = async (w) => {
    for (let i = 0; !stopping && Date.now() < deadline; i += 1) {
      const name = `${label} w${w} #${i}`;
      const { body, spanId } = otlpProto(service, name);
      try {
        const resp = await fetch(otlpUrl, {
          method: 'POST',
          headers: { authorization: `Bearer ${tok}`, 'content-type': 'application/x-protobuf' },
          body,
          signal: AbortSignal.timeout(10_000),
        });
        await resp.arrayBuffer();
        stats.statuses[resp.status] = (stats.statuses[resp.status] || 0) + 1;
        stats.requests.push({ status: resp.status, requestId: resp.headers.get('x-request-id'), name, spanId });
      } catch (e) {
        stats.errors.push(`${name}: ${e.message}`);
      }
      await sleep(pauseMs);
    }
  };
  const done = Promise.all(Array.from({ length: workers }, (_, w) => worker(w)));
  return {
    stats,
    async stop() {
      stopping = true;
      await done;
      return stats;
    },
  };
}

/** The OpenTelemetry Python exporter in loop mode (gzip), until told to stop. */
function startPyLoop(label, tok, service) {
  const stopFile = join(WORK, `${label}.stop`);
  const spec = {
    endpoint: otlpUrl, token: tok, gzip: true, resource: { 'service.name': service }, spans: [label],
    loop: { stop_file: stopFile, max_seconds: 60, interval_ms: 40 },
  };
  const proc = start(`python-${label}`, PYTHON, [join(HERE, 'exporter_py.py')], {
    env: { INTEROP_EXPORT: JSON.stringify(spec), OTEL_LOG_LEVEL: 'error' },
  });
  return {
    proc,
    ready: () => proc.waitLine(/^LOOPING/, 30_000),
    async stop() {
      writeFileSync(stopFile, '');
      await Promise.race([proc.done, sleep(30_000)]);
      if (!proc.exited) await proc.stop();
      const line = proc.lines.find((l) => l.startsWith('RESULT '));
      return line ? JSON.parse(line.slice(7)) : null;
    },
  };
}

const isProbe = (r) => /rotation-verify/.test(r.headers['user-agent'] || '');

/**
 * Wait until every sender (a span-name prefix) has had a batch accepted with
 * `value` after record `afterSeq`. Each sender sends one batch at a time, so
 * from then on none of them has a request in flight that took its credential
 * snapshot before the rotation: revoking the old token cannot race with one.
 */
async function waitSendersOn(value, afterSeq, senders, what) {
  const fp = fingerprint(value);
  return until(what, () => {
    const names = upstreamRecords()
      .filter((r) => r.seq > afterSeq && !isProbe(r) && r.allowed && r.token_fp === fp)
      .flatMap((r) => r.resources.flatMap((res) => res.spans.map((sp) => sp.name)));
    return senders.every((p) => names.some((n) => n.startsWith(p)));
  }, { timeoutMs: 15_000, intervalMs: 100 });
}
const lastSeq = () => upstreamRecords().reduce((m, r) => Math.max(m, r.seq), 0);

/**
 * What the upstream saw in a window: every batch must carry a token the
 * upstream accepted at that moment, except a 401 that spangate retried (same
 * x-request-id) with another token that was accepted: a grace fallback.
 */
function analyzeUpstream(records) {
  const byRid = new Map();
  const bad = [];
  for (const r of records.filter((x) => !isProbe(x))) {
    const rid = r.headers['x-request-id'];
    if (!rid) {
      bad.push(`seq ${r.seq}: no x-request-id`);
      continue;
    }
    if (!byRid.has(rid)) byRid.set(rid, []);
    byRid.get(rid).push(r);
  }
  const fallbacks = [];
  for (const [rid, recs] of byRid) {
    recs.sort((a, b) => a.seq - b.seq);
    const last = recs[recs.length - 1];
    if (!last.allowed) bad.push(`${rid}: final attempt refused (token ${last.token_fp}, status ${last.status})`);
    const refused = recs.slice(0, -1);
    if (refused.length > 1) bad.push(`${rid}: ${recs.length} attempts`);
    for (const r of refused) {
      if (r.allowed || r.status !== 401 || r.token_fp === last.token_fp) {
        bad.push(`${rid}: unexpected earlier attempt (token ${r.token_fp}, status ${r.status})`);
      } else {
        fallbacks.push({ rid, refused: r.token_fp, accepted: last.token_fp });
      }
    }
  }
  return { byRid, bad, fallbacks };
}

/** Checks of one load window (raw loop + Python exporter) against what the upstream and the audit saw. */
function checkLoadWindow(label, { load, py, records, audit }) {
  const total = load.requests.length + load.errors.length;
  const non2xx = Object.entries(load.statuses).filter(([st]) => Number(st) < 200 || Number(st) > 299);
  console.log(`  ${label}: raw load sent ${total} batches: statuses ${JSON.stringify(load.statuses)}, transport errors ${load.errors.length}`);
  check(`${label}: raw OTLP/protobuf load: every one of ${total} responses is 2xx (zero non-2xx)`,
    total > 20 && non2xx.length === 0 && load.errors.length === 0,
    `statuses ${JSON.stringify(load.statuses)}; errors ${short(load.errors)}`);
  const pyResults = py?.results ?? [];
  const pyFailed = pyResults.filter((r) => r.result !== 'SUCCESS').length;
  console.log(`  ${label}: Python exporter made ${pyResults.length} exports, ${pyFailed} not SUCCESS`);
  check(`${label}: OpenTelemetry Python exporter (gzip) kept exporting: every one of ${pyResults.length} exports is SUCCESS`,
    pyResults.length >= 5 && pyFailed === 0, short(py));

  const { byRid, bad, fallbacks } = analyzeUpstream(records);
  check(`${label}: the upstream saw only tokens valid at that moment (${records.filter((r) => !isProbe(r)).length} requests; refused ones only as a retried grace fallback)`,
    bad.length === 0, short(bad));
  const lost = load.requests.filter((q) => {
    const recs = byRid.get(q.requestId) || [];
    const last = recs[recs.length - 1];
    return !last || !last.allowed || !last.resources.some((res) => res.spans.some((sp) => sp.name === q.name && sp.span_id === q.spanId));
  });
  check(`${label}: every raw batch arrived upstream once accepted (matched by x-request-id, span name and id)`,
    load.requests.length > 0 && lost.length === 0, `${lost.length} missing: ${short(lost.slice(0, 3))}`);
  const pyIds = pyResults.flatMap((r) => r.ids || []).map((x) => x.span_id);
  const upIds = new Set(records.filter((r) => r.allowed && !isProbe(r)).flatMap((r) => r.resources.flatMap((res) => res.spans.map((sp) => sp.span_id))));
  const pyLost = pyIds.filter((id) => !upIds.has(id));
  check(`${label}: every span the Python exporter exported arrived upstream`, pyIds.length > 0 && pyLost.length === 0, `${pyLost.length} of ${pyIds.length} missing`);

  const notOk = audit.filter((l) => l.status !== 200 || l.decision !== 'allow');
  check(`${label}: every audit line of the window is allow/200 (${audit.length} lines)`, audit.length > 0 && notOk.length === 0, short(notOk.slice(0, 2)));
  const auditFallbacks = audit.filter((l) => l.credential_fallback).length;
  check(`${label}: audit lines with credential_fallback = the upstream's retried 401s (${fallbacks.length})`,
    auditFallbacks === fallbacks.length, `audit ${auditFallbacks}, upstream ${fallbacks.length}`);
  const versions = {};
  for (const l of audit) versions[`v${l.credential_version}`] = (versions[`v${l.credential_version}`] || 0) + 1;
  console.log(`  ${label}: batches per injected credential version ${JSON.stringify(versions)}; grace fallbacks ${fallbacks.length}`);
  return { fallbacks, versions };
}

/** Check the admin audit line of a successful rotation. */
function checkRotationAudit(label, line, { actor, oldValue, newValue, oldVersion, newVersion, verify }) {
  check(`${label}: admin audit line: secrets.rotate by ${actor}, ok, v${oldVersion} ${fingerprint(oldValue)} -> v${newVersion} ${fingerprint(newValue)}, verify ${verify}`,
    !!line && line.action === 'secrets.rotate' && line.actor === actor && line.result === 'ok' && line.status === 200
      && line.target === 'lightstep-prod' && line.old_version === oldVersion && line.new_version === newVersion
      && line.old_fingerprint === fingerprint(oldValue) && line.new_fingerprint === fingerprint(newValue)
      && line.verify === verify,
    short(line));
}

/** The last admin audit line matching `pred` written after `from` admin lines. */
const adminLineSince = (from, pred) => adminAuditLines().slice(from).filter(pred).pop();

/** `spangate secrets rotate lightstep-prod --value-file F --grace 2m` with `adminTok` in SPANGATE_ADMIN_TOKEN. */
function cliRotate(adminTok, value) {
  return cli(['secrets', 'rotate', 'lightstep-prod', '--value-file', valueFile(value), '--grace', '2m', '--upstream', 'lightstep'], adminTok);
}

/** Restart spangate: SIGTERM, wait for a clean exit, start it again with the same config. */
async function restartSpangate(recPort) {
  const old = spangate;
  const t0 = Date.now();
  old.child.kill('SIGTERM');
  const gone = await Promise.race([old.done, sleep(20_000).then(() => false)]);
  if (!gone) await old.stop();
  check('restart: spangate exits cleanly on SIGTERM (status 0, bounded wait 20 s)',
    gone !== false && old.exited?.code === 0, JSON.stringify(old.exited));
  console.log(`  spangate stopped ${Date.now() - t0} ms after SIGTERM`);
  await startSpangate(recPort);
}

async function credentialRotation(recPort) {
  section('Lightstep credential rotation: admin identities and the persistent store');
  const tEdge = await token('edge-prod');
  const tAdmin = await token('ops-admin');
  check('IdP: the operator token carries groups = [platform-admins] and no environment',
    JSON.stringify(jwtParts(tAdmin).payload.groups) === '["platform-admins"]' && !('environment' in jwtParts(tAdmin).payload),
    short(jwtParts(tAdmin).payload));
  const v1 = LIGHTSTEP_TOKEN;
  {
    const r = await cli(['secrets', 'list'], tAdmin);
    const row = parseList(r.stdout);
    check('CLI secrets list (OIDC admin): lightstep-prod v1 = the bootstrapped value\'s fingerprint',
      r.code === 0 && row?.current === 'v1' && row.fingerprint === `sha256:${fingerprint(v1)}`, short(r.stdout + r.stderr));
    const st = statSync(secretsStore);
    const dirMode = statSync(dirname(secretsStore)).mode & 0o777;
    check('secrets store created by spangate: file mode 0600 in a new directory of mode 0700',
      (st.mode & 0o777) === 0o600 && dirMode === 0o700, `file ${(st.mode & 0o777).toString(8)}, dir ${dirMode.toString(8)}`);
    const s = await adminCall('GET', '/admin/v1/status', { bearer: tAdmin });
    check('admin API status (OIDC admin, status:read): store is a file', s.status === 200 && s.json?.secrets?.store === 'file'
      && s.json.secrets.path === secretsStore, short(s.text));
  }

  // ── phase A: CLI rotation (OIDC admin) and HTTP API rotation (bootstrap token) under load
  section('rotation under continuous load: CLI (OIDC admin) then admin HTTP API (bootstrap token)');
  const v2 = newLightstepToken();
  const v3 = newLightstepToken();
  const seqA = lastSeq();
  await auditSettled();
  const auditA = auditLines().length;
  const adminA = adminAuditLines().length;
  const loadA = startLoad('load-a', tEdge, 'checkout-load');
  const sendersA = ['load-a w0 ', 'load-a w1 ', 'py-a '];
  let statsA;
  let pyResA;
  const pyA = startPyLoop('py-a', tEdge, 'checkout-py');
  try {
    await pyA.ready();
    await waitSendersOn(v1, seqA, sendersA, 'every sender to get a batch through with v1');

    // (a) Like Lightstep: the new token exists upstream first.
    allowTokens([v1, v2]);
    const r = await cliRotate(tAdmin, v2);
    check('rotate (a) via CLI with the OIDC admin token: exit 0, prints v1 -> v2 fingerprints and verify accepted',
      r.code === 0 && r.stdout.includes(`v1 (sha256:${fingerprint(v1)}) -> v2 (sha256:${fingerprint(v2)})`)
        && /verify against lightstep: accepted \(HTTP 200\)/.test(r.stdout), short(r.stdout + r.stderr));
    checkRotationAudit('rotate (a)', adminLineSince(adminA, (l) => l.action === 'secrets.rotate'),
      { actor: 'interop/ops-admin', oldValue: v1, newValue: v2, oldVersion: 1, newVersion: 2, verify: 'accepted' });
    const probe = upstreamRecords().filter((x) => x.seq > seqA && isProbe(x)).pop();
    check('rotate (a): the verify probe reached the upstream with the new token (empty protobuf export, 200)',
      !!probe && probe.token_fp === fingerprint(v2) && probe.status === 200 && probe.bytes === 0
        && probe.content_type === 'application/x-protobuf', short(probe && { fp: probe.token_fp, status: probe.status, bytes: probe.bytes }));
    const list = parseList((await cli(['secrets', 'list'], tAdmin)).stdout);
    check('after (a): CLI secrets list shows v2 current with the new fingerprint, v1 previous',
      list?.current === 'v2' && list.fingerprint === `sha256:${fingerprint(v2)}` && list.previous === 'v1', short(list));
    // The old token is revoked upstream a little later, well within grace:
    // once every sender has had a batch through with the new one.
    await waitSendersOn(v2, seqA, sendersA, 'every sender to get a batch through with v2 after rotation (a)');
    await sleep(300);
    allowTokens([v2]);
    await sleep(500);

    // (b) Through the HTTP API, with the bootstrap token.
    allowTokens([v2, v3]);
    const adminB = adminAuditLines().length;
    const h = await adminCall('POST', '/admin/v1/secrets/lightstep-prod/rotate', {
      bearer: ADMIN_BOOTSTRAP_TOKEN, body: { value: v3, grace: '2m', upstream: 'lightstep' },
    });
    check('rotate (b) via POST /admin/v1/secrets/lightstep-prod/rotate with the bootstrap token: 200, v2 -> v3, verify accepted',
      h.status === 200 && h.json?.old_version === 2 && h.json.new_version === 3 && h.json.old_fingerprint === fingerprint(v2)
        && h.json.new_fingerprint === fingerprint(v3) && h.json.verify?.result === 'accepted' && h.json.forced === false
        && typeof h.json.grace_until === 'string', short(h.text));
    checkRotationAudit('rotate (b)', adminLineSince(adminB, (l) => l.action === 'secrets.rotate'),
      { actor: 'bootstrap-token', oldValue: v2, newValue: v3, oldVersion: 2, newVersion: 3, verify: 'accepted' });
    const show = await adminCall('GET', '/admin/v1/secrets/lightstep-prod', { bearer: tAdmin });
    const states = Object.fromEntries((show.json?.versions || []).map((v) => [v.version, v.state]));
    check('after (b): v3 current, v2 previous (in grace), v1 retired (one previous at a time)',
      show.status === 200 && show.json.current_version === 3 && show.json.current_fingerprint === fingerprint(v3)
        && states[3] === 'current' && states[2] === 'previous' && states[1] === 'retired', short(show.text));
    await waitSendersOn(v3, seqA, sendersA, 'every sender to get a batch through with v3 after rotation (b)');
    await sleep(300);
    allowTokens([v3]);
    await sleep(500);
  } finally {
    statsA = await loadA.stop();
    pyResA = await pyA.stop();
  }
  await auditSettled();
  const windowA = checkLoadWindow('phase A', {
    load: statsA, py: pyResA, records: upstreamRecords().filter((r) => r.seq > seqA), audit: auditLines().slice(auditA),
  });
  check('phase A: batches were injected with v1, v2 and v3 during the load', ['v1', 'v2', 'v3'].every((v) => windowA.versions[v] > 0),
    JSON.stringify(windowA.versions));
  check('phase A: no fallback was needed (each new token was valid upstream before it became current)', windowA.fallbacks.length === 0,
    short(windowA.fallbacks.slice(0, 3)));

  // ── restart on the persistent store
  section('restart in between: SIGTERM, start again with the same config and environment');
  const firstLog = readFileSync(spangate.errLog, 'utf8');
  await restartSpangate(recPort);
  await until('the restarted spangate to fetch the IdP keys (probe answers 404)', async () => {
    const resp = await post(otlpUrl.replace('/v1/traces', '/interop-ready-probe'), tEdge, '{}');
    return resp.status === 404;
  }, { timeoutMs: 20_000, intervalMs: 200 });
  {
    check('restart: the first start seeded lightstep-prod from LIGHTSTEP_ACCESS_TOKEN',
      firstLog.includes('seeded credential from bootstrap'), 'no "seeded credential from bootstrap" line');
    check('restart: the second start did not re-seed (the store wins over the unchanged env var)',
      !spangateLog().includes('seeded credential from bootstrap'), 'seeded again');
    const o = await observe(() => post(otlpUrl, tEdge, otlpJson('checkout', 'after restart')));
    const rec = o.upstream.find((x) => !isProbe(x));
    check('restart: the rotated token (v3) is the one injected, not the bootstrap env value',
      o.result.status === 200 && rec?.token_fp === fingerprint(v3) && rec.allowed && o.audit[0]?.credential_version === 3,
      short({ status: o.result.status, fp: rec?.token_fp, version: o.audit[0]?.credential_version }));
    const show = await cli(['secrets', 'show', 'lightstep-prod'], tAdmin);
    check('restart: CLI secrets show: v3 current, v2 still previous with its grace period (persisted)',
      show.code === 0 && show.stdout.includes(`current v3, sha256:${fingerprint(v3)}`)
        && new RegExp(`v2\\s+previous\\s+sha256:${fingerprint(v2)}.*grace until`).test(show.stdout), short(show.stdout + show.stderr));
  }

  // ── phase B: CLI rotation after the restart, then a rotation the upstream has not learned yet
  section('after the restart, under load: CLI rotation, then a new token the upstream does not know yet (grace fallback)');
  const v4 = newLightstepToken();
  const v5 = newLightstepToken();
  const seqB = lastSeq();
  await auditSettled();
  const auditB = auditLines().length;
  const adminB0 = adminAuditLines().length;
  const fallbacksBefore = (await adminCall('GET', '/admin/v1/status', { bearer: tAdmin })).json?.secrets?.counters?.fallbacks;
  const loadB = startLoad('load-b', tEdge, 'checkout-load');
  const sendersB = ['load-b w0 ', 'load-b w1 ', 'py-b '];
  let statsB;
  let pyResB;
  const pyB = startPyLoop('py-b', tEdge, 'checkout-py');
  let seqD = 0;
  try {
    await pyB.ready();
    await waitSendersOn(v3, seqB, sendersB, 'every sender to get a batch through with v3');
    // (c) CLI rotation once more, after the restart.
    allowTokens([v3, v4]);
    const r = await cliRotate(tAdmin, v4);
    check('rotate (c) via CLI after the restart: exit 0, v3 -> v4, verify accepted',
      r.code === 0 && r.stdout.includes(`v3 (sha256:${fingerprint(v3)}) -> v4 (sha256:${fingerprint(v4)})`)
        && /verify against lightstep: accepted \(HTTP 200\)/.test(r.stdout), short(r.stdout + r.stderr));
    checkRotationAudit('rotate (c)', adminLineSince(adminB0, (l) => l.action === 'secrets.rotate'),
      { actor: 'interop/ops-admin', oldValue: v3, newValue: v4, oldVersion: 3, newVersion: 4, verify: 'accepted' });
    const list = parseList((await cli(['secrets', 'list'], tAdmin)).stdout);
    check('after (c): CLI secrets list shows v4 current with the new fingerprint, v3 previous',
      list?.current === 'v4' && list.fingerprint === `sha256:${fingerprint(v4)}` && list.previous === 'v3', short(list));
    await waitSendersOn(v4, seqB, sendersB, 'every sender to get a batch through with v4 after rotation (c)');
    await sleep(300);
    allowTokens([v4]);
    await sleep(500);

    // (d) The new token is activated before the upstream accepts it (a
    // propagation delay; verify: false skips the probe that would refuse it):
    // spangate must retry each refused batch with the previous token.
    seqD = lastSeq();
    const adminD = adminAuditLines().length;
    const h = await adminCall('POST', '/admin/v1/secrets/lightstep-prod/rotate', {
      bearer: ADMIN_BOOTSTRAP_TOKEN, body: { value: v5, grace: '2m', verify: false, upstream: 'lightstep' },
    });
    check('rotate (d) via the HTTP API, verify: false, before the upstream knows v5: 200, v4 -> v5, verify null',
      h.status === 200 && h.json?.new_version === 5 && h.json.new_fingerprint === fingerprint(v5) && h.json.verify === null,
      short(h.text));
    checkRotationAudit('rotate (d)', adminLineSince(adminD, (l) => l.action === 'secrets.rotate'),
      { actor: 'bootstrap-token', oldValue: v4, newValue: v5, oldVersion: 4, newVersion: 5, verify: 'skipped' });
    await until('refused v5 batches retried with v4', () => upstreamRecords()
      .filter((x) => x.seq > seqD && !isProbe(x) && x.status === 401 && x.token_fp === fingerprint(v5)).length >= 5,
    { timeoutMs: 15_000, intervalMs: 100 });
    // The upstream learns v5; later v4 is revoked.
    allowTokens([v4, v5]);
    await waitSendersOn(v5, seqD, sendersB, 'every sender to get a batch through with v5 once the upstream knows it');
    await sleep(300);
    allowTokens([v5]);
    await sleep(500);
  } finally {
    statsB = await loadB.stop();
    pyResB = await pyB.stop();
  }
  const recordsB = upstreamRecords().filter((r) => r.seq > seqB);
  await auditSettled();
  const windowB = checkLoadWindow('phase B', { load: statsB, py: pyResB, records: recordsB, audit: auditLines().slice(auditB) });
  const fbD = windowB.fallbacks;
  check(`phase B: grace fallbacks happened (${fbD.length}), each a v5 401 retried with v4 and accepted`,
    fbD.length >= 5 && fbD.every((f) => f.refused === fingerprint(v5) && f.accepted === fingerprint(v4)), short(fbD.slice(0, 3)));
  {
    const st = await cli(['status'], tAdmin);
    let j = null;
    try { j = JSON.parse(st.stdout); } catch { /* checked */ }
    const fallbacks = j?.secrets?.counters?.fallbacks;
    check('CLI status (OIDC admin): secrets.counters.fallbacks grew by the number of fallbacks seen upstream',
      st.code === 0 && typeof fallbacks === 'number' && fallbacks - (fallbacksBefore ?? 0) === fbD.length,
      `before ${fallbacksBefore}, after ${fallbacks}, seen ${fbD.length}`);
    const rl = await cli(['policy', 'reload'], tAdmin);
    check('CLI policy reload (OIDC admin, policy:reload): exit 0', rl.code === 0 && /policy reloaded/.test(rl.stdout), short(rl.stdout + rl.stderr));
  }

  // ── refusals
  section('refused: a rotation the upstream rejects, unauthenticated and unauthorized admin calls');
  {
    const bad1 = newLightstepToken();
    const bad2 = newLightstepToken();
    const seqR = lastSeq();
    const adminR = adminAuditLines().length;
    const r = await cliRotate(tAdmin, bad1);
    check('rejected rotation via CLI: exits non-zero, names upstream_rejected (422)',
      r.code !== 0 && /422/.test(r.stderr) && /upstream_rejected/.test(r.stderr), short({ code: r.code, out: r.stdout, err: r.stderr }));
    const h = await adminCall('POST', '/admin/v1/secrets/lightstep-prod/rotate', {
      bearer: ADMIN_BOOTSTRAP_TOKEN, body: { value: bad2, grace: '2m', upstream: 'lightstep' },
    });
    check('rejected rotation via HTTP API: 422 upstream_rejected', h.status === 422 && h.json?.error === 'upstream_rejected', short(h.text));
    const probes = upstreamRecords().filter((x) => x.seq > seqR && isProbe(x));
    check('rejected rotations: both verify probes reached the upstream with the candidate token and got 401',
      probes.length === 2 && probes[0].token_fp === fingerprint(bad1) && probes[1].token_fp === fingerprint(bad2)
        && probes.every((p) => p.status === 401), short(probes.map((p) => ({ fp: p.token_fp, status: p.status }))));
    const rej = adminAuditLines().slice(adminR).filter((l) => l.action === 'secrets.rotate');
    check('rejected rotations: admin audit lines refused/422 upstream_rejected with the candidate fingerprint and verify rejected',
      rej.length === 2 && rej.every((l) => l.result === 'refused' && l.status === 422 && l.reason === 'upstream_rejected' && l.verify === 'rejected')
        && rej[0].new_fingerprint === fingerprint(bad1) && rej[1].new_fingerprint === fingerprint(bad2), short(rej));
    const show = await adminCall('GET', '/admin/v1/secrets/lightstep-prod', { bearer: tAdmin });
    check('rejected rotations: v5 stays current', show.json?.current_version === 5 && show.json.current_fingerprint === fingerprint(v5), short(show.text));
    const o = await observe(() => post(otlpUrl, tEdge, otlpJson('checkout', 'after rejected rotation')));
    const rec = o.upstream.find((x) => !isProbe(x));
    check('rejected rotations: batches still carry v5 and are accepted', o.result.status === 200 && rec?.token_fp === fingerprint(v5) && rec.allowed,
      short({ status: o.result.status, fp: rec?.token_fp }));

    const adminU = adminAuditLines().length;
    const body = { value: newLightstepToken(), grace: '2m', upstream: 'lightstep' };
    const none = await adminCall('POST', '/admin/v1/secrets/lightstep-prod/rotate', { body });
    check('admin API without a token: 401 unauthenticated with a Bearer realm="spangate-admin" challenge',
      none.status === 401 && none.json?.error === 'unauthenticated' && /^Bearer realm="spangate-admin"/.test(none.headers.get('www-authenticate') || ''),
      `${none.status} ${none.headers.get('www-authenticate')} ${short(none.text)}`);
    const garbage = await adminCall('POST', '/admin/v1/secrets/lightstep-prod/rotate', { bearer: `not-a-token-${randomBytes(8).toString('hex')}`, body });
    check('admin API with a bad token: 401 invalid_token', garbage.status === 401 && garbage.json?.error === 'invalid_token', short(garbage.text));
    const edge = await adminCall('POST', '/admin/v1/secrets/lightstep-prod/rotate', { bearer: tEdge, body });
    check('admin API with the exporter\'s identity token: 403 forbidden', edge.status === 403 && edge.json?.error === 'forbidden', short(edge.text));
    const edgeCli = await cli(['secrets', 'list'], tEdge);
    check('CLI secrets list with the exporter\'s identity token: exits non-zero, "not allowed"',
      edgeCli.code !== 0 && /not allowed/.test(edgeCli.stderr), short({ code: edgeCli.code, err: edgeCli.stderr }));
    const noCli = await cli(['secrets', 'list'], '');
    check('CLI secrets list without a token: exits non-zero, says to set SPANGATE_ADMIN_TOKEN',
      noCli.code !== 0 && /SPANGATE_ADMIN_TOKEN/.test(noCli.stderr), short({ code: noCli.code, err: noCli.stderr }));
    const lines = adminAuditLines().slice(adminU);
    const by = (pred) => lines.find(pred);
    check('refused admin calls are audited: anonymous/unauthenticated, invalid_token, forbidden with permission secrets:rotate and the subject',
      !!by((l) => l.actor === 'anonymous' && l.result === 'unauthenticated' && l.status === 401 && l.reason === 'unauthenticated')
        && !!by((l) => l.result === 'unauthenticated' && l.reason === 'invalid_token')
        && !!by((l) => l.result === 'forbidden' && l.status === 403 && l.permission === 'secrets:rotate' && l.actor === 'interop/edge-prod')
        && !!by((l) => l.result === 'forbidden' && l.permission === 'secrets:read' && l.action === 'secrets.list'),
      short(lines));
    const adminPub = await observe(() => post(otlpUrl, tAdmin, otlpJson('checkout', 'operator token on the OTLP endpoint')));
    check('the operator token cannot publish (403 on the OTLP endpoint, nothing upstream)',
      adminPub.result.status === 403 && adminPub.upstream.length === 0, `${adminPub.result.status}, ${adminPub.upstream.length} upstream`);
    const show2 = await adminCall('GET', '/admin/v1/secrets/lightstep-prod', { bearer: tAdmin });
    check('after the refused calls: v5 still current', show2.json?.current_version === 5, short(show2.text));
  }
}

// ───────────────────────────── upstream spool ─────────────────────────────
//
// A second `spangate serve` process with its own config, secrets store, audit
// file and recording upstream, whose upstream has `spool` enabled. The first
// instance keeps no spool on purpose: its rotation checks count every 502 a
// failed grace fallback produces, and a spool would answer those with 200.

const spoolRecordFile = join(WORK, 'spool-upstream.jsonl');
const spoolAllowFile = join(WORK, 'spool-upstream-allow.json');
const spoolAuditFile = join(WORK, 'spool-audit.jsonl');
const spoolStore = join(WORK, 'spool-state', 'secrets.json');
let spoolAllowGeneration = 0;
/** The spool instance once started: { proc, otlp, admin }. */
let spoolGate = null;

/** Replace the tokens the spool instance's upstream accepts (atomic rename). */
function spoolAllowTokens(tokens) {
  spoolAllowGeneration += 1;
  const tmp = `${spoolAllowFile}.tmp`;
  writeFileSync(tmp, JSON.stringify({ generation: spoolAllowGeneration, tokens }), { mode: 0o600 });
  renameSync(tmp, spoolAllowFile);
}
const spoolRecords = () => readJsonl(spoolRecordFile);
const spoolAuditLines = (kind) => readJsonl(spoolAuditFile).filter((l) => l.kind === kind);

/** Start the spool instance's recorder on `port` (0: ephemeral); resolves once it listens. */
async function startSpoolRecorder(port) {
  const proc = start('spool-recorder', PYTHON,
    [join(HERE, 'recorder.py'), spoolRecordFile, '--port', String(port), '--allow', spoolAllowFile]);
  const line = await proc.waitLine(/^LISTENING /, 15_000);
  return { proc, port: Number(line.split(' ')[1]) };
}

function spoolSpangateConfig(recPort) {
  // The same shape as the first instance's config, plus `spool` on the upstream.
  return `# second spangate of the interop run: its upstream has a spool.
server:
  listen: 127.0.0.1:0
  max_body: 16MiB
  header_timeout: 10s
  request_timeout: 30s
admin:
  listen: 127.0.0.1:0
  bootstrap_token_sha256: ${sha256hex(ADMIN_BOOTSTRAP_TOKEN)}
providers:
  interop:
    issuer: ${issuer}
    audiences: [${AUDIENCE}]
    require_typ: at+jwt
upstreams:
  lightstep:
    url: http://127.0.0.1:${recPort}/traces/otlp/v0.9
    credential_header: lightstep-access-token
    timeout: 5s
    # Keep permitted batches through an upstream outage: exporters such as
    # @vercel/otel never retry and never read the status code.
    spool: { max_bytes: 8MiB, max_age: 2m }
${signalUpstreams(recPort)}secrets:
  store: ${spoolStore}
  bootstrap:
    lightstep-prod: { env: LIGHTSTEP_ACCESS_TOKEN }
policies: ${join(HERE, 'policies')}
audit:
  file: ${spoolAuditFile}
`;
}

async function startSpoolSpangate(recPort, value) {
  const cfgFile = join(WORK, 'spangate-spool.yaml');
  writeFileSync(cfgFile, spoolSpangateConfig(recPort));
  const proc = start('spangate-spool', SPANGATE, ['--log-format', 'json', 'serve', '--config', cfgFile], {
    env: { LIGHTSTEP_ACCESS_TOKEN: value, SPANGATE_LOG: 'info' },
  });
  const line = await until('the spool instance to log its listening addresses', () => {
    if (proc.exited) throw new Error(`spangate (spool) exited: ${JSON.stringify(proc.exited)}`);
    return existsSync(proc.errLog) && readFileSync(proc.errLog, 'utf8').split('\n').find((l) => l.includes('spangate listening'));
  }, { timeoutMs: 20_000, intervalMs: 100 });
  const f = JSON.parse(line).fields || {};
  return { proc, otlp: `http://${f.otlp}/v1/traces`, admin: `http://${f.admin}` };
}

/** The spool metrics of the spool instance's admin `/metrics`. */
async function spoolMetrics() {
  const resp = await fetch(`${spoolGate.admin}/metrics`, { signal: AbortSignal.timeout(5000) });
  const text = await resp.text();
  const batches = {};
  for (const m of text.matchAll(/^spangate_spool_batches_total\{([^}]*)\} (\d+)/gm)) {
    const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (labels.upstream === 'lightstep') batches[labels.outcome] = Number(m[2]);
  }
  const attempts = {};
  for (const m of text.matchAll(/^spangate_upstream_attempts_total\{([^}]*)\} (\d+)/gm)) {
    const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]));
    if (labels.upstream === 'lightstep') attempts[labels.outcome] = Number(m[2]);
  }
  const bytes = text.match(/^spangate_spool_bytes\{upstream="lightstep"\} (\d+)/m);
  return { status: resp.status, batches, attempts, bytes: bytes ? Number(bytes[1]) : null };
}
const metricsSummary = (m) => `status ${m.status}, spangate_spool_batches_total ${JSON.stringify(m.batches)}, spangate_spool_bytes ${m.bytes}`;

/**
 * Run exporters against the spool instance at the same time. Each spec:
 * { label, kind, clientId, tok, service, spans, contentType, gzip, spec }.
 */
async function spoolExports(specs) {
  await auditSettled(spoolAuditFile);
  const au0 = spoolAuditLines('otlp').length;
  const up0 = spoolRecords().length;
  const results = await Promise.all(specs.map((x) => exporter(x.kind, {
    endpoint: spoolGate.otlp, token: x.tok, ...x.spec, spans: x.spans,
  })));
  await auditSettled(spoolAuditFile);
  return { results, audit: spoolAuditLines('otlp').slice(au0), upstream: spoolRecords().slice(up0) };
}

/** Checks of one export that spangate spooled; returns its request id. */
function checkSpooled(x, result, audit, { version }) {
  const what = x.kind === 'vercel' ? 'exporter ran and flushed (it reports SUCCESS whatever the status)' : 'export result is SUCCESS (spangate answered 2xx)';
  const ok = x.kind === 'python' ? pyOk(result) : result.results.length > 0 && nodeOk(result);
  check(`${x.label}: ${what}`, ok, short(result.parsed ?? result.stderr));
  const mine = audit.filter((l) => l.subject === x.clientId && JSON.stringify(l.services) === JSON.stringify([x.service]));
  check(`${x.label}: one audit line`, mine.length === 1, `got ${mine.length}`);
  const l = mine[0];
  if (!l) return null;
  check(`${x.label}: audit says allow, status 200, reason spooled (binding[interop-edge], ${x.spans.length} spans, credential v${version})`,
    l.decision === 'allow' && l.status === 200 && l.reason === 'spooled' && l.rule === 'binding[interop-edge]'
      && l.spans === x.spans.length && l.credential === 'lightstep-prod' && l.credential_version === version
      && l.upstream === 'lightstep' && /spooled/.test(l.detail || ''),
    short(l));
  return l.reason === 'spooled' ? l.request_id : null;
}

/** Checks of one spooled batch once delivered: what the upstream got and the `kind: spool` audit line. */
function checkDelivered(x, result, rid, { value, version, refused }) {
  const recs = spoolRecords().filter((r) => r.headers['x-request-id'] === rid);
  const accepted = recs.filter((r) => r.status === 200);
  const early = recs.filter((r) => r.status !== 200);
  check(`${x.label}: the upstream accepted the batch exactly once (same x-request-id)`, accepted.length === 1,
    `${accepted.length} accepted of ${recs.length}`);
  if (refused) {
    check(`${x.label}: every earlier attempt was refused (401) with the token it did not accept yet`,
      early.length >= 1 && early.every((r) => r.status === 401 && r.token_fp === fingerprint(refused)) && recs[recs.length - 1].status === 200,
      short(early.map((r) => ({ status: r.status, fp: r.token_fp }))));
  } else {
    check(`${x.label}: no other attempt reached the upstream`, early.length === 0, short(early.map((r) => r.status)));
  }
  const rec = accepted[0];
  if (rec) {
    check(`${x.label}: delivered to the configured path as ${x.contentType}${x.gzip ? ', gzip-encoded' : ''}, body decodes`,
      rec.path === '/traces/otlp/v0.9' && rec.content_type === x.contentType && rec.decode_error === null
        && (!x.gzip || rec.content_encoding === 'gzip'),
      short({ path: rec.path, ct: rec.content_type, ce: rec.content_encoding, err: rec.decode_error }));
    check(`${x.label}: delivered with the injected lightstep-access-token current at delivery (v${version}), no Authorization`,
      rec.headers['lightstep-access-token'] === value && !('authorization' in rec.headers),
      `token ${rec.token_fp} (want ${fingerprint(value)}), authorization ${'authorization' in rec.headers}`);
    const key = (s) => `${s.name}/${s.trace_id}/${s.span_id}`;
    const sent = result.results.flatMap((r) => r.ids || []).map(key).sort();
    const arrived = rec.resources.flatMap((r) => r.spans).map(key).sort();
    check(`${x.label}: exactly the exported spans arrived (${x.spans.length}: names, trace and span ids)`,
      sent.length === x.spans.length && JSON.stringify(sent) === JSON.stringify(arrived), `sent ${short(sent)} arrived ${short(arrived)}`);
    const claims = CLIENTS[x.clientId];
    check(`${x.label}: service.name ${x.service} intact, verified identity stamped`,
      rec.resources.length > 0 && rec.resources.every((r) => r.attributes['service.name'] === x.service
        && r.attributes['deployment.environment.name'] === claims.environment && r.attributes['vercel.project_id'] === claims.project_id
        && r.attributes['spangate.subject'] === x.clientId),
      short(rec.resources.map((r) => r.attributes)));
  }
  const lines = spoolAuditLines('spool').filter((l) => l.request_id === rid);
  const l = lines[0];
  check(`${x.label}: one kind: spool audit line, result delivered, upstream 200, credential v${version}, ${x.spans.length} spans, same request id`,
    lines.length === 1 && l.result === 'delivered' && l.upstream_status === 200 && l.upstream === 'lightstep'
      && l.endpoint === 'traces' && l.provider === 'interop' && l.subject === x.clientId && l.spans === x.spans.length
      && l.credential === 'lightstep-prod' && l.credential_version === version && l.delivery_attempts >= 1
      && typeof l.queued_ms === 'number',
    short(lines));
}

/**
 * Wait (bounded) until every request id has its `kind: spool` audit line;
 * returns the wait in ms. Nothing to wait for (a batch was not spooled) fails at once.
 */
async function waitSpoolOutcomes(rids, what) {
  const t0 = Date.now();
  const label = `${what} (bounded poll, 20 s cap)`;
  if (rids.length === 0 || !rids.every(Boolean)) {
    check(label, false, 'a batch was not spooled: nothing to wait for');
    return null;
  }
  try {
    await until(what, () => {
      const done = new Set(spoolAuditLines('spool').map((l) => l.request_id));
      return rids.every((rid) => done.has(rid));
    }, { timeoutMs: 20_000, intervalMs: 100 });
    check(label, true);
  } catch (e) {
    check(label, false, e.message);
  }
  return Date.now() - t0;
}

/**
 * Request ids of the batches the upstream accepted after its first `n`
 * records (counted by line: the recorder's seq restarts with the process).
 */
function acceptedSince(n) {
  return spoolRecords().slice(n).filter((r) => r.status === 200).map((r) => r.headers['x-request-id']);
}

async function upstreamSpool() {
  section('upstream spool: a second spangate with `spool` on its upstream, its own recording upstream');
  const s1 = newLightstepToken();
  spoolAllowTokens([s1]);
  let rec = await startSpoolRecorder(0);
  const port = rec.port;
  spoolGate = await startSpoolSpangate(port, s1);
  console.log(`  spool instance: otlp ${spoolGate.otlp.replace('/v1/traces', '')}, admin ${spoolGate.admin}, upstream 127.0.0.1:${port}`);
  const tEdge = await token('edge-prod');
  const tPreview = await token('edge-preview');
  await until('the spool instance to fetch the IdP keys (probe answers 404)', async () => {
    const resp = await post(spoolGate.otlp.replace('/v1/traces', '/interop-ready-probe'), tEdge, '{}');
    return resp.status === 404;
  }, { timeoutMs: 20_000, intervalMs: 200 });
  {
    await auditSettled(spoolAuditFile);
    const up0 = spoolRecords().length;
    const au0 = spoolAuditLines('otlp').length;
    const resp = await post(spoolGate.otlp, tEdge, otlpJson('checkout', 'before the outage'));
    await auditSettled(spoolAuditFile);
    const up = spoolRecords().slice(up0);
    const au = spoolAuditLines('otlp').slice(au0);
    check('spool instance, upstream up: a batch is forwarded at once (200, reason allowed, not spooled; the upstream got it with the injected token)',
      resp.status === 200 && au.length === 1 && au[0].reason === 'allowed' && au[0].upstream_status === 200
        && up.length === 1 && up[0].status === 200 && up[0].token_fp === fingerprint(s1),
      short({ status: resp.status, audit: au, upstream: up.map((r) => ({ status: r.status, fp: r.token_fp })) }));
  }

  // ── scenario 1: the upstream process is gone
  section('spool scenario 1: upstream outage (recorder stopped), @vercel/otel and the Python exporter keep exporting');
  const transport0 = (await spoolMetrics()).attempts.transport || 0;
  await rec.proc.stop();
  let connError = 'connected';
  try {
    await fetch(`http://127.0.0.1:${port}/`, { signal: AbortSignal.timeout(2000) });
  } catch (e) {
    connError = e.cause?.code || e.name;
  }
  check(`outage: the recorder has exited and its port 127.0.0.1:${port} refuses connections`,
    rec.proc.exited !== null && connError === 'ECONNREFUSED', `${JSON.stringify(rec.proc.exited)}, ${connError}`);
  const up1 = spoolRecords().length;
  const outage = [
    { label: 'outage, @vercel/otel protobuf', kind: 'vercel', clientId: 'edge-prod', tok: tEdge, service: 'checkout-edge-spool',
      spans: ['spool edge GET /', 'spool edge fetch'], contentType: 'application/x-protobuf', spec: { protocol: 'proto', service: 'checkout-edge-spool' } },
    { label: 'outage, Python protobuf+gzip', kind: 'python', clientId: 'edge-preview', tok: tPreview, service: 'cart-spool',
      spans: ['spool consume', 'spool ack', 'spool commit'], contentType: 'application/x-protobuf', gzip: true,
      spec: { gzip: true, resource: { 'service.name': 'cart-spool' } } },
  ];
  const o1 = await spoolExports(outage);
  const rids1 = outage.map((x, i) => checkSpooled(x, o1.results[i], o1.audit, { version: 1 }));
  check('outage: nothing reached the upstream', spoolRecords().length === up1, `${spoolRecords().length - up1} record(s)`);
  {
    const m = await spoolMetrics();
    check('outage: /metrics shows 2 batches spooled, none delivered yet, spangate_spool_bytes > 0',
      m.status === 200 && m.batches.spooled === 2 && !m.batches.delivered && m.bytes > 0, metricsSummary(m));
  }
  // Keep the upstream down until the spool's background delivery has failed
  // twice (3 connection attempts each, after the 3 of each request): the
  // batches outlive more than one request's retries.
  try {
    await until('two failed background deliveries', async () => {
      const m = await spoolMetrics();
      return (m.attempts.transport || 0) - transport0 >= 2 * 3 + 2 * 3;
    }, { timeoutMs: 15_000, intervalMs: 100 });
    check('outage: the spool kept retrying in the background (spangate_upstream_attempts_total{outcome="transport"} grew by 2 requests x 3 + 2 deliveries x 3)', true);
  } catch (e) {
    check('outage: the spool kept retrying in the background (spangate_upstream_attempts_total{outcome="transport"} grew by 2 requests x 3 + 2 deliveries x 3)', false, e.message);
  }
  check('outage: still nothing reached the upstream, nothing delivered',
    spoolRecords().length === up1 && spoolAuditLines('spool').length === 0, `${spoolRecords().length - up1} record(s)`);
  // The upstream comes back on the same port (a redeploy).
  rec = await until(`the recorder to come back on port ${port}`, () => startSpoolRecorder(port).then((r) => r.port === port && r),
    { timeoutMs: 15_000, intervalMs: 300 });
  const ms1 = await waitSpoolOutcomes(rids1, 'outage over: every spooled batch has its kind: spool audit line');
  if (ms1 !== null) console.log(`  delivered within ${ms1} ms after the upstream came back`);
  outage.forEach((x, i) => rids1[i] && checkDelivered(x, o1.results[i], rids1[i], { value: s1, version: 1 }));
  {
    const lines = spoolAuditLines('spool').filter((l) => rids1.includes(l.request_id));
    const most = Math.max(0, ...lines.map((l) => l.delivery_attempts));
    check('outage over: the batch at the head of the spool was delivered on its 3rd or later background attempt (delivery_attempts)',
      most >= 3, short(lines.map((l) => ({ rid: l.request_id, attempts: l.delivery_attempts, queued_ms: l.queued_ms }))));
  }
  {
    const got = acceptedSince(up1);
    check('outage over: the upstream accepted exactly the spooled batches, once each',
      got.length === 2 && rids1.every((rid) => got.filter((g) => g === rid).length === 1), short(got));
    const m = await spoolMetrics();
    check('outage over: /metrics spangate_spool_batches_total{upstream="lightstep",outcome="delivered"} 2, spangate_spool_bytes 0',
      m.batches.delivered === 2 && m.batches.spooled === 2 && m.bytes === 0, metricsSummary(m));
  }

  // ── scenario 2: a new token the upstream has not learned yet
  section('spool scenario 2: the upstream refuses the injected token (new token, not propagated yet), then learns it');
  const s2 = newLightstepToken();
  {
    const h = await fetch(`${spoolGate.admin}/admin/v1/secrets/lightstep-prod/rotate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_BOOTSTRAP_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ value: s2, grace: '0s', verify: false, upstream: 'lightstep' }),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await h.text();
    adminTranscript.push(text);
    let j = null;
    try { j = JSON.parse(text); } catch { /* checked */ }
    check('refused token: rotation v1 -> v2 before the upstream knows v2 (HTTP API, verify: false, grace 0s): 200',
      h.status === 200 && j?.new_version === 2 && j.new_fingerprint === fingerprint(s2), short(text));
  }
  const n2 = spoolRecords().length;
  const refusedSet = [
    { label: 'refused token, @vercel/otel JSON', kind: 'vercel', clientId: 'edge-prod', tok: tEdge, service: 'checkout-edge-rotated',
      spans: ['spool edge POST /cart'], contentType: 'application/json', spec: { protocol: 'json', service: 'checkout-edge-rotated' } },
    { label: 'refused token, Python protobuf', kind: 'python', clientId: 'edge-preview', tok: tPreview, service: 'cart-rotated',
      spans: ['spool refund', 'spool notify'], contentType: 'application/x-protobuf', spec: { gzip: false, resource: { 'service.name': 'cart-rotated' } } },
  ];
  const o2 = await spoolExports(refusedSet);
  const rids2 = refusedSet.map((x, i) => checkSpooled(x, o2.results[i], o2.audit, { version: 2 }));
  {
    const seen = spoolRecords().slice(n2);
    check('refused token: the upstream saw each batch with v2 and refused it (401); none accepted',
      rids2.every((rid) => seen.some((r) => r.headers['x-request-id'] === rid))
        && seen.every((r) => r.status === 401 && r.token_fp === fingerprint(s2)),
      short(seen.map((r) => ({ rid: r.headers['x-request-id'], status: r.status, fp: r.token_fp }))));
  }
  // Lightstep has propagated the new token.
  spoolAllowTokens([s1, s2]);
  const ms2 = await waitSpoolOutcomes(rids2, 'token propagated: every spooled batch has its kind: spool audit line');
  if (ms2 !== null) console.log(`  delivered within ${ms2} ms after the upstream learned the token`);
  refusedSet.forEach((x, i) => rids2[i] && checkDelivered(x, o2.results[i], rids2[i], { value: s2, version: 2, refused: s2 }));
  {
    const got = acceptedSince(n2);
    check('token propagated: the upstream accepted exactly the spooled batches, once each',
      got.length === 2 && rids2.every((rid) => got.filter((g) => g === rid).length === 1), short(got));
  }

  // ── scenario 3: the credential is read at delivery time
  section('spool scenario 3: the injected token is revoked upstream; a rotation delivers the spooled batch with the new one');
  const s3 = newLightstepToken();
  spoolAllowTokens([s3]);
  const n3 = spoolRecords().length;
  const revoked = [
    { label: 'revoked token, @vercel/otel protobuf', kind: 'vercel', clientId: 'edge-prod', tok: tEdge, service: 'checkout-edge-revoked',
      spans: ['spool edge GET /orders', 'spool edge render'], contentType: 'application/x-protobuf', spec: { protocol: 'proto', service: 'checkout-edge-revoked' } },
  ];
  const o3 = await spoolExports(revoked);
  const rids3 = revoked.map((x, i) => checkSpooled(x, o3.results[i], o3.audit, { version: 2 }));
  {
    const seen = spoolRecords().slice(n3);
    check('revoked token: the upstream refused the batch with v2 (401); none accepted',
      seen.length >= 1 && seen.every((r) => r.status === 401 && r.token_fp === fingerprint(s2)), short(seen.map((r) => ({ status: r.status, fp: r.token_fp }))));
    const h = await fetch(`${spoolGate.admin}/admin/v1/secrets/lightstep-prod/rotate`, {
      method: 'POST',
      headers: { authorization: `Bearer ${ADMIN_BOOTSTRAP_TOKEN}`, 'content-type': 'application/json' },
      body: JSON.stringify({ value: s3, grace: '2m', upstream: 'lightstep' }),
      signal: AbortSignal.timeout(10_000),
    });
    const text = await h.text();
    adminTranscript.push(text);
    let j = null;
    try { j = JSON.parse(text); } catch { /* checked */ }
    check('revoked token: rotation v2 -> v3 through the HTTP API, verify accepted (200)',
      h.status === 200 && j?.new_version === 3 && j.verify?.result === 'accepted', short(text));
  }
  const ms3 = await waitSpoolOutcomes(rids3, 'rotated: the spooled batch has its kind: spool audit line');
  if (ms3 !== null) console.log(`  delivered within ${ms3} ms after the rotation`);
  revoked.forEach((x, i) => rids3[i] && checkDelivered(x, o3.results[i], rids3[i], { value: s3, version: 3, refused: s2 }));

  // ── totals, shutdown, hygiene
  section('spool: metrics totals, shutdown, hygiene');
  const exported = outage.length + refusedSet.length + revoked.length;
  const rids = [...rids1, ...rids2, ...rids3].filter(Boolean);
  {
    const m = await spoolMetrics();
    check(`/metrics: spangate_spool_batches_total{upstream="lightstep"} spooled = delivered = every exported batch (${exported}); no full, dead_lettered, expired or lost; spangate_spool_bytes 0`,
      rids.length === exported && m.batches.spooled === rids.length && m.batches.delivered === rids.length
        && ['full', 'dead_lettered', 'expired', 'lost'].every((k) => !m.batches[k]) && m.bytes === 0, metricsSummary(m));
    await auditSettled(spoolAuditFile);
    const spooled = spoolAuditLines('otlp').filter((l) => l.reason === 'spooled').map((l) => l.request_id).sort();
    const outcomes = spoolAuditLines('spool');
    check(`audit: exactly one kind: spool line per spooled request (${spooled.length}), all delivered`,
      rids.length === exported && spooled.length === rids.length && outcomes.length === spooled.length && JSON.stringify(outcomes.map((l) => l.request_id).sort()) === JSON.stringify(spooled)
        && outcomes.every((l) => l.result === 'delivered'), short(outcomes.map((l) => ({ rid: l.request_id, result: l.result }))));
  }
  {
    const proc = spoolGate.proc;
    proc.child.kill('SIGTERM');
    const gone = await Promise.race([proc.done, sleep(20_000).then(() => false)]);
    if (!gone) await proc.stop();
    check('spool instance: SIGTERM with an empty spool: exit status 0, no lost line',
      gone !== false && proc.exited?.code === 0 && spoolAuditLines('spool').every((l) => l.result !== 'lost'), JSON.stringify(proc.exited));
    await rec.proc.stop();
  }
  {
    const secrets = [...lightstepValues, ADMIN_BOOTSTRAP_TOKEN, ...issuedTokens, ...Object.values(SECRETS)];
    const auditText = readFileSync(spoolAuditFile, 'utf8');
    const logText = readFileSync(spoolGate.proc.errLog, 'utf8');
    check(`spool instance: no token or credential value in its audit file or log (${secrets.length} values checked)`,
      secrets.every((s) => !auditText.includes(s) && !logText.includes(s)), 'a value was found');
    check('spool instance: log has no panic', !/panicked/.test(logText), 'a panic is in the log');
  }
}

// ───────────────────────────── the run ─────────────────────────────

// ───────────────────────────── signals × protocols ─────────────────────────────

/** Where each signal arrives upstream (policies/endpoints.yaml, signalUpstreams()). */
const SIGNAL_UPSTREAM_PATH = { traces: '/traces/otlp/v0.9', metrics: '/v1/metrics', logs: '/v1/logs' };
const PROTOCOLS = ['grpc', 'http/protobuf', 'http/json'];

/**
 * Run the Node or Python signal exporter (signals-node.mjs, signals_py.py)
 * configured only with the standard OTEL_* variables. Returns the child's
 * result plus `ok` (every export reported success by the SDK itself).
 */
async function signalExport(sdk, signal, protocol, bearer, items, { service = 'checkout' } = {}) {
  const env = {
    OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
    OTEL_EXPORTER_OTLP_ENDPOINT: protocol === 'grpc' ? grpcUrl : otlpBase,
    OTEL_EXPORTER_OTLP_HEADERS: `authorization=Bearer%20${encodeURIComponent(bearer)}`,
    OTEL_EXPORTER_OTLP_TIMEOUT: '10000',
    OTEL_SERVICE_NAME: service,
    // Protected attributes a client may not set: spangate strips them.
    OTEL_RESOURCE_ATTRIBUTES: 'enduser.id=mallory,spangate.spoofed=yes',
    OTEL_LOG_LEVEL: 'error',
    INTEROP_SIGNAL: signal,
    INTEROP_ITEMS: items.join(','),
  };
  const r = sdk === 'node'
    ? await run(process.execPath, [join(HERE, 'signals-node.mjs')], { env, timeoutMs: 40_000 })
    : await run(PYTHON, [join(HERE, 'signals_py.py')], { env, timeoutMs: 40_000 });
  const line = r.stdout.split('\n').find((l) => l.startsWith('RESULT '));
  const results = line ? JSON.parse(line.slice(7)).results : [];
  const ok = results.length > 0 && results.every((x) => x === 'SUCCESS' || x?.code === 0);
  return { ...r, results, ok };
}

/** Bearer values a header of a forwarded request must never carry. */
function headerLeaks(rec, values) {
  return Object.values(rec.headers).filter((v) => values.some((t) => String(v).includes(t))).length;
}

async function grpcSignals() {
  const tok = await token('edge-prod');
  const claims = CLIENTS['edge-prod'];
  for (const sdk of ['node', 'python']) {
    section(`all signals × protocols: OpenTelemetry ${sdk === 'node' ? 'JS' : 'Python'} SDK configured only by OTEL_EXPORTER_OTLP_* (grpc on server.grpc_listen, http/protobuf and http/json on server.listen)`);
    for (const signal of ['traces', 'metrics', 'logs']) {
      for (const protocol of PROTOCOLS) {
        const label = `${sdk} ${protocol} ${signal}`;
        const item = `${sdk}-${protocol.replace('/', '-')}-${signal}-${randomBytes(3).toString('hex')}`;
        await auditSettled();
        const up0 = upstreamRecords().length;
        const au0 = auditLines().length;
        const r = await signalExport(sdk, signal, protocol, tok, [item]);
        // Metric readers may export again on shutdown: wait for the records
        // the exports produced (the recorder writes before it answers).
        await auditSettled();
        const upstream = upstreamRecords().slice(up0);
        const audit = auditLines().slice(au0);
        check(`${label}: the SDK reports every export successful`, r.ok, short(r.results.length ? r.results : r.stderr || r.stdout));
        const wantOne = signal !== 'metrics';
        check(`${label}: ${wantOne ? 'one request' : 'at least one request'} reached the upstream`,
          wantOne ? upstream.length === 1 : upstream.length >= 1, `got ${upstream.length}`);
        if (upstream.length === 0) continue;
        const path = SIGNAL_UPSTREAM_PATH[signal];
        // OTLP/JSON of every signal stays JSON to an OTLP/HTTP upstream
        // (docs/otlp.md); gRPC is always protobuf.
        const ct = protocol === 'http/json' ? 'application/json' : 'application/x-protobuf';
        check(`${label}: upstream path ${path}, content type ${ct}, decodes (independent decoder)`,
          upstream.every((u) => u.path === path && u.content_type === ct && u.decode_error === null),
          short(upstream.map((u) => [u.path, u.content_type, u.decode_error])));
        const items = upstream.flatMap((u) => u.resources.flatMap((x) => x.items || []));
        check(`${label}: the SDK's ${signal === 'traces' ? 'span' : signal === 'metrics' ? 'counter' : 'log record'} arrives`, items.includes(item), short(items));
        const res = upstream.flatMap((u) => u.resources);
        check(`${label}: verified identity stamped on every resource, service.name intact, protected attributes stripped`,
          res.length > 0 && res.every((x) => x.attributes['service.name'] === 'checkout'
            && x.attributes['deployment.environment.name'] === claims.environment
            && x.attributes['vercel.project_id'] === claims.project_id
            && x.attributes['spangate.subject'] === 'edge-prod'
            && !('enduser.id' in x.attributes) && !('spangate.spoofed' in x.attributes)),
          short(res.map((x) => x.attributes)));
        check(`${label}: upstream credential injected, client token never forwarded`,
          upstream.every((u) => u.headers['lightstep-access-token'] === LIGHTSTEP_TOKEN
            && !('authorization' in u.headers) && headerLeaks(u, [tok]) === 0),
          short(upstream.map((u) => Object.keys(u.headers))));
        check(`${label}: one allow audit line per forwarded request, with the identity and token fingerprint`,
          audit.length === upstream.length && audit.every((l) => l.decision === 'allow' && l.subject === 'edge-prod'
            && l.token_fp === fingerprint(tok) && l.upstream === (signal === 'traces' ? 'lightstep' : `lightstep-${signal}`)),
          short(audit));
      }
    }
  }

  section('hostile tokens over gRPC (real SDKs): UNAUTHENTICATED, never forwarded');
  {
    const good = await token('edge-prod');
    const forged = good.slice(0, -1) + (good.endsWith('A') ? 'B' : 'A');
    const otherAud = await token('edge-prod', OTHER_AUDIENCE);
    const cases = [
      ['python', 'traces', forged, 'forged signature'],
      ['node', 'metrics', otherAud, 'token for another audience'],
      ['python', 'logs', 'not.a.jwt', 'not a JWT'],
    ];
    for (const [sdk, signal, bad, what] of cases) {
      const label = `${sdk} grpc ${signal}, ${what}`;
      await auditSettled();
      const up0 = upstreamRecords().length;
      const au0 = auditLines().length;
      const r = await signalExport(sdk, signal, 'grpc', bad, [`hostile-${signal}`]);
      await auditSettled();
      const upstream = upstreamRecords().slice(up0);
      const audit = auditLines().slice(au0);
      check(`${label}: the SDK reports the export failed`, r.results.length > 0 && !r.ok, short(r.results));
      check(`${label}: nothing reached the upstream`, upstream.length === 0, `${upstream.length} request(s)`);
      check(`${label}: audit lines are deny with gRPC status UNAUTHENTICATED (16)`,
        audit.length >= 1 && audit.every((l) => l.decision === 'deny' && l.grpc_status === 16), short(audit));
      check(`${label}: the token is in no audit line or log`,
        !readFileSync(auditFile, 'utf8').includes(bad) && !spangateLog().includes(bad));
    }
  }

  section('a rate-limited gRPC client backs off: RESOURCE_EXHAUSTED + RetryInfo, the Python SDK retries after the delay, then succeeds');
  {
    const limited = await token('edge-limited');
    await auditSettled();
    const up0 = upstreamRecords().length;
    const au0 = auditLines().length;
    // Two spans exported one after the other (SimpleSpanProcessor): the
    // policy allows one request per second, no burst.
    const names = [`limited-a-${randomBytes(3).toString('hex')}`, `limited-b-${randomBytes(3).toString('hex')}`];
    const r = await signalExport('python', 'traces', 'grpc', limited, names);
    await auditSettled();
    const upstream = upstreamRecords().slice(up0);
    const audit = auditLines().slice(au0);
    check('rate limited: the SDK reports both exports successful', r.ok && r.results.length === 2, short(r.results.length ? r.results : r.stderr));
    const limitedLines = audit.filter((l) => l.reason === 'rate_limited');
    check('rate limited: at least one call was refused as rate_limited with gRPC status RESOURCE_EXHAUSTED (8)',
      limitedLines.length >= 1 && limitedLines.every((l) => l.grpc_status === 8), short(audit));
    const arrived = upstream.flatMap((u) => u.resources.flatMap((x) => x.items || []));
    check('rate limited: the upstream got each span exactly once (retried, not duplicated, not lost)',
      names.every((n) => arrived.filter((a) => a === n).length === 1) && upstream.length === 2, short(arrived));
  }
}

async function main() {
  console.log(`spangate interop run; work dir ${WORK}`);
  console.log(`spangate: ${SPANGATE}; node ${process.version}; python: ${PYTHON}`);
  if (!existsSync(SPANGATE)) throw new Error(`spangate binary not found at ${SPANGATE} (cargo build --locked)`);

  section('peers: recording upstream (Python http.server) and node-oidc-provider');
  allowTokens([LIGHTSTEP_TOKEN]);
  recorder = start('recorder', PYTHON, [join(HERE, 'recorder.py'), recordFile, '--allow', allowFile]);
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
  // INTEROP_ONLY=signals: only the signals × protocols sections (development).
  if (process.env.INTEROP_ONLY === 'signals') {
    await grpcSignals();
    return;
  }

  section('allowed: the README walk-through batch (curl-equivalent POST, OTLP/JSON)');
  {
    // The body of the curl example in docs/getting-started.md, verbatim.
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

  await grpcSignals();

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

  await tokenRenewal();

  await credentialRotation(recPort);

  section('hygiene');
  {
    const auditText = readFileSync(auditFile, 'utf8');
    const logText = readFileSync(spangate.errLog, 'utf8');
    const secrets = [...lightstepValues, ADMIN_BOOTSTRAP_TOKEN, ...issuedTokens, ...Object.values(SECRETS)];
    const leakedAudit = secrets.filter((s) => auditText.includes(s)).length;
    const leakedLog = secrets.filter((s) => logText.includes(s)).length;
    const leakedCli = secrets.filter((s) => adminTranscript.some((t) => t.includes(s))).length;
    check(`no token or credential value in the audit file (${secrets.length} values checked: ${lightstepValues.length} Lightstep tokens, the admin bootstrap token, ${issuedTokens.length} IdP tokens, ${Object.keys(SECRETS).length} client secrets)`,
      leakedAudit === 0, `${leakedAudit} value(s) found`);
    check('no token or credential value in spangate\'s log (both processes)', leakedLog === 0, `${leakedLog} value(s) found`);
    check(`no token or credential value in any CLI output or admin API response (${adminTranscript.length} checked)`, leakedCli === 0, `${leakedCli} value(s) found`);
    const adminLines = adminAuditLines();
    check('every admin audit line is complete (action, actor, result, status) and has no value field',
      adminLines.length > 0 && adminLines.every((l) => l.action && l.actor && l.result && l.status && !('value' in l)),
      `${adminLines.length} lines`);
    check('spangate log has no panic', !/panicked/.test(logText), 'a panic is in the log');
    const lines = auditLines();
    check('every audit line is complete (request_id, status, reason, decision)', lines.length > 0
      && lines.every((l) => l.request_id && l.status && l.reason && l.decision), `${lines.length} lines`);
  }

  await upstreamSpool();
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
    if (spoolGate) {
      console.log('---- last 30 lines of the spool instance\'s stderr ----');
      console.log(tail(spoolGate.proc.errLog, 30));
    }
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

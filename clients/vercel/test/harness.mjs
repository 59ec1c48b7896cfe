// Test harness: the REAL spangate binary (built by cargo) between an OIDC
// issuer that mints Vercel-shaped RS256 tokens and a recording upstream, all
// on 127.0.0.1 ephemeral ports.
//
// The binary: $SPANGATE_BIN, else $CARGO_TARGET_DIR/debug/spangate, else
// <repo>/target/debug/spangate.

import { spawn } from 'node:child_process';
import { createHash, generateKeyPairSync, randomUUID, sign } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = dirname(fileURLToPath(import.meta.url));
const REPO = resolve(HERE, '..', '..', '..');

export function spangateBinary() {
  const candidates = [
    process.env.SPANGATE_BIN,
    process.env.CARGO_TARGET_DIR && join(process.env.CARGO_TARGET_DIR, 'debug', 'spangate'),
    join(REPO, 'target', 'debug', 'spangate'),
  ].filter(Boolean);
  const found = candidates.find((p) => existsSync(p));
  if (!found) {
    throw new Error(`spangate binary not found (tried ${candidates.join(', ')}); run \`cargo build --bin spangate\` or set SPANGATE_BIN`);
  }
  return found;
}

/** Poll `fn` until it returns a truthy value (bounded), never a bare sleep. */
export async function until(what, fn, { timeoutMs = 20_000, intervalMs = 50 } = {}) {
  const deadline = Date.now() + timeoutMs;
  let lastError;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      lastError = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${lastError ? `: ${lastError.message}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

const b64url = (buf) => Buffer.from(buf).toString('base64url');

function listen(server) {
  return new Promise((resolveListen) => server.listen(0, '127.0.0.1', () => resolveListen(server.address().port)));
}

/**
 * An OIDC issuer at http://127.0.0.1:<port>/<team> serving discovery and a
 * JWKS, minting RS256 tokens shaped like Vercel's OIDC federation tokens.
 * `setAvailable(false)` answers 503 to everything (an IdP outage).
 */
export async function startIdp(team, { available = true } = {}) {
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const kid = randomUUID();
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
  const state = { available, requests: 0, refused: 0 };
  const server = http.createServer((req, res) => {
    state.requests += 1;
    if (!state.available) {
      state.refused += 1;
      res.writeHead(503, { 'content-type': 'text/plain' }).end('down');
      return;
    }
    const base = `http://127.0.0.1:${server.address().port}/${team}`;
    if (req.url === `/${team}/.well-known/openid-configuration`) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
        issuer: base,
        jwks_uri: `${base}/.well-known/jwks`,
        id_token_signing_alg_values_supported: ['RS256'],
        subject_types_supported: ['public'],
        response_types_supported: ['id_token'],
        scopes_supported: ['openid'],
      }));
    } else if (req.url === `/${team}/.well-known/jwks`) {
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ keys: [jwk] }));
    } else {
      res.writeHead(404).end();
    }
  });
  const port = await listen(server);
  const issuer = `http://127.0.0.1:${port}/${team}`;
  const audience = `https://vercel.com/${team}`;
  return {
    issuer,
    audience,
    state,
    setAvailable(up) {
      state.available = up;
    },
    /** A Vercel-shaped token; `claims` override the defaults. */
    mint({ project = 'checkout', projectId = 'prj_checkout', environment = 'production', ownerId = `team_${team}`, ttlSeconds = 600, ...extra } = {}) {
      const now = Math.floor(Date.now() / 1000);
      const sub = `owner:${team}:project:${project}:environment:${environment}`;
      const payload = {
        iss: issuer,
        aud: audience,
        sub,
        scope: sub,
        owner: team,
        owner_id: ownerId,
        project,
        project_id: projectId,
        environment,
        user_id: 'usr_test',
        iat: now,
        nbf: now,
        exp: now + ttlSeconds,
        ...extra,
      };
      const head = b64url(JSON.stringify({ alg: 'RS256', typ: 'JWT', kid }));
      const body = b64url(JSON.stringify(payload));
      const sig = sign('sha256', Buffer.from(`${head}.${body}`), privateKey);
      return `${head}.${body}.${b64url(sig)}`;
    },
    close: () => new Promise((r) => server.close(r)),
  };
}

/** An upstream that records every request and answers 200 (empty OTLP response). */
export async function startRecorder() {
  const received = [];
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      received.push({ path: req.url, headers: req.headers, body: Buffer.concat(chunks) });
      const ct = req.headers['content-type'] || 'application/x-protobuf';
      res.writeHead(200, { 'content-type': ct }).end(ct.includes('json') ? '{}' : '');
    });
  });
  const port = await listen(server);
  return { url: `http://127.0.0.1:${port}/traces/otlp/v0.9`, received, close: () => new Promise((r) => server.close(r)) };
}

export const ADMIN_TOKEN = 'vercel-exporter-test-admin-token-1f2e';
export const LIGHTSTEP_TOKEN = 'ls-vercel-exporter-test-9c8b';

const POLICY = `
endpoints:
  traces: { path: /v1/traces, upstream: lightstep }
roles:
  edge:
    publish:
      endpoints: [traces]
      services: ["\${claims.project}", "\${claims.project}-*"]
  edge-limited:
    publish:
      endpoints: [traces]
      services: ["\${claims.project}"]
      rate: { requests_per_second: 1, burst: 1 }
bindings:
  - name: limited
    role: edge-limited
    subjects: [{ provider: vercel, claims: { owner_id: team_acme, project_id: prj_limited } }]
    credential: lightstep-prod
    stamp: { vercel.project_id: "\${claims.project_id}" }
  - name: acme-edge
    role: edge
    subjects:
      - { provider: vercel, claims: { owner_id: team_acme, environment: [production, preview] } }
      - { provider: vercel-beta, claims: { owner_id: team_beta } }
    credential: lightstep-prod
    stamp:
      vercel.project_id: "\${claims.project_id}"
      deployment.environment.name: "\${claims.environment}"
`;

/**
 * Start `spangate serve` with two Vercel-preset providers (team `acme`, and
 * team `beta` whose IdP the caller may start unavailable), the recorder as
 * upstream and the policy above.
 */
export async function startSpangate({ idp, idpBeta, recorder }) {
  const work = mkdtempSync(join(tmpdir(), 'spangate-vercel-exporter-'));
  mkdirSync(join(work, 'policies'));
  writeFileSync(join(work, 'policies', 'vercel.yaml'), POLICY);
  const provider = (p) => `
    issuer: ${p.issuer}
    audiences: [${p.audience}]
    preset: vercel
    # What the preset does for https://oidc.vercel.com/<team>: keys from
    # <issuer>/.well-known/jwks (Vercel's discovery document is minimal).
    jwks_uri: ${p.issuer}/.well-known/jwks
    retry_initial: 100ms
    retry_max: 500ms
    jwks_refresh_min: 1s
    jwks_refresh_max: 2s`;
  const cfg = `
server:
  listen: 127.0.0.1:0
  request_timeout: 30s
admin:
  listen: 127.0.0.1:0
  bootstrap_token_sha256: ${createHash('sha256').update(ADMIN_TOKEN).digest('hex')}
providers:
  vercel:${provider(idp)}
  vercel-beta:${provider(idpBeta)}
upstreams:
  lightstep: { url: ${recorder.url}, credential_header: lightstep-access-token, timeout: 5s }
secrets:
  bootstrap: { lightstep-prod: { env: LIGHTSTEP_ACCESS_TOKEN } }
policies: ${join(work, 'policies')}
audit:
  file: ${join(work, 'audit.log')}
`;
  writeFileSync(join(work, 'spangate.yaml'), cfg);
  let stderr = '';
  const child = spawn(spangateBinary(), ['--log-format', 'json', 'serve', '--config', join(work, 'spangate.yaml')], {
    env: { ...process.env, LIGHTSTEP_ACCESS_TOKEN: LIGHTSTEP_TOKEN, SPANGATE_LOG: 'info' },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let exited = null;
  child.on('exit', (code, signal) => {
    exited = { code, signal };
  });
  child.stderr.on('data', (d) => {
    stderr += d.toString();
  });
  const line = await until('spangate to log its listening addresses', () => {
    if (exited) throw new Error(`spangate exited ${JSON.stringify(exited)}: ${stderr.slice(-2000)}`);
    return stderr.split('\n').find((l) => l.includes('spangate listening'));
  });
  const fields = JSON.parse(line).fields;
  const audit = () => {
    const f = join(work, 'audit.log');
    if (!existsSync(f)) return [];
    return readFileSync(f, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
  };
  return {
    url: `http://${fields.otlp}/v1/traces`,
    admin: `http://${fields.admin}`,
    audit,
    // Audit lines are written by a background writer a few milliseconds
    // after the response: wait for the line instead of reading once.
    findAudit: (pred) => until('the audit line', () => audit().find(pred)),
    log: () => stderr,
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        await until('spangate to exit', () => exited !== null, { timeoutMs: 15_000 });
      }
      rmSync(work, { recursive: true, force: true });
    },
  };
}

/** Everything the Node tests need, started together. */
export async function startStack() {
  const idp = await startIdp('acme');
  const idpBeta = await startIdp('beta', { available: false });
  const recorder = await startRecorder();
  const spangate = await startSpangate({ idp, idpBeta, recorder });
  return {
    idp,
    idpBeta,
    recorder,
    spangate,
    async stop() {
      await spangate.stop();
      await Promise.all([idp.close(), idpBeta.close(), recorder.close()]);
    },
  };
}

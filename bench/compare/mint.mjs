// Mint an ES256 key, its JWKS and N signed tokens for bench/compare.
// Node's own crypto only (no packages): usage `node mint.mjs DIR N`.
import { generateKeyPairSync, createSign } from 'node:crypto';
import { writeFileSync } from 'node:fs';

const [dir, nArg] = process.argv.slice(2);
const n = Number(nArg || 1);
const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
const jwk = publicKey.export({ format: 'jwk' });
const kid = 'bench-1';
writeFileSync(`${dir}/jwks.json`, JSON.stringify({ keys: [{ ...jwk, kid, alg: 'ES256', use: 'sig' }] }));

const b64 = (v) => Buffer.from(typeof v === 'string' ? v : JSON.stringify(v)).toString('base64url');
const now = Math.floor(Date.now() / 1000);
const tokens = [];
for (let i = 0; i < n; i++) {
  const header = b64({ alg: 'ES256', typ: 'JWT', kid });
  const payload = b64({
    iss: 'https://bench.spangate.test', aud: 'spangate-bench', sub: `bench-${i}`,
    iat: now, nbf: now - 5, exp: now + 6 * 3600, project: 'bench', environment: 'production',
  });
  const signer = createSign('SHA256');
  signer.update(`${header}.${payload}`);
  // JOSE wants the raw r||s signature, not DER.
  const sig = signer.sign({ key: privateKey, dsaEncoding: 'ieee-p1363' }).toString('base64url');
  tokens.push(`${header}.${payload}.${sig}`);
}
writeFileSync(`${dir}/tokens.txt`, tokens.join('\n') + '\n');

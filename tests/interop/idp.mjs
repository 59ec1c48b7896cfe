// An independent OIDC provider for the interop run: panva's certified
// node-oidc-provider (npm `oidc-provider`), configured the way an operator
// would configure it for machine clients:
//
// - client_credentials grant for confidential clients (client_secret_basic);
// - RFC 8707 resource indicators, so access tokens are RFC 9068 JWTs
//   (`typ: at+jwt`, RS256) whose `aud` is the requested resource;
// - extra claims per client via `extraTokenClaims` (owner_id, project,
//   project_id, environment), the shape Vercel's OIDC federation uses;
// - signing keys read from a JWKS file at start-up. The first key is the
//   signing key; the others are published for verification only. Rotating
//   keys = restarting this process with a new file (same port, same issuer),
//   which is what redeploying a real IdP with new keys looks like.
//
// Usage: node idp.mjs CONFIG.json
//   { "port": 0, "jwks_file": "...", "resources": ["https://..."],
//     "clients": [{ "client_id": "...", "client_secret": "...", "claims": {...},
//                   "access_token_ttl": 600 }] }   (seconds; optional, default 600)
// Prints one line `LISTENING <issuer>` on stdout once it accepts requests.
// Binds 127.0.0.1 only.

import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';

import Provider, { errors } from 'oidc-provider';

const configPath = process.argv[2];
if (!configPath) {
  console.error('usage: node idp.mjs CONFIG.json');
  process.exit(2);
}
const cfg = JSON.parse(readFileSync(configPath, 'utf8'));
const jwks = JSON.parse(readFileSync(cfg.jwks_file, 'utf8'));
const claimsByClient = new Map(cfg.clients.map((c) => [c.client_id, c.claims || {}]));
const ttlByClient = new Map(cfg.clients.map((c) => [c.client_id, c.access_token_ttl || 10 * 60]));
const resources = new Set(cfg.resources);

const server = createServer();
await new Promise((resolve, reject) => {
  server.once('error', reject);
  server.listen(cfg.port || 0, '127.0.0.1', resolve);
});
const { port } = server.address();
const issuer = `http://127.0.0.1:${port}`;

const provider = new Provider(issuer, {
  clients: cfg.clients.map((c) => ({
    client_id: c.client_id,
    client_secret: c.client_secret,
    grant_types: ['client_credentials'],
    response_types: [],
    redirect_uris: [],
    token_endpoint_auth_method: 'client_secret_basic',
  })),
  jwks,
  cookies: { keys: [cfg.cookie_key || 'interop-cookie-key-not-a-secret'] },
  features: {
    devInteractions: { enabled: false },
    clientCredentials: { enabled: true },
    resourceIndicators: {
      enabled: true,
      defaultResource: async (_ctx, _client, oneOf) => oneOf,
      useGrantedResource: async () => true,
      getResourceServerInfo: async (_ctx, resourceIndicator, client) => {
        if (!resources.has(resourceIndicator)) {
          throw new errors.InvalidTarget();
        }
        return {
          scope: 'traces:write',
          audience: resourceIndicator,
          // Per client: the token-renewal run uses a client whose tokens
          // expire within seconds.
          accessTokenTTL: ttlByClient.get(client?.clientId) ?? 10 * 60,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'RS256' } },
        };
      },
    },
  },
  // Claims an operator attaches to each machine client (copied into every
  // access token the client gets).
  extraTokenClaims: async (_ctx, token) => {
    const extra = claimsByClient.get(token.clientId);
    return extra && Object.keys(extra).length > 0 ? { ...extra } : undefined;
  },
});
// Plain http on loopback: no proxy in front.
provider.proxy = false;
provider.on('server_error', (_ctx, err) => console.error('idp server_error:', err));
provider.on('grant.error', (_ctx, err) => console.error('idp grant.error:', err.message));

server.on('request', provider.callback());
const stop = () => {
  server.close();
  server.closeAllConnections();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
console.log(`LISTENING ${issuer}`);

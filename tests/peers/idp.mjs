// An upstream OpenID Provider (oidc-provider, OpenID-certified) for the login tests.
// Usage: node idp.mjs CONFIG.json
// CONFIG: {"clients": [{"client_id", "client_secret", "redirect_uris": [...]}],
//          "accounts": {"<login>": {<claims released for that account>}}}
// Listens on a free loopback port and prints {"issuer": "http://127.0.0.1:<port>"} as one JSON line.
//
// Interaction (instead of devInteractions, so a test logs in with two plain HTTP requests):
//   GET  /interaction/<uid>        a page with the two forms below
//   POST /interaction/<uid>/login  login=<account>: logs in and grants every requested scope
//   POST /interaction/<uid>/abort  error_description=<text>: ends with error=access_denied
// Test controls:
//   POST /__test/rotate  a new ES256 signing key is put first (the old ones stay published)
//   GET  /__test/stats   how many requests reached /auth, /token, /me (userinfo) and /jwks
import Provider from 'oidc-provider';
import * as http from 'node:http';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const cookieKey = randomBytes(32).toString('hex');
const stats = { auth: 0, token: 0, me: 0, jwks: 0 };
let keys = [newKey()];
let handler = null;

function newKey() {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomBytes(8).toString('hex'), alg: 'ES256', use: 'sig' };
}

function build(issuer, port) {
  const provider = new Provider(issuer, {
    clients: config.clients.map((c) => ({
      client_id: c.client_id, client_secret: c.client_secret, redirect_uris: c.redirect_uris,
      grant_types: ['authorization_code'], response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic', id_token_signed_response_alg: 'ES256',
    })),
    jwks: { keys },
    cookies: { keys: [cookieKey], names: { session: `_s${port}`, interaction: `_i${port}`, resume: `_r${port}` } },
    scopes: ['openid', 'profile', 'email', 'eduperson_scoped_affiliation', 'ga4gh_passport_v1'],
    claims: {
      openid: ['sub'], profile: ['name'], email: ['email', 'email_verified'],
      eduperson_scoped_affiliation: ['eduperson_scoped_affiliation', 'eduPersonScopedAffiliation'],
      ga4gh_passport_v1: ['ga4gh_passport_v1'],
    },
    adapter: SharedAdapter,
    features: { devInteractions: { enabled: false } },
    interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
    pkce: { required: () => true },
    findAccount: async (ctx, id) => ({
      accountId: id,
      claims: async () => ({ sub: id, ...(config.accounts[id] || {}) }),
    }),
  });
  provider.on('grant.error', (ctx, error) => console.error('grant.error', error.message, error.error_detail));
  return provider;
}

// Storage shared by every Provider instance of this process, so a rotation (a new instance)
// keeps the codes, sessions and grants of the old one. Expiry is checked by oidc-provider itself.
const store = new Map();
class SharedAdapter {
  constructor(name) { this.name = name; }
  key(id) { return `${this.name}:${id}`; }
  async upsert(id, payload) {
    store.set(this.key(id), payload);
    if (this.name === 'Session') store.set(`sessionUid:${payload.uid}`, id);
    if (payload.grantId) {
      const members = `grant:${payload.grantId}`;
      store.set(members, [...(store.get(members) || []), this.key(id)]);
    }
  }
  async find(id) { return store.get(this.key(id)); }
  async findByUid(uid) { const id = store.get(`sessionUid:${uid}`); return id ? this.find(id) : undefined; }
  async findByUserCode() { return undefined; }
  async consume(id) { const payload = store.get(this.key(id)); if (payload) payload.consumed = Math.floor(Date.now() / 1000); }
  async destroy(id) { store.delete(this.key(id)); }
  async revokeByGrantId(grantId) {
    for (const key of store.get(`grant:${grantId}`) || []) store.delete(key);
    store.delete(`grant:${grantId}`);
  }
}

function readForm(req) {
  return new Promise((resolve, reject) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (chunk) => { body += chunk; if (body.length > 65536) req.destroy(); });
    req.on('end', () => resolve(new URLSearchParams(body)));
    req.on('error', reject);
  });
}

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function interaction(provider, req, res, uid, action) {
  if (req.method === 'GET' && !action) {
    await provider.interactionDetails(req, res);
    res.setHeader('Content-Type', 'text/html; charset=utf-8');
    res.end(`<!doctype html><title>Sign in</title>
<form method="post" action="/interaction/${escape(uid)}/login"><input name="login"><button>Sign in</button></form>
<form method="post" action="/interaction/${escape(uid)}/abort"><button>Cancel</button></form>`);
    return;
  }
  const form = await readForm(req);
  const details = await provider.interactionDetails(req, res);
  if (action === 'abort') {
    await provider.interactionFinished(req, res, {
      error: 'access_denied', error_description: form.get('error_description') || 'End-User aborted interaction',
    }, { mergeWithLastSubmission: false });
    return;
  }
  const accountId = details.session?.accountId && details.prompt.name !== 'login'
    ? details.session.accountId : form.get('login');
  const grant = details.grantId ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId, clientId: details.params.client_id });
  grant.addOIDCScope(details.params.scope);
  if (details.prompt.details.missingOIDCClaims) grant.addOIDCClaims(details.prompt.details.missingOIDCClaims);
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { login: { accountId }, consent: { grantId } },
    { mergeWithLastSubmission: false });
}

const server = http.createServer(async (req, res) => {
  try {
    const url = new URL(req.url, 'http://idp');
    const match = url.pathname.match(/^\/interaction\/([A-Za-z0-9_-]+)(?:\/(login|abort))?$/);
    if (match) {
      await interaction(handler.provider, req, res, match[1], match[2]);
      return;
    }
    if (url.pathname === '/__test/rotate' && req.method === 'POST') {
      keys = [newKey(), ...keys];
      handler = wrap(build(handler.provider.issuer, server.address().port));
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ kid: keys[0].kid }));
      return;
    }
    if (url.pathname === '/__test/stats') {
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify(stats));
      return;
    }
    const counted = url.pathname.slice(1);
    if (counted in stats) stats[counted] += 1;
    handler.callback(req, res);
  } catch (error) {
    res.statusCode = 500;
    res.end(String(error && error.message));
  }
});

function wrap(provider) {
  return { provider, callback: provider.callback() };
}

server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  handler = wrap(build(issuer, port));
  console.log(JSON.stringify({ issuer }));
});

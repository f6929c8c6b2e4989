// A strict relying party (openid-client, OpenID-certified) against the broker.
// Usage: node rp.mjs ISSUER CLIENT_ID CLIENT_SECRET REDIRECT_URI
// Prints {"authorization_url": ...} as one JSON line, reads the callback URL from stdin,
// then prints {"ok": true, "claims": ..., "userinfo": ...} or {"ok": false, "error": ...}.
import * as client from 'openid-client';
import * as readline from 'node:readline';

const [issuer, clientId, clientSecret, redirectUri] = process.argv.slice(2);
const config = await client.discovery(new URL(issuer), clientId, undefined,
  client.ClientSecretBasic(clientSecret), { execute: [client.allowInsecureRequests] });
const verifier = client.randomPKCECodeVerifier();
const challenge = await client.calculatePKCECodeChallenge(verifier);
const state = client.randomState();
const nonce = client.randomNonce();
const url = client.buildAuthorizationUrl(config, {
  redirect_uri: redirectUri, scope: 'openid ga4gh_passport_v1', code_challenge: challenge,
  code_challenge_method: 'S256', state, nonce,
});
console.log(JSON.stringify({ authorization_url: url.href }));
const rl = readline.createInterface({ input: process.stdin });
for await (const line of rl) {
  try {
    const tokens = await client.authorizationCodeGrant(config, new URL(line.trim()),
      { pkceCodeVerifier: verifier, expectedState: state, expectedNonce: nonce });
    const claims = tokens.claims();
    const userinfo = await client.fetchUserInfo(config, tokens.access_token, claims.sub);
    console.log(JSON.stringify({ ok: true, claims, userinfo }));
  } catch (error) {
    console.log(JSON.stringify({ ok: false, error: String(error && (error.code || error.message)) }));
  }
  break;
}
rl.close();

// The official TypeScript SDK client's OAuth flow against Warden's built-in authorization
// server: 401 → protected resource metadata → AS metadata → dynamic registration → PKCE
// authorization (this script plays the browser) → token → tools/call through Warden.
// Usage: node ts-oauth.mjs http://127.0.0.1:PORT/mcp USER PASSWORD [TOOL]
// TOOL: everything__echo (the reference server's, the default) or shout (plain-server.mjs's).
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import assert from 'node:assert/strict';
import { approve } from './browser.mjs';

const [url, user, password, tool = 'everything__echo'] = process.argv.slice(2);
const redirectUrl = 'http://127.0.0.1:9/oauth/callback';
let code, stateSent;
const store = {};
const provider = {
  get redirectUrl() { return redirectUrl; },
  get clientMetadata() {
    return { client_name: 'warden-interop-ts', redirect_uris: [redirectUrl], grant_types: ['authorization_code', 'refresh_token'],
             response_types: ['code'], token_endpoint_auth_method: 'none' };
  },
  state() { stateSent = crypto.randomUUID(); return stateSent; },
  clientInformation() { return store.client; },
  saveClientInformation(c) { store.client = c; },
  tokens() { return store.tokens; },
  saveTokens(t) { store.tokens = t; },
  saveCodeVerifier(v) { store.verifier = v; },
  codeVerifier() { return store.verifier; },
  async redirectToAuthorization(authUrl) {
    assert.equal(authUrl.searchParams.get('code_challenge_method'), 'S256');
    assert.equal(authUrl.searchParams.get('resource'), url);
    const q = await approve(authUrl, user, password);
    assert.equal(q.get('state'), stateSent);
    code = q.get('code');
  },
};

let passed = 0;
const client = new Client({ name: 'warden-interop-ts-oauth', version: '1.0.0' });
try {
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { authProvider: provider }));
  throw new Error('expected 401 before authorization');
} catch (e) {
  if (!(e instanceof UnauthorizedError)) throw e;
}
assert.ok(code, 'no authorization code');
console.log('ok   401 → metadata discovery → registration → consent → code'); passed++;
const transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider });
await transport.finishAuth(code);
assert.ok(store.tokens?.access_token && store.tokens?.refresh_token);
console.log('ok   code exchanged for tokens (PKCE)'); passed++;
await client.connect(transport);
const args = tool === 'shout' ? { text: 'authorized' } : { message: 'authorized' };
const r = await client.callTool({ name: tool, arguments: args });
assert.match(r.content[0].text, /authorized/i);
console.log('ok   tools/call with the access token'); passed++;
await client.close();
console.log(`ts-oauth: ${passed} passed, 0 failed`);

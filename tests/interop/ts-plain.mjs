// Interop: the official TypeScript SDK client, through Warden, in front of a plain upstream that
// declares no instructions, no prompts and no resources (plain-server.mjs). The SDK validates
// every result against the schema, so anything Warden answers that the schema does not allow
// (a `null` where a field must be absent) fails here.
// Usage: node ts-plain.mjs http://127.0.0.1:PORT/mcp
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import assert from 'node:assert/strict';

const url = process.argv[2];
let passed = 0, failed = 0;
async function check(name, fn) {
  try { await fn(); passed++; console.log(`ok   ${name}`); }
  catch (e) { failed++; console.log(`FAIL ${name}: ${e?.stack || e}`); }
}

const client = new Client({ name: 'warden-interop-plain', version: '1.0.0' }, { capabilities: {} });
await check('initialize is accepted by the SDK (no instructions: the field is absent)', async () => {
  await client.connect(new StreamableHTTPClientTransport(new URL(url)));
  assert.equal(client.getServerVersion().name, 'warden');
  assert.equal(client.getInstructions(), undefined);
  const caps = client.getServerCapabilities();
  assert.ok(caps.tools, JSON.stringify(caps));
  assert.equal(caps.prompts, undefined, JSON.stringify(caps));
  assert.equal(caps.resources, undefined, JSON.stringify(caps));
});
if (failed === 0) {
  await check('tools/list and tools/call', async () => {
    const tools = (await client.listTools()).tools.map((t) => t.name);
    assert.deepEqual(tools, ['shout']);
    const r = await client.callTool({ name: 'shout', arguments: { text: 'hi' } });
    assert.equal(r.content[0].text, 'HI');
  });
  await check('a tool that does not exist is a clean error', async () => {
    await assert.rejects(client.callTool({ name: 'nope', arguments: {} }), /Unknown tool/);
  });
  await check('ping', async () => { await client.ping(); });
  await client.close();
}
console.log(`ts-plain: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);

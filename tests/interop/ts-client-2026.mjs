// Interop: the official TypeScript SDK v2 client (@modelcontextprotocol/client) pinned to MCP
// 2026-07-28 (stateless), through Warden, against the reference server (stdio upstream
// "everything") and a Python SDK server (HTTP upstream "py") — 2025 upstreams both, so each
// multi round-trip is Warden's translation.
// Usage: node ts-client-2026.mjs http://127.0.0.1:PORT/mcp
import { Client, StreamableHTTPClientTransport } from '@modelcontextprotocol/client';
import assert from 'node:assert/strict';
import { checker, text } from './interop-common.mjs';

const url = process.argv[2];
const { check, tally } = checker();

const approvals = [];
const client = new Client({ name: 'warden-interop-ts26', version: '1.0.0' }, {
  capabilities: { sampling: {}, elicitation: {}, roots: {} },
  versionNegotiation: { mode: { pin: '2026-07-28' } },
});
client.setRequestHandler('sampling/createMessage', async (req) => ({
  role: 'assistant', model: 'interop-model',
  content: { type: 'text', text: `ts26-sampled:${req.params.messages.length}` }
}));
client.setRequestHandler('elicitation/create', async (req) => {
  if (req.params.message.startsWith('Approval needed')) {
    approvals.push(req.params.message);
    return { action: 'accept', content: { approve: true } };
  }
  // The reference server's long form: declined.
  if (req.params.message.startsWith('Please provide inputs')) return { action: 'decline' };
  return { action: 'accept', content: { ok: true } };
});
client.setRequestHandler('roots/list', async () => ({ roots: [{ uri: 'file:///tmp/ts26-root', name: 'ts26-root' }] }));

await client.connect(new StreamableHTTPClientTransport(new URL(url)));

await check('2026-07-28 negotiated with server/discover', async () => {
  const caps = client.getServerCapabilities();
  assert.ok(caps.tools && caps.resources && caps.prompts, JSON.stringify(caps));
});
await check('tools/list across upstreams', async () => {
  const names = (await client.listTools()).tools.map((t) => t.name);
  assert.ok(names.includes('everything__echo') && names.includes('py__add'), names.join(','));
});
await check('tools/call on both upstreams', async () => {
  assert.match(text(await client.callTool({ name: 'everything__echo', arguments: { message: 'hi ts26' } })), /hi ts26/);
  assert.equal(text(await client.callTool({ name: 'py__add', arguments: { a: 20, b: 22 } })), '42');
});
await check('sampling, elicitation and roots as input_required', async () => {
  let r = await client.callTool({ name: 'py__ask_llm', arguments: { question: 'why' } });
  assert.match(text(r), /ts26-sampled:1/);
  r = await client.callTool({ name: 'py__confirm', arguments: {} });
  assert.match(text(r), /accept/);
  // The 2025 reference server's own sampling and elicitation (Warden's translation).
  r = await client.callTool({ name: 'everything__trigger-sampling-request', arguments: { prompt: 'x', maxTokens: 5 } });
  assert.match(JSON.stringify(r.content), /ts26-sampled:1/);
  r = await client.callTool({ name: 'everything__trigger-elicitation-request', arguments: {} });
  assert.match(JSON.stringify(r.content), /decline/i);
  // Roots: the reference server asks once per upstream session and keeps the answer, and
  // stateless callers share one pooled session per principal (here the anonymous local one,
  // shared with the Python 2026 client run before): the roots listed are whoever answered first.
  r = await client.callTool({ name: 'everything__get-roots-list', arguments: {} });
  assert.match(JSON.stringify(r.content), /Current MCP Roots \(1 total\)/);
});
await check('resources and prompts', async () => {
  const uris = (await client.listResources()).resources.map((r) => r.uri);
  assert.ok(uris.includes('warden://py/config://app'), uris.join(','));
  const r = await client.readResource({ uri: 'warden://py/greeting://grace' });
  assert.match(r.contents[0].text, /Hello, grace/);
  const p = await client.getPrompt({ name: 'py__review', arguments: { code: 'y = 2' } });
  assert.match(JSON.stringify(p.messages), /y = 2/);
});
await check('approval as an input_required round trip', async () => {
  const r = await client.callTool({ name: 'everything__get-sum', arguments: { a: 2, b: 3 } });
  assert.match(text(r), /5/);
  assert.equal(approvals.length, 1);
});

// A resource update through subscriptions/listen: from the 2026 Python server (its own listen
// stream, behind Warden's) and from the 2025 reference server (Warden's subscription in the
// pooled session). Updates dispatch to the notification handler.
const updates = [];
client.setNotificationHandler('notifications/resources/updated', (n) => { updates.push(n.params.uri); });
async function updated(uri, trigger, stop) {
  const sub = await client.listen({ resourceSubscriptions: [uri] });
  try {
    assert.deepEqual(sub.honoredFilter.resourceSubscriptions, [uri], JSON.stringify(sub.honoredFilter));
    for (let i = 0; i < 30 && !updates.includes(uri); i++) {
      if (i % 10 === 0) await trigger();
      await new Promise((r) => setTimeout(r, 300));
    }
    assert.ok(updates.includes(uri), `no update of ${uri}: ${updates.join(',')}`);
  } finally {
    await sub.close();
    if (stop) await stop();
  }
}
await check('subscription: an update from the 2026 upstream through subscriptions/listen', async () => {
  await updated('warden://py/config://app', () => client.callTool({ name: 'py__touch_config', arguments: {} }));
});
await check("subscription: the 2025 reference server's update through subscriptions/listen", async () => {
  const uri = (await client.listResources()).resources.map((r) => r.uri).find((u) => u.startsWith('warden://everything/'));
  const toggle = () => client.callTool({ name: 'everything__toggle-subscriber-updates', arguments: {} });
  let on = false;
  await updated(uri, async () => { if (!on) { on = true; await toggle(); } }, async () => { if (on) await toggle(); });
});

await client.close();
console.log(`ts-client-2026: ${tally.passed} passed, ${tally.failed} failed`);
process.exit(tally.failed ? 1 : 0);

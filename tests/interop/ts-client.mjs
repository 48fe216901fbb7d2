// Interop: the official TypeScript SDK client, through Warden, against
//  - "everything": the official reference server @modelcontextprotocol/server-everything (stdio upstream)
//  - "py": a Python SDK FastMCP server over Streamable HTTP (HTTP upstream)
// Usage: node ts-client.mjs http://127.0.0.1:PORT/mcp
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import {
  CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema,
  LoggingMessageNotificationSchema, ResourceUpdatedNotificationSchema
} from '@modelcontextprotocol/sdk/types.js';
import assert from 'node:assert/strict';
import { checker, text } from './interop-common.mjs';

const url = process.argv[2];
const { check, tally } = checker();

const client = new Client({ name: 'warden-interop-ts', version: '1.0.0' },
  { capabilities: { sampling: {}, elicitation: {}, roots: { listChanged: true } } });
const logs = [];
client.setNotificationHandler(LoggingMessageNotificationSchema, (n) => { logs.push(n.params); });
const updated = [];
client.setNotificationHandler(ResourceUpdatedNotificationSchema, (n) => { updated.push(n.params.uri); });
client.setRequestHandler(CreateMessageRequestSchema, async (req) => ({
  role: 'assistant', model: 'interop-model',
  content: { type: 'text', text: `sampled:${req.params.messages.length}` }
}));
client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'decline' }));
client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [{ uri: 'file:///tmp/interop-root', name: 'interop' }] }));

const transport = new StreamableHTTPClientTransport(new URL(url));
await client.connect(transport);

await check('server info is Warden, capabilities merged', async () => {
  assert.equal(client.getServerVersion().name, 'warden');
  const caps = client.getServerCapabilities();
  assert.ok(caps.tools && caps.resources && caps.prompts && caps.logging);
});

let tools;
await check('tools/list federates both upstreams', async () => {
  tools = (await client.listTools()).tools.map((t) => t.name);
  assert.ok(tools.includes('everything__echo'), tools.join(','));
  assert.ok(tools.includes('py__add'), tools.join(','));
});

await check('tools/call: reference server echo', async () => {
  const r = await client.callTool({ name: 'everything__echo', arguments: { message: 'hello warden' } });
  assert.match(text(r), /hello warden/);
});

await check('tools/call: FastMCP add', async () => {
  const r = await client.callTool({ name: 'py__add', arguments: { a: 2, b: 40 } });
  assert.match(text(r), /42/);
});

await check('structured content of the reference server passes Warden output validation', async () => {
  // The SDK client checks structuredContent against the tool's outputSchema too.
  const r = await client.callTool({ name: 'everything__get-structured-content', arguments: { location: 'Chicago' } });
  assert.notEqual(r.isError, true, JSON.stringify(r));
  assert.deepEqual(r.structuredContent, { temperature: 36, conditions: 'Light rain / drizzle', humidity: 82 });
});

await check('progress notifications relayed (reference server)', async () => {
  const seen = [];
  const r = await client.callTool({ name: 'everything__trigger-long-running-operation', arguments: { duration: 0.3, steps: 3 } },
    undefined, { onprogress: (p) => seen.push(p.progress) });
  assert.match(text(r), /Long running operation completed/);
  assert.deepEqual(seen, [1, 2, 3]);
});

await check('progress notifications relayed (FastMCP over HTTP)', async () => {
  const seen = [];
  const r = await client.callTool({ name: 'py__long_task', arguments: { steps: 3 } }, undefined,
    { onprogress: (p) => seen.push(p.progress) });
  assert.match(text(r), /done 3/);
  assert.equal(seen.length, 3);
});

await check('sampling relayed to this client (both upstreams)', async () => {
  const r = await client.callTool({ name: 'everything__trigger-sampling-request', arguments: { prompt: 'hi', maxTokens: 10 } });
  assert.match(JSON.stringify(r), /sampled:1/);
  const p = await client.callTool({ name: 'py__ask_llm', arguments: { question: 'why?' } });
  assert.match(text(p), /sampled:1/);
});

await check('a 2026 stdio upstream: its sampling and elicitation (input_required) asked of this 2025 client', async () => {
  const p = await client.callTool({ name: 'pys__ask_llm', arguments: { question: 'why?' } });
  assert.match(text(p), /sampled:1/, JSON.stringify(p));
  const e = await client.callTool({ name: 'pys__confirm', arguments: {} });
  assert.match(text(e), /decline/, JSON.stringify(e));
});

await check('a TypeScript SDK v2 (2026) upstream: a call, and its elicitation asked of this 2025 client (declined)', async () => {
  const r = await client.callTool({ name: 'ts26__add', arguments: { a: 40, b: 2 } });
  assert.match(text(r), /42/);
  const e = await client.callTool({ name: 'ts26__confirm', arguments: {} });
  assert.match(text(e), /action=decline/, JSON.stringify(e));
});

await check('elicitation relayed (both upstreams)', async () => {
  const r = await client.callTool({ name: 'everything__trigger-elicitation-request', arguments: {} });
  assert.match(JSON.stringify(r), /decline/i);
  const p = await client.callTool({ name: 'py__confirm', arguments: {} });
  assert.match(text(p), /decline/);
});

await check('approval asked of this client (elicitation), declined: call refused', async () => {
  await assert.rejects(
    client.callTool({ name: 'everything__get-sum', arguments: { a: 1, b: 2 } }),
    (e) => e.code === -32030 && /declined/.test(e.message),
  );
});

await check('roots requested from this client', async () => {
  const r = await client.callTool({ name: 'everything__get-roots-list', arguments: {} });
  assert.match(JSON.stringify(r), /interop-root/);
});

await check('logging: setLevel broadcast and log notifications relayed', async () => {
  await client.setLoggingLevel('debug');
  const before = logs.length;
  await client.callTool({ name: 'py__log_steps', arguments: {} });
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(logs.length - before >= 2, `logs: ${JSON.stringify(logs.slice(before))}`);
});

await check('resources: list, read, templates through namespaced URIs', async () => {
  const res = (await client.listResources()).resources;
  const pyRes = res.find((r) => r.uri === 'warden://py/config://app');
  assert.ok(pyRes, res.map((r) => r.uri).join(','));
  const read = await client.readResource({ uri: pyRes.uri });
  assert.equal(read.contents[0].uri, 'warden://py/config://app');
  assert.match(read.contents[0].text, /interop/);
  const evRes = res.find((r) => r.uri.startsWith('warden://everything/'));
  assert.ok(evRes, 'reference server resources listed');
  const evRead = await client.readResource({ uri: evRes.uri });
  assert.equal(evRead.contents[0].uri, evRes.uri);
  const templates = (await client.listResourceTemplates()).resourceTemplates.map((t) => t.uriTemplate);
  assert.ok(templates.includes('warden://py/greeting://{name}'), templates.join(','));
  const g = await client.readResource({ uri: 'warden://py/greeting://ada' });
  assert.match(g.contents[0].text, /Hello, ada/);
});

await check('subscription: an update of a resource of the 2026 upstream reaches this 2025 session', async () => {
  // Warden maps resources/subscribe onto the upstream's subscriptions/listen stream.
  const uri = 'warden://py/config://app';
  await client.subscribeResource({ uri });
  for (let i = 0; i < 20 && !updated.includes(uri); i++) {
    await client.callTool({ name: 'py__touch_config', arguments: {} });
    await new Promise((r) => setTimeout(r, 250));
  }
  assert.ok(updated.includes(uri), JSON.stringify(updated));
  await client.unsubscribeResource({ uri });
});

await check('prompts: list and get on both upstreams', async () => {
  const prompts = (await client.listPrompts()).prompts.map((p) => p.name);
  assert.ok(prompts.includes('py__review'), prompts.join(','));
  const evPrompt = prompts.find((p) => p.startsWith('everything__'));
  assert.ok(evPrompt);
  const p = await client.getPrompt({ name: 'py__review', arguments: { code: 'x = 1' } });
  assert.match(JSON.stringify(p.messages), /x = 1/);
  const simple = prompts.find((p) => p === 'everything__simple-prompt') ?? evPrompt;
  const e = await client.getPrompt({ name: simple, arguments: {} }).catch((err) => ({ err }));
  assert.ok(e.messages || e.err, 'answered');
});

await check('cancellation: aborting a call stops it, the session keeps working', async () => {
  const ac = new AbortController();
  const started = Date.now();
  setTimeout(() => ac.abort('test abort'), 300);
  await assert.rejects(client.callTool({ name: 'everything__trigger-long-running-operation', arguments: { duration: 30, steps: 30 } },
    undefined, { signal: ac.signal }));
  assert.ok(Date.now() - started < 5000);
  const r = await client.callTool({ name: 'py__add', arguments: { a: 1, b: 1 } });
  assert.match(text(r), /2/);
});

await check('unknown tool answers an error, not a crash', async () => {
  const r = await client.callTool({ name: 'nope__nothing', arguments: {} }).catch((e) => e);
  assert.ok(r instanceof Error || r.isError, String(r));
});

await client.close();
console.log(`ts-client: ${tally.passed} passed, ${tally.failed} failed`);
process.exit(tally.failed === 0 && tally.passed > 0 ? 0 : 1);

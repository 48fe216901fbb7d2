// A server written with the TypeScript SDK v2 (`@modelcontextprotocol/server` 2.4) over stdio,
// both eras from one factory: Warden finds it to speak 2026-07-28 (`protocol = "auto"`) and
// translates its multi round-trip questions for 2025 clients. Usage: node ts-server-2026.mjs
import { McpServer, inputRequired, acceptedContent } from '@modelcontextprotocol/server';
import { serveStdio } from '@modelcontextprotocol/server/stdio';
import { z } from 'zod';

serveStdio(() => {
  const server = new McpServer({ name: 'warden-interop-ts2', version: '1.0.0' });
  server.registerTool('add', {
    description: 'Add two integers.',
    inputSchema: z.object({ a: z.number(), b: z.number() })
  }, async ({ a, b }) => ({ content: [{ type: 'text', text: String(a + b) }] }));
  // Asks the user to confirm (an `input_required` elicitation): the answer decides the text.
  const confirmation = z.object({ ok: z.boolean() });
  server.registerTool('confirm', {
    description: 'Ask the user to confirm.',
    inputSchema: z.object({})
  }, async (_args, ctx) => {
    const answer = ctx.mcpReq.inputResponses?.confirm;
    if (answer?.action === 'decline' || answer?.action === 'cancel') {
      return { content: [{ type: 'text', text: `action=${answer.action}` }] };
    }
    const got = acceptedContent(ctx.mcpReq.inputResponses, 'confirm', confirmation);
    if (!got) {
      return inputRequired({
        inputRequests: { confirm: inputRequired.elicit({ message: 'Proceed?', requestedSchema: confirmation }) }
      });
    }
    return { content: [{ type: 'text', text: `action=accept ok=${got.ok}` }] };
  });
  return server;
});

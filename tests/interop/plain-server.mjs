// A plain MCP server, as most are: the official TypeScript SDK's McpServer over stdio with one
// tool and nothing else (no instructions, no prompts, no resources, no logging).
import { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { z } from 'zod';

const server = new McpServer({ name: 'plain', version: '1.0.0' });
server.registerTool('shout', { description: 'Upper-case a text', inputSchema: { text: z.string() } },
  async ({ text }) => ({ content: [{ type: 'text', text: text.toUpperCase() }] }));
await server.connect(new StdioServerTransport());

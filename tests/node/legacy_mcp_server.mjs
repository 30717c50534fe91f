// An MCP server of the handshake era (initialize, sessions, answers as server-sent events), built
// with the official TypeScript SDK and nothing of ours, for the gateway tests: the same tool as
// tests/python/gateway_mcp.py. Usage: node legacy_mcp_server.mjs PORT NAME DELAY_SECONDS
import http from "node:http";
import { randomUUID } from "node:crypto";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";

const [port, name, delay] = process.argv.slice(2);
const transports = new Map();

function newServer() {
  const server = new McpServer({ name, version: "1.0.0" });
  server.tool("extract_text", "Extract the text of an image.", { image_url: z.string() }, async ({ image_url }) => {
    await new Promise((r) => setTimeout(r, Number(delay) * 1000));
    return { content: [{ type: "text", text: `${name}: text of ${image_url}` }] };
  });
  return server;
}

async function body(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  return chunks.length ? JSON.parse(Buffer.concat(chunks).toString()) : undefined;
}

http
  .createServer(async (req, res) => {
    try {
      const sessionId = req.headers["mcp-session-id"];
      const parsed = req.method === "POST" ? await body(req) : undefined;
      let transport = sessionId ? transports.get(sessionId) : undefined;
      if (!transport) {
        if (sessionId || parsed?.method !== "initialize") {
          res.writeHead(sessionId ? 404 : 400, { "content-type": "application/json" });
          res.end(JSON.stringify({ jsonrpc: "2.0", id: null, error: { code: -32000, message: "Bad Request: Server not initialized" } }));
          return;
        }
        transport = new StreamableHTTPServerTransport({
          sessionIdGenerator: () => randomUUID(),
          onsessioninitialized: (id) => transports.set(id, transport),
        });
        transport.onclose = () => transport.sessionId && transports.delete(transport.sessionId);
        await newServer().connect(transport);
      }
      await transport.handleRequest(req, res, parsed);
    } catch (e) {
      res.writeHead(500);
      res.end(String(e));
    }
  })
  .listen(Number(port), "127.0.0.1");

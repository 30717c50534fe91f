// An MCP server of the handshake era built with the official TypeScript SDK, traced with
// @opentelemetry/sdk-node (exporter, endpoint, headers, protocol and resource all from the
// standard OTEL_* variables), for tests/clients/otlp.rs. No npm instrumentation emits the MCP
// semantic conventions' server spans (@arizeai/openinference-instrumentation-mcp only carries
// the trace context), so each tool call is wrapped in one here, as the conventions describe it.
// Usage: node otel_mcp_server.mjs PORT
import http from "node:http";
import { randomUUID } from "node:crypto";
import { NodeSDK } from "@opentelemetry/sdk-node";
import { trace, SpanKind, SpanStatusCode } from "@opentelemetry/api";
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StreamableHTTPServerTransport } from "@modelcontextprotocol/sdk/server/streamableHttp.js";
import { z } from "zod";

const sdk = new NodeSDK();
sdk.start();
const tracer = trace.getTracer("otel_mcp_server");
const [port] = process.argv.slice(2);
const transports = new Map();

// A tool handler inside a SERVER span named and attributed by the MCP semantic conventions.
function traced(tool, handler) {
  return (args, extra) =>
    tracer.startActiveSpan(
      `tools/call ${tool}`,
      {
        kind: SpanKind.SERVER,
        attributes: {
          "mcp.method.name": "tools/call",
          "gen_ai.operation.name": "execute_tool",
          "gen_ai.tool.name": tool,
          "mcp.session.id": extra.sessionId ?? "",
          "jsonrpc.request.id": String(extra.requestId),
        },
      },
      async (span) => {
        try {
          const result = await handler(args);
          if (result.isError) {
            span.setAttribute("error.type", "tool_error");
            span.setStatus({ code: SpanStatusCode.ERROR });
          }
          return result;
        } finally {
          span.end();
        }
      },
    );
}

function newServer() {
  const server = new McpServer({ name: "ts-ocr", version: "2.0.0" });
  server.tool("extract_text", "Extract the text of an image.", { image_url: z.string() },
    traced("extract_text", async ({ image_url }) => {
      await new Promise((r) => setTimeout(r, 50));
      return { content: [{ type: "text", text: `text of ${image_url}` }] };
    }));
  server.tool("broken", "Always fails.", { image_url: z.string() },
    traced("broken", async ({ image_url }) => ({
      isError: true,
      content: [{ type: "text", text: `cannot read ${image_url}` }],
    })));
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

for (const signal of ["SIGTERM", "SIGINT"]) {
  process.on(signal, () => sdk.shutdown().finally(() => process.exit(0)));
}

// Calls tools through the gateway with the official TypeScript SDK client
// (@modelcontextprotocol/sdk, a handshake-era client: initialize and a session), printing one JSON
// line per call and a summary line, like tests/python/gateway_client.py.
// Usage: node gateway_client.mjs URL TOKEN CALLS
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, token, calls] = process.argv.slice(2);
const transport = new StreamableHTTPClientTransport(new URL(url), {
  requestInit: { headers: { Authorization: `Bearer ${token}` } },
});
const client = new Client({ name: "gateway-test", version: "1.0.0" });
await client.connect(transport);
const tools = await client.listTools();
await Promise.all(
  Array.from({ length: Number(calls) }, async (_, i) => {
    const start = performance.now();
    try {
      const result = await client.callTool({ name: "extract_text", arguments: { image_url: `img-${i}.png` } });
      const text = result.content.map((c) => c.text ?? "").join("");
      console.log(JSON.stringify({ i, ok: true, is_error: Boolean(result.isError), text, seconds: (performance.now() - start) / 1000 }));
    } catch (e) {
      console.log(JSON.stringify({ i, error: String(e) }));
    }
  }),
);
console.log(JSON.stringify({ tools: tools.tools.map((t) => t.name).sort(), version: transport.protocolVersion ?? null }));
await transport.terminateSession().catch(() => {});
await client.close();

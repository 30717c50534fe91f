"""Calls tools through the gateway with the official MCP Python SDK client, and prints one JSON
line per call: {"i", "ok", "is_error", "text", "seconds"} (or {"i", "error"} when the call raised),
then a summary line {"tools": [...], "version": ..., "progress": [...], "prompt": ..., "resource": ...}:
the progress notifications a `count` call relayed, a prompt got and a resource read through the
gateway (null when the scope offers none).

Usage: python3 gateway_client.py URL TOKEN CALLS MODE [TOOL] [CONCURRENCY]
MODE is `auto` (2026-07-28: server/discover, no session) or `legacy` (initialize, a session).
"""
import asyncio
import json
import sys
import time

import httpx2 as httpx_mod  # the SDK's own HTTP client package in 2.x

from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client

url, token, calls, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
tool = sys.argv[5] if len(sys.argv) > 5 else "extract_text"
concurrency = int(sys.argv[6]) if len(sys.argv) > 6 else 4


async def main():
    http = httpx_mod.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60)
    if True:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            tools = await client.list_tools()
            names = sorted(t.name for t in tools.tools)
            sem = asyncio.Semaphore(concurrency)

            async def one(i):
                async with sem:
                    start = time.monotonic()
                    try:
                        args = {"image_url": f"img-{i}.png"} if tool == "extract_text" else {}
                        result = await client.call_tool(tool, args)
                        text = "".join(getattr(c, "text", "") for c in result.content)
                        print(json.dumps({"i": i, "ok": True, "is_error": bool(result.is_error), "text": text,
                                          "seconds": time.monotonic() - start}), flush=True)
                    except Exception as e:  # noqa: BLE001 - every failure is printed for the test
                        print(json.dumps({"i": i, "error": f"{type(e).__name__}: {e}"}), flush=True)

            await asyncio.gather(*(one(i) for i in range(calls)))
            version = client.session.protocol_version
            summary = {"tools": names, "version": str(version), "progress": [], "prompt": None, "resource": None}
            if "count" in names:
                async def on_progress(progress, total, message):
                    summary["progress"].append([progress, total, message])

                result = await client.call_tool("count", {"steps": 3}, progress_callback=on_progress)
                summary["count"] = "".join(getattr(c, "text", "") for c in result.content)
            try:
                prompt = await client.get_prompt("summarize", {"text": "a page"})
                summary["prompt"] = prompt.messages[0].content.text
                resource = await client.read_resource("docs://readme")
                summary["resource"] = resource.contents[0].text
            except Exception as e:  # noqa: BLE001 - a scope without prompts or resources
                summary["prompt_error"] = f"{type(e).__name__}: {e}"
            print(json.dumps(summary), flush=True)


asyncio.run(main())

"""The official MCP Python client calling tools on a Streamable HTTP server, for
tests/clients/python_client.rs: `extract_text` three times, then `broken` once.

Usage: python3 call_tools.py MCP_URL
Prints one line per call: the tool's name and whether the result was an error.
"""
import asyncio
import sys

from mcp import ClientSession

try:
    from mcp.client.streamable_http import streamablehttp_client as connect  # SDK 1.x
except ImportError:
    from mcp.client.streamable_http import streamable_http_client as connect  # SDK 2.x


async def main(url: str) -> None:
    async with connect(url) as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as session:
            await session.initialize()
            calls = [("extract_text", {"image_url": f"s3://scans/{n}.png"}) for n in range(3)]
            calls.append(("broken", {"image_url": "s3://scans/bad.png"}))
            for name, arguments in calls:
                try:
                    result = await session.call_tool(name, arguments)
                    error = bool(getattr(result, "is_error", getattr(result, "isError", False)))
                except Exception as exc:  # 2.x may raise for tool errors
                    error = True
                print(name, "error" if error else "ok", flush=True)


asyncio.run(main(sys.argv[1]))

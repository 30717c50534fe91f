"""An MCP server built with the official Python SDK and nothing of ours, for the gateway tests and
`make demo`: one tool, `extract_text`, that takes DELAY seconds and fails (isError) a FAIL share
of its calls, on Streamable HTTP at /mcp.

Usage: python3 gateway_mcp.py PORT NAME DELAY FAIL
"""
import asyncio
import random
import sys

from mcp.server.mcpserver import Context, MCPServer

port, name, delay, fail = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
server = MCPServer(name, version="1.0.0")


@server.tool()
async def extract_text(image_url: str) -> str:
    """Extract the text of an image."""
    await asyncio.sleep(delay)
    if random.random() < fail:
        raise RuntimeError(f"{name} could not read {image_url}")
    return f"{name}: text of {image_url}"


@server.tool()
async def whoami() -> str:
    """Which server answered."""
    return name


@server.tool()
async def count(steps: int, ctx: Context) -> str:
    """Count to STEPS, reporting progress at each step."""
    for i in range(1, steps + 1):
        await ctx.report_progress(i, steps, f"step {i}")
        await asyncio.sleep(0.02)
    return f"{name}: counted to {steps}"


@server.prompt()
def summarize(text: str) -> str:
    """Ask for a summary."""
    return f"Summarize: {text}"


@server.resource("docs://readme")
def readme() -> str:
    """The server's readme."""
    return f"{name} readme"


server.run(transport="streamable-http", host="127.0.0.1", port=port)

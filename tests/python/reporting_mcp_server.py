"""An MCP server from the official Python SDK that reports every tool call through
clients/python's `instrument`, for tests/clients/python_client.rs.

Usage: python3 reporting_mcp_server.py PORT COORDINATOR_URL API_KEY
"""
import sys
import time

from mcp_coordinator_client import Client, instrument

port, url, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]

try:
    from mcp.server.fastmcp import FastMCP  # SDK 1.x

    server = FastMCP("ocr-tools", host="127.0.0.1", port=port)
    run = lambda: server.run(transport="streamable-http")
except ImportError:
    from mcp.server.mcpserver import MCPServer  # SDK 2.x

    server = MCPServer("ocr-tools", version="1.4.0")
    run = lambda: server.run(transport="streamable-http", host="127.0.0.1", port=port)

# Every request signed, heartbeats every second: the coordinator under test requires both to count.
instrument(server, Client(url, key, sign_requests=True, heartbeat_interval=1.0, mcp_version="1.4.0"))


@server.tool()
def extract_text(image_url: str) -> str:
    """Extract the text of an image."""
    time.sleep(0.05)
    return f"text of {image_url}"


@server.tool()
def broken(image_url: str) -> str:
    """Always fails."""
    raise ValueError(f"cannot read {image_url}")


run()

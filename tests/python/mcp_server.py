"""A real MCP server from the official Python SDK, on Streamable HTTP, for the `mcp` health check test.

Usage: python3 mcp_server.py PORT
Works with the SDK's 1.x (FastMCP) and 2.x (MCPServer) APIs.
"""
import sys

port = int(sys.argv[1])

try:
    from mcp.server.fastmcp import FastMCP  # SDK 1.x

    server = FastMCP("ocr-tools", host="127.0.0.1", port=port)
    run = lambda: server.run(transport="streamable-http")
except ImportError:
    from mcp.server.mcpserver import MCPServer  # SDK 2.x

    server = MCPServer("ocr-tools", version="1.4.0")
    run = lambda: server.run(transport="streamable-http", host="127.0.0.1", port=port)


@server.tool()
def extract_text(image_url: str) -> str:
    """Extract the text of an image."""
    return f"text of {image_url}"


@server.tool()
def detect_layout(image_url: str) -> list[str]:
    """Find the blocks of a page."""
    return ["header", "body"]


run()

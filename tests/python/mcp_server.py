"""A real MCP server from the official Python SDK, on Streamable HTTP, for the `mcp` health check test.

Usage: python3 mcp_server.py PORT [VERSION]
Works with the SDK's 1.x (FastMCP) and 2.x (MCPServer) APIs. VERSION 2.0.0 changes
extract_text's arguments in ways that break callers (image_url becomes a list, lang is required).
"""
import sys

port = int(sys.argv[1])
version = sys.argv[2] if len(sys.argv) > 2 else "1.4.0"

try:
    from mcp.server.fastmcp import FastMCP  # SDK 1.x

    server = FastMCP("ocr-tools", host="127.0.0.1", port=port)
    run = lambda: server.run(transport="streamable-http")
except ImportError:
    from mcp.server.mcpserver import MCPServer  # SDK 2.x

    server = MCPServer("ocr-tools", version=version)
    run = lambda: server.run(transport="streamable-http", host="127.0.0.1", port=port)


if version.startswith("2."):

    @server.tool()
    def extract_text(image_url: list[str], lang: str) -> str:
        """Extract the text of images."""
        return f"text of {image_url} in {lang}"

else:

    @server.tool()
    def extract_text(image_url: str) -> str:
        """Extract the text of an image."""
        return f"text of {image_url}"


@server.tool()
def detect_layout(image_url: str) -> list[str]:
    """Find the blocks of a page."""
    return ["header", "body"]


run()

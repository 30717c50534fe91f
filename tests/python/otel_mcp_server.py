"""An MCP server from the official Python SDK whose own OpenTelemetry spans (the SDK emits a
SERVER span per message, in the MCP semantic conventions) are exported by the OpenTelemetry
Python SDK's OTLP/HTTP exporter, configured only by the standard OTEL_* variables, for
tests/clients/otlp.rs.

Usage: python3 otel_mcp_server.py PORT
"""
import sys
import time

from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from mcp.server.mcpserver import MCPServer

port = int(sys.argv[1])

# Endpoint, headers (the API key), compression and resource attributes all come from OTEL_*.
provider = TracerProvider()
provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
trace.set_tracer_provider(provider)

server = MCPServer("ocr-tools", version="1.4.0")


@server.tool()
def extract_text(image_url: str) -> str:
    """Extract the text of an image."""
    time.sleep(0.05)
    return f"text of {image_url}"


@server.tool()
def broken(image_url: str) -> str:
    """Always fails."""
    raise ValueError(f"cannot read {image_url}")


try:
    server.run(transport="streamable-http", host="127.0.0.1", port=port)
finally:
    provider.shutdown()

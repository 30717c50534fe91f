"""Report an MCP server's interactions and heartbeats to mcp-coordinator."""

from .client import Client, Interaction, ReportError, error_code, new_interaction_id, sign
from .mcp import instrument

__all__ = [
    "Client",
    "Interaction",
    "ReportError",
    "error_code",
    "instrument",
    "new_interaction_id",
    "sign",
]
__version__ = "0.1.0"

"""Report an MCP server's interactions and heartbeats to mcp-coordinator."""

from .client import Client, Interaction, ReportError, error_code, new_interaction_id, sign
from .mcp import instrument
from .registration import Registration, register, unregister

__all__ = [
    "Client",
    "Interaction",
    "Registration",
    "ReportError",
    "error_code",
    "instrument",
    "new_interaction_id",
    "register",
    "sign",
    "unregister",
]
__version__ = "0.1.0"

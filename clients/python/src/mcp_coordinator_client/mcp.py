"""One line for servers built with the official MCP Python SDK: every `tools/call` reported."""

from __future__ import annotations

import time
from typing import Any

from .client import Client, error_code


def instrument(server: Any, client: Client) -> Client:
    """Reports every tool call of `server` (FastMCP in SDK 1.x, MCPServer in 2.x) through
    `client`: the tool's name as `request_type`, the call's processing time, and success, or
    failure with the exception's class (`ToolError`, or the tool's own) as `error_code`. Starts
    the client's background thread, so heartbeats flow too. Answers `client`.

    Both SDK generations route every call through the server's tool manager, which is where the
    call is timed; a server without one is refused with TypeError rather than silently not
    reported.
    """
    manager = getattr(server, "_tool_manager", None)
    original = getattr(manager, "call_tool", None)
    if original is None:
        raise TypeError(
            f"{type(server).__name__} has no tool manager to instrument; "
            "pass a FastMCP (mcp 1.x) or MCPServer (mcp 2.x) instance"
        )
    if getattr(original, "_mcp_coordinator_reported", False):
        return client

    async def call_tool(name: str, arguments: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        interaction_id = client.start(name)
        began = time.monotonic()
        try:
            result = await original(name, arguments, *args, **kwargs)
        except BaseException as error:
            cause = error.__cause__ or error
            client.fail(
                interaction_id,
                error_code(cause),
                str(cause) or type(cause).__name__,
                processing_time=time.monotonic() - began,
            )
            raise
        took = time.monotonic() - began
        if getattr(result, "is_error", False) or getattr(result, "isError", False):
            client.fail(interaction_id, "TOOL_ERROR", "the tool answered an error", processing_time=took)
        else:
            client.complete(interaction_id, processing_time=took)
        return result

    call_tool._mcp_coordinator_reported = True  # type: ignore[attr-defined]
    manager.call_tool = call_tool
    client.start_background()
    return client

"""Self-registration: an MCP declares itself with a registrar token (the seed's `register_mcp`)
and gets back its ID, its API key and where and how often to report. Registering the same name
again answers the same ID and key unless `rotate_key` asks for a new one."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Optional

from .client import Client, ReportError


@dataclass
class Registration:
    """What the coordinator answered to `register_mcp`."""

    mcp_id: str
    api_key: str
    interaction_log_endpoint: str
    heartbeat_interval: float
    data_report_interval: float
    namespace: str
    name: str
    routing_config: dict[str, Any] = field(default_factory=dict)

    def client(self, **options: Any) -> Client:
        """A reporting client for this MCP, heartbeating and sending its reports on the intervals
        the coordinator gave."""
        options.setdefault("heartbeat_interval", self.heartbeat_interval)
        options.setdefault("report_interval", self.data_report_interval)
        return Client(self.interaction_log_endpoint, self.api_key, **options)


def _send(coordinator: str, token: str, body: dict[str, Any], timeout: float) -> dict[str, Any]:
    if not coordinator.startswith(("http://", "https://")):
        raise ValueError(f"coordinator must start with http:// or https://, not {coordinator!r}")
    request = urllib.request.Request(
        coordinator.rstrip("/") + "/api/register",
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raw = error.read()
        try:
            message = json.loads(raw)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = raw[:300].decode(errors="replace")
        raise ReportError(f"the coordinator refused ({error.code}): {message}") from None


def register(
    coordinator: str,
    registrar_token: str,
    *,
    name: str,
    version: str,
    type: str,
    capabilities: list[str],
    url: str,
    supported_formats: Optional[list[str]] = None,
    resource_requirements: Optional[dict[str, Any]] = None,
    endpoints: Optional[dict[str, str]] = None,
    namespace: Optional[str] = None,
    rotate_key: bool = False,
    timeout: float = 60.0,
) -> Registration:
    """Registers this MCP (the seed's `mcp_info`: `resource_requirements` as the seed writes them,
    e.g. `{"min_memory": "1GB", "min_cpu": "2 cores"}`; `endpoints` as paths under `url`)."""
    info: dict[str, Any] = {
        "name": name,
        "version": version,
        "type": type,
        "capabilities": capabilities,
        "url": url,
        "supported_formats": supported_formats or [],
    }
    if resource_requirements is not None:
        info["resource_requirements"] = resource_requirements
    if endpoints is not None:
        info["endpoints"] = endpoints
    if namespace is not None:
        info["namespace"] = namespace
    body = {"action": "register_mcp", "mcp_info": info, "rotate_key": rotate_key}
    answer = _send(coordinator, registrar_token, body, timeout)
    config = answer.get("coordinator_config") or {}
    where = answer.get("registration") or {}
    return Registration(
        mcp_id=answer["mcp_id"],
        api_key=answer["api_key"],
        interaction_log_endpoint=config.get("interaction_log_endpoint") or coordinator,
        heartbeat_interval=float(config.get("heartbeat_interval") or 30),
        data_report_interval=float(config.get("data_report_interval") or 10),
        namespace=where.get("namespace", ""),
        name=where.get("name", ""),
        routing_config=answer.get("routing_config") or {},
    )


def unregister(
    coordinator: str,
    registrar_token: str,
    name: str,
    namespace: Optional[str] = None,
    timeout: float = 60.0,
) -> None:
    """Retires a self-registered MCP: its ID is never reused, its key stops working."""
    body: dict[str, Any] = {"action": "unregister_mcp", "name": name}
    if namespace is not None:
        body["namespace"] = namespace
    _send(coordinator, registrar_token, body, timeout)

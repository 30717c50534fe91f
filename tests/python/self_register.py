"""Registers an MCP with the Python client's `register` (the seed's register_mcp), reports one
interaction with the key it got, and prints the registration as JSON.
Usage: self_register.py COORDINATOR_URL REGISTRAR_TOKEN MCP_URL"""

import json
import sys

from mcp_coordinator_client import register

coordinator, token, mcp_url = sys.argv[1:4]
registration = register(
    coordinator,
    token,
    name="python_ocr_mcp",
    version="2.0.0",
    type="workflow",
    capabilities=["ocr_processing"],
    url=mcp_url,
    resource_requirements={"min_memory": "512MB", "min_cpu": "1 core", "gpu_required": False},
    endpoints={"health_check": "/health"},
)
client = registration.client(heartbeat_interval=None)
with client.interaction("ocr_processing") as call:
    call.result(quality_score=0.9)
assert client.flush(10), "the report was sent"
assert client.dropped == 0, f"dropped {client.dropped}"
print(json.dumps({"mcp_id": registration.mcp_id, "name": registration.name, "sent": client.sent}))

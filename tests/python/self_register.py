"""Registers an MCP with the Python client's `register` (the seed's register_mcp), reports one
interaction with the key it got, reads it back with the seed's `get_interaction_history` and
`get_performance_metrics`, and prints the registration and what it read as JSON.
Usage: self_register.py COORDINATOR_URL REGISTRAR_TOKEN MCP_URL"""

import json
import sys
import time

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
# Sent on the coordinator's data_report_interval (10 s); a flush sends at once.
assert client._report_interval == registration.data_report_interval == 10, registration
assert client.flush(10), "the report was sent"
assert client.dropped == 0, f"dropped {client.dropped}"
deadline = time.monotonic() + 20
while True:
    history = client.get_interaction_history(registration.mcp_id, limit=10)
    if history and history[0].get("status") == "completed" or time.monotonic() > deadline:
        break
    time.sleep(0.2)
metrics = client.get_performance_metrics(registration.mcp_id, "last_1h")
print(json.dumps({
    "mcp_id": registration.mcp_id,
    "name": registration.name,
    "sent": client.sent,
    "history": history,
    "metrics": metrics,
}))

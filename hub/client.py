"""The Python SDK's public import path (the code lives in hub.engine.client).

async with HubClient.connect() as hub:
    result = await hub.emit("order.created", {"id": 42}, event_id="order-42")
"""

from hub.engine.client import HubClient, workflow_id_for

__all__ = ["HubClient", "workflow_id_for"]

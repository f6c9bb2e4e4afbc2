"""Preparing the Temporal namespace: the hub's search attributes, registered at start-up."""

import logging

from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from hub.core.visibility import SEARCH_ATTRIBUTE_TYPES

log = logging.getLogger(__name__)


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register the hub's search attributes that the namespace lacks; return their names."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    known = set(existing.custom_attributes) | set(existing.system_attributes)
    missing = {name: kind for name, kind in SEARCH_ATTRIBUTE_TYPES.items() if name not in known}
    if not missing:
        return []
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=namespace, search_attributes=missing)
        )
    except RPCError as err:
        # Another worker registering at the same moment is fine.
        if err.status != RPCStatusCode.ALREADY_EXISTS:
            raise
    log.info("registered search attributes %s", ", ".join(sorted(missing)))
    return sorted(missing)

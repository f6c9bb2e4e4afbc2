"""The hub's Temporal search attributes, and their registration at worker start-up."""

import logging

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
    ListSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.service import RPCError, RPCStatusCode

HUB_EVENT_NAME = SearchAttributeKey.for_keyword("HubEventName")
HUB_EVENT_ID = SearchAttributeKey.for_keyword("HubEventId")
HUB_SERVICES = SearchAttributeKey.for_keyword_list("HubServices")
HUB_OUTCOME = SearchAttributeKey.for_keyword("HubOutcome")

_TYPES = {
    HUB_EVENT_NAME.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    HUB_EVENT_ID.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    HUB_SERVICES.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
    HUB_OUTCOME.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
}

log = logging.getLogger(__name__)


async def ensure_search_attributes(client: Client, namespace: str) -> list[str]:
    """Register the hub's search attributes that the namespace lacks; return their names."""
    existing = await client.operator_service.list_search_attributes(
        ListSearchAttributesRequest(namespace=namespace)
    )
    known = set(existing.custom_attributes) | set(existing.system_attributes)
    missing = {name: kind for name, kind in _TYPES.items() if name not in known}
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

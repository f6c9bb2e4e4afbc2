"""The hub's Temporal search attributes: what workflows set and operators filter on."""

import json

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.common import SearchAttributeKey

HUB_EVENT_NAME = SearchAttributeKey.for_keyword("HubEventName")
HUB_EVENT_ID = SearchAttributeKey.for_keyword("HubEventId")
HUB_SERVICES = SearchAttributeKey.for_keyword_list("HubServices")
HUB_OUTCOME = SearchAttributeKey.for_keyword("HubOutcome")
HUB_HELD = SearchAttributeKey.for_keyword_list("HubHeld")
"""While deliveries wait without using attempts: ``service`` and ``service:reason`` of each
(hub.core.control.held_tags), so ``HubHeld='svc'`` counts a service's held deliveries."""

SEARCH_ATTRIBUTE_TYPES = {
    HUB_EVENT_NAME.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    HUB_EVENT_ID.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    HUB_SERVICES.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
    HUB_OUTCOME.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
    HUB_HELD.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
}
"""What ``hub.engine.namespace`` registers when the namespace lacks them."""

KEYWORD_LIST_MAX_BYTES = 2000
"""What one keyword-list value may take: Temporal refuses a search attribute value over
2 KiB (dynamic config limit.searchAttributeSizeOfValue, default 2048 bytes); a start is then
refused and an upsert terminates the workflow. A little under it, for the encoding's margin."""


def fit_keyword_list(values: list[str], max_bytes: int = KEYWORD_LIST_MAX_BYTES) -> list[str]:
    """The first of ``values`` whose JSON fits ``max_bytes``: an event to many services, or
    holding many, stays visible by its first ones instead of being refused by the server.
    Only visibility loses the rest; the workflow's input and history keep them all."""
    fitted: list[str] = []
    size = 2  # the brackets
    for value in values:
        size += len(json.dumps(value).encode()) + (1 if fitted else 0)
        if size > max_bytes:
            break
        fitted.append(value)
    return fitted

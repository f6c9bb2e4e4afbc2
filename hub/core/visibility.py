"""The hub's Temporal search attributes: what workflows set and operators filter on."""

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

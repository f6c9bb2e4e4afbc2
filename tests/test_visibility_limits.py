"""Temporal refuses a search attribute value over 2 KiB: a start with it fails, an upsert of
it terminates the workflow. An event to many services, and one holding many, must still be
delivered; visibility shows the first names that fit."""

import asyncio
import json

from temporalio.client import Client, WorkflowExecutionStatus

from hub.client import HubClient
from hub.core.models import Outcome, RuleIn, ServiceIn
from hub.core.visibility import HUB_HELD, HUB_OUTCOME, HUB_SERVICES, fit_keyword_list
from hub.engine.holds import wake_held
from hub.store import Store
from tests.sink import HttpSink
from tests.test_holds import until

SERVICES = 60
"""With 48-character names: about 3 KB of HubServices and 6 KB of HubHeld, past the limit."""


def test_fit_keyword_list_keeps_the_first_values_that_fit():
    values = [f"service-{n:02d}" for n in range(10)]  # 12 bytes each as JSON, 13 with a comma
    assert fit_keyword_list(values) == values
    assert fit_keyword_list(values, max_bytes=2 + 12) == values[:1]
    assert fit_keyword_list(values, max_bytes=2 + 12 + 13 * 2) == values[:3]
    assert fit_keyword_list(values, max_bytes=2 + 12 + 13 * 2 - 1) == values[:2]
    assert fit_keyword_list(values, max_bytes=5) == []
    assert len(json.dumps(fit_keyword_list(values * 300), separators=(",", ":"))) <= 2000


async def test_an_event_to_many_paused_services_is_held_and_then_delivered_to_all(
    store: Store, hub: HubClient, temporal: Client, sink: HttpSink, unique: str
):
    names = [f"{unique}-{'x' * 33}-{n:03d}" for n in range(SERVICES)]
    assert all(len(name) == 45 for name in names)
    for name in names:
        await store.services.create(ServiceIn(name=name, base_url=sink.url, backoff=0.1))
        await store.services.set_paused(name, True)
        await store.rules.create(RuleIn(event=f"{unique}.wide", service=name))
    await hub.index.refresh(min_version=await store.rules.config_version())

    emitted = await hub.emit(f"{unique}.wide", {"n": 1})
    handle = temporal.get_workflow_handle(emitted.workflow_id or "")
    assert sorted(emitted.services) == names

    async def all_held() -> bool:
        attributes = (await handle.describe()).typed_search_attributes
        return attributes.get(HUB_OUTCOME) == Outcome.PAUSED.value

    await until(all_held, 30)
    await asyncio.sleep(1)
    description = await handle.describe()
    assert description.status == WorkflowExecutionStatus.RUNNING
    shown = description.typed_search_attributes
    assert shown.get(HUB_SERVICES) == fit_keyword_list(names)
    assert 0 < len(shown.get(HUB_SERVICES) or []) < SERVICES
    assert (shown.get(HUB_HELD) or [])[:2] == [names[0], f"{names[0]}:paused"]
    assert sink.received == []

    for name in names:
        await store.services.set_paused(name, False)
        await wake_held(temporal, name)
    async with asyncio.timeout(60):
        result = await handle.result()
    assert result["outcome"] == Outcome.DELIVERED.value
    assert sorted(r.path for r in sink.received) == ["/"] * SERVICES
    assert len({r.headers["idempotency-key"] for r in sink.received}) == SERVICES

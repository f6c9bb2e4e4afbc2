"""Large events and template bombs: claim-checked, bounded, never wedging a workflow.

Before the claim-check, a 200 KiB event matching 12 rules put 2.4 MB into one history
marker; the workflow task failed for ever and each retry re-sent the first deliveries.
"""

import asyncio
import json

from hub.core.limits import event_bytes
from hub.core.models import DeliveryStatus, Event, Outcome

KIB = 1024
HISTORY_BUDGET = 64 * KIB


async def history_bytes(temporal, workflow_id: str) -> int:
    history = await temporal.get_workflow_handle(workflow_id).fetch_history()
    return sum(event.ByteSize() for event in history.events)


def event_of(size: int, unique: str, name: str, event_id: str) -> dict[str, str]:
    """Event data that makes the whole event exactly ``size`` bytes of JSON."""
    probe = Event(id=event_id, name=name, data={"blob": ""})
    return {"blob": "x" * (size - event_bytes(probe))}


async def test_an_event_at_the_limit_with_50_rules_keeps_the_history_small(
    hub, temporal, sink, make_service, make_rule, settings, unique
):
    name, event_id = f"{unique}.big", f"{unique}-big"
    data = event_of(settings.max_event_bytes, unique, name, event_id)
    service = await make_service()
    for n in range(50):
        # Every fifth rule sends the whole event (1 MiB); the others a small projection.
        template = "" if n % 5 == 0 else f'{{"rule": {n}, "id": {{{{id}}}}}}'
        await make_rule(name, service, endpoint=f"/r{n}", template=template)

    result = await asyncio.wait_for(hub.emit(name, data, event_id=event_id, wait=True), 120)

    assert result.result.outcome is Outcome.DELIVERED
    assert len(result.result.deliveries) == 50
    for n in range(50):
        [received] = sink.at(f"/r{n}")
        body = json.loads(received.body)
        if n % 5 == 0:
            assert len(received.body) == settings.max_event_bytes
            assert body["data"] == data
        else:
            assert body == {"rule": n, "id": event_id}
    size = await history_bytes(temporal, result.workflow_id)
    assert size < HISTORY_BUDGET, f"history is {size} bytes"


async def test_200_kib_event_to_12_rules_sends_each_once(
    hub, temporal, sink, make_service, make_rule, unique
):
    name, event_id = f"{unique}.wide", f"{unique}-wide"
    data = event_of(200 * KIB, unique, name, event_id)
    service = await make_service()
    for n in range(12):
        await make_rule(name, service, endpoint=f"/w{n}")

    result = await asyncio.wait_for(hub.emit(name, data, event_id=event_id, wait=True), 60)

    assert result.result.outcome is Outcome.DELIVERED
    assert [len(sink.at(f"/w{n}")) for n in range(12)] == [1] * 12
    assert await history_bytes(temporal, result.workflow_id) < HISTORY_BUDGET


async def test_a_template_bomb_is_dead_lettered_with_its_size(
    hub, store, sink, make_service, make_rule, settings, unique
):
    name, event_id = f"{unique}.bomb", f"{unique}-bomb"
    data = event_of(200 * KIB, unique, name, event_id)
    service = await make_service()
    # 110 copies of a 200 KiB value: 22 MB if it were rendered.
    bomb = "[" + ",".join(["{{data.blob}}"] * 110) + "]"
    await make_rule(name, service, endpoint="/bomb", template=bomb)
    await make_rule(name, service, endpoint="/fine", template='{"id": {{id}}}')

    result = await asyncio.wait_for(hub.emit(name, data, event_id=event_id, wait=True), 60)

    assert result.result.outcome is Outcome.PARTIAL
    by_endpoint = {d.status: d for d in result.result.deliveries}
    dead = by_endpoint[DeliveryStatus.DEAD_LETTERED]
    assert dead.attempts == 0
    assert str(settings.max_payload_bytes) in dead.error
    assert "HUB_MAX_PAYLOAD_BYTES" in dead.error
    assert sink.at("/bomb") == []
    assert len(sink.at("/fine")) == 1
    [row] = await store.dlq.recent(event=event_id)
    assert row.payload is None and "HUB_MAX_PAYLOAD_BYTES" in row.error

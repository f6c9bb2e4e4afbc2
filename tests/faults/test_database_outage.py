"""A 20 s PostgreSQL outage while producers post events through the API at 20 per second.

The test owns what it breaks: a PostgreSQL of its own, and the worker and API that use it
(the Temporal server is the session's; nothing stops it). The producer retries a 503 as a
producer should. At the end, what the sink received is counted against what the API
accepted: nothing lost, no DLQ row (the receiver never failed), every request the sink saw
has its log row with the same attempt number, and no attempt number was sent twice.
"""

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import pytest
from pydantic import SecretStr

from hub.api import create_app
from hub.config import Settings
from hub.core.models import RuleIn, ServiceIn
from hub.dev.background import serve_in_background, stop_server
from hub.engine.schedules import ensure_schedules
from hub.engine.worker import running_worker
from hub.runtime.embedded import free_port
from hub.store import Store
from tests.faults.servers import OwnPostgres, eventually
from tests.sink import HttpSink

TOKEN = "outage-TOKEN-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
EVENTS = 600
RATE = 20.0  # events per second
OUTAGE_STARTS = 5.0  # seconds into the run
OUTAGE = 20.0
RECOVERY_BUDGET = 5.0


@dataclass
class Producer:
    """Posts events at a steady rate; retries each one until the API accepts it."""

    api: httpx.AsyncClient
    name: str
    accepted: dict[str, float] = field(default_factory=dict)
    refused: Counter[int] = field(default_factory=Counter)

    async def post(self, event_id: str) -> None:
        while True:
            wait = 0.25
            try:
                answer = await self.api.post(
                    "/events", json={"name": self.name, "id": event_id}, headers=AUTH
                )
            except httpx.TransportError:
                self.refused[0] += 1
            else:
                if answer.status_code == 202:
                    self.accepted[event_id] = time.monotonic()
                    return
                assert answer.status_code == 503, answer.text
                self.refused[503] += 1
                # As a producer should: come back when told, spread a little.
                wait = float(answer.headers["retry-after"]) * random.uniform(0.5, 1.0)
            await asyncio.sleep(wait)

    async def run(self, ids: list[str]) -> None:
        start = time.monotonic()
        posts = []
        for n, event_id in enumerate(ids):
            await asyncio.sleep(max(0.0, start + n / RATE - time.monotonic()))
            posts.append(asyncio.create_task(self.post(event_id)))
        await asyncio.gather(*posts)


async def outage(postgres: OwnPostgres) -> float:
    """Stop PostgreSQL for OUTAGE seconds; return when it accepts connections again."""
    await asyncio.sleep(OUTAGE_STARTS)
    await asyncio.to_thread(postgres.stop)
    await asyncio.sleep(OUTAGE)
    postgres.start()
    await postgres.ready()
    return time.monotonic()


@pytest.mark.timeout(300)
async def test_a_database_outage_loses_nothing_and_heals_by_itself(
    settings: Settings, temporal, sink: HttpSink, unique: str
):
    postgres = OwnPostgres()
    await asyncio.to_thread(postgres.init)
    postgres.start()
    await postgres.ready()
    own = settings.model_copy(
        update={
            "database_url": postgres.url,
            "task_queue": f"hub-outage-{unique}",
            "api_token": SecretStr(TOKEN),
        }
    )
    try:
        async with running_worker(own, temporal=temporal), Store.open(postgres.url) as store:
            service = await store.services.create(
                ServiceIn(name=f"{unique}-svc", base_url=sink.url, backoff=0.1)
            )
            await store.rules.create(RuleIn(event=f"{unique}.*", service=service.name))
            port = free_port()
            server, task = await serve_in_background(
                create_app(own, temporal=temporal), "127.0.0.1", port
            )
            try:
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}", timeout=30
                ) as api:
                    producer = Producer(api, f"{unique}.order")
                    ids = [f"{unique}-{n}" for n in range(EVENTS)]
                    back, _ = await asyncio.gather(outage(postgres), producer.run(ids))
                    healthy = await eventually(
                        lambda: _healthy(api), RECOVERY_BUDGET, "healthz 200 after the outage"
                    )
                    first_accepted_after = min(t for t in producer.accepted.values() if t >= back)
            finally:
                await stop_server(server, task)
            await _all_received(sink, ids)
            delivering_again = min(r.at for r in sink.received if r.at >= back) - back
            await _all_logged(store, ids)
            repeated = await _check_counts(store, sink, ids, producer)
        assert producer.refused[503] > 0, "the outage was not seen by the producer"
        # The worker's waiting deliveries retry at most 5 s apart; the timers fire to the second.
        assert delivering_again <= RECOVERY_BUDGET + 1.0
        assert first_accepted_after - back <= RECOVERY_BUDGET
        assert healthy <= RECOVERY_BUDGET
        print(
            f"database outage: API accepting {first_accepted_after - back:.2f}s and worker "
            f"delivering {delivering_again:.2f}s after the database came back; "
            f"{producer.refused[503]} posts refused with 503 meanwhile; {repeated} sent twice"
        )
    finally:
        postgres.remove()
        # Starting a worker points the namespace's schedules at its queue: point them back.
        await ensure_schedules(temporal, settings)


async def _healthy(api: httpx.AsyncClient) -> bool:
    return (await api.get("/healthz")).status_code == 200


async def _all_received(sink: HttpSink, ids: list[str]) -> None:
    async def done() -> bool:
        return {r.headers["x-hub-event-id"] for r in sink.received} >= set(ids)

    await eventually(done, 120, "every accepted event at the sink", interval=0.5)


async def _all_logged(store: Store, ids: list[str]) -> None:
    """Wait for an ok row for every event, and for no row to be in flight: an outcome the
    database refused during the outage is written later by the event's workflow (a repeated
    first attempt can add a second ok row meanwhile, so rows are counted per event)."""

    async def done() -> bool:
        row = await store.pool.fetchrow(
            "SELECT count(DISTINCT event_id) FILTER (WHERE status = 'ok') AS ok,"
            " count(*) FILTER (WHERE status = 'sending') AS sending"
            " FROM delivery_log WHERE event_id = ANY($1)",
            ids,
        )
        assert row is not None
        return int(row["ok"]) == len(ids) and int(row["sending"]) == 0

    await eventually(done, 60, "an ok log row for every event, none still sending", interval=0.5)


async def _check_counts(store: Store, sink: HttpSink, ids: list[str], producer: Producer) -> int:
    """Assert the counts; return how many deliveries were sent twice."""
    received = Counter(r.headers["x-hub-event-id"] for r in sink.received)
    sends = Counter(
        (r.headers["idempotency-key"], int(r.headers["x-hub-attempt"])) for r in sink.received
    )
    rows = await store.pool.fetch(
        "SELECT delivery_id, attempt, status FROM delivery_log WHERE event_id = ANY($1)", ids
    )
    logged = {(r["delivery_id"], r["attempt"]) for r in rows}
    dead = await store.pool.fetchval("SELECT count(*) FROM dlq WHERE event_id = ANY($1)", ids)
    lost = set(producer.accepted) - set(received)
    unlogged = set(sends) - logged
    assert set(producer.accepted) == set(ids)
    assert (len(lost), dead, len(unlogged)) == (0, 0, 0), (
        f"lost {sorted(lost)[:5]}, DLQ rows {dead}, sends without a log row {sorted(unlogged)[:5]}"
    )
    assert "sending" not in {r["status"] for r in rows}, "an attempt never closed"
    # Delivery is at least once: a worker too busy to finish a workflow task in time runs its
    # first attempt again. Such a repeat must be the next attempt, never the same one twice,
    # and stay rare (none in most runs here).
    assert max(sends.values()) == 1, "one attempt number sent twice"
    # No attempt was used up by the outage: every number below a delivery's highest was sent,
    # or was cut off (a repeated first attempt stopped before it could send).
    cut_off = {(r["delivery_id"], r["attempt"]) for r in rows if r["status"] == "unknown"}
    highest: dict[str, int] = {}
    for key, attempt in sends:
        highest[key] = max(highest.get(key, 0), attempt)
    unused = (
        {(key, n) for key, top in highest.items() for n in range(1, top)} - set(sends) - cut_off
    )
    assert unused == set(), f"attempts used up without a send: {sorted(unused)[:5]}"
    repeated = sum(n - 1 for n in received.values())
    assert repeated <= len(ids) // 20, f"{repeated} deliveries sent twice"
    return repeated

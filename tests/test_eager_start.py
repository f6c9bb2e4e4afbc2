"""Eager workflow start: an emitter that shares its Temporal client with a worker on the
hub's task queue (``hub dev``, ``hub api --with-worker``) gets each event's first workflow
task handed straight back, without the task queue's round trip; other emitters do not."""

import json

import httpx
from pydantic import SecretStr
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from hub.api import create_app
from hub.config import Settings
from hub.core.models import Outcome, RuleIn
from hub.engine.client import HubClient
from hub.engine.worker import RunningWorker
from hub.store import Store
from tests.sink import HttpSink

TOKEN = "eager-TOKEN-0123456789"


async def started_eagerly(client: Client, workflow_id: str) -> bool:
    """Whether the server handed the first workflow task back in its answer to the start
    call. That task is started in the start's own write, so the history has no size yet to
    report in it; a task dispatched through the queue reports the history's size."""
    history = await client.get_workflow_handle(workflow_id).fetch_history()
    task = next(
        e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
    )
    return task.workflow_task_started_event_attributes.history_size_bytes == 0


async def emit_three(hub: HubClient, store: Store, name: str) -> list[str]:
    """Emit three events and wait for them; their workflow ids."""
    await hub.index.refresh(min_version=await store.rules.config_version())
    ids = []
    for n in range(3):
        result = await hub.emit(name, {"n": n}, wait=True)
        assert result.result is not None and result.result.outcome == Outcome.DELIVERED
        assert result.workflow_id is not None
        ids.append(result.workflow_id)
    return ids


async def test_events_start_eagerly_on_the_worker_s_own_client(
    settings: Settings, store: Store, worker: RunningWorker, make_service, sink: HttpSink, unique
):
    service = await make_service()
    await store.rules.create(RuleIn(event=f"{unique}.eager", service=service.name))
    async with HubClient.connect(
        settings, temporal=worker.client, store=store, eager_start=True
    ) as hub:
        ids = await emit_three(hub, store, f"{unique}.eager")
    assert sorted(json.loads(r.body)["data"]["n"] for r in sink.received) == [0, 1, 2]
    assert [await started_eagerly(worker.client, i) for i in ids] == [True] * 3


async def test_an_emitter_without_a_worker_or_without_the_flag_goes_through_the_queue(
    settings: Settings,
    store: Store,
    worker: RunningWorker,
    temporal: Client,
    make_service,
    sink: HttpSink,
    unique,
):
    service = await make_service()
    await store.rules.create(RuleIn(event=f"{unique}.queued", service=service.name))
    ids = []
    for client, eager in ((temporal, True), (worker.client, False)):
        async with HubClient.connect(
            settings, temporal=client, store=store, eager_start=eager
        ) as hub:
            ids += await emit_three(hub, store, f"{unique}.queued")
    assert len(sink.received) == 6
    assert [await started_eagerly(worker.client, i) for i in ids] == [False] * 6


async def test_api_with_worker_delivers_and_starts_eagerly(
    settings: Settings, store: Store, worker: RunningWorker, make_service, sink: HttpSink, unique
):
    """``hub api --with-worker``: the app runs its own worker (its own Temporal client) in its
    lifespan; events posted to it start eagerly on that worker and are delivered."""
    service = await make_service()
    await store.rules.create(RuleIn(event=f"{unique}.api", service=service.name))
    app_settings = settings.model_copy(update={"api_token": SecretStr(TOKEN)})
    app = create_app(app_settings, with_worker=True)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://hub",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as api,
    ):
        hub = app.state.api.hub
        assert hub.eager_start
        await hub.index.refresh(min_version=await store.rules.config_version())
        response = await api.post("/events", json={"name": f"{unique}.api", "data": {"n": 1}})
        assert response.status_code == 202, response.text
        workflow_id = response.json()["workflow_id"]
        result = await worker.client.get_workflow_handle(workflow_id).result()
    assert result["outcome"] == Outcome.DELIVERED.value
    assert [json.loads(r.body)["data"] for r in sink.received] == [{"n": 1}]
    assert await started_eagerly(worker.client, workflow_id)

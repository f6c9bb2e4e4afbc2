"""``hub api`` starts while PostgreSQL and Temporal are down, says so, and recovers by itself.

The test owns everything it breaks: a PostgreSQL of its own (initdb + postgres on a free
port), a Temporal dev server on a free port, and the ``hub api`` process.
"""

import asyncio
import os

import httpx
import pytest
from cryptography.fernet import Fernet

from hub.config import Settings
from hub.engine.namespace import ensure_search_attributes
from hub.runtime.connections import connect_temporal
from hub.runtime.embedded import TemporalDevServer, free_port
from hub.store import migrate
from tests.faults.servers import OwnPostgres, eventually, hub_api

API_TOKEN = "degraded-TOKEN-0123456789"
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}
DOWN = {"status": "unavailable", "database": "unavailable", "temporal": "unavailable"}
DATABASE_DOWN = {"status": "unavailable", "database": "unavailable", "temporal": "ok"}
TEMPORAL_DOWN = {"status": "unavailable", "database": "ok", "temporal": "unavailable"}
UP = {"status": "ok", "database": "ok", "temporal": "ok"}


@pytest.mark.timeout(120)
async def test_api_starts_degraded_and_recovers_by_itself(unique):
    postgres = OwnPostgres()
    temporal = TemporalDevServer(port=free_port())
    settings = Settings(
        database_url=postgres.url,
        temporal_address=temporal.address,
        task_queue=f"hub-degraded-{unique}",
        data_dir=postgres.root / "hub",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HUB_", "TEMPORAL_"))} | {
        "HUB_DATABASE_URL": postgres.url,
        "HUB_TEMPORAL_ADDRESS": temporal.address,
        "HUB_TASK_QUEUE": settings.task_queue,
        "HUB_API_TOKEN": API_TOKEN,
        "HUB_SECRET_KEY": Fernet.generate_key().decode(),
        "HUB_DATA_DIR": str(settings.data_dir),
    }
    event_ids = iter(range(1000))

    async def emit() -> httpx.Response:
        body = {"name": f"{unique}.degraded", "id": f"{unique}-{next(event_ids)}"}
        return await api.post("/events", json=body, headers=AUTH)

    try:
        await asyncio.to_thread(postgres.init)
        async with hub_api(env, free_port()) as running:
            api = running.client
            # Both down: the API serves, and says what is missing.
            health = await api.get("/healthz")
            assert (health.status_code, health.json()) == (503, DOWN)
            refused = await emit()
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "5"
            assert "database is unavailable" in refused.json()["detail"]

            # The database comes up first: the API uses it, and still names Temporal.
            postgres.start()
            await postgres.ready()
            await migrate(postgres.url)

            async def healthy() -> bool:
                return (await api.get("/healthz")).status_code == 200

            async def only_temporal_down() -> bool:
                return (await api.get("/healthz")).json() == TEMPORAL_DOWN

            await eventually(only_temporal_down, 5, "healthz naming only Temporal")
            service = {"name": f"{unique}-svc", "base_url": "https://receiver.example/api"}
            assert (await api.post("/services", json=service, headers=AUTH)).status_code == 201
            rule = {"event": f"{unique}.degraded", "service": f"{unique}-svc"}
            assert (await api.post("/rules", json=rule, headers=AUTH)).status_code == 201
            refused = await emit()
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "5"
            assert "Temporal is unavailable" in refused.json()["detail"]

            # Then Temporal: the API finds it without a restart.
            await asyncio.to_thread(temporal.start)
            client = await connect_temporal(settings)
            await ensure_search_attributes(client, settings.temporal_namespace)
            await eventually(healthy, 10, "healthz 200 after both came up")
            assert (await api.get("/healthz")).json() == UP
            started = await emit()
            assert started.status_code == 202, started.text
            assert started.json()["workflow_id"].startswith(f"event-{unique}-")

            # The database goes away: 503s that name it, with Retry-After.
            await asyncio.to_thread(postgres.stop)
            health = await api.get("/healthz")
            assert (health.status_code, health.json()) == (503, DATABASE_DOWN)
            refused = await emit()
            assert refused.status_code == 503, refused.text
            assert refused.headers["retry-after"] == "5"
            assert "database is unavailable" in refused.json()["detail"]
            assert "Traceback" not in refused.text

            # It comes back: within 5 s of it answering, the API serves again.
            postgres.start()
            await postgres.ready()

            async def serving() -> bool:
                return await healthy() and (await emit()).status_code == 202

            recovered = await eventually(serving, 5, "recovery after the database came back")
            assert (await api.get("/healthz")).json() == UP
            print(f"recovered {recovered:.2f}s after the database answered")
        # Every failure was answered; none was a crash.
        assert "Traceback" not in running.output, running.output
    finally:
        await asyncio.to_thread(temporal.stop)
        await asyncio.to_thread(postgres.remove)

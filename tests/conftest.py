"""Real servers for the tests: Temporal's dev server, PostgreSQL, HTTP sinks on 127.0.0.1.

PostgreSQL: ``HUB_TEST_DATABASE_URL`` if set, else the server on 127.0.0.1:5432 if it
answers, else an embedded one. Each run gets a fresh database, created by the migrations.
"""

import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from cryptography.fernet import Fernet

from hub.client import HubClient
from hub.config import Settings
from hub.core.models import RuleIn, Service, ServiceIn
from hub.engine.worker import RunningWorker, running_worker
from hub.runtime.connections import connect_temporal
from hub.runtime.embedded import TemporalDevServer, embedded_database_url, free_port, port_in_use
from hub.secrets import SecretBox
from hub.store import Store
from tests.cli_runner import Run, hub_env, run_hub
from tests.sink import HttpSink

RUN_ID = secrets.token_hex(4)
SECRET_KEY = Fernet.generate_key().decode()
LOOPBACK_ALLOWED = "127.0.0.1/32 ::1/128"


def _server_url() -> str:
    if url := os.environ.get("HUB_TEST_DATABASE_URL"):
        return url
    if port_in_use(5432):
        return "postgresql://postgres@127.0.0.1:5432/postgres"
    return embedded_database_url(Path(tempfile.gettempdir()) / "hub-test-pg")


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture(scope="session")
def postgres_server() -> str:
    """A URL of the PostgreSQL server the run may create databases on."""
    return _server_url()


@pytest.fixture(scope="session")
async def fresh_database(postgres_server: str):
    """A factory of empty databases, all dropped at the end of the run."""
    created: list[str] = []

    async def create(suffix: str) -> str:
        name = f"hub_test_{RUN_ID}_{suffix}"
        admin = await asyncpg.connect(postgres_server)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        created.append(name)
        return _with_database(postgres_server, name)

    yield create

    admin = await asyncpg.connect(postgres_server)
    try:
        for name in created:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture(scope="session")
async def database_url(fresh_database) -> str:
    return await fresh_database("main")


@pytest.fixture(scope="session")
def temporal_server() -> Iterator[TemporalDevServer]:
    server = TemporalDevServer(port=free_port())
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def settings(database_url: str, temporal_server: TemporalDevServer) -> Settings:
    return Settings(
        database_url=database_url,
        temporal_address=temporal_server.address,
        task_queue=f"hub-test-{RUN_ID}",
        rule_cache_seconds=30,
        secret_key=SECRET_KEY,
        # The sinks are on 127.0.0.1, which the egress guard refuses by default. Only that
        # address (and ::1): tests/test_egress.py reaches for 127.0.0.2 to see a refusal.
        egress_allow=LOOPBACK_ALLOWED,
        # The sandbox refuses non-deterministic calls in workflow code: every test checks the
        # workflows with it (production runs without it: HUB_WORKFLOW_SANDBOX).
        workflow_sandbox=True,
    )


@pytest.fixture(scope="session")
async def worker(settings: Settings) -> AsyncIterator[RunningWorker]:
    """One worker for the session; it also applies the migrations and search attributes."""
    async with running_worker(settings) as running:
        yield running


@pytest.fixture(scope="session")
async def store(settings: Settings, worker: RunningWorker) -> AsyncIterator[Store]:
    box = SecretBox.from_settings(settings)
    async with Store.open(settings.database_url, box=box, egress=settings.egress_policy) as store:
        yield store


@pytest.fixture(scope="session")
async def temporal(settings: Settings):
    return await connect_temporal(settings)


@pytest.fixture(scope="session")
async def hub(settings: Settings, store: Store, temporal) -> AsyncIterator[HubClient]:
    async with HubClient.connect(settings, temporal=temporal, store=store) as client:
        yield client


@pytest.fixture
async def sink() -> AsyncIterator[HttpSink]:
    server = HttpSink()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def unique() -> str:
    """A name no other test uses, for services and event names."""
    return f"t{secrets.token_hex(3)}"


@pytest.fixture
def make_service(store: Store, sink: HttpSink, unique: str):
    """Create an HTTP service pointing at the sink; fast retries unless told otherwise."""
    counter = iter(range(1000))

    async def make(**fields: object) -> Service:
        values: dict[str, object] = {
            "name": f"{unique}-svc{next(counter)}",
            "base_url": sink.url,
            "backoff": 0.1,
        }
        values.update(fields)
        return await store.services.create(ServiceIn.model_validate(values))

    return make


@pytest.fixture
def make_rule(store: Store, hub: HubClient):
    """Create a rule and let the emitting client's index catch up (it would within ms)."""

    async def make(event: str, service: Service, **fields: object):
        rule = await store.rules.create(
            RuleIn.model_validate({"event": event, "service": service.name, **fields})
        )
        await hub.index.refresh(min_version=await store.rules.config_version())
        return rule

    return make


@pytest.fixture
def cli(settings: Settings, worker: RunningWorker):
    """``await cli(*args, stdin=..., env={...})``: the ``hub`` command on this run's servers."""
    base = hub_env(settings) | {"COLUMNS": "200"}

    async def run(*args: str, stdin: str = "", env: dict[str, str] | None = None) -> Run:
        return await run_hub(base | (env or {}), *args, stdin=stdin)

    return run

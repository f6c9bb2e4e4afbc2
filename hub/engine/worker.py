"""The hub worker: shared clients, activities and workflows on one task queue, and its
Prometheus endpoint (HUB_METRICS_PORT)."""

import asyncio
import compileall
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
from pydantic import ValidationError
from temporalio.client import Client
from temporalio.worker import PollerBehaviorAutoscaling, UnsandboxedWorkflowRunner, Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import workflows
from activities import (
    DeliveryActivities,
    DeliveryAttempt,
    DispatchActivities,
    ResponseActivities,
    StoreActivities,
)
from activities.lanes import LaneActivities
from hub.config import Settings
from hub.core.control import HoldReason
from hub.engine.holds import wake_held
from hub.engine.namespace import ensure_search_attributes
from hub.engine.schedules import ensure_schedules
from hub.engine.startup import when_up
from hub.runtime.breaker import CircuitBreaker
from hub.runtime.connections import connect_temporal, database_url
from hub.runtime.metrics import HubMetrics
from hub.runtime.metrics_endpoint import MetricsPortError, bind_metrics_socket, serving_metrics
from hub.runtime.process import configure_logging, exit_now
from hub.runtime.rule_index import RuleIndex
from hub.runtime.telemetry import runtime_metrics_url
from hub.runtime.tracing import WORKER_SERVICE, setup_tracing
from hub.secrets import SecretBox
from hub.store import Store, migrate
from hub.transport.amqp import AmqpPool, AmqpTransport
from hub.transport.egress import EgressGuard, GuardedTransport, Resolver
from hub.transport.http import HttpTransport, NoCookies
from workflows.consume import ConsumeResponsesWorkflow
from workflows.dispatch import DispatchEventWorkflow
from workflows.lane import LaneWorkflow
from workflows.prune import PruneLogWorkflow
from workflows.replay import ReplayDeadLetterWorkflow

log = logging.getLogger(__name__)

GRACEFUL_SHUTDOWN = timedelta(seconds=20)
# The sandbox re-imports a workflow's module, and every module it imports that is not passed
# through, for each workflow run. Our own modules are deterministic and keep no state, so they
# are imported once; only the workflow modules themselves are re-run.
SANDBOX = SandboxedWorkflowRunner(
    restrictions=SandboxRestrictions.default.with_passthrough_modules(
        "hub", "activities", "workflows.delivery", "workflows.bookkeeping", "workflows.lane_turns"
    )
)
WORKFLOWS = [
    DispatchEventWorkflow,
    ConsumeResponsesWorkflow,
    ReplayDeadLetterWorkflow,
    PruneLogWorkflow,
    LaneWorkflow,
]


@dataclass(frozen=True)
class RunningWorker:
    """A started worker and the shared clients whose state is worth inspecting."""

    worker: Worker
    amqp: AmqpPool
    store: Store
    metrics: HubMetrics

    @property
    def client(self) -> Client:
        """The Temporal client the worker polls with: an emitter that starts workflows on it
        can have them started eagerly on this worker."""
        return self.worker.client

    async def scrape(self) -> bytes:
        """The worker's metrics: its counters, the database gauges, Temporal's runtime."""
        return await self.metrics.scrape(self.store, runtime_metrics_url(self.worker.client))


def http_client(settings: Settings, guard: EgressGuard) -> httpx.AsyncClient:
    """The worker's one HTTP client: pooled connections, each opened through the egress
    guard; redirects never followed, cookies never kept."""
    limits = httpx.Limits(
        max_connections=settings.http_max_connections,
        max_keepalive_connections=settings.http_max_connections,
    )
    return httpx.AsyncClient(
        transport=GuardedTransport(guard, limits), follow_redirects=False, cookies=NoCookies()
    )


def activities(
    settings: Settings,
    store: Store,
    index: RuleIndex,
    box: SecretBox,
    http: httpx.AsyncClient,
    amqp: AmqpPool,
    metrics: HubMetrics,
    temporal: Client | None = None,
) -> list[Callable[..., Any]]:
    """The worker's activities, on its shared clients, all counting into ``metrics``;
    with ``temporal``, a probe that closes a circuit wakes the deliveries it held."""
    breaker = CircuitBreaker(store, metrics=metrics)
    attempt = DeliveryAttempt(
        store,
        index,
        breaker,
        box,
        metrics,
        wake=None if temporal is None else _circuit_waker(temporal),
        release_rate=settings.release_rate,
    )
    transport = HttpTransport(http, max_bytes=settings.response_max_bytes)
    deliveries = DeliveryActivities(attempt, transport, AmqpTransport(amqp))
    responses = ResponseActivities(store, index, amqp, box, metrics)
    bookkeeping = StoreActivities(
        store, index, max_payload_bytes=settings.max_payload_bytes, metrics=metrics
    )
    return [
        DispatchActivities(bookkeeping, deliveries).plan_and_send,
        bookkeeping.plan,  # planning alone: workflows started before the plan-and-send patch
        bookkeeping.record_attempt,
        bookkeeping.dead_letter,
        bookkeeping.replay_delivery,
        bookkeeping.finish_replay,
        bookkeeping.prune_log,
        deliveries.deliver_http,
        deliveries.deliver_amqp,
        responses.response_queues,
        responses.consume,
    ]


def compile_workflow_modules() -> None:
    """Write the workflow modules' bytecode if it is missing (PYTHONDONTWRITEBYTECODE, or a
    fresh checkout): the sandbox re-imports a workflow's module for every new run, and each
    import without bytecode compiles the source again, a tenth of a worker's CPU
    (bench/results.md, issue 16). Best effort: where it cannot write, the worker still runs.
    """
    compileall.compile_dir(Path(workflows.__file__).parent, quiet=2)


def _circuit_waker(temporal: Client) -> Callable[[str], Any]:
    """Wake the deliveries an open circuit of a service held (it just closed)."""
    return lambda service: wake_held(temporal, service, HoldReason.CIRCUIT_OPEN)


@asynccontextmanager
async def running_worker(
    settings: Settings,
    *,
    temporal: Client | None = None,
    dsn: str | None = None,
    resolver: Resolver | None = None,
    metrics: HubMetrics | None = None,
) -> AsyncIterator[RunningWorker]:
    """A started worker with its store, rule index and HTTP client; all closed on exit.

    ``resolver`` replaces the system's for the egress guard (tests answer with it);
    ``metrics`` is what the activities count into (a new registry unless given).
    """
    metrics = metrics or HubMetrics()
    if settings.workflow_sandbox:  # outside it, each workflow module is imported once
        await asyncio.to_thread(compile_workflow_modules)
    dsn = dsn or database_url(settings)
    await when_up("PostgreSQL", lambda: migrate(dsn))
    client = temporal
    if client is None:
        client = await when_up("Temporal", lambda: connect_temporal(settings))
    await when_up("Temporal", lambda: ensure_search_attributes(client, settings.temporal_namespace))
    await when_up("Temporal", lambda: ensure_schedules(client, settings))
    async with AsyncExitStack() as stack:
        box = SecretBox.from_settings(settings)
        policy = settings.egress_policy
        store = await stack.enter_async_context(
            Store.open(dsn, box=box, egress=policy, min_size=0, max_size=20)
        )
        guard = EgressGuard(policy, resolver)
        index = RuleIndex(store, ttl=settings.rule_cache_seconds)
        await index.start()
        stack.push_async_callback(index.close)
        http = await stack.enter_async_context(http_client(settings, guard))
        amqp = AmqpPool(guard, name=f"temporal-hub worker {os.getpid()}")
        stack.push_async_callback(amqp.close)
        worker = Worker(
            client,
            task_queue=settings.task_queue,
            workflows=WORKFLOWS,
            workflow_runner=SANDBOX if settings.workflow_sandbox else UnsandboxedWorkflowRunner(),
            activities=[
                *activities(settings, store, index, box, http, amqp, metrics, client),
                LaneActivities(client).workflow_state,
            ],
            max_concurrent_activities=settings.max_concurrent_activities,
            max_concurrent_workflow_tasks=settings.max_concurrent_workflow_tasks,
            max_concurrent_local_activities=settings.max_concurrent_local_activities,
            graceful_shutdown_timeout=GRACEFUL_SHUTDOWN,
            # Nearly every workflow task is a new workflow's first, on the normal queue, not
            # the sticky one: let the server's backlog set how many pollers ask for them.
            workflow_task_poller_behavior=PollerBehaviorAutoscaling(),
            activity_task_poller_behavior=PollerBehaviorAutoscaling(),
        )
        async with worker:
            yield RunningWorker(worker=worker, amqp=amqp, store=store, metrics=metrics)


async def run(
    settings: Settings | None = None, metrics_socket: socket.socket | None = None
) -> None:
    """Run until SIGINT or SIGTERM, then let running activities finish (graceful shutdown);
    serve GET /metrics on ``metrics_socket`` (bound by the caller) meanwhile."""
    settings = settings or Settings()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_worker(settings) as running, AsyncExitStack() as stack:
        if metrics_socket is not None:
            await stack.enter_async_context(serving_metrics(metrics_socket, running.scrape))
            log.info(
                "metrics on http://%s:%s/metrics", settings.metrics_host, settings.metrics_port
            )
        log.info(
            "worker on task queue %r at %s (namespace %r)",
            settings.task_queue,
            settings.resolved_temporal_address,
            settings.temporal_namespace,
        )
        log.info(
            "egress guard: private and special addresses refused; HUB_EGRESS_ALLOW: %s",
            settings.egress_allow or "(none)",
        )
        await stop.wait()
        log.info(
            "shutting down: waiting up to %ss for running activities", GRACEFUL_SHUTDOWN.seconds
        )


def main() -> None:
    """``python worker.py`` and ``hub worker``; a bad setting is one line, not a traceback."""
    configure_logging()
    setup_tracing(WORKER_SERVICE)  # before any Temporal client: it adds the interceptor
    try:
        settings = Settings()
    except ValidationError as error:
        for problem in error.errors():
            where = ".".join(map(str, problem["loc"]))
            message = problem["msg"].removeprefix("Value error, ")
            print(f"error: {where}: {message}", file=sys.stderr)
        exit_now(1)
    metrics_socket = None
    if settings.metrics_port:
        try:
            metrics_socket = bind_metrics_socket(settings.metrics_host, settings.metrics_port)
        except MetricsPortError as error:
            print(f"error: {error}", file=sys.stderr)
            exit_now(1)
    asyncio.run(run(settings, metrics_socket))
    exit_now(0)

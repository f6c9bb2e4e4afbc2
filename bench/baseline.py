"""The yardstick for the hub: a bare Temporal workflow that makes the same HTTP POST.

    python bench/baseline.py worker --address 127.0.0.1:7233 --task-queue bench-baseline

One workflow, one activity, one POST of a small JSON body through an httpx client shared by
the activity instance. No rules, no delivery log, no circuit breaker, default worker settings
and the default retry policy: what any Temporal user would write first. The hub's throughput
is reported as a ratio of this one's, measured on the same server in the same run.
"""

import argparse
import asyncio
import signal
import sys
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.worker import Worker

with workflow.unsafe.imports_passed_through():
    import httpx

WORKFLOW_NAME = "BaselineWorkflow"


@dataclass
class Post:
    """One POST: where to send it, and the id the sink records it under."""

    url: str
    request_id: str
    body: dict[str, Any]


class BaselineActivities:
    """Holds the worker's one shared HTTP client."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    @activity.defn(name="baseline_post")
    async def post(self, post: Post) -> int:
        """POST the body; any non-2xx fails the attempt so Temporal retries it."""
        response = await self._client.post(
            post.url, json=post.body, headers={"X-Bench-Id": post.request_id}
        )
        response.raise_for_status()
        return response.status_code


@workflow.defn(name=WORKFLOW_NAME)
class BaselineWorkflow:
    """Deliver one POST with Temporal's default retry policy."""

    @workflow.run
    async def run(self, post: Post) -> int:
        return await workflow.execute_activity_method(
            BaselineActivities.post, post, start_to_close_timeout=timedelta(seconds=10)
        )


async def run_worker(address: str, task_queue: str) -> None:
    """Poll task_queue until SIGTERM or SIGINT, then shut down gracefully."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    temporal = await Client.connect(address)
    async with httpx.AsyncClient() as http:
        activities = BaselineActivities(http)
        async with Worker(
            temporal,
            task_queue=task_queue,
            workflows=[BaselineWorkflow],
            activities=[activities.post],
        ):
            print(f"baseline worker ready on task queue {task_queue!r}", file=sys.stderr)
            await stop.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    worker = commands.add_parser("worker", help="run the baseline worker")
    worker.add_argument("--address", required=True, help="Temporal frontend host:port")
    worker.add_argument("--task-queue", required=True)
    args = parser.parse_args()
    asyncio.run(run_worker(args.address, args.task_queue))


if __name__ == "__main__":
    main()

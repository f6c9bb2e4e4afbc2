"""``python worker.py`` as its own process: it delivers, and SIGTERM lets running work finish."""

import asyncio
import signal

from hub.client import HubClient
from hub.engine.schedules import ensure_schedules
from tests.cli_runner import hub_env, spawn_worker
from tests.sink import Reply


async def test_worker_process_delivers_and_shuts_down_gracefully(
    settings, temporal, store, sink, make_service, make_rule, unique
):
    queue = f"{settings.task_queue}-{unique}"
    env = hub_env(settings, task_queue=queue)
    process = await spawn_worker(
        env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        service = await make_service()
        await make_rule(f"{unique}.proc", service, endpoint="/proc")
        own_queue = settings.model_copy(update={"task_queue": queue})
        async with HubClient.connect(own_queue, temporal=temporal, store=store) as hub:
            first = await asyncio.wait_for(hub.emit(f"{unique}.proc", {}, wait=True), 60)
            assert first.result.outcome.value == "delivered"

            sink.script("/proc", Reply(delay=2.0))
            await hub.emit(f"{unique}.proc", {}, event_id=f"{unique}-slow")
            while len(sink.at("/proc")) < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.05)
            process.send_signal(signal.SIGTERM)
            output, _ = await asyncio.wait_for(process.communicate(), 30)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await ensure_schedules(temporal, settings)  # the worker re-pointed them at its queue

    assert process.returncode == 0, output.decode()
    # The attempt in flight at SIGTERM finished and was logged, not cancelled.
    [row] = await store.log.recent(event_id=f"{unique}-slow")
    assert row.status.value == "ok"
    assert b"Traceback" not in output

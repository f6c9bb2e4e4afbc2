"""Serving an ASGI app inside a process that owns the event loop and the signals."""

import asyncio
import contextlib
from asyncio import Task
from collections.abc import Iterator
from typing import Any

import uvicorn

from hub.runtime.embedded import DevStackError


class EmbeddedServer(uvicorn.Server):
    """A uvicorn server inside a process that handles SIGINT/SIGTERM itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_in_background(app: Any, host: str, port: int) -> tuple[EmbeddedServer, Task[None]]:
    """Start an ASGI app on host:port and return once it accepts connections."""
    server = EmbeddedServer(uvicorn.Config(app, host=host, port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise DevStackError(f"the server on {host}:{port} did not start")
        await asyncio.sleep(0.05)
    return server, task


async def stop_server(server: EmbeddedServer, task: Task[None]) -> None:
    """Ask the server to finish its requests and wait until it has."""
    server.should_exit = True
    await task

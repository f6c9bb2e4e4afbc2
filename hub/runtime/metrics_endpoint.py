"""The worker's ``GET /metrics`` (HUB_METRICS_PORT): a one-route app served by uvicorn in the
worker's own event loop, so a scrape reads the database gauges on the worker's pool.

The socket is bound before the worker starts anything, so a port that is taken stops it at
once with one line that names the port.
"""

import asyncio
import contextlib
import errno
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from hub.runtime.metrics import CONTENT_TYPE

Scrape = Callable[[], Awaitable[bytes]]


class MetricsPortError(Exception):
    """The metrics port cannot be bound; the message is the one line to show."""


def bind_metrics_socket(host: str, port: int) -> socket.socket:
    """A listening socket on host:port, or MetricsPortError naming the port."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # Lets a restarted worker rebind at once; a port someone listens on still fails.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(128)
    except OSError as error:
        sock.close()
        reason = error.strerror or str(error)
        if error.errno == errno.EADDRINUSE:
            raise MetricsPortError(
                f"HUB_METRICS_PORT {port} is in use on {host}: {reason}"
            ) from None
        raise MetricsPortError(
            f"HUB_METRICS_PORT {port} on {host} cannot be used: {reason}"
        ) from None
    sock.setblocking(False)
    return sock


def metrics_app(scrape: Scrape) -> Starlette:
    """``GET /metrics`` answering the scrape's exposition; nothing else."""

    async def metrics(_: Request) -> Response:
        return Response(await scrape(), media_type=CONTENT_TYPE)

    return Starlette(routes=[Route("/metrics", metrics, methods=["GET"])])


class _Server(uvicorn.Server):
    """uvicorn inside a process that handles SIGINT/SIGTERM itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@contextlib.asynccontextmanager
async def serving_metrics(sock: socket.socket, scrape: Scrape) -> AsyncIterator[None]:
    """Serve ``GET /metrics`` on the bound socket until the block ends."""
    config = uvicorn.Config(
        metrics_app(scrape), log_level="warning", access_log=False, lifespan="off"
    )
    server = _Server(config)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()  # its error, if it failed to start
                raise RuntimeError("the metrics endpoint did not start")
            await asyncio.sleep(0.01)
        yield
    finally:
        server.should_exit = True
        await task

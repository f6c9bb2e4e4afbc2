"""``hub dev``: the whole hub in one process, on embedded servers where none are configured.

Temporal's dev server (with its UI) and PostgreSQL start as children; the worker, the API and
the schedules run in this process. Everything stops together on Ctrl+C or SIGTERM, and the
children die with this process even when it is killed (SIGKILL). One ``hub dev`` per
HUB_DATA_DIR: a second one on the same directory refuses to start.

The worker and the API share one metrics registry, so the API's ``/metrics`` is the one
combined endpoint (worker + API + Temporal's runtime); HUB_METRICS_PORT is not served here.
"""

import asyncio
import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from hub.api import create_app
from hub.config import Settings
from hub.console import mount_console
from hub.dev.background import serve_in_background, stop_server
from hub.dev.demo import start_demo
from hub.dev.lock import holding_data_dir
from hub.engine.worker import running_worker
from hub.runtime.connections import database_url
from hub.runtime.embedded import (
    DevStackError,
    TemporalDevServer,
    port_in_use,
    private_data_dir,
)
from hub.runtime.metrics import HubMetrics
from hub.secrets import ensure_api_token, ensure_key_file

LOOPBACK = "127.0.0.0/8 ::1"
NO_UI = "  Temporal UI  (your Temporal's UI)"


@dataclass(frozen=True)
class DevPorts:
    """Where ``hub dev`` listens; every one configurable so two stacks can coexist."""

    temporal: int = 7233
    ui: int = 8233
    api: int = 8000
    demo: int = 8099


def run_dev(
    settings: Settings,
    ports: DevPorts,
    *,
    host: str = "127.0.0.1",
    demo: bool = False,
    say: Callable[[str], None] = print,
) -> None:
    """``hub dev``: embedded servers where none are configured, then worker + API until a
    signal; everything it started is stopped on the way out, and dies with it if it is killed
    (see ``hub.runtime.embedded``). One ``hub dev`` per data directory."""
    data_dir = settings.data_dir.resolve()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with holding_data_dir(data_dir):  # first: a refused hub dev changes nothing
        check_ports(settings, ports, host, demo)
        updates: dict[str, Any] = {"data_dir": data_dir}
        if settings.secret_key is None:
            ensure_key_file(data_dir)
        if settings.api_token is None:
            updates["api_token"] = SecretStr(ensure_api_token(data_dir))
        private_data_dir(data_dir)  # after those, which make it 0700 even as root
        updates["egress_allow"] = allow_loopback(settings.egress_allow, say)
        temporal = None
        try:
            if settings.temporal_address is None:
                temporal = start_temporal(data_dir, host, ports, say)
                updates["temporal_address"] = temporal.address
                if "temporal_ui_url" not in settings.model_fields_set:
                    updates["temporal_ui_url"] = f"http://{host}:{ports.ui}"
                # The UI, in a browser, calls the API's codec endpoint to show payloads.
                ui_origin = f"http://{host}:{ports.ui}"
                updates["codec_cors_origins"] = f"{settings.codec_cors_origins} {ui_origin}".strip()
            if settings.database_url is None:
                say(f"starting embedded PostgreSQL in {data_dir / 'postgres'} …")
            updates["database_url"] = database_url(settings)
            settings = settings.model_copy(update=updates)
            ui = ui_banner(host, ports) if temporal else [NO_UI]
            asyncio.run(_serve_dev(settings, host, ports, demo, ui, say))
        finally:
            if temporal is not None:
                temporal.stop()


def check_ports(settings: Settings, ports: DevPorts, host: str, demo: bool) -> None:
    busy = [p for p in (ports.api, *((ports.demo,) if demo else ())) if port_in_use(p, host)]
    if settings.temporal_address is None:
        busy += [p for p in (ports.temporal, ports.ui) if port_in_use(p, host)]
    if busy:
        raise DevStackError(
            f"port(s) {', '.join(map(str, busy))} on {host} already in use: stop what uses "
            "them or pick others (hub dev --help lists the port options)"
        )


def start_temporal(
    data_dir: Path, host: str, ports: DevPorts, say: Callable[[str], None]
) -> TemporalDevServer:
    """The Temporal dev server, its UI decoding payloads through the API's codec endpoint.

    Started from the main thread: it gets SIGTERM when that thread (the process) dies."""
    temporal = TemporalDevServer(
        host=host,
        port=ports.temporal,
        ui_port=ports.ui,
        db_file=data_dir / "temporal.db",
        log_file=data_dir / "temporal.log",
        ui_codec_endpoint=codec_endpoint(host, ports),
    )
    say(f"starting the Temporal dev server on {temporal.address} …")
    temporal.start()
    return temporal


def codec_endpoint(host: str, ports: DevPorts) -> str:
    """The API's remote codec endpoint (``/codec/encode``, ``/codec/decode``)."""
    return f"http://{host}:{ports.api}/codec"


def ui_banner(host: str, ports: DevPorts) -> list[str]:
    return [
        f"  Temporal UI  http://{host}:{ports.ui}",
        f"               UI decodes payloads through {codec_endpoint(host, ports)}",
    ]


def allow_loopback(egress_allow: str, say: Callable[[str], None]) -> str:
    """HUB_EGRESS_ALLOW plus loopback, so the demo sink and local test servers are reachable;
    says so, since ``hub worker`` and ``hub api`` refuse loopback unless told otherwise."""
    say(
        f"egress: hub dev allows loopback ({LOOPBACK.replace(' ', ', ')}); "
        "hub worker and hub api refuse it unless HUB_EGRESS_ALLOW lists it"
    )
    return f"{egress_allow} {LOOPBACK}".strip()


async def _serve_dev(
    settings: Settings,
    host: str,
    ports: DevPorts,
    demo: bool,
    ui: list[str],
    say: Callable[[str], None],
) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    metrics = HubMetrics()  # one registry: the API's /metrics shows the worker's counters too
    async with (
        running_worker(settings, metrics=metrics) as running,
        contextlib.AsyncExitStack() as stack,
    ):
        # The API emits on the worker's own client, so each event's first workflow task
        # is handed straight to this worker (eager start) instead of through the queue.
        app = create_app(settings, metrics=metrics, temporal=running.client, eager_start=True)
        mount_console(app, settings)
        server, task = await serve_in_background(app, host, ports.api)
        stack.push_async_callback(stop_server, server, task)
        if demo:
            await stack.enter_async_context(start_demo(settings, host, ports.demo, say))
        assert settings.api_token is not None
        api = f"http://{host}:{ports.api}"
        say(
            "\n".join(
                [
                    "",
                    "hub is running (Ctrl+C stops everything):",
                    *ui,
                    f"  Console      {api}/ui   (sign in with the API token)",
                    f"  API          {api}   (docs: {api}/docs)",
                    f"  Metrics      {api}/metrics   (worker, API, Temporal; token)",
                    f"  API token    {settings.api_token.get_secret_value()}",
                    f"  Data         {settings.data_dir}",
                    "",
                ]
            )
        )
        await stop.wait()
        say("stopping …")

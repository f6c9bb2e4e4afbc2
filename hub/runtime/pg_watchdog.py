"""The embedded PostgreSQL's watchdog (see ``hub.runtime.embedded_pg``).

``python -m hub.runtime.pg_watchdog PGDATA --socket-dir DIR`` runs the postmaster as its
child; ``--adopt PID`` watches one that is already running. Either way it shuts the server
down (SIGINT: fast shutdown) once no process holds the users lock any more, or when it is
itself asked to stop (SIGTERM, SIGINT, SIGHUP), and then exits.
"""

import argparse
import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from hub.runtime.embedded_pg import Cluster, is_postmaster, shut_down

POLL_SECONDS = 0.25


def nobody_uses(users: int) -> bool:
    """True (and the lock is ours until we exit) once no process holds it shared."""
    try:
        fcntl.flock(users, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=f"python -m {__spec__.name}", description=__doc__)
    parser.add_argument("pgdata", type=Path)
    how = parser.add_mutually_exclusive_group(required=True)
    how.add_argument("--socket-dir", type=Path, help="start the postmaster, sockets there")
    how.add_argument("--adopt", type=int, help="watch this running postmaster instead")
    args = parser.parse_args(argv)
    cluster = Cluster(args.pgdata)
    asked: list[int] = []

    def ask_to_stop(signum: int, _frame: FrameType | None) -> None:
        asked.append(signum)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, ask_to_stop)
    users = os.open(cluster.users_lock, os.O_RDWR | os.O_CREAT, 0o600)
    child = None if args.adopt else cluster.spawn_postmaster(args.socket_dir)
    pid: int = args.adopt if child is None else child.pid

    def alive() -> bool:
        return child.poll() is None if child is not None else is_postmaster(pid, cluster.pgdata)

    say = f"hub pg_watchdog {os.getpid()}: postmaster {pid}"
    print(f"{say}: {'adopted' if child is None else 'started'}", flush=True)
    while alive():
        if asked or nobody_uses(users):
            why = f"signal {asked[0]}" if asked else "no process uses it any more"
            print(f"{say}: fast shutdown ({why})", flush=True)
            shut_down(pid, cluster.pgdata, timeout=30.0)
            break
        if child is None:
            time.sleep(POLL_SECONDS)
            continue
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(POLL_SECONDS)
    if child is not None:
        child.wait()
    print(f"{say}: ended", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

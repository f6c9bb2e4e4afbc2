"""One ``hub dev`` per data directory.

``HUB_DATA_DIR/dev.lock`` is held with an exclusive flock for as long as ``hub dev`` runs, and
names its pid. The kernel drops the lock when the process ends, however it ends: a file left
by a crash (``kill -9``) names a dead pid but holds no lock, and the next ``hub dev`` takes it.
"""

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hub.runtime.embedded import DevStackError

LOCK_FILE = "dev.lock"


@contextmanager
def holding_data_dir(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's lock, or refuse with the pid of the ``hub dev`` holding it."""
    fd = os.open(data_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise DevStackError(
                f"another hub dev (pid {holder}) is running on {data_dir}: stop it first, "
                "or give this one a HUB_DATA_DIR of its own"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)

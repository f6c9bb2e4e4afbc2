"""Servers the hub runs as child processes: how their start fails, and how they die with us.

A dev server must not outlive the process that started it, even one killed with SIGKILL,
which runs no clean-up. Linux can signal a child when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), set between fork and exec.
"""

import ctypes
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path

PR_SET_PDEATHSIG = 1


class DevStackError(RuntimeError):
    """An embedded server could not be started; the message says why."""


def parent_death_signal(signal_number: int) -> Callable[[], None] | None:
    """A ``preexec_fn`` after which the child gets ``signal_number`` when we die, or None.

    Linux sends it when the *thread* that forked the child ends, not the process: a child
    started from a thread that ends early would be signalled then. Only the main thread
    lives as long as the process, so this applies to children spawned from the main thread;
    elsewhere (and off Linux) it returns None and the child is stopped the ordinary way.
    """
    if not sys.platform.startswith("linux"):
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # resolved here, not in the forked child
    parent = os.getpid()

    def die_with_parent() -> None:
        if prctl(PR_SET_PDEATHSIG, signal_number, 0, 0, 0) != 0:
            os._exit(126)
        if os.getppid() != parent:  # we died between fork and prctl: no signal will come
            os._exit(1)

    return die_with_parent


def process_state(pid: int) -> tuple[str, str, int] | None:
    """(command name, state letter, parent pid) of a process from /proc; None if none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    name = stat[stat.find("(") + 1 : stat.rfind(")")]
    state, parent = stat[stat.rfind(")") + 2 :].split(" ", 2)[:2]
    return name, state, int(parent)


def is_running(pid: int, name: str | None = None) -> bool:
    """Whether the pid is a live process (a zombie has ended), named ``name`` if given."""
    state = process_state(pid)
    if state is None or state[1] in ("Z", "X"):
        return False
    return name is None or state[0] == name


def command_line(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]

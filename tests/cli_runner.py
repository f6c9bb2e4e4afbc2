"""Running the ``hub`` command as a subprocess, as a user would, and reading what it said."""

import asyncio
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HUB = str(Path(sys.executable).parent / "hub")
ROOT = Path(__file__).resolve().parent.parent
DEVNULL = asyncio.subprocess.DEVNULL


def hub_env(settings: Any, *, task_queue: str | None = None) -> dict[str, str]:
    """This process's environment plus what a ``hub`` or ``worker.py`` child needs to use
    the run's servers (the sinks are on 127.0.0.1, so loopback egress is allowed)."""
    return os.environ | {
        "HUB_DATABASE_URL": settings.database_url or "",
        "HUB_TEMPORAL_ADDRESS": settings.resolved_temporal_address,
        "HUB_TASK_QUEUE": task_queue or settings.task_queue,
        "HUB_SECRET_KEY": settings.secret_key.get_secret_value() if settings.secret_key else "",
        "HUB_EGRESS_ALLOW": settings.egress_allow,
        # A worker child serves no metrics unless a test asks: 9464 may be taken here.
        "HUB_METRICS_PORT": "0",
    }


async def spawn_worker(
    env: dict[str, str], *, stdout: int = DEVNULL, stderr: int = DEVNULL
) -> asyncio.subprocess.Process:
    """``python worker.py`` as a child, as an operator starts it (``env``: see hub_env)."""
    return await asyncio.create_subprocess_exec(
        sys.executable, "worker.py", cwd=ROOT, env=env, stdout=stdout, stderr=stderr
    )


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


async def run_hub(env: dict[str, str], *args: str, stdin: str = "") -> Run:
    """``hub ARGS`` with exactly this environment and input; at most 60 s."""
    process = await asyncio.create_subprocess_exec(
        HUB,
        *args,
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(stdin.encode()), 60)
    return Run(process.returncode or 0, stdout.decode(), stderr.decode())


def assert_one_line_error(run: Run, *fragments: str) -> None:
    assert run.code == 1, run
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith("error:")
    assert "Traceback" not in run.stderr
    for fragment in fragments:
        assert fragment in lines[0]

"""Running the ``hub`` command as a subprocess, as a user would, and reading what it said."""

import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HUB = str(Path(sys.executable).parent / "hub")


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

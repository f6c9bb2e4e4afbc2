"""Running ``hub dev`` as a subprocess, as a newcomer would: tests/test_devstack.py and the
fault drill tests/faults/test_dev_kill.py."""

import asyncio
import os
import signal
import sys
from pathlib import Path

import httpx
import psutil

from hub.runtime.embedded import free_port

HUB = str(Path(sys.executable).parent / "hub")


def dev_env(data_dir: Path) -> dict[str, str]:
    """The environment of a newcomer: no hub settings at all, only a data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["HUB_DATA_DIR"] = str(data_dir)
    return env


def dev_ports() -> dict[str, int]:
    return {"temporal": free_port(), "ui": free_port(), "api": free_port()}


async def start_dev(data_dir: Path, ports: dict[str, int]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        HUB,
        "dev",
        "--temporal-port",
        str(ports["temporal"]),
        "--ui-port",
        str(ports["ui"]),
        "--api-port",
        str(ports["api"]),
        env=dev_env(data_dir),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def wait_healthy(api: str, process: asyncio.subprocess.Process) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(240):
            assert process.returncode is None, await process.stdout.read()
            try:
                if (await client.get(f"{api}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.25)
    raise AssertionError("hub dev did not become healthy within 60 s")


async def stop(process: asyncio.subprocess.Process) -> tuple[int, str]:
    process.send_signal(signal.SIGTERM)
    output, _ = await asyncio.wait_for(process.communicate(), 60)
    return process.returncode, output.decode()


def processes_using(data_dir: Path) -> list[str]:
    """Processes (Temporal, PostgreSQL, …) whose command line names the data directory."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(data_dir) in cmdline:
            found.append(f"{proc.info['pid']}: {cmdline}")
    return found

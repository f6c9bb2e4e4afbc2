"""``kill -9`` of ``hub dev``: its Temporal server and PostgreSQL die with it, the next
``hub dev`` on the same directory recovers what a crash leaves behind, and a second one on
the same directory refuses while the first runs."""

import asyncio
import os
import signal
import time
from pathlib import Path

import psutil

from hub.runtime.embedded import port_in_use
from hub.runtime.embedded_pg import SYSTEM_USER
from tests.devstack import dev_ports, processes_using, start_dev, stop, wait_healthy


def describe(process: psutil.Process) -> str:
    try:
        return f"{process.pid} {' '.join(process.cmdline())}"
    except psutil.Error:
        return f"{process.pid} (gone)"


def still_running(processes: list[psutil.Process]) -> list[psutil.Process]:
    """Those not ended (a zombie has ended: only its exit status waits to be collected)."""
    running = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                running.append(process)
        except psutil.NoSuchProcess:
            pass
    return running


def stale_postgres_files(pgdata: Path, pid: int) -> None:
    """What a crash of the machine leaves: ``postmaster.pid`` and the socket's lock file,
    naming a pid that by now belongs to another process. PostgreSQL refuses to start while
    that pid is alive (and one it may signal), whatever it now is."""
    started = int(time.time()) - 3600
    (pgdata / "postmaster.pid").write_text(
        f"{pid}\n{pgdata}\n{started}\n5432\n{pgdata}\n\n  5432001  0\nready   \n"
    )
    (pgdata / ".s.PGSQL.5432.lock").write_text(f"{pid}\n{pgdata}\n{started}\n5432\n{pgdata}\n")


async def test_kill_9_leaves_no_orphans_then_next_start_recovers_and_a_second_refuses(tmp_path):
    data_dir = tmp_path / "hubdata"
    ports = dev_ports()
    api = f"http://127.0.0.1:{ports['api']}"
    began = time.monotonic()
    process = await start_dev(data_dir, ports)
    try:
        await wait_healthy(api, process)
        children = psutil.Process(process.pid).children(recursive=True)
        lines = [describe(child) for child in children]
        assert any("start-dev" in line for line in lines), lines
        assert any(f"postgres -D {data_dir}" in line for line in lines), lines
        assert any("[local]" in line for line in lines), lines  # the hub's own sessions
    finally:
        process.kill()  # SIGKILL: no handler, no clean-up, no exit functions
        await process.communicate()
    killed = time.monotonic()
    for _ in range(150):  # 15 s
        if not still_running(children):
            break
        await asyncio.sleep(0.1)
    gone_after = time.monotonic() - killed
    assert [describe(child) for child in still_running(children)] == [], gone_after
    assert processes_using(data_dir) == []
    print(f"started in {killed - began:.1f}s; children gone {gone_after:.1f}s after kill -9")

    lock = data_dir / "dev.lock"
    assert lock.read_text().strip() == str(process.pid)  # left by the crash, holding nothing
    squatter = await asyncio.create_subprocess_exec(
        "sleep", "300", user=SYSTEM_USER if os.geteuid() == 0 else None
    )
    try:
        stale_postgres_files(data_dir / "postgres", squatter.pid)
        again = await start_dev(data_dir, ports)
        try:
            await wait_healthy(api, again)
            assert lock.read_text().strip() == str(again.pid)
            mode = data_dir.stat().st_mode
            other = dev_ports()
            refused = await start_dev(data_dir, other)
            output, _ = await asyncio.wait_for(refused.communicate(), 30)
            text = output.decode().strip()
            assert refused.returncode == 1, text
            assert text == (
                f"error: another hub dev (pid {again.pid}) is running on {data_dir}: "
                "stop it first, or give this one a HUB_DATA_DIR of its own"
            )
            assert not any(port_in_use(port) for port in other.values())
            assert data_dir.stat().st_mode == mode  # it touched nothing
        finally:
            code, output = await stop(again)
        assert code == 0, output
        assert processes_using(data_dir) == []
        log = (data_dir / "postgres" / "log").read_text().strip().splitlines()
        assert any("database system is shut down" in line for line in log[-3:]), log[-3:]
        assert not [line for line in log[-20:] if "PANIC" in line or "abnormal" in line]
        assert squatter.returncode is None  # recovery removed its files, never the process
    finally:
        squatter.send_signal(signal.SIGKILL)
        await squatter.wait()
    print(f"whole drill {time.monotonic() - began:.1f}s")

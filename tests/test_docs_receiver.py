"""docs/examples/receiver.py, the README tour's receiver, verifies what the hub sends."""

import asyncio
import os
import sys
from pathlib import Path

from hub.core.models import Outcome, RuleIn, ServiceIn, ServicePatch

RECEIVER = Path(__file__).resolve().parent.parent / "docs" / "examples" / "receiver.py"


async def test_the_example_receiver_verifies_every_signed_delivery(store, hub, unique):
    # The receiver binds first and says where: a port chosen here could be taken before it
    # binds (it then exits, and whatever took the port gets the deliveries).
    service = await store.services.create(
        ServiceIn(name=f"{unique}-rx", base_url="http://127.0.0.1:9", sign="hmac")
    )
    assert service.issued_secret is not None
    for method in ("POST", "PUT", "GET", "DELETE"):
        await store.rules.create(
            RuleIn(event=f"{unique}.rx", service=service.name, method=method, endpoint="/in")
        )
    await hub.index.refresh(min_version=await store.rules.config_version())
    receiver = await asyncio.create_subprocess_exec(
        sys.executable,
        str(RECEIVER),
        "0",
        env={**os.environ, "WEBHOOK_SECRET": service.issued_secret.get_secret_value()},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert receiver.stdout is not None
        started = (await receiver.stdout.readline()).decode()
        assert started.startswith("receiving on http://127.0.0.1:"), started
        url = started.split()[-1]
        await store.services.update(service.name, ServicePatch(base_url=url))
        await hub.index.refresh(min_version=await store.rules.config_version())
        result = await hub.emit(f"{unique}.rx", {"id": 7}, wait=True)
        assert result.result is not None and result.result.outcome is Outcome.DELIVERED
        lines = [(await receiver.stdout.readline()).decode() for _ in range(4)]
    finally:
        receiver.terminate()
        await receiver.wait()
    assert sorted(line.split()[1] for line in lines) == ["DELETE", "GET", "POST", "PUT"]
    assert all(line.startswith("verified ") for line in lines), lines

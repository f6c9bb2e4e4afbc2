"""Key rotation at rest: list a new key first, `hub secrets rotate`, drop the old key, deliver."""

import os
from base64 import b64encode

import pytest
from cryptography.fernet import Fernet
from pydantic import SecretStr
from standardwebhooks import Webhook

from hub.client import HubClient
from hub.config import Settings
from hub.core.models import Outcome, RuleIn, ServiceIn
from hub.engine.schedules import ensure_schedules
from hub.engine.worker import running_worker
from hub.secrets import SecretBox, SecretKeyError
from hub.store import Store, migrate
from tests.cli_runner import run_hub

INBOUND = "whsec_" + b64encode(b"inbound-secret-32-bytes-long-ok!").decode()
SIGNING_SECRETS: dict[str, str] = {}  # database -> the signing secret it issued
OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


async def hub_command(dsn: str, key: str, *args: str) -> tuple[int, str, str]:
    run = await run_hub({**os.environ, "HUB_DATABASE_URL": dsn, "HUB_SECRET_KEY": key}, *args)
    return run.code, run.stdout, run.stderr


@pytest.fixture
async def rotated_db(fresh_database, sink, unique):
    """A database whose credentials were sealed with OLD only."""
    dsn = await fresh_database(f"rotate_{unique}")
    await migrate(dsn)
    async with Store.open(dsn, box=SecretBox(OLD)) as store:
        await store.services.create(
            ServiceIn(
                name="crm",
                base_url=sink.url,
                auth_type="bearer",
                token="bearer-s3cret",
                inbound_token="inbound-s3cret",
            )
        )
        basic_url = sink.url.replace("http://", "http://user:url-pass@")
        await store.services.create(ServiceIn(name="basic", base_url=basic_url))
        await store.services.create(ServiceIn(name="plain", base_url=sink.url))
        signed = await store.services.create(
            ServiceIn(name="signed", base_url=sink.url, sign="hmac", inbound_secret=INBOUND)
        )
        assert signed.issued_secret is not None
        SIGNING_SECRETS[dsn] = signed.issued_secret.get_secret_value()
        await store.rules.create(RuleIn(event="rot.*", service="signed", endpoint="/signed"))
        await store.rules.create(RuleIn(event="rot.*", service="crm", endpoint="/bearer"))
        await store.rules.create(RuleIn(event="rot.*", service="basic", endpoint="/basic"))
    return dsn


async def test_rotate_then_deliver_with_the_old_key_removed(
    rotated_db, settings, temporal, sink, unique
):
    code, out, err = await hub_command(rotated_db, f"{NEW},{OLD}", "secrets", "rotate")
    # crm (token, inbound token), basic (URL password), signed (inbound secret), its key.
    assert (code, out.strip()) == (0, "re-encrypted 4 row(s) with the newest key"), err
    code, out, _ = await hub_command(rotated_db, f"{NEW},{OLD}", "secrets", "rotate")
    assert out.strip() == "re-encrypted 0 row(s) with the newest key"

    async with Store.open(rotated_db, box=SecretBox(OLD)) as old_only:
        crm = await old_only.services.get("crm")
        with pytest.raises(SecretKeyError):
            old_only.box.credentials(crm)

    own = settings.model_copy(
        update={
            "database_url": rotated_db,
            "secret_key": SecretStr(NEW),
            "task_queue": f"hub-test-rotate-{unique}",
        }
    )
    try:
        async with (
            running_worker(own, temporal=temporal),
            Store.open(rotated_db, box=SecretBox(NEW)) as store,
            HubClient.connect(own, temporal=temporal, store=store) as hub,
        ):
            result = await hub.emit("rot.done", {"n": 1}, wait=True)
    finally:
        # Schedules are per namespace: give them back to the session's worker.
        await ensure_schedules(temporal, settings)
    assert result.result is not None and result.result.outcome is Outcome.DELIVERED
    [signed] = sink.at("/signed")
    Webhook(SIGNING_SECRETS[rotated_db]).verify(signed.body, signed.headers)
    async with Store.open(rotated_db, box=SecretBox(NEW)) as store:
        service = await store.services.get("signed")
        assert store.box.inbound_secret(service) == b"inbound-secret-32-bytes-long-ok!"
    [bearer], [basic] = sink.at("/bearer"), sink.at("/basic")
    assert bearer.headers["authorization"] == "Bearer bearer-s3cret"
    assert basic.headers["authorization"] == "Basic " + b64encode(b"user:url-pass").decode()
    assert {bearer.headers["x-hub-event-id"], basic.headers["x-hub-event-id"]} == {result.event_id}


async def test_rotate_refuses_a_key_list_that_cannot_open_the_rows(rotated_db):
    code, out, err = await hub_command(rotated_db, NEW, "secrets", "rotate")
    assert code == 1 and out == ""
    assert err.startswith("error: a stored credential cannot be decrypted")
    assert len(err.strip().splitlines()) == 1
    async with Store.open(rotated_db, box=SecretBox(OLD)) as store:
        crm = await store.services.get("crm")
        assert store.box.credentials(crm).token == "bearer-s3cret"  # nothing changed


async def test_a_malformed_key_list_is_one_line(rotated_db):
    code, _, err = await hub_command(rotated_db, f"{NEW},not-a-key", "secrets", "rotate")
    assert code == 1
    assert err.strip().splitlines() == [
        "error: HUB_SECRET_KEY is not a valid key list (each key is 32 url-safe "
        "base64-encoded bytes; several keys are separated by commas, newest first)"
    ]


def test_settings_keep_the_key_list_secret():
    shown = repr(Settings(secret_key=f"{NEW},{OLD}"))
    assert NEW not in shown and OLD not in shown

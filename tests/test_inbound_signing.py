"""Verified inbound webhooks: senders that sign with Standard Webhooks (the PyPI
``standardwebhooks`` package signs here, as a sender's code would), against the real app,
worker, Temporal and PostgreSQL."""

from datetime import UTC, datetime, timedelta

import pytest
import standardwebhooks
from temporalio.service import RPCError

from hub.core.models import Direction, Outcome, ServicePatch
from hub.core.signing import SigningScheme, generate
from tests.test_signing import app_client
from workflows.dispatch import DispatchEventWorkflow

API_TOKEN = "api-TOKEN-inbound-0123456789"
INBOUND_TOKEN = "inbound-TOKEN-signed-0123"


@pytest.fixture
async def client(settings, store, temporal, worker):
    """An unauthenticated client of the app (webhooks need no API token)."""
    async with app_client(settings, store, temporal) as http:
        yield http


@pytest.fixture
async def signed_service(make_service, make_rule):
    """A service that takes signed webhooks (and still its token), with a rule to the sink."""
    secret = generate(SigningScheme.HMAC).secret
    service = await make_service(inbound_secret=secret, inbound_token=INBOUND_TOKEN)
    await make_rule(f"webhook.{service.name}", service, endpoint="/in", template="{{data}}")
    return service, secret


def signed(secret: str, msg_id: str, body: bytes, at: datetime | None = None) -> dict[str, str]:
    """The headers a Standard Webhooks sender puts on ``body``."""
    when = at or datetime.now(UTC)
    signature = standardwebhooks.Webhook(secret).sign(msg_id, when, body.decode())
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(when.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


async def no_workflow(temporal, event_id: str) -> bool:
    try:
        await temporal.get_workflow_handle(f"event-{event_id}").describe()
    except RPCError:
        return True
    return False


async def test_a_signed_webhook_is_accepted_once_with_its_id_as_the_event_id(
    client, signed_service, store, temporal, sink, unique
):
    service, secret = signed_service
    path, body, msg_id = f"/webhooks/{service.name}", b'{"order":7}', f"msg_{unique}"
    accepted = await client.post(path, content=body, headers=signed(secret, msg_id, body))
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["event_id"] == msg_id
    handle = temporal.get_workflow_handle_for(DispatchEventWorkflow.run, f"event-{msg_id}")
    assert (await handle.result()).outcome is Outcome.DELIVERED
    [delivered] = sink.at("/in")
    assert delivered.body == body

    # The sender retries (a fresh timestamp, the same id): nothing new starts.
    again = await client.post(path, content=body, headers=signed(secret, msg_id, body))
    assert again.status_code == 200, again.text
    assert (again.json()["duplicate"], again.json()["event_id"]) == (True, msg_id)
    assert len(sink.at("/in")) == 1
    rows = await store.log.recent(service=service.name, direction=Direction.IN.value)
    assert [(r.status.value, r.event_id) for r in rows] == [("ok", msg_id), ("ok", msg_id)]

    # The inbound token keeps working beside the secret.
    by_token = await client.post(
        path, json={"order": 8}, headers={"Authorization": f"Bearer {INBOUND_TOKEN}"}
    )
    assert by_token.status_code == 202 and by_token.json()["event_id"] != msg_id


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("tampered", "no signature matches"),
        ("wrong secret", "no signature matches"),
        ("stale", "too old"),
        ("future", "too far in the future"),
        ("unsigned timestamp", "no signature matches"),
        ("no id", "missing webhook-id"),
    ],
)
async def test_a_forged_or_stale_webhook_is_refused_logged_and_starts_nothing(
    client, signed_service, store, temporal, sink, unique, change, reason
):
    service, secret = signed_service
    msg_id, body = f"msg_{unique}", b'{"order":1}'
    headers, sent = signed(secret, msg_id, body), body
    if change == "tampered":
        sent = b'{"order":1000}'
    elif change == "wrong secret":
        headers = signed(generate(SigningScheme.HMAC).secret, msg_id, body)
    elif change == "stale":
        headers = signed(secret, msg_id, body, datetime.now(UTC) - timedelta(minutes=6))
    elif change == "future":
        headers = signed(secret, msg_id, body, datetime.now(UTC) + timedelta(minutes=6))
    elif change == "unsigned timestamp":
        headers["webhook-timestamp"] = str(int(headers["webhook-timestamp"]) - 1)
    else:
        del headers["webhook-id"]

    refused = await client.post(f"/webhooks/{service.name}", content=sent, headers=headers)

    assert refused.status_code == 401, refused.text
    assert reason in refused.json()["detail"]
    assert secret not in refused.text
    assert await no_workflow(temporal, msg_id)
    [row] = await store.log.recent(service=service.name, direction=Direction.IN.value)
    assert (row.status.value, row.method, row.event_id) == ("failed", "WEBHOOK", None)
    assert reason in row.error and secret not in row.error
    assert sink.at("/in") == []


async def test_signed_webhook_edge_cases(client, signed_service, make_service, store, unique):
    service, secret = signed_service
    path, body = f"/webhooks/{service.name}", b'{"a":1}'
    bad_id = await client.post(path, content=body, headers=signed(secret, "has space", body))
    assert bad_id.status_code == 400 and "webhook-id" in bad_id.json()["detail"]
    not_json = await client.post(
        path, content=b"[1]", headers=signed(secret, f"m_{unique}", b"[1]")
    )
    assert not_json.status_code == 400

    # A service without an inbound secret: the signature is not looked at, the token is.
    plain = await make_service(inbound_token=INBOUND_TOKEN)
    headers = signed(secret, f"p_{unique}", body)
    refused = await client.post(f"/webhooks/{plain.name}", content=body, headers=headers)
    assert refused.status_code == 401 and "inbound token" in refused.json()["detail"]
    with_token = headers | {"X-API-Key": INBOUND_TOKEN}
    taken = await client.post(f"/webhooks/{plain.name}", content=body, headers=with_token)
    assert taken.status_code == 200 and taken.json()["matched"] is False

    await store.services.update(service.name, ServicePatch(enabled=False))
    disabled = await client.post(path, content=body, headers=signed(secret, f"d_{unique}", body))
    assert disabled.status_code == 403

    # Removing the inbound secret (an empty value) leaves only the token.
    await store.services.update(service.name, ServicePatch(inbound_secret="", enabled=True))
    assert (await store.services.get(service.name)).inbound_secret is None
    gone = await client.post(path, content=body, headers=signed(secret, f"g_{unique}", body))
    assert gone.status_code == 401 and "inbound token" in gone.json()["detail"]

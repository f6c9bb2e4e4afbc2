"""Signed deliveries (Standard Webhooks), verified at a real HTTP sink and a real RabbitMQ
queue with the PyPI ``standardwebhooks`` package, the way a receiver would."""

import asyncio
import base64
import time
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import aio_pika
import httpx
import pytest
import standardwebhooks
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from pydantic import SecretStr, ValidationError
from standardwebhooks.webhooks import WebhookVerificationError

from hub.api import create_app
from hub.core.models import Outcome, ServicePatch
from hub.core.signing import SigningScheme, generate
from hub.engine.replay import Replayer
from hub.runtime.embedded import port_in_use
from hub.store import ConflictError
from tests.sink import Received

BROKER = "amqp://guest:guest@127.0.0.1:5672/"
API_TOKEN = "api-TOKEN-signing-0123456789"


def verify(secret: str, headers: dict[str, str], body: bytes):
    """What a receiver does: the standardwebhooks package, unchanged."""
    return standardwebhooks.Webhook(secret).verify(body, headers)


def signatures(received: Received) -> list[str]:
    return received.headers["webhook-signature"].split(" ")


def ed25519_verifies(public_key: str, received: Received) -> bool:
    """Checked with cryptography alone: standardwebhooks (Python) has no v1a support."""
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key.removeprefix("whpk_")))
    headers = received.headers
    content = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + received.body
    for entry in signatures(received):
        version, _, value = entry.partition(",")
        if version == "v1a":
            key.verify(base64.b64decode(value), content)  # raises InvalidSignature
            return True
    return False


@pytest.fixture
def deliver(hub, store, sink):
    """Emit one event (with the emitter's index current) and return what the sink got."""

    async def run(event: str, path: str, data: dict) -> tuple[Received, str]:
        await hub.index.refresh(min_version=await store.rules.config_version())
        result = await hub.emit(event, data, wait=True)
        assert result.result.outcome is Outcome.DELIVERED, result
        return sink.at(path)[-1], result.result.deliveries[0].delivery_id

    return run


async def test_signatures_verify_before_during_and_after_rotation(
    store, make_service, make_rule, deliver, unique
):
    service = await make_service(sign="hmac")
    first = service.issued_secret.get_secret_value()
    assert first.startswith("whsec_") and first not in repr(service)
    await make_rule(f"{unique}.rot", service, endpoint="/rot", template='{"n": {{data.n}}}')

    before, delivery_id = await deliver(f"{unique}.rot", "/rot", {"n": 1})
    assert before.headers["webhook-id"] == delivery_id == before.headers["idempotency-key"]
    assert abs(int(before.headers["webhook-timestamp"]) - time.time()) < 60
    assert verify(first, before.headers, before.body) == {"n": 1}
    with pytest.raises(WebhookVerificationError):
        verify(generate(SigningScheme.HMAC).secret, before.headers, before.body)

    rotated = await store.services.rotate_secret(service.name, timedelta(seconds=4))
    second = rotated.issued_secret.get_secret_value()
    current, old = rotated.signing_keys
    assert second != first and (current.expires_at, old.expires_at is not None) == (None, True)
    during, _ = await deliver(f"{unique}.rot", "/rot", {"n": 2})
    assert [s[:3] for s in signatures(during)] == ["v1,", "v1,"]
    assert verify(second, during.headers, during.body) == {"n": 2}
    assert verify(first, during.headers, during.body) == {"n": 2}  # the old secret alone

    # No configuration change happens at the expiry: the worker's index still holds the old
    # key, and must stop signing with it all the same.
    await asyncio.sleep((old.expires_at - datetime.now(UTC)).total_seconds() + 0.5)
    after, _ = await deliver(f"{unique}.rot", "/rot", {"n": 3})
    assert len(signatures(after)) == 1
    assert verify(second, after.headers, after.body) == {"n": 3}
    with pytest.raises(WebhookVerificationError):
        verify(first, after.headers, after.body)
    assert [k.id for k in (await store.services.get(service.name)).signing_keys] == [current.id]


async def test_a_replay_is_signed_again_with_a_fresh_timestamp(
    hub, store, temporal, settings, sink, make_service, make_rule, unique
):
    service = await make_service(sign="hmac", max_attempts=1)
    secret = service.issued_secret.get_secret_value()
    await make_rule(f"{unique}.rp", service, endpoint="/rp", template='{"v": {{data.v}}}')
    sink.script("/rp", 500, then=200)
    failed = await hub.emit(f"{unique}.rp", {"v": 7}, wait=True)
    assert failed.result.outcome is Outcome.DEAD_LETTERED
    await asyncio.sleep(1.1)  # so the replay's timestamp is a later second

    replay = await Replayer(temporal, store, settings.task_queue).start(
        failed.result.deliveries[0].dlq_id
    )
    assert (await replay.result()).delivered
    first, again = sink.at("/rp")
    assert again.body == first.body == b'{"v": 7}'
    assert again.headers["webhook-id"] == first.headers["webhook-id"]
    assert int(again.headers["webhook-timestamp"]) > int(first.headers["webhook-timestamp"])
    assert signatures(again) != signatures(first)
    assert verify(secret, again.headers, again.body) == {"v": 7}


async def test_get_and_delete_sign_the_empty_body(
    store, sink, make_service, make_rule, deliver, unique
):
    service = await make_service(sign="hmac")
    secret = service.issued_secret.get_secret_value()
    await make_rule(f"{unique}.get", service, method="GET", endpoint="/g", template='{"q": "x"}')
    await make_rule(f"{unique}.del", service, method="DELETE", endpoint="/d", template="{}")
    got, _ = await deliver(f"{unique}.get", "/g", {})
    deleted, _ = await deliver(f"{unique}.del", "/d", {})
    for received in (got, deleted):
        assert received.body == b""
        # Raises unless signed over the empty body (there is no JSON to parse).
        standardwebhooks.Webhook(secret).verify(b"", received.headers, json_parse=False)
        with pytest.raises(WebhookVerificationError):
            standardwebhooks.Webhook(secret).verify(b"{}", received.headers, json_parse=False)
    assert got.query == "q=x"


async def test_ed25519_signs_with_v1a_and_a_scheme_change_rotates(
    store, make_service, make_rule, deliver, unique
):
    service = await make_service(sign="ed25519")
    public = service.issued_secret.get_secret_value()
    assert public.startswith("whpk_") and service.signing_keys[0].public_key == public
    await make_rule(f"{unique}.ed", service, endpoint="/ed", template='{"e": 1}')
    signed, _ = await deliver(f"{unique}.ed", "/ed", {})
    assert [s[:4] for s in signatures(signed)] == ["v1a,"]
    assert ed25519_verifies(public, signed)
    other = generate(SigningScheme.ED25519).public_key
    with pytest.raises(InvalidSignature):
        ed25519_verifies(other, signed)

    switched = await store.services.update(service.name, ServicePatch(sign="hmac"))
    secret = switched.issued_secret.get_secret_value()
    assert [k.scheme.value for k in switched.signing_keys] == ["hmac", "ed25519"]
    both, _ = await deliver(f"{unique}.ed", "/ed", {})
    assert sorted(s.split(",")[0] for s in signatures(both)) == ["v1", "v1a"]
    assert verify(secret, both.headers, both.body) == {"e": 1}
    assert ed25519_verifies(public, both)


async def test_signing_is_turned_off_and_unchanged_requests_make_no_key(
    store, sink, make_service, make_rule, deliver, unique
):
    service = await make_service()
    assert service.signing_keys == [] and service.issued_secret is None
    with pytest.raises(ConflictError, match="does not sign"):
        await store.services.rotate_secret(service.name, timedelta(hours=1))
    await make_rule(f"{unique}.off", service, endpoint="/off", template="{}")
    unsigned, _ = await deliver(f"{unique}.off", "/off", {})
    assert "webhook-signature" not in unsigned.headers

    on = await store.services.update(service.name, ServicePatch(sign="hmac"))
    again = await store.services.update(service.name, ServicePatch(sign="hmac"))
    assert again.issued_secret is None and again.signing_keys == on.signing_keys
    now = await store.services.rotate_secret(service.name, timedelta(0))
    assert len(now.signing_keys) == 1 and now.signing_keys[0].id != on.signing_keys[0].id

    off = await store.services.update(service.name, ServicePatch(sign=None))
    assert off.signing_keys == []
    unsigned, _ = await deliver(f"{unique}.off", "/off", {})
    assert "webhook-signature" not in unsigned.headers and "webhook-id" not in unsigned.headers


@pytest.mark.parametrize(
    "fields",
    [
        {"inbound_secret": "whsec_not*base64"},
        {"inbound_secret": "whsec_" + base64.b64encode(b"short").decode()},
        {"inbound_secret": "hunter2"},
        {"sign": "rsa"},
    ],
)
def test_malformed_secrets_and_schemes_are_one_line_errors(fields):
    with pytest.raises(ValidationError) as raised:
        ServicePatch.model_validate(fields)
    [error] = raised.value.errors()
    assert "\n" not in error["msg"]
    assert "signing" in error["msg"]


@pytest.fixture
async def amqp_channel():
    assert port_in_use(5672), "RabbitMQ must listen on 127.0.0.1:5672"
    connection = await aio_pika.connect_robust(BROKER)
    async with connection:
        yield await connection.channel()


async def test_amqp_messages_carry_the_signature_headers(
    hub, store, amqp_channel, make_service, make_rule, unique
):
    queue = await amqp_channel.declare_queue(f"{unique}-signed", auto_delete=True)
    service = await make_service(
        type="amqp", base_url=f"{BROKER}?routing_key={unique}-signed", sign="hmac"
    )
    secret = service.issued_secret.get_secret_value()
    await make_rule(f"{unique}.amqp", service, template='{"m": {{data.m}}}')
    result = await hub.emit(f"{unique}.amqp", {"m": 5}, wait=True)
    assert result.result.outcome is Outcome.DELIVERED
    message = await queue.get(no_ack=True, fail=False, timeout=5)
    headers = {
        k: v.decode() if isinstance(v, bytes) else str(v) for k, v in message.headers.items()
    }
    assert headers["webhook-id"] == message.message_id == result.result.deliveries[0].delivery_id
    assert verify(secret, headers, message.body) == {"m": 5}
    with pytest.raises(WebhookVerificationError):
        verify(secret, headers, b'{"m": 6}')


@asynccontextmanager
async def app_client(settings, store, temporal, headers: dict[str, str] | None = None):
    """A client of the app on the session's store and Temporal, its lifespan running."""
    app = create_app(
        settings.model_copy(update={"api_token": SecretStr(API_TOKEN)}),
        store=store,
        temporal=temporal,
    )
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://hub", headers=headers) as client,
    ):
        yield client


@pytest.fixture
async def api(settings, store, temporal, worker):
    headers = {"Authorization": f"Bearer {API_TOKEN}"}
    async with app_client(settings, store, temporal, headers) as client:
        yield client


async def test_api_shows_a_new_secret_once_and_refuses_bad_input(api, sink, unique):
    name = f"{unique}-api"
    created = await api.post("/services", json={"name": name, "base_url": sink.url, "sign": "hmac"})
    assert created.status_code == 201, created.text
    secret = created.json()["signing_secret"]
    assert secret.startswith("whsec_")
    [key] = created.json()["signing_keys"]
    assert (key["scheme"], key["expires_at"], key["public_key"]) == ("hmac", None, None)

    rotated = await api.post(f"/services/{name}/rotate-secret", json={"grace": 3600})
    assert rotated.status_code == 200, rotated.text
    second = rotated.json()["signing_secret"]
    assert second.startswith("whsec_") and second != secret
    assert [k["expires_at"] is None for k in rotated.json()["signing_keys"]] == [True, False]

    before = (await api.get(f"/services/{name}")).json()
    for bad in ({"inbound_secret": "whsec_%%%"}, {"sign": "rsa"}, {"sign": "hmac", "x": 1}):
        refused = await api.patch(f"/services/{name}", json=bad)
        assert refused.status_code == 422, refused.text
        assert "%%%" not in refused.text
    assert (
        await api.post(f"/services/{name}/rotate-secret", json={"grace": -1})
    ).status_code == 422
    assert (await api.get(f"/services/{name}")).json() == before
    assert before["has_inbound_secret"] is False and "signing_secret" not in before

    inbound = generate(SigningScheme.HMAC).secret
    patched = await api.patch(f"/services/{name}", json={"inbound_secret": inbound})
    assert patched.json()["has_inbound_secret"] is True
    assert "signing_secret" not in patched.json()
    listed = await api.get("/services")
    for body in (before, patched.text, listed.text, (await api.get(f"/services/{name}")).text):
        for value in (secret, second, inbound):
            assert value not in str(body)

    unsigned = await api.post("/services", json={"name": f"{name}-u", "base_url": sink.url})
    assert "signing_secret" not in unsigned.json()
    conflict = await api.post(f"/services/{name}-u/rotate-secret")
    assert conflict.status_code == 409 and "does not sign" in conflict.json()["detail"]
    missing = await api.post(f"/services/{unique}-none/rotate-secret")
    assert missing.status_code == 404

"""Payload encryption in Temporal: the codec, the real worker's histories, and /codec."""

import asyncio
import base64
import json
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn
from cryptography.fernet import Fernet
from fastapi import FastAPI
from pydantic import SecretStr
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter

from hub.api import create_app
from hub.api.middleware import CODEC_MAX_BODY_BYTES
from hub.config import Settings
from hub.core.models import Outcome
from hub.runtime.codec import ENCODING, KEY_ID, CodecError, HubCodec, data_converter
from hub.runtime.embedded import free_port, temporal_binary
from hub.secrets import SecretKeyError, ensure_key_file
from tests.sink import Reply

API_TOKEN = "codec-TOKEN-0123456789"
UI_ORIGIN = "http://127.0.0.1:8233"


def key() -> bytes:
    return base64.urlsafe_b64decode(Fernet.generate_key())


def plain(text: str) -> Payload:
    return Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(text).encode())


# the codec alone


async def test_round_trip_and_key_rotation():
    old_key, new_key = key(), key()
    old, rotated = HubCodec([old_key]), HubCodec([new_key, old_key])
    marker = f"marker-{secrets.token_hex(8)}"

    [sealed] = await old.encode([plain(marker)])
    assert sealed.metadata["encoding"] == ENCODING
    assert sealed.metadata[KEY_ID] == old.key_id.encode()
    assert marker.encode() not in sealed.SerializeToString()
    assert await old.decode([sealed]) == [plain(marker)]

    # After a rotation the old key still opens, and the new one seals.
    assert await rotated.decode([sealed]) == [plain(marker)]
    [resealed] = await rotated.encode([plain(marker)])
    assert resealed.metadata[KEY_ID] == rotated.key_id.encode() != old.key_id.encode()
    assert await rotated.decode([resealed]) == [plain(marker)]
    with pytest.raises(CodecError, match=f"key id '{rotated.key_id}'.*HUB_SECRET_KEY"):
        await old.decode([resealed])

    # Same plaintext, fresh nonce: never the same ciphertext.
    [again] = await rotated.encode([plain(marker)])
    assert again.data != resealed.data

    # A history from before encryption passes through; an altered payload does not open.
    assert await rotated.decode([plain(marker)]) == [plain(marker)]
    tampered = Payload()
    tampered.CopyFrom(resealed)
    tampered.data = resealed.data[:-1] + bytes([resealed.data[-1] ^ 1])
    with pytest.raises(CodecError, match="altered"):
        await rotated.decode([tampered])


async def test_keys_come_from_the_settings_or_the_key_file(tmp_path: Path):
    first, second = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    both = Settings(secret_key=f"{first}, {second}", data_dir=tmp_path)
    codec = HubCodec.from_settings(both)
    assert codec is not None
    assert codec.key_id == HubCodec([base64.urlsafe_b64decode(first)]).key_id

    # The converter every hub process uses seals with it, and reads its own output back.
    converter = data_converter(both)
    [sealed] = await converter.encode([{"secret": "value"}])
    assert sealed.metadata["encoding"] == ENCODING
    assert await converter.decode([sealed], [dict]) == [{"secret": "value"}]

    # hub dev's key file, when HUB_SECRET_KEY is unset.
    assert HubCodec.from_settings(Settings(data_dir=tmp_path)) is None
    assert data_converter(Settings(data_dir=tmp_path)) is pydantic_data_converter
    file_key = ensure_key_file(tmp_path)
    from_file = HubCodec.from_settings(Settings(data_dir=tmp_path))
    assert from_file is not None
    assert from_file.key_id == HubCodec([base64.urlsafe_b64decode(file_key)]).key_id

    with pytest.raises(SecretKeyError, match="not a valid key list"):
        HubCodec.from_settings(Settings(secret_key="not-a-key", data_dir=tmp_path))


# histories written by the session's worker


async def emit_with_marker(hub, sink, make_service, make_rule, unique) -> tuple[str, str]:
    """Deliver one event whose data, payload and response carry a unique marker."""
    marker = f"plaintext-{secrets.token_hex(8)}"
    service = await make_service()
    await make_rule(f"{unique}.secret", service, endpoint="/s", template='{"m": "{{data.m}}"}')
    sink.script("/s", Reply(body=json.dumps({"echo": marker}).encode()))
    result = await hub.emit(f"{unique}.secret", {"m": marker}, event_id=f"{unique}-s", wait=True)
    assert result.result.outcome is Outcome.DELIVERED
    [received] = sink.at("/s")
    assert json.loads(received.body) == {"m": marker}  # the receiver gets it in clear
    assert result.workflow_id is not None
    return marker, result.workflow_id


async def test_histories_hold_no_plaintext(settings, hub, sink, make_service, make_rule, unique):
    marker, workflow_id = await emit_with_marker(hub, sink, make_service, make_rule, unique)

    # A client without the codec (what anyone with Temporal's database or UI sees).
    raw_client = await Client.connect(
        settings.resolved_temporal_address, namespace=settings.temporal_namespace
    )
    history = [e async for e in raw_client.get_workflow_handle(workflow_id).fetch_history_events()]
    raw = b"".join(e.SerializeToString() for e in history)
    assert marker.encode() not in raw
    started = history[0].workflow_execution_started_event_attributes
    [argument] = started.input.payloads
    assert argument.metadata["encoding"] == ENCODING

    # The hub's own client reads the same history back.
    codec = HubCodec.from_settings(settings)
    assert codec is not None
    [opened] = await codec.decode([argument])
    assert marker in opened.data.decode()


@asynccontextmanager
async def served(app: FastAPI) -> AsyncIterator[str]:
    """The app on a free port (its lifespan running); yields its base URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


async def temporal_cli(settings: Settings, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        temporal_binary(),
        *args,
        "--address",
        settings.resolved_temporal_address,
        "--namespace",
        settings.temporal_namespace,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={k: v for k, v in os.environ.items() if not k.startswith("TEMPORAL_")},
    )
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 0, err.decode()
    return out.decode()


@pytest.fixture
def codec_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"api_token": SecretStr(API_TOKEN), "codec_cors_origins": f"{UI_ORIGIN}/, x"}
    )


async def test_temporal_cli_reads_histories_through_the_codec_endpoint(
    codec_settings, store, temporal, hub, sink, make_service, make_rule, unique
):
    marker, workflow_id = await emit_with_marker(hub, sink, make_service, make_rule, unique)
    show = ("workflow", "show", "--workflow-id", workflow_id, "--detailed")

    encrypted = await temporal_cli(codec_settings, *show)
    assert marker not in encrypted
    assert "binary/encrypted" in encrypted
    app = create_app(codec_settings, store=store, temporal=temporal)
    async with served(app) as url:
        decoded = await temporal_cli(
            codec_settings,
            *show,
            "--codec-endpoint",
            f"{url}/codec",
            "--codec-auth",
            f"Bearer {API_TOKEN}",
        )
    assert marker in decoded


def codec_body(*payloads: Payload) -> dict:
    return {
        "payloads": [
            {
                "metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                "data": base64.b64encode(p.data).decode(),
            }
            for p in payloads
        ]
    }


def payloads_of(body: dict) -> list[Payload]:
    return [
        Payload(
            metadata={k: base64.b64decode(v) for k, v in p.get("metadata", {}).items()},
            data=base64.b64decode(p.get("data", "")),
        )
        for p in body["payloads"]
    ]


async def test_codec_endpoint_needs_the_token_except_from_listed_origins(
    codec_settings, store, temporal
):
    app = create_app(codec_settings, store=store, temporal=temporal)
    codec = app.state.codec
    marker = f"marker-{secrets.token_hex(8)}"
    [sealed] = await codec.encode([plain(marker)])
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://hub") as api,
    ):
        body = codec_body(sealed)
        refused = await api.post("/codec/decode", json=body)
        assert refused.status_code == 401
        assert "access-control-allow-origin" not in refused.headers
        stranger = {"Origin": "http://evil.example"}
        refused = await api.post("/codec/decode", json=body, headers=stranger)
        assert refused.status_code == 401
        assert "access-control-allow-origin" not in refused.headers

        auth = {"Authorization": f"Bearer {API_TOKEN}", "X-Namespace": "default"}
        decoded = await api.post("/codec/decode", json=body, headers=auth)
        assert decoded.status_code == 200
        assert payloads_of(decoded.json()) == [plain(marker)]
        encoded = await api.post("/codec/encode", json=codec_body(plain(marker)), headers=auth)
        assert encoded.status_code == 200
        [resealed] = payloads_of(encoded.json())
        assert resealed.metadata[KEY_ID] == codec.key_id.encode()
        assert await codec.decode([resealed]) == [plain(marker)]

        # The Temporal UI: a preflight, then the request itself without a token.
        preflight = await api.options(
            "/codec/decode",
            headers={
                "Origin": UI_ORIGIN,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-namespace",
            },
        )
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == UI_ORIGIN
        allowed = preflight.headers["access-control-allow-headers"].replace(" ", "").split(",")
        assert {"authorization", "content-type", "x-namespace"} <= set(allowed)
        assert "POST" in preflight.headers["access-control-allow-methods"]
        ui = {"Origin": UI_ORIGIN, "X-Namespace": "default"}
        from_ui = await api.post("/codec/decode", json=body, headers=ui)
        assert from_ui.status_code == 200
        assert from_ui.headers["access-control-allow-origin"] == UI_ORIGIN
        assert payloads_of(from_ui.json()) == [plain(marker)]
        # Only /codec answers that origin.
        assert (await api.get("/services", headers=ui)).status_code == 401

        # Bad input is a 400 naming the problem; the body is bounded.
        assert (await api.post("/codec/decode", content=b"[", headers=auth)).status_code == 400
        stale = await HubCodec([key()]).encode([plain(marker)])
        unknown = await api.post("/codec/decode", json=codec_body(*stale), headers=auth)
        assert unknown.status_code == 400
        assert "none of the configured secret keys" in unknown.json()["detail"]
        huge = b"x" * (CODEC_MAX_BODY_BYTES + 1)
        too_large = await api.post("/codec/decode", content=huge, headers=auth)
        assert too_large.status_code == 413

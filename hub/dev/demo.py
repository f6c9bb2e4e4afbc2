"""``hub dev --demo``: a local HTTP sink, a service and rules pointing at it, a few events.

Enough for the Temporal UI, ``hub logs`` and ``hub dlq list`` to have something to show,
including an endpoint that always fails so retries and the DLQ can be watched.
"""

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from hub.config import Settings
from hub.core.models import RuleIn, ServiceIn, ServicePatch
from hub.dev.background import serve_in_background, stop_server
from hub.engine.client import HubClient
from hub.secrets import SecretBox
from hub.store import ConflictError, Store

DEMO_SERVICE = "demo-sink"
DEMO_RULES = (
    RuleIn(
        event="demo.*",
        service=DEMO_SERVICE,
        endpoint="/hook",
        template='{"event": "{{name}}", "user": {{data.user}}, "email": "{{data.email}}"}',
    ),
    RuleIn(event="demo.broken", service=DEMO_SERVICE, endpoint="/broken"),
)
DEMO_EVENTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("demo.user.created", {"user": 1, "email": "ana@example.com"}),
    ("demo.user.created", {"user": 2, "email": "bo@example.com"}),
    ("demo.order.paid", {"user": 1, "email": "ana@example.com", "amount": 12.5}),
    ("demo.broken", {"user": 3, "email": "cy@example.com"}),
)


class DemoSink:
    """An ASGI app that accepts anything, except ``/broken``, which always answers 500."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self._say = say

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        status = 500 if scope["path"] == "/broken" else 200
        self._say(f"demo sink: {scope['method']} {scope['path']} -> {status} {body.decode()[:120]}")
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@asynccontextmanager
async def start_demo(
    settings: Settings, host: str, port: int, say: Callable[[str], None]
) -> AsyncIterator[None]:
    """Serve the demo sink, make sure its service and rules exist, emit the demo events."""
    server, task = await serve_in_background(DemoSink(say), host, port)
    try:
        assert settings.database_url is not None
        box = SecretBox.from_settings(settings)
        async with Store.open(settings.database_url, box=box, max_size=2) as store:
            await _ensure_config(store, f"http://{host}:{port}")
            async with HubClient.connect(settings, store=store) as hub:
                for name, data in DEMO_EVENTS:
                    result = await hub.emit(name, data)
                    say(f"demo: emitted {name} as {result.workflow_id}")
        yield
    finally:
        await stop_server(server, task)


async def _ensure_config(store: Store, url: str) -> None:
    """Create the demo service and rules once; later runs point the service at this sink."""
    try:
        await store.services.create(
            ServiceIn(name=DEMO_SERVICE, base_url=url, max_attempts=3, backoff=1.0)
        )
    except ConflictError:
        await store.services.update(DEMO_SERVICE, ServicePatch(base_url=url))
        return
    for rule in DEMO_RULES:
        await store.rules.create(rule)

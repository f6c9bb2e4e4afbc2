"""The application: its routers, auth, error handlers and body limit, and the lifespan
that opens the connections the routes share.

The API starts while PostgreSQL or Temporal is down, and recovers by itself: the store's pool
connects on demand, the Temporal client on its first call, and the rule index keeps trying
in the background. Meanwhile /healthz and the routes that need what is down answer 503.
"""

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, AsyncExitStack, asynccontextmanager

import uvicorn
from fastapi import Depends, FastAPI
from pydantic import SecretStr
from temporalio.client import Client

from hub import __version__
from hub.api.deps import require_api_token
from hub.api.errors import EXCEPTION_HANDLERS
from hub.api.middleware import (
    CODEC_MAX_BODY_BYTES,
    ENVELOPE_MARGIN,
    BodySizeLimit,
    CodecCors,
    parse_origins,
)
from hub.api.routes import circuits, codec, dlq, events, health, logs, rules, services, webhooks
from hub.api.schemas import problems
from hub.api.tracing import RequestSpans
from hub.config import Settings
from hub.engine.client import HubClient
from hub.engine.replay import Replayer
from hub.engine.state import HubState
from hub.engine.worker import running_worker
from hub.runtime.codec import HubCodec
from hub.runtime.connections import connect_temporal, database_url
from hub.runtime.metrics import HubMetrics
from hub.secrets import SecretBox
from hub.store import Store

log = logging.getLogger(__name__)

MIN_TOKEN_CHARS = 16
"""A shorter API token is refused: it could be guessed."""

Lifespan = Callable[[FastAPI], AbstractAsyncContextManager[None]]


def create_app(
    settings: Settings,
    *,
    insecure_no_auth: bool = False,
    store: Store | None = None,
    temporal: Client | None = None,
    metrics: HubMetrics | None = None,
    eager_start: bool = False,
    with_worker: bool = False,
) -> FastAPI:
    """The API application. ``store`` and ``temporal`` are used as given (and not closed).

    ``eager_start`` says that ``temporal`` is the client of a worker running in this process
    (``hub dev``), so events start eagerly on it. ``with_worker`` runs such a worker in the
    app's lifespan (``hub api --with-worker``) and starts events eagerly on it.

    With a token in ``settings.api_token`` (at least 16 characters), every route but
    /healthz, the OpenAPI schema and the docs pages needs it, /metrics too unless
    ``settings.metrics_public``, /codec too except from HUB_CODEC_CORS_ORIGINS; without one
    the app is built only when ``insecure_no_auth`` says so. ``metrics`` is the registry
    /metrics serves (``hub dev`` passes its worker's); a new one by default.
    """
    token, viewer = _checked_tokens(settings, insecure_no_auth)
    app = FastAPI(
        title="temporal-hub",
        version=__version__,
        description=(
            "Events in, durable deliveries out. Authenticate with "
            "`Authorization: Bearer <HUB_API_TOKEN>`; webhooks use the service's inbound token."
        ),
        lifespan=_lifespan(settings, store, temporal, eager_start, with_worker),
    )
    app.state.api_token = token
    app.state.viewer_token = viewer if token is not None else None
    app.state.metrics_public = settings.metrics_public
    app.state.metrics = metrics or HubMetrics()
    app.state.metrics.expect_events()
    app.state.codec = HubCodec.from_settings(settings)
    app.state.codec_origins = parse_origins(settings.codec_cors_origins)
    app.add_middleware(
        BodySizeLimit,
        max_bytes=settings.max_event_bytes + ENVELOPE_MARGIN,
        larger={"/codec/": CODEC_MAX_BODY_BYTES},
    )
    app.add_middleware(CodecCors, origins=app.state.codec_origins)
    app.add_middleware(RequestSpans)  # last added, outermost: every request is in its span
    for error_type, handler in EXCEPTION_HANDLERS.items():
        app.add_exception_handler(error_type, handler)
    protected = [Depends(require_api_token)]
    for module in (events, services, rules, dlq, logs, circuits):
        app.include_router(module.router, dependencies=protected, responses=problems(401))
    app.include_router(codec.router, responses=problems(401))
    app.include_router(webhooks.router)
    app.include_router(health.router)
    return app


def _checked_tokens(
    settings: Settings, insecure_no_auth: bool
) -> tuple[SecretStr | None, SecretStr | None]:
    """The API and viewer tokens; RuntimeError if the API would be open unasked, a token
    is guessable, or the two are the same."""
    token = _api_token(settings)
    if token is None and not insecure_no_auth:
        raise RuntimeError("HUB_API_TOKEN is not set: set it, or start with --insecure-no-auth")
    viewer = _token(settings.viewer_token)
    for name, value in (("HUB_API_TOKEN", token), ("HUB_VIEWER_TOKEN", viewer)):
        if value is not None and len(value.get_secret_value()) < MIN_TOKEN_CHARS:
            raise RuntimeError(
                f"{name} is too short: use at least {MIN_TOKEN_CHARS} characters, e.g. "
                "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
            )
    if viewer is not None and token is not None and viewer == token:
        raise RuntimeError("HUB_VIEWER_TOKEN must differ from HUB_API_TOKEN")
    return token, viewer


def _api_token(settings: Settings) -> SecretStr | None:
    """The configured API token; an empty one counts as unset."""
    return _token(settings.api_token)


def _token(token: SecretStr | None) -> SecretStr | None:
    """A configured token; an empty one counts as unset."""
    return token if token and token.get_secret_value() else None


def _lifespan(
    settings: Settings,
    store: Store | None,
    temporal: Client | None,
    eager_start: bool,
    with_worker: bool,
) -> Lifespan:
    """The lifespan: opens a store and a Temporal client unless handed in, then the shared
    ``HubState`` (``app.state.api``); on shutdown it closes only what it opened.

    Neither waits for its server: the pool has no connection to open at start, and the
    Temporal client is lazy, so the API serves (503s) while either is down. With
    ``with_worker`` it first starts a worker (which waits for both) and uses its client.
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            client = temporal
            eager = eager_start
            if with_worker:
                running = await stack.enter_async_context(
                    running_worker(settings, temporal=temporal, metrics=app.state.metrics)
                )
                client, eager = running.client, True
            own_store = store
            if own_store is None:
                dsn = await asyncio.to_thread(database_url, settings)
                box = SecretBox.from_settings(settings)
                own_store = await stack.enter_async_context(
                    Store.open(dsn, box=box, egress=settings.egress_policy, min_size=0)
                )
            client = client or await connect_temporal(settings, lazy=True)
            hub = await stack.enter_async_context(
                HubClient.connect(settings, temporal=client, store=own_store, eager_start=eager)
            )
            replayer = Replayer(client, own_store, settings.task_queue)
            app.state.api = HubState(own_store, client, hub, replayer, app.state.metrics)
            yield

    return lifespan


def serve(
    settings: Settings,
    *,
    host: str,
    port: int,
    insecure_no_auth: bool = False,
    extend: Callable[[FastAPI], None] | None = None,
    with_worker: bool = False,
) -> None:
    """Run the API with uvicorn until interrupted (raises before listening if unsafe);
    ``extend`` adds to the app first (``hub api`` mounts the console with it);
    ``with_worker`` runs a worker in the same process, which events start on eagerly."""
    app = create_app(settings, insecure_no_auth=insecure_no_auth, with_worker=with_worker)
    if extend is not None:
        extend(app)
    if app.state.api_token is None:
        log.warning("the API runs WITHOUT authentication (--insecure-no-auth)")
    uvicorn.run(app, host=host, port=port, log_level="info", server_header=False)

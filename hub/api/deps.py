"""What the routes share: the per-app connections, and the API-token check.

Every route except ``/healthz``, the OpenAPI schema and its docs pages, and
``/webhooks/{service}`` needs ``Authorization: Bearer $HUB_API_TOKEN``; so does ``/metrics``
unless ``HUB_METRICS_PUBLIC`` says otherwise. ``HUB_VIEWER_TOKEN``, when set, reads: it is
accepted for GET and HEAD, and refused with 403 for anything that changes state.
"""

from secrets import compare_digest
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr

from hub.engine.state import HubState
from hub.store import Store


def get_state(request: Request) -> HubState:
    """The app's shared state (``app.state.api`` is set by the lifespan)."""
    state: HubState = request.app.state.api
    return state


def get_store(state: Annotated[HubState, Depends(get_state)]) -> Store:
    """The store alone, for routes that need nothing else."""
    return state.store


StateDep = Annotated[HubState, Depends(get_state)]
StoreDep = Annotated[Store, Depends(get_store)]

api_bearer = HTTPBearer(auto_error=False, description="The API token (HUB_API_TOKEN).")
inbound_bearer = HTTPBearer(
    scheme_name="InboundBearer", auto_error=False, description="The service's inbound token."
)
inbound_api_key = APIKeyHeader(
    name="X-API-Key",
    scheme_name="InboundApiKey",
    auto_error=False,
    description="The service's inbound token.",
)


def same_secret(given: str, expected: str) -> bool:
    """Constant-time comparison (bytes, so any header text compares without a TypeError)."""
    return compare_digest(given.encode(), expected.encode())


READ_ONLY_METHODS = frozenset({"GET", "HEAD"})
"""What the viewer token (HUB_VIEWER_TOKEN) may do."""


async def require_api_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(api_bearer)],
) -> None:
    """401 unless the request carries the API token, or the viewer token on a GET or HEAD (403
    on anything else); no check when started without a token."""
    expected: SecretStr | None = request.app.state.api_token
    if expected is None:
        return
    given = credentials.credentials if credentials is not None else None
    if given is not None and same_secret(given, expected.get_secret_value()):
        return
    viewer: SecretStr | None = getattr(request.app.state, "viewer_token", None)
    if given is not None and viewer is not None and same_secret(given, viewer.get_secret_value()):
        if request.method in READ_ONLY_METHODS:
            return
        raise HTTPException(403, "the viewer token is read-only")
    raise HTTPException(
        401,
        "missing or wrong API token: send Authorization: Bearer <HUB_API_TOKEN>",
        headers={"WWW-Authenticate": "Bearer"},
    )


async def require_metrics_access(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(api_bearer)],
) -> None:
    """The API token, unless HUB_METRICS_PUBLIC=1: the metrics name every service and its DLQ
    depth, which is not for anyone who can reach the port."""
    if not request.app.state.metrics_public:
        await require_api_token(request, credentials)


async def sync_index(state: HubState) -> None:
    """Let this process's rule index see a change it just made (the NOTIFY may lag)."""
    await state.hub.index.refresh(min_version=await state.store.rules.config_version())

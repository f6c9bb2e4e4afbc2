"""What the routes share: the per-app connections, and the API-token check.

Every route except ``/healthz``, the OpenAPI schema and its docs pages, and
``/webhooks/{service}`` needs ``Authorization: Bearer $HUB_API_TOKEN``; so does ``/metrics``
unless ``HUB_METRICS_PUBLIC`` says otherwise.
"""

from dataclasses import dataclass, field
from secrets import compare_digest
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from temporalio.client import Client

from hub.engine.client import HubClient
from hub.engine.replay import Replayer
from hub.runtime.metrics import HubMetrics
from hub.store import Store


@dataclass
class ApiState:
    """The connections the routes share, opened by the lifespan (or handed in by tests)."""

    store: Store
    temporal: Client
    hub: HubClient
    replayer: Replayer
    metrics: HubMetrics = field(default_factory=HubMetrics)
    """This process's metrics (``hub dev`` shares its worker's), served by /metrics."""


def get_state(request: Request) -> ApiState:
    """The app's shared state (``app.state.api`` is set by the lifespan)."""
    state: ApiState = request.app.state.api
    return state


def get_store(state: Annotated[ApiState, Depends(get_state)]) -> Store:
    """The store alone, for routes that need nothing else."""
    return state.store


StateDep = Annotated[ApiState, Depends(get_state)]
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


async def require_api_token(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(api_bearer)],
) -> None:
    """401 unless the request carries the API token (no check when started without one)."""
    expected: SecretStr | None = request.app.state.api_token
    if expected is None:
        return
    if credentials is None or not same_secret(credentials.credentials, expected.get_secret_value()):
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


async def sync_index(state: ApiState) -> None:
    """Let this process's rule index see a change it just made (the NOTIFY may lag)."""
    await state.hub.index.refresh(min_version=await state.store.rules.config_version())

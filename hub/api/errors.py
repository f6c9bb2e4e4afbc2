"""Errors as responses: one JSON shape, no tracebacks, no input echoed back (it may hold a token).

``EXCEPTION_HANDLERS`` maps what the lower layers raise to a status code; the helpers turn
a store's refusal into the 422 FastAPI gives for invalid input. When the database or
Temporal is down, the answer is a 503 with ``Retry-After``: a producer retries, nothing was
accepted.
"""

import logging
from collections.abc import Awaitable, Callable

import asyncpg
from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from temporalio.service import RPCError, RPCStatusCode

from hub.core.limits import EventTooLarge
from hub.secrets import SecretKeyError
from hub.store import ConflictError, NotFoundError, StoreError, StoreUnavailable

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[JSONResponse]]

RETRY_AFTER_SECONDS = 5
"""What a 503 for an outage tells the client to wait before it tries again."""
RETRY_LATER = {"Retry-After": str(RETRY_AFTER_SECONDS)}
DATABASE_DOWN = "the database is unavailable: nothing was accepted; retry later"
TEMPORAL_DOWN = "Temporal is unavailable: nothing was accepted; retry later"
_TRANSIENT_RPC = frozenset(
    {
        RPCStatusCode.UNAVAILABLE,
        RPCStatusCode.DEADLINE_EXCEEDED,
        RPCStatusCode.RESOURCE_EXHAUSTED,
        RPCStatusCode.ABORTED,
    }
)
# The Temporal SDK's lazy client raises this RuntimeError (from its Rust core, not an
# RPCError) for any call made before it ever reached the server.
_NOT_CONNECTED = "Failed client connect"


def invalid_patch(error: ValidationError) -> RequestValidationError:
    """The store re-validates what a PATCH makes of the stored row; its refusal is a 422."""
    errors = error.errors(include_url=False, include_context=False, include_input=False)
    return RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors])


def missing_service(error: NotFoundError) -> RequestValidationError:
    """A rule body naming a service that does not exist is invalid input, not a missing URL."""
    return RequestValidationError(
        [{"type": "not_found", "loc": ("body", "service"), "msg": str(error)}]
    )


async def _request_invalid(_request: Request, error: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 shape, less each error's input and context (they may hold a token)."""
    errors = [{"type": e["type"], "loc": e["loc"], "msg": e["msg"]} for e in error.errors()]
    return JSONResponse({"detail": jsonable_encoder(errors)}, 422)


def _problem(
    status: int, detail: str | None = None, *, prefix: str = "", retry: bool = False
) -> Handler:
    """A handler answering ``status`` with the error's own message (or a fixed one);
    ``retry`` adds Retry-After."""

    async def handle(request: Request, error: Exception) -> JSONResponse:
        if status >= 500:
            log.error(
                "%s %s: %s: %s", request.method, request.url.path, type(error).__name__, error
            )
        headers = RETRY_LATER if retry else None
        return JSONResponse({"detail": detail or prefix + str(error)}, status, headers=headers)

    return handle


async def _internal(request: Request, error: Exception) -> JSONResponse:
    """A bug: the client learns nothing; Starlette re-raises it for the server to log."""
    log.error("internal error on %s %s: %s", request.method, request.url.path, type(error).__name__)
    return JSONResponse({"detail": "internal error"}, 500)


async def _temporal_failed(request: Request, error: RPCError) -> JSONResponse:
    """Temporal refused or did not answer: 503 with its message; Retry-After when the
    failure is one a retry can get past (unreachable, overloaded, timed out)."""
    detail = f"Temporal: {error.message}"
    log.error("%s %s: %s", request.method, request.url.path, detail)
    transient = error.status in _TRANSIENT_RPC
    if error.status is RPCStatusCode.UNAVAILABLE:
        detail = f"{TEMPORAL_DOWN} ({error.message})"
    return JSONResponse({"detail": detail}, 503, headers=RETRY_LATER if transient else None)


async def _runtime_error(request: Request, error: RuntimeError) -> JSONResponse:
    """A Temporal client that never reached its server is a 503; any other is a bug."""
    if str(error).startswith(_NOT_CONNECTED):
        log.error("%s %s: Temporal unreachable: %s", request.method, request.url.path, error)
        return JSONResponse({"detail": TEMPORAL_DOWN}, 503, headers=RETRY_LATER)
    return await _internal(request, error)


EXCEPTION_HANDLERS: dict[type[Exception], Handler] = {
    RequestValidationError: _request_invalid,
    NotFoundError: _problem(404),
    ConflictError: _problem(409),
    StoreError: _problem(400),
    EventTooLarge: _problem(413),
    SecretKeyError: _problem(503),
    StoreUnavailable: _problem(503, DATABASE_DOWN, retry=True),
    # Class 22 (data exception): a value the checks let through but PostgreSQL refuses.
    asyncpg.DataError: _problem(400, prefix="the database refused a value: "),
    asyncpg.IntegrityConstraintViolationError: _problem(409, prefix="the database refused: "),
    # Classes 08, 40, 53 and 57: the database is down, busy or restarting; worth a retry.
    asyncpg.PostgresConnectionError: _problem(503, DATABASE_DOWN, retry=True),
    asyncpg.TransactionRollbackError: _problem(503, "the database is busy: retry", retry=True),
    asyncpg.InsufficientResourcesError: _problem(503, "the database is busy: retry", retry=True),
    asyncpg.OperatorInterventionError: _problem(503, DATABASE_DOWN, retry=True),
    asyncpg.InterfaceError: _problem(503, DATABASE_DOWN, retry=True),
    OSError: _problem(
        503, "a server the hub needs is unreachable: nothing was accepted; retry later", retry=True
    ),
    RPCError: _temporal_failed,
    RuntimeError: _runtime_error,
    Exception: _internal,
}

"""Errors as responses: one JSON shape, no tracebacks, no input echoed back (it may hold a token).

``EXCEPTION_HANDLERS`` maps what the lower layers raise to a status code; the helpers turn
a store's refusal into the 422 FastAPI gives for invalid input.
"""

import logging
from collections.abc import Awaitable, Callable

import asyncpg
from fastapi import Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from temporalio.service import RPCError

from hub.secrets import SecretKeyError
from hub.store import ConflictError, NotFoundError, StoreError

log = logging.getLogger(__name__)

Handler = Callable[..., Awaitable[JSONResponse]]


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


def _problem(status: int, detail: str | None = None, *, prefix: str = "") -> Handler:
    """A handler answering ``status`` with the error's own message (or a fixed one)."""

    async def handle(request: Request, error: Exception) -> JSONResponse:
        if status >= 500:
            log.error(
                "%s %s: %s: %s", request.method, request.url.path, type(error).__name__, error
            )
        return JSONResponse({"detail": detail or prefix + str(error)}, status)

    return handle


async def _internal(request: Request, error: Exception) -> JSONResponse:
    """A bug: the client learns nothing; Starlette re-raises it for the server to log."""
    log.error("internal error on %s %s: %s", request.method, request.url.path, type(error).__name__)
    return JSONResponse({"detail": "internal error"}, 500)


async def _temporal_failed(request: Request, error: RPCError) -> JSONResponse:
    """Temporal refused or did not answer: worth a retry, so 503 with its message."""
    detail = f"Temporal: {error.message}"
    log.error("%s %s: %s", request.method, request.url.path, detail)
    return JSONResponse({"detail": detail}, 503)


EXCEPTION_HANDLERS: dict[type[Exception], Handler] = {
    RequestValidationError: _request_invalid,
    NotFoundError: _problem(404),
    ConflictError: _problem(409),
    StoreError: _problem(400),
    SecretKeyError: _problem(503),
    # Class 22 (data exception): a value the checks let through but PostgreSQL refuses.
    asyncpg.DataError: _problem(400, prefix="the database refused a value: "),
    asyncpg.IntegrityConstraintViolationError: _problem(409, prefix="the database refused: "),
    # Classes 08, 40, 53 and 57: the database is down, busy or restarting; worth a retry.
    asyncpg.PostgresConnectionError: _problem(503, "the database is unavailable"),
    asyncpg.TransactionRollbackError: _problem(503, "the database is busy: retry"),
    asyncpg.InsufficientResourcesError: _problem(503, "the database is busy: retry"),
    asyncpg.OperatorInterventionError: _problem(503, "the database is unavailable"),
    asyncpg.InterfaceError: _problem(503, "the database is unavailable"),
    OSError: _problem(503, "a server the hub needs is unreachable"),
    RPCError: _temporal_failed,
    Exception: _internal,
}

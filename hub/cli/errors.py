"""Expected failures end a command with one line on stderr and exit code 1, not a traceback."""

from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg
import typer
from pydantic import ValidationError
from rich.text import Text
from temporalio.service import RPCError

from hub.cli.output import err_console
from hub.core.limits import EventTooLarge
from hub.core.templating import TemplateError
from hub.runtime.embedded import DevStackError
from hub.secrets import SecretKeyError
from hub.store import StoreError


class UsageError(Exception):
    """Bad input that the command itself detected."""


# What a store, Temporal or input command can run into without it being a bug.
COMMAND_ERRORS: tuple[type[BaseException], ...] = (
    UsageError,
    StoreError,
    ValidationError,
    TemplateError,
    EventTooLarge,
    DevStackError,
    SecretKeyError,
    RPCError,
    OSError,
    asyncpg.PostgresError,
)


def one_line(error: BaseException) -> str:
    """A short, secret-free description of an error for the operator."""
    if isinstance(error, ValidationError):
        parts = []
        for item in error.errors():
            where = ".".join(str(p) for p in item["loc"])
            message = item["msg"].removeprefix("Value error, ")
            parts.append(f"{where}: {message}" if where else message)
        return "; ".join(parts)
    if isinstance(error, RPCError):
        return f"Temporal: {error.message}"
    if isinstance(error, OSError | asyncpg.PostgresError):
        return f"cannot reach a server: {error}"
    return str(error)


@contextmanager
def reported(*expected: type[BaseException]) -> Iterator[None]:
    """Turn the ``expected`` failures into ``error: ...`` on stderr and exit code 1."""
    try:
        yield
    except expected as error:
        message = Text.assemble(("error:", "red"), " ", one_line(error))
        err_console.print(message, highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None

"""Typer groups whose ``async def`` commands just work: Typer itself only calls plain functions."""

import asyncio
import inspect
from collections.abc import Callable, Coroutine
from functools import wraps
from typing import Any, ParamSpec, TypeVar, cast

import typer
from typer.models import CommandFunctionType

from hub.cli.errors import COMMAND_ERRORS, reported

P = ParamSpec("P")
T = TypeVar("T")


def run_async(func: Callable[P, Coroutine[Any, Any, T]]) -> Callable[P, T]:
    """Run an async command to the end, reporting its expected failures as one line."""

    @wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        with reported(*COMMAND_ERRORS):
            return asyncio.run(func(*args, **kwargs))

    return wrapper


class AsyncTyper(typer.Typer):
    """A Typer that registers each ``async def`` command through ``run_async``.

    Plain functions (``worker``, ``api``, ``dev``) are registered as they are: their failures
    are theirs to report.
    """

    def command(
        self, *args: Any, **kwargs: Any
    ) -> Callable[[CommandFunctionType], CommandFunctionType]:
        """Typer's ``command``, with coroutine functions wrapped first."""
        register = super().command(*args, **kwargs)

        def decorator(func: CommandFunctionType) -> CommandFunctionType:
            if inspect.iscoroutinefunction(func):
                register(cast(CommandFunctionType, run_async(func)))
            else:
                register(func)
            return func

        return decorator

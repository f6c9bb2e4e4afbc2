"""Options that several commands take, declared once: Typer has no option groups."""

import inspect
from collections.abc import Awaitable, Callable, Coroutine
from functools import wraps
from typing import Any, TypeVar

R = TypeVar("R")


def shared_options(
    parameter: str, build: Callable[..., object]
) -> Callable[[Callable[..., Awaitable[R]]], Callable[..., Coroutine[Any, Any, R]]]:
    """Show Typer ``build``'s parameters where an async command declares ``parameter``.

    The command receives what ``build`` returns from those options, so options (and their
    help) that ``service add`` and ``service update`` share are written once. The command
    must declare ``parameter`` keyword-only; the options keep their order and help.
    """
    built = [
        option.replace(kind=inspect.Parameter.KEYWORD_ONLY)
        for option in inspect.signature(build).parameters.values()
    ]
    names = [option.name for option in built]

    def decorate(func: Callable[..., Awaitable[R]]) -> Callable[..., Coroutine[Any, Any, R]]:
        signature = inspect.signature(func)
        if parameter not in signature.parameters:
            raise TypeError(f"{func.__name__} declares no {parameter!r} parameter")
        params: list[inspect.Parameter] = []
        for param in signature.parameters.values():
            params.extend(built if param.name == parameter else [param])

        @wraps(func)
        async def wrapper(*args: Any, **kwargs: Any) -> R:
            options = {name: kwargs.pop(name) for name in names}
            return await func(*args, **kwargs, **{parameter: build(**options)})

        wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]
        return wrapper

    return decorate

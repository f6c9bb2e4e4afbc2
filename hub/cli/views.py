"""The three shapes of store-backed output: a list, one object, and what was just written.

Each prints JSON with ``--json``; they differ in what people see instead.
"""

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import typer
from pydantic import BaseModel

from hub.cli.context import cli_state
from hub.cli.output import out, print_fields, print_json, print_table
from hub.store import Store

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True)
class TableView(Generic[M]):
    """How a ``list`` command shows rows to people: a titled table of the telling fields."""

    title: str
    columns: Sequence[str]
    row: Callable[[M], Sequence[Any]]


async def show_list(
    ctx: typer.Context,
    as_json: bool,
    query: Callable[[Store], Awaitable[Sequence[M]]],
    view: TableView[M],
) -> None:
    """Run a store query; print its rows as JSON, or as the view's table."""
    rows = await cli_state(ctx).with_store(query)
    if as_json:
        print_json(rows)
    else:
        print_table(view.title, view.columns, [view.row(item) for item in rows])


async def show_one(
    ctx: typer.Context,
    as_json: bool,
    query: Callable[[Store], Awaitable[M]],
    fields: Callable[[M], dict[str, Any]] | None = None,
) -> None:
    """Run a store query; print the object as JSON, or as ``fields`` (default: all of them)."""
    item = await cli_state(ctx).with_store(query)
    if as_json:
        print_json(item)
    else:
        print_fields(fields(item) if fields else item.model_dump(mode="json"))


def print_saved(value: BaseModel, as_json: bool, line: str, *, highlight: bool = True) -> None:
    """What a command that wrote something prints: the stored object as JSON, or one line."""
    if as_json:
        print_json(value)
    else:
        out.print(line, highlight=highlight)


def on_off(enabled: bool) -> str:
    """The word a summary line uses for a service's or rule's ``enabled`` flag."""
    return "enabled" if enabled else "disabled"

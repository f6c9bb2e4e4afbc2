"""How commands print: rich tables and fields for people, plain JSON for scripts."""

import json
import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

# No markup: names, patterns and error messages are printed as they are (rich would take
# "[a-z0-9_.-]" in a validation message, or "[b]" in an event pattern, for a style).
out = Console(markup=False)
err_console = Console(stderr=True, markup=False)

JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]


def print_json(
    value: BaseModel | Sequence[BaseModel | dict[str, Any]] | dict[str, Any],
) -> None:
    """JSON straight to stdout: rich would wrap and colour it, and scripts parse it."""
    if isinstance(value, BaseModel):
        data: Any = value.model_dump(mode="json")
    elif isinstance(value, dict):
        data = value
    else:
        data = [i.model_dump(mode="json") if isinstance(i, BaseModel) else i for i in value]
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """A titled table; long cells fold instead of being cut, so nothing is hidden."""
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column, overflow="fold")
    for row in rows:
        table.add_row(*("" if v is None else str(v) for v in row))
    out.print(table)


def print_fields(values: dict[str, Any]) -> None:
    """One object as aligned ``key  value`` lines, for ``show`` commands."""
    width = max(len(k) for k in values)
    for key, value in values.items():
        shown = "" if value is None else value
        line = Text.assemble((key.ljust(width), "bold"), "  ", str(shown))
        out.print(line, highlight=False, soft_wrap=True)

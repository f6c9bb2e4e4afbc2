"""``hub template``: try a payload template without a delivery."""

import sys
from typing import Annotated

import typer

from hub.cli.async_typer import AsyncTyper
from hub.cli.parsing import parse_json_object, read_template
from hub.core import templating
from hub.core.models import Event

group = AsyncTyper(help="Payload templates.", no_args_is_help=True)


@group.command("preview")
async def template_preview(
    template: Annotated[str, typer.Option(help="Template, or @file.")],
    data: Annotated[str, typer.Option(help="Event data as a JSON object.")] = "{}",
    name: Annotated[str, typer.Option(help="Event name.")] = "preview",
) -> None:
    """Render a template against sample data, as a delivery would."""
    event = Event(id="preview", name=name, data=parse_json_object(data, "--data"))
    sys.stdout.write(templating.render(read_template(template), event) + "\n")

"""``hub template``: try a payload template without a delivery."""

import sys
from typing import Annotated

import typer

from hub.cli.async_typer import AsyncTyper
from hub.cli.context import cli_state
from hub.cli.parsing import parse_json_object, read_template
from hub.core import templating
from hub.core.models import Event

group = AsyncTyper(help="Payload templates.", no_args_is_help=True)


@group.command("preview")
async def template_preview(
    ctx: typer.Context,
    template: Annotated[str, typer.Option(help="Template, or @file.")],
    data: Annotated[str, typer.Option(help="Event data as a JSON object.")] = "{}",
    name: Annotated[str, typer.Option(help="Event name.")] = "preview",
) -> None:
    """Render a template against sample data, as a delivery would (HUB_MAX_PAYLOAD_BYTES too)."""
    event = Event(id="preview", name=name, data=parse_json_object(data, "--data"))
    limit = cli_state(ctx).settings.max_payload_bytes
    rendered = templating.render(read_template(template), event, max_bytes=limit)
    sys.stdout.write(rendered + "\n")

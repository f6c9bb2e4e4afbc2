"""``hub secrets``: the key that seals stored credentials."""

import typer

from hub.cli.async_typer import AsyncTyper
from hub.cli.context import cli_state
from hub.cli.output import out

group = AsyncTyper(help="The key that encrypts stored credentials.", no_args_is_help=True)


@group.command("rotate")
async def secrets_rotate(ctx: typer.Context) -> None:
    """Re-encrypt every stored credential with the newest key in HUB_SECRET_KEY.

    List the new key first and the old one after it (HUB_SECRET_KEY=new,old), run this once,
    then drop the old key. All rows change in one transaction, or none do.
    """
    changed = await cli_state(ctx).with_store(lambda s: s.sealed.reseal())
    out.print(f"re-encrypted {changed} row(s) with the newest key")
